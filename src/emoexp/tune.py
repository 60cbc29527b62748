"""Tune a search space: ``python -m emoexp.tune hparams_search=audio_lstm`` (docs/tuning.md).

A thin Hydra entry point over :func:`emoexp.tuning.tune`; the config is ``conf/tune.yaml``
(``train.yaml`` plus the tuner's settings and a ``pruner`` choice). ``--help`` and override
errors follow the convention of every emoexp command (:mod:`emoexp.cliargs`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from emoexp import cliargs
from emoexp.config import CONF_DIR, ConfigError

PROG = "python -m emoexp.tune"

DESCRIPTION = """Tune a search space with Optuna: pruning from inside Lightning, resumable studies (run the
same command again), any number of workers on one study (tuner.n_workers, or tuner.role=worker jobs on
a cluster), multi-objective studies, and one final run that alone reads the test split. The study
(parameters, n_trials, storage, sampler) comes from hydra.sweeper in the hparams_search file; every
key and group of `python train.py` is accepted too (`python -m emoexp.tune --cfg job` prints the
composed config). See docs/tuning.md."""

# Help of the tuner's own keys; types and defaults are read from conf/tune.yaml.
TUNER_HELP = {
    "tuner.role": "all | setup | worker | finalize (all = setup, n_workers local workers, finalize).",
    "tuner.n_workers": "Local worker processes sharing the study's storage (role=all).",
    "tuner.threads_per_worker": "Torch threads per worker (null: cores divided by n_workers).",
    "tuner.gpu_ids": "GPUs to spread local workers over (null: every visible GPU on gpu/cuda, else none).",
    "tuner.default_storage": "Study storage when hydra.sweeper.storage is null (SQLite paths made absolute).",
    "tuner.heartbeat_interval": "Seconds between a worker's heartbeats.",
    "tuner.grace_period": "Seconds of silence after which a RUNNING trial is failed (its worker died).",
    "tuner.max_retry": "Retries of a trial whose worker died.",
    "tuner.wait_for_running": "A worker with no trial left waits for the others' trials (and retries).",
    "tuner.tracking_wait_s": "Seconds a worker waits for an unreachable tracking store before a trial.",
    "tuner.worker_id": "Index of this worker (SLURM scripts pass the array task id).",
    "tuner.cv_pruning": "Cross-validated trials report every epoch (epoch) or after each fold (fold).",
    "tuner.final_run": "Train the best configuration once more and evaluate it on test.",
    "tuner.keep_trial_outputs": "Keep each trial's output folder (checkpoints).",
    "tuner.log_trial_checkpoints": "Log trial checkpoints to MLflow.",
    "hydra.sweeper.n_trials": "Trials of the study in total (set by the search space; raise it to extend).",
    "hydra.sweeper.storage": "Optuna storage: database URL or journal:<file> (null: tuner.default_storage).",
}


def help_text() -> str:
    """The ``--help`` text: config groups and the tuner's keys, with types and defaults."""
    return cliargs.config_help(
        PROG,
        DESCRIPTION,
        "tune",
        TUNER_HELP,
        key_title="tuner options",
        epilog="Any other key of the composed config is set the same way, e.g. trainer.max_epochs=20.",
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="tune")
def main(cfg: DictConfig) -> float | None:
    """Run the study's ``tuner.role``; return the best value of the primary objective."""
    from hydra.core.hydra_config import HydraConfig

    from emoexp.terminal import configure_terminal
    from emoexp.tuning import tune

    configure_terminal()
    try:
        summary = tune(cfg, list(HydraConfig.get().overrides.task))
    except ConfigError as error:  # a bad study setup: one line and the fix, like every emoexp command
        if os.environ.get("EMOEXP_DEBUG"):
            raise
        sys.exit(cliargs.fail(PROG, error))
    best = (summary or {}).get("best") or []
    return float(best[0]["values"][0]) if best else None


def cli(argv: Sequence[str] | None = None) -> int:
    """``--help``, then the overrides checked (an unknown key exits 2 with suggestions), then Hydra."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(a in cliargs.HELP_FLAGS for a in arguments):
        print(help_text())
        return 0
    error = cliargs.check_overrides("tune", arguments, PROG)
    if error is not None:
        return cliargs.fail(PROG, error)
    sys.argv = [sys.argv[0], *arguments]  # what @hydra.main parses
    main()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
