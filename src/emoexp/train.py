"""``train(cfg)``: one composed config in, one tracked, evaluated MLflow run out.

The entry point is thin (docs/design.md#run-lifecycle): :func:`train` hands the config to the run
core (:func:`emoexp.engine.run.train_run`, which turns SIGTERM/SIGINT into an interruption); :func:`main`
is ``python train.py`` / ``emoexp-train``, which shows a config or data error as one message
and a finished run as a closing summary.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from emoexp import config as config_checks

log = logging.getLogger(__name__)

# Offline by default (docs/design.md#5-offline-by-default): HF libraries never reach for the hub unless asked.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate the configured experiment; everything is logged to one MLflow run.

    SIGTERM/SIGINT mark the run interrupted (KILLED, tag ``interrupted=true``) after saving
    ``last.ckpt``; ``resume=true`` continues it. Under DDP every rank runs this function and only
    global rank 0 records anything (docs/scaling.md).

    Args:
        cfg: A config composed from ``conf/train.yaml`` (by ``@hydra.main`` or ``hydra.compose``).

    Returns:
        The run's final metrics (``val/*_best`` and ``test/*``).

    Raises:
        ConfigError: For a config or data error, before any run exists, or a refused resume.
        TrainingInterrupted: On SIGTERM (``KeyboardInterrupt`` on SIGINT), after marking the run.
    """
    from emoexp.engine.run import train_run  # torch, lightning, mlflow: not for --help / --cfg job
    from emoexp.terminal import configure_terminal

    configure_terminal()
    return train_run(cfg, on_end=_print_summary)


def _print_summary(outcome: Any, recorder: Any) -> None:
    """The closing summary of an ended run on the terminal (never hides the run's own error)."""
    from emoexp.engine.summary import summary_text

    try:
        text = summary_text(outcome, recorder)
    except Exception as error:
        log.warning("No closing summary for run %s: %s", outcome.run_id, error)
        return
    (log.info if outcome.status == "FINISHED" else log.error)("%s", text)


def get_metric_value(metrics: dict[str, float], name: str) -> float:
    """Return ``metrics[name]``, or raise an error naming ``optimized_metric`` and what exists."""
    if name not in metrics:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; available: {sorted(metrics)}. "
            "Set optimized_metric in the config (it defaults to the label scheme's monitor + '_best')."
        )
    return float(metrics[name])


PROG = "python train.py"
DESCRIPTION = """Train and evaluate one experiment: Hydra composes conf/train.yaml with your overrides
(group=option, key=value), the run is checked before anything is recorded, and everything it
produces (metrics, reports, predictions, checkpoint, model) lands in one MLflow run. `--cfg job`
prints the composed config; `-m` sweeps (docs/guide.md)."""
KEY_HELP = {
    "seed": "Seed of everything random in the run.",
    "resume": "true: continue the latest interrupted run of this config; or a run id.",
    "resume_force": "With resume=<id>: continue a run made with another config (tags rewritten).",
    "resume_restart": "With resume: retrain from scratch when the run's last.ckpt is gone.",
    "tracking.uri": "MLflow store (null: $MLFLOW_TRACKING_URI, else ./mlflow.db).",
    "tracking.experiment": "MLflow experiment of the run.",
    "trainer.max_epochs": "Epochs at most (early stopping may end sooner).",
    "data.root": "Folder of a real corpus (data=ravdess, cremad, ...).",
    "data.max_samples": "Keep a fixed class-stratified subset of this many samples.",
    "evaluate_test": "false: validation only (the test split stays locked).",
}


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``python train.py``, ``emoexp-train``): help, checked overrides, then Hydra."""
    from emoexp import cliargs

    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(a in cliargs.HELP_FLAGS for a in arguments):
        print(cliargs.config_help(PROG, DESCRIPTION, "train", KEY_HELP, key_title="common keys"))
        return
    error = cliargs.check_overrides("train", arguments, PROG)
    if error is not None:
        sys.exit(cliargs.fail(PROG, error))
    sys.argv = [sys.argv[0], *arguments]  # what @hydra.main parses
    _hydra_main()


@hydra.main(version_base="1.3", config_path=str(config_checks.CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    from emoexp import cliargs
    from emoexp.terminal import configure_terminal

    configure_terminal()
    try:
        return get_metric_value(train(cfg), cfg.optimized_metric)
    except Exception as error:
        from emoexp.engine.preflight import USER_ERRORS

        if not isinstance(error, USER_ERRORS) or os.environ.get("EMOEXP_DEBUG"):
            raise
        # A config or data error: one message and the fix, no traceback (it is in the log file).
        log.debug("Stopped by a config or data error", exc_info=True)
        sys.exit(cliargs.fail(PROG, error))
