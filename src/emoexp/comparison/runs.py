"""Selecting finished runs from MLflow and reading what they logged.

Shared by ``compare``, ``ensemble`` and the notebooks: the selection vocabulary is tags
(``modality=audio label_scheme=ekman7``), an optional raw MLflow filter string, explicit run
ids, or the top k by a validation metric. Cross-validation fold runs (tags
``mlflow.parentRunId`` and ``fold``) are folded into their parent; comparison runs are never
selected.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "emoexp.kind"


class RunSelectionError(LookupError):
    """No run, an unknown run, or runs that cannot be compared; the message says what to change."""


@dataclass
class Run:
    """A finished run as the comparison tools see it.

    Attributes:
        run_id: MLflow run id.
        name: Run name.
        experiment: Experiment name.
        tags: Run tags (modality, model, label_scheme, seed, ...).
        metrics: Latest value of every metric.
        params: Flattened resolved config.
        children: Fold runs of a cross-validated run, in fold order.
        start_time: Start, ms since the epoch (``None`` if unknown).
        end_time: End, ms since the epoch (``None`` while running).
    """

    run_id: str
    name: str
    experiment: str
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)
    children: list[Run] = field(default_factory=list)
    start_time: int | None = None
    end_time: int | None = None

    @property
    def wall_seconds(self) -> float | None:
        """Wall-clock seconds from start to end (``None`` if either is unknown)."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1000

    @property
    def seed(self) -> str:
        """The run's seed tag (``"?"`` when none was logged)."""
        return self.tags.get("seed", "?")

    def label(self, keys: Sequence[str]) -> str:
        """Group label from tag values, e.g. ``audio/lstm`` for ``keys=("modality", "model")``."""
        return "/".join(self.tags.get(k, f"no-{k}") for k in keys)


def parse_filters(text: str | Sequence[str] | None) -> list[tuple[str, str, set[str]]]:
    """Parse ``"modality=audio model=lstm,cnn seed!=0"`` into ``(key, op, values)`` triples."""
    if not text:
        return []
    items = shlex.split(text) if isinstance(text, str) else [t for part in text for t in shlex.split(part)]
    parsed = []
    for item in items:
        key, op, value = item.partition("!=") if "!=" in item else item.partition("=")
        if not op or not key:
            raise RunSelectionError(
                f"filter {item!r} is not tag=value (or tag!=value); "
                "e.g. filter='modality=audio label_scheme=ekman7'."
            )
        parsed.append((key.strip(), op, {v.strip() for v in value.split(",")}))
    return parsed


def _matches(tags: dict[str, str], filters: Iterable[tuple[str, str, set[str]]]) -> bool:
    for key, op, values in filters:
        present = tags.get(key) in values
        if present != (op == "="):
            return False
    return True


def client_for(tracking_uri: str | None) -> Any:
    """An MLflow client on the resolved tracking URI (``$MLFLOW_TRACKING_URI`` or ./mlflow.db)."""
    import mlflow

    from emoexp.tracking.store import resolve_tracking_uri

    return mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))


def _to_run(raw: Any, experiment: str) -> Run:
    return Run(
        run_id=raw.info.run_id,
        name=raw.info.run_name or raw.info.run_id[:8],
        experiment=experiment,
        tags=dict(raw.data.tags),
        metrics=dict(raw.data.metrics),
        params=dict(raw.data.params),
        start_time=raw.info.start_time,
        end_time=raw.info.end_time,
    )


def _experiment_ids(client: Any, experiments: Sequence[str]) -> dict[str, str]:
    if not experiments:
        found = {e.experiment_id: e.name for e in client.search_experiments()}
        return {k: v for k, v in found.items() if v != "Default" or len(found) == 1}
    ids = {}
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            existing = sorted(e.name for e in client.search_experiments())
            raise RunSelectionError(
                f"experiment {name!r} does not exist in this store; experiments: {existing}."
            )
        ids[experiment.experiment_id] = name
    return ids


