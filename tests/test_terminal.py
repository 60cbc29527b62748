"""The terminal: each log line once, no adverts or warnings on the console, a closing summary."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from emoexp.config import CONF_DIR
from emoexp.terminal import (
    ConsoleFilter,
    closing_summary,
    configure_terminal,
    stopped_line,
)

REPO = CONF_DIR.parent
RANK_ZERO = "lightning.pytorch.utilities.rank_zero"

# Logs like Lightning does, warns like torch and Lightning do; `configure_terminal` is called
# before Lightning is imported (the CLI's order) or after it (a test or notebook that imported it).
_EMIT = f"""
import logging, warnings
logging.getLogger("{RANK_ZERO}").info("GPU available: probe-line")
logging.getLogger("{RANK_ZERO}").info("💡 Tip: try installing [litlogger](https://pypi.org/project/litlogger/)")
logging.getLogger("lightning.pytorch").info("pytorch-probe-line")
logging.getLogger("lightning.fabric").warning("fabric-probe-warning")
logging.getLogger("alembic.runtime.migration").info("Running upgrade probe-migration")
logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables probe")
warnings.warn("deprecated-probe", DeprecationWarning)
warnings.warn("user-probe", UserWarning)
"""

_HYDRA_SCRIPT = f"""
import hydra
from emoexp.config import CONF_DIR
from emoexp.terminal import configure_terminal

@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def job(cfg):
    configure_terminal()
    import lightning.pytorch  # after: Lightning adds its handler while the job runs
{textwrap.indent(_EMIT, "    ")}

job()
"""

_BARE_SCRIPT = f"""
import sys
from pathlib import Path
import lightning.pytorch  # before: Lightning's handlers already exist
from emoexp.terminal import configure_terminal

