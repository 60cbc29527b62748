"""One command-line convention for tune, compare, ensemble and predict (src/emoexp/cliargs.py).

Every command takes ``key=value`` overrides, prints the same kind of ``--help`` (a usage line, the
description, each option as ``name=default  (type)`` with its help text) without importing torch,
Lightning or MLflow, and rejects an unknown key with one line naming it and its closest match,
exit status 2 and no traceback.

Measured on a loaded 2-core machine: ``--help`` of compare/ensemble/predict ~0.7 s, tune ~1.4 s
(it composes the config for its defaults); before, compare and ensemble imported torch for their
help and took ~20 s.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emoexp import cliargs, compare, ensemble, export, predict, robustness, study, tune

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("tune", "compare", "ensemble", "predict", "robustness", "export", "study")
HEAVY = ("torch", "lightning", "mlflow", "transformers", "timm")
OPTION_LINE = re.compile(r"^  (\S+)=(.*)  \((.+)\)$")

# Runs ``python -m emoexp.<command> --help`` in this interpreter, then reports the heavy modules it
# imported on the last line of stderr.
HELP_PROBE = """
import json, runpy, sys
sys.argv = ["emoexp.{command}", "--help"]
try:
    runpy.run_module("emoexp.{command}", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code or 0
else:
    code = 0
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}), file=sys.stderr)
"""

# An unknown key (a near miss of a real one) and the suggestion each command must make.
UNKNOWN = {
    "tune": (["tuner.n_worker=2"], "tuner.n_worker", "tuner.n_workers"),
    "compare": (["experiment=emoexp-audio", "grup_by=model"], "grup_by", "group_by"),
    "ensemble": (["runs=a,b", "mehtod=soft"], "mehtod", "method"),
    "predict": (["run_id=abc", "inptu=hello"], "inptu", "input"),
    "robustness": (["run_id=abc", "familes=noise"], "familes", "families"),
    "export": (["run_id=abc", "fromat=onnx"], "fromat", "format"),
    "study": (["fusion_embedded", "seds=0,1"], "seds", "seeds"),
}


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")


def _run(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120
    )


def _options(text: str) -> dict[str, tuple[str, str]]:
    return {m[1]: (m[2], m[3]) for line in text.splitlines() if (m := OPTION_LINE.match(line))}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_fast_and_uniform(command: str, tmp_path: Path) -> None:
    result = _run(["-c", HELP_PROBE.format(command=command, heavy=HEAVY)], tmp_path)
    probe = json.loads(result.stderr.strip().splitlines()[-1])
    assert probe["code"] == 0, result.stderr[-3000:]
    assert probe["heavy"] == [], f"--help of emoexp.{command} imported {probe['heavy']}"
    text = result.stdout
    assert text.startswith(f"usage: python -m emoexp.{command} key=value"), text[:200]
    assert "\noptions:\n" in text or "\ntuner options:\n" in text
    options = _options(text)
    assert len(options) >= 4, text
    described = [line for line in text.splitlines() if line.startswith("      ") and line.strip()]
    assert len(described) == len(options), "every option has a help line"


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_key_names_it_and_suggests(command: str, tmp_path: Path) -> None:
    arguments, key, suggestion = UNKNOWN[command]
    result = _run(["-m", f"emoexp.{command}", *arguments], tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"python -m emoexp.{command}: error: unknown option {key!r};")
    assert f"did you mean {suggestion!r}" in lines[0]
    assert not list(tmp_path.iterdir()), "an argument error writes nothing"


@pytest.mark.parametrize(
    ("module", "cls"),
    [
        (compare, compare.CompareOptions),
        (ensemble, ensemble.EnsembleOptions),
        (predict, predict.PredictOptions),
        (export, export.ExportOptions),
        (robustness, robustness.RobustnessOptions),
        (study, study.StudyOptions),
    ],
)
def test_help_lists_every_field_with_type_and_default(module, cls, capsys) -> None:
    for flag in ("-h", "--help"):
        with pytest.raises(SystemExit) as stop:
            module.main([flag])
        assert stop.value.code == 0
        options = _options(capsys.readouterr().out)
        assert set(options) == {f.name for f in cliargs.dataclasses.fields(cls)}
    assert options[next(iter(options))][1]  # a type for each


def test_option_types_and_defaults_are_shown_as_typed() -> None:
    shown = {o.name: o for o in cliargs.dataclass_options(compare.CompareOptions)}
    assert (shown["alpha"].type, shown["alpha"].default) == ("float", "0.05")
    assert (shown["log"].type, shown["log"].default) == ("bool", "true")
    assert shown["group_by"].type == "list, comma-separated" and shown["group_by"].default == "model"
    required = {o.name: o for o in cliargs.dataclass_options(predict.PredictOptions)}["run_id"]
    assert required.type == "str, required"


def test_errors_go_through_run_cli_with_the_program_name(capsys) -> None:
    assert cliargs.run_cli(compare.main, ["grup_by=model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "python -m emoexp.compare: error: unknown option 'grup_by'; did you mean 'group_by'?"
    )
    assert cliargs.run_cli(predict.main, ["run_id=abc"], prog="python -m emoexp.predict") == 2
    assert "missing required option(s) input" in capsys.readouterr().err
    assert cliargs.run_cli(ensemble.main, ["runs=a,b", "not-a-pair"]) == 2
    assert "is not key=value" in capsys.readouterr().err


def test_far_misses_list_the_options() -> None:
    error = cliargs.unknown_option("zzz", ["alpha", "name"], "prog")
    assert "options: alpha, name" in str(error)


def test_tune_checks_group_options_and_nested_keys() -> None:
    error = cliargs.check_overrides("tune", ["model=lsmt"], tune.PROG)
    assert error is not None and "model=lsmt" in str(error) and "did you mean 'lstm'" in str(error)
    error = cliargs.check_overrides("tune", ["tunr.role=all"], tune.PROG)
    assert error is not None and "did you mean 'tuner.role'?" in str(error)
    error = cliargs.check_overrides("tune", ["seed"], tune.PROG)
    assert error is not None and "is not key=value" in str(error)
    assert cliargs.check_overrides("tune", ["tuner.n_workers=2", "+extra=1", "model=cnn"], tune.PROG) is None
    # Flags that change what Hydra composes leave the command line to Hydra.
    assert cliargs.check_overrides("tune", ["-m", "seed=1,2"], tune.PROG) is None
    assert cliargs.hydra_overrides(["--cfg", "job", "seed=3", "--resolve"]) == ["seed=3"]


def test_tune_help_covers_every_tuner_key() -> None:
    from omegaconf import OmegaConf

    keys = {f"tuner.{k}" for k in OmegaConf.load(ROOT / "conf" / "tune.yaml").tuner}
    assert keys <= set(tune.TUNER_HELP), f"add help for {sorted(keys - set(tune.TUNER_HELP))}"
    assert {k for k in tune.TUNER_HELP if k.startswith("tuner.")} <= keys


def test_ensemble_methods_match_the_combiner() -> None:
    # Read without importing emoexp.ensembles.combine (it imports torch).
    tree = ast.parse((ROOT / "src" / "emoexp" / "ensembles" / "combine.py").read_text())
    methods = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "METHODS" for t in node.targets)
    )
    assert tuple(ensemble.METHODS) == tuple(methods)
