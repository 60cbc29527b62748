"""One writer to MLflow: only the engine (its recorder) and the serving model logger write runs.

The recorder (``emoexp.engine.recorder.Recorder``, docs/design.md#the-recorder) owns the network
policy: bounded probe, buffered and retried writes, a final status that is always written.
Features that record something (ensembles, comparisons, the tuner) hand it to a recorder; they
never call an MLflow client's write methods themselves. ``serving/pyfunc.py`` is the one
exception outside the engine: MLflow logs models only through its fluent API, which the
recorder's ``log_model`` wraps.

The scan is syntactic: any attribute named like an MLflow write (``log_batch``, ``set_tag``,
``mlflow.<flavor>.log_model``...), called or passed on, counts unless its receiver is a recorder
(a name containing ``recorder``). ``recorder.client.set_tag`` counts: the recorder's client is
for reads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "emoexp"

# MlflowClient and fluent-API writes. Some share a name with a Recorder method (log_artifact,
# create_run, log_text, log_model...): there the receiver decides. Not log_dict: a LightningModule's
# self.log_dict goes to the engine's Lightning logger, which hands it to the recorder.
WRITES = frozenset(
    {
        "create_run",
        "delete_run",
        "delete_tag",
        "log_artifact",
        "log_artifacts",
        "log_batch",
        "log_figure",
        "log_image",
        "log_inputs",
        "log_metric",
        "log_metrics",
        "log_model",
        "log_param",
        "log_params",
        "log_table",
        "log_text",
        "restore_run",
        "set_tag",
        "set_tags",
        "set_terminated",
        "start_run",
        "update_run",
    }
)
# Where MLflow writes belong (paths relative to src/emoexp; a folder ends with "/").
ALLOWED = ("engine/", "serving/pyfunc.py")
# Writes outside ALLOWED that wait for a Recorder method, with why. Remove an entry with its write.
PENDING: dict[tuple[str, str], str] = {}


def _final_name(node: ast.expr) -> str:
    """The last name in a receiver: ``self._recorder`` -> ``_recorder``, ``Recorder(uri)`` -> ``Recorder``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call | ast.Subscript):
        return _final_name(node.func if isinstance(node, ast.Call) else node.value)
    return ""


def mlflow_writes(source: str) -> Iterator[tuple[int, str, str]]:
    """``(line, method, receiver)`` of every MLflow write in ``source`` not made through a recorder."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in WRITES:
            continue
        if "recorder" in _final_name(node.value).lower():
            continue
        yield node.lineno, node.attr, ast.unparse(node.value)


def _writes_outside_allowed() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if any(relative == a or (a.endswith("/") and relative.startswith(a)) for a in ALLOWED):
            continue
        for line, method, receiver in mlflow_writes(path.read_text()):
            found.setdefault((relative, method), []).append(f"{relative}:{line}: {receiver}.{method}")
    return found


def test_only_the_engine_writes_to_mlflow():
    found = _writes_outside_allowed()
    unexpected = [where for key, wheres in found.items() if key not in PENDING for where in wheres]
    assert not unexpected, (
        "MLflow writes outside the recorder (hand them to an emoexp.engine.recorder.Recorder):\n"
        + "\n".join(unexpected)
    )


def test_pending_exceptions_are_still_needed():
    stale = set(PENDING) - set(_writes_outside_allowed())
    assert not stale, f"no longer written outside the recorder, remove from PENDING: {sorted(stale)}"


def test_the_scan_tells_client_writes_from_recorder_writes():
    source = """
client.log_batch(run_id, metrics=[])
recorder.client.set_tag(run_id, "k", "v")
mlflow.pytorch.log_model(net, "model")
self._retry("x", self.client.log_artifact, run_id, path)
MlflowClient(uri).create_run("0")
recorder.log_metrics(run_id, {"a": 1.0})
self.recorder.log_artifact(run_id, path)
Recorder(uri).create_run("0", "name", {})
recorder.log_model(run_id, write)
client.get_run(run_id)
"""
    assert [(line, method) for line, method, _ in mlflow_writes(source)] == [
        (2, "log_batch"),
        (3, "set_tag"),
        (4, "log_model"),
        (5, "log_artifact"),
        (6, "create_run"),
    ]


def test_the_engine_is_where_the_writes_are():
    """The scan is not vacuous: the recorder's own writes are found."""
    recorder = (SRC / "engine" / "recorder.py").read_text()
    assert {"log_batch", "set_terminated", "create_run"} <= {m for _, m, _ in mlflow_writes(recorder)}