configure_terminal(Path(sys.argv[1]))
configure_terminal(Path(sys.argv[1]))  # idempotent
{_EMIT}
"""


def _run(args: list[str], cwd: Path, timeout: int = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _assert_quiet_console(console: str) -> None:
    assert console.count("GPU available: probe-line") == 1, console
    assert console.count("pytorch-probe-line") == 1, console
    assert console.count("fabric-probe-warning") == 1, console
    for noise in ("litlogger", "probe-migration", "database tables probe", "deprecated-probe", "user-probe"):
        assert noise not in console, console


def _assert_complete_log(log: str) -> None:
    for line in ("GPU available: probe-line", "pytorch-probe-line", "Creating initial MLflow database"):
        assert log.count(line) == 1, log
    assert "DeprecationWarning: deprecated-probe" in log
    assert "UserWarning: user-probe" in log
    assert "litlogger" not in log


def test_under_hydra_each_lightning_line_prints_once_and_warnings_go_to_the_job_log(tmp_path: Path):
    script = tmp_path / "probe_job.py"
    script.write_text(_HYDRA_SCRIPT)
    console = _run([str(script), f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    _assert_quiet_console(console)
    _assert_complete_log((tmp_path / "run" / "probe_job.log").read_text())


def test_without_hydra_the_log_file_gets_what_the_console_does_not(tmp_path: Path):
    script = tmp_path / "probe_bare.py"
    script.write_text(_BARE_SCRIPT)
    console = _run([str(script), str(tmp_path / "logs" / "run.log")], cwd=tmp_path)
    _assert_quiet_console(console)
    _assert_complete_log((tmp_path / "logs" / "run.log").read_text())


def test_under_pytest_lightning_lines_reach_caplog_and_nothing_is_printed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
):
    root_handlers = list(logging.getLogger().handlers)
    configure_terminal()
    caplog.set_level(logging.INFO)
    logging.getLogger(RANK_ZERO).info("caplog-probe")
    logging.getLogger(RANK_ZERO).info("💡 Tip: try installing litmodels")
    assert [r.getMessage() for r in caplog.records if r.name == RANK_ZERO] == ["caplog-probe"]
    assert logging.getLogger().handlers == root_handlers  # no console handler of ours added
    # No log file to send warnings to: the warnings module is left to pytest.
    assert warnings.showwarning.__module__ != "logging"
    captured = capsys.readouterr()
    assert "caplog-probe" not in captured.out + captured.err


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("name", "level", "message", "shown"),
    [
        ("emoexp.engine.run", logging.INFO, "MLflow run abc", True),
        (RANK_ZERO, logging.INFO, "GPU available: False", True),
        (RANK_ZERO, logging.INFO, "Restoring states from the checkpoint path at x", False),
        ("alembic.runtime.migration", logging.INFO, "Running upgrade", False),
        ("mlflow.store.db.utils", logging.INFO, "Updating database tables", False),
        ("mlflow.tracking", logging.WARNING, "The store is slow", True),
        ("git.cmd", logging.DEBUG, "Popen(...)", False),
        ("py.warnings", logging.WARNING, "FutureWarning: x", False),
    ],
)
def test_console_filter(name: str, level: int, message: str, shown: bool):
    assert ConsoleFilter().filter(_record(name, level, message)) is shown


def _summary(**overrides: object) -> str:
    arguments: dict = {
        "run_id": "r1",
        "status": "FINISHED",
        "tracking_uri": "sqlite:////data/my runs/mlflow.db",
        "experiment_id": "3",
        "metrics": {
            "test/uar": 0.61234,
            "test/uar_ci_low": 0.5,
            "test/uar_ci_high": 0.7,
            "test/accuracy": 0.64,
            "val/uar_best": 0.9,
        },
        "main_metrics": ["test/uar", "test/f1_macro", "test/accuracy"],
        "artifacts": [
            "config.yaml",
            "predictions.csv",
            "checkpoints/best.ckpt",
            "checkpoints/last.ckpt",
            "model/MLmodel",
            "model/conda.yaml",
            "model/python_env.yaml",
            "model/requirements.txt",
            "model/data/model.pt",
        ],
    }
    return closing_summary(**{**arguments, **overrides})


def test_closing_summary_of_a_finished_run_in_a_local_store():
    lines = _summary().splitlines()
    assert lines[0] == "Run r1 FINISHED"
    assert lines[1] == "  test/uar       0.6123  (95% CI 0.5000 to 0.7000)"
    assert lines[2] == "  test/accuracy  0.6400"  # no CI logged; test/f1_macro not logged at all
    assert lines[3:6] == [
        "  artifacts  config.yaml, predictions.csv",
        "             checkpoints/ best.ckpt, last.ckpt",
        "             model/ 5 files",
    ]
    assert lines[6:] == [
        "  open       mlflow ui --backend-store-uri 'sqlite:////data/my runs/mlflow.db'",
        "             http://127.0.0.1:5000/#/experiments/3/runs/r1",
    ]


def test_closing_summary_on_a_tracking_server_is_just_the_url():
    text = _summary(tracking_uri="https://mlflow.example.org/", ci_suffixes=("_lo", "_hi"))
    assert text.splitlines()[-1] == "  open       https://mlflow.example.org/#/experiments/3/runs/r1"
    assert "mlflow ui" not in text
    assert "95% CI" not in text  # these CI suffixes are not in the metrics


def test_closing_summary_of_a_failed_and_a_killed_run():
    failed = _summary(status="FAILED", artifacts=["config.yaml", "error.txt"]).splitlines()
    assert failed[:2] == ["Run r1 FAILED", "  traceback  artifact error.txt of the run"]
    killed = _summary(status="KILLED").splitlines()
    assert killed[0] == "Run r1 KILLED"
    assert "resume=true" in killed[1]


def test_stopped_line():
    assert stopped_line(run_id="r1", status="FAILED", error="ValueError: bad", artifacts=["error.txt"]) == (
        "Run r1 FAILED: ValueError: bad (traceback: artifact error.txt of the run)"
    )
    assert "output folder" in stopped_line(run_id="r1", status="FAILED", error="OSError: disk")
    killed = stopped_line(run_id="r1", status="KILLED", error="interrupted by SIGTERM")
    assert killed.startswith("Run r1 KILLED: interrupted by SIGTERM; ")
    assert "resume=true" in killed


def test_train_cli_prints_each_line_once_without_noise_and_ends_with_the_summary(tmp_path: Path):
    out = tmp_path / "out"
    console = _run(
        [
            str(REPO / "train.py"),
            "debug=fast",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"paths.output_dir={out}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        timeout=900,
    )
    # Lightning's own handler prints "INFO: <message>"; the root's console "[time][INFO] <message>".
    assert not [line for line in console.splitlines() if line.startswith(("INFO:", "WARNING:"))], console
    assert console.count("GPU available") == 1, console
    assert console.count("`Trainer.fit` stopped") == 1, console
    for noise in (
        "litlogger",
        "litmodels",
        "Downloading artifacts",
        "Warning:",
        "_pytree",
        "database tables",
    ):
        assert noise not in console, console
    # Lightning logs this when a checkpoint is saved without saying whether it holds weights only.
    assert "`weights_only` was not set" not in console, "pass weights_only= to trainer.save_checkpoint"
    assert "mlflow ui --backend-store-uri" in console, console
    assert "GPU available" in (out / "train.log").read_text()
