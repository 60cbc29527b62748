"""``python -m emoexp.robustness``: re-evaluate a tracked run's model on perturbed test inputs.

Examples::

    python -m emoexp.robustness run_id=<id>
    python -m emoexp.robustness run_id=<id> families=noise,reverb seed=0
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from emoexp import cliargs

PROG = "python -m emoexp.robustness"

DESCRIPTION = """Rebuild a run's test samples from its record (config.yaml and the test ids of
predictions.csv), perturb their raw inputs (audio: noise, gain, phone line, reverberation; images: blur,
brightness, contrast, occlusion, JPEG, rotation; texts: typos, casing, punctuation; fusion models: a
missing modality) at increasing severity, predict them with the run's logged model and its own
featurizer, and log to the same run: robustness/report.csv, robustness/group_gaps.csv (per-group gaps
with bootstrap CIs), metrics robust/<family>/<level>/<metric> and robustness/<family>.png. Perturbations
depend on the seed and the sample ids only, so reports of different runs compare (docs/robustness.md)."""


@dataclass
class RobustnessOptions:
    """Options of ``python -m emoexp.robustness``."""

    run_id: str = field(
        metadata={"help": "The run to re-evaluate (holdout, fold, or cross-validation parent)."}
    )
    families: list[str] = field(
        default_factory=list,
        metadata={"help": "Perturbation families, comma-separated (default: all that fit the model)."},
    )
    seed: int = field(
        default=0, metadata={"help": "Perturbation and bootstrap seed; equal for runs you compare."}
    )
    n_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples of the group-gap CIs."})
    tracking_uri: str = field(
        default="", metadata={"help": "MLflow store (default $MLFLOW_TRACKING_URI or ./mlflow.db)."}
    )

    def __post_init__(self) -> None:
        if not self.run_id.strip():
            raise ValueError(
                "run_id is empty; copy a run id from the MLflow UI or `python -m emoexp.compare`."
            )


def run(options: RobustnessOptions) -> Any:
    """Score every condition and log the report to the run; return the report.

    Raises:
        RobustnessInputError: If the run has no model or no test predictions.
        ValueError: For a family that does not fit the model.
    """
    from mlflow.exceptions import MlflowException  # deferred: --help must not load the tracking stack

    from emoexp.engine.recorder import Recorder
    from emoexp.robust.report import RobustnessSettings, evaluate_run
    from emoexp.tracking.store import resolve_tracking_uri

    settings = RobustnessSettings(tuple(options.families), options.seed, options.n_resamples)
    recorder = Recorder.connect(resolve_tracking_uri(options.tracking_uri or None))
    try:
        recorder.client.get_run(options.run_id)
    except MlflowException as error:
        raise LookupError(f"run {options.run_id} does not exist in {recorder.tracking_uri}.") from error
    return evaluate_run(recorder, options.run_id, settings)


def main(argv: Sequence[str]) -> Any:
    """Parse ``key=value`` arguments, run the report, print its table."""
    options = cliargs.parse(RobustnessOptions, argv, PROG, DESCRIPTION)
    report = run(options)
    import pandas as pd

    shown = report.table[["family", "level", "n", *report.headline[:2]]]
    with pd.option_context("display.width", 160):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    flagged = int(report.gaps["excludes_zero"].sum()) if len(report.gaps) else 0
    print(f"{flagged} group gap(s) whose 95% interval excludes zero (robustness/group_gaps.csv).")
    for note in report.notes:
        print(f"note: {note}")
    print(f"logged robustness/report.csv, robust/* metrics and plots to run {options.run_id}")
    return report


if __name__ == "__main__":
    sys.exit(cliargs.run_cli(main, prog=PROG))