def select_runs(
    client: Any,
    experiments: Sequence[str] = (),
    filters: str | Sequence[str] | None = None,
    where: str | None = None,
    run_ids: Sequence[str] = (),
    include_kinds: Sequence[str] = (),
) -> list[Run]:
    """Finished top-level runs matching tag filters, with their fold runs attached.

    Args:
        client: MLflow client.
        experiments: Experiment names (default: every experiment in the store).
        filters: Tag filters, see :func:`parse_filters`.
        where: Extra raw MLflow filter string (e.g. ``"metrics.`val/uar_best` > 0.3"``).
        run_ids: Explicit run ids; filters then only check them.
        include_kinds: Run kinds (tag ``emoexp.kind``) to keep besides training and ensemble
            runs; comparison runs are left out unless named here.

    Returns:
        The runs, sorted by experiment, start time.

    Raises:
        RunSelectionError: If an experiment or run id is unknown.
    """
    parsed = parse_filters(filters)
    if run_ids:
        runs = [get_run(client, run_id) for run_id in run_ids]
        return [r for r in runs if _matches(r.tags, parsed)]
    names = _experiment_ids(client, experiments)
    query = "attributes.status = 'FINISHED'" + (f" AND {where}" if where else "")
    raw_runs = client.search_runs(
        list(names), filter_string=query, max_results=50_000, order_by=["start_time ASC"]
    )
    by_id = {r.info.run_id: _to_run(r, names[r.info.experiment_id]) for r in raw_runs}
    top, children = [], []
    for run in by_id.values():
        # Fold runs belong to their cross-validated parent; other child runs (tuning trials,
        # a study's final run) are runs in their own right.
        (children if PARENT_TAG in run.tags and "fold" in run.tags else top).append(run)
    for child in children:
        parent = by_id.get(child.tags[PARENT_TAG])
        if parent is not None:
            parent.children.append(child)
    for run in top:
        run.children.sort(key=lambda c: c.tags.get("fold", c.name))
    kinds = {"", "ensemble", *include_kinds}
    return [r for r in top if r.tags.get(KIND_TAG, "") in kinds and _matches(r.tags, parsed)]


def get_run(client: Any, run_id: str) -> Run:
    """One run by id, with its fold runs.

    Raises:
        RunSelectionError: If no run has that id.
    """
    from mlflow.exceptions import MlflowException

    try:
        raw = client.get_run(run_id)
    except MlflowException as error:
        raise RunSelectionError(
            f"run {run_id!r} does not exist in {client.tracking_uri}; check the id (the MLflow UI shows it "
            "on the run page) and tracking_uri / $MLFLOW_TRACKING_URI."
        ) from error
    experiment = client.get_experiment(raw.info.experiment_id).name
    run = _to_run(raw, experiment)
    found = client.search_runs(
        [raw.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{run_id}' AND tags.fold != ''",
        max_results=10_000,
    )
    run.children = sorted((_to_run(c, experiment) for c in found), key=lambda c: c.tags.get("fold", c.name))
    return run


@functools.lru_cache(maxsize=256)
def _download(tracking_uri: str, run_id: str, path: str) -> str:
    import mlflow

    return mlflow.MlflowClient(tracking_uri).download_artifacts(run_id, path)


def artifact_path(client: Any, run_id: str, path: str) -> Path:
    """Local path of a run artifact (downloaded once per process).

    Raises:
        RunSelectionError: If the run has no such artifact.
    """
    from mlflow.exceptions import MlflowException

    try:
        return Path(_download(client.tracking_uri, run_id, path))
    except (MlflowException, OSError) as error:
        raise RunSelectionError(f"run {run_id} has no artifact {path!r} ({error}).") from error


def load_predictions(client: Any, run: Run | str) -> pd.DataFrame:
    """The run's ``predictions.csv`` (validation and test rows; OOF rows with ``fold`` for CV runs).

    Raises:
        RunSelectionError: If the run logged no predictions (e.g. it failed before testing).
    """
    run_id = run.run_id if isinstance(run, Run) else run
    path = artifact_path(client, run_id, "predictions.csv")
    return pd.read_csv(path, dtype={"id": str, "speaker": str, "target": str, "prediction": str})


def load_config(client: Any, run: Run | str) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` as a plain dict."""
    import yaml

    run_id = run.run_id if isinstance(run, Run) else run
    return yaml.safe_load(artifact_path(client, run_id, "config.yaml").read_text())


def top_k(runs: Sequence[Run], metric: str, k: int, higher_is_better: bool = True) -> list[Run]:
    """The ``k`` best runs by a logged (validation) metric; runs without it are skipped.

    Raises:
        RunSelectionError: If no run logged ``metric``.
    """
    scored = [r for r in runs if metric in r.metrics]
    if not scored:
        available = sorted({m for r in runs for m in r.metrics if m.startswith("val/")})
        raise RunSelectionError(f"no selected run logged {metric!r}; validation metrics logged: {available}.")
    return sorted(scored, key=lambda r: r.metrics[metric], reverse=higher_is_better)[:k]
