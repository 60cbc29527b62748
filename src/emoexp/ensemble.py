"""``python -m emoexp.ensemble``: combine tracked runs' stored predictions into a new, logged run.

Examples::

    python -m emoexp.ensemble runs=<id1>,<id2>,<id3> method=soft
    python -m emoexp.ensemble experiment=emoexp-audio filter="label_scheme=ekman7" top_k=3 method=stacking
    python -m emoexp.ensemble runs=<audio>,<text>,<visual> method=weighted   # late multimodal fusion
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from emoexp import cliargs

PROG = "python -m emoexp.ensemble"

# The names of emoexp.ensembles.combine.METHODS, spelled here so that --help does not import torch
# (tests/cli/test_cli_convention.py keeps the two in step).
METHODS = ("soft", "weighted", "majority", "stacking")

DESCRIPTION = """Build an ensemble from run ids or from the top k runs by a validation metric under tag
filters: soft voting, weighted voting (weights from validation scores), majority vote, or stacking (a
logistic-regression meta-learner fit on validation predictions only); for valence/arousal, averaging
(soft/weighted), the median (majority) or ridge stacking. Members must cover the same samples with the
same label scheme. The ensemble is evaluated on test and logged as a new MLflow run tagged ensemble=true."""


@dataclass
class EnsembleOptions:
    """Options of ``python -m emoexp.ensemble``."""

    runs: list[str] = field(default_factory=list, metadata={"help": "Member run ids, comma-separated."})
    experiment: list[str] = field(
        default_factory=list, metadata={"help": "Experiments to pick top_k members from."}
    )
    filter: str = field(
        default="", metadata={"help": "Tag filters for top_k, e.g. 'modality=audio label_scheme=ekman7'."}
    )
    top_k: int = field(default=0, metadata={"help": "Use the k best runs by select_by (instead of runs=)."})
    select_by: str = field(
        default="", metadata={"help": "Validation metric for top_k (default val/<monitor>_best)."}
    )
    method: str = field(default="soft", metadata={"help": f"One of {list(METHODS)}."})
    name: str = field(default="", metadata={"help": "Run name (default ensemble-<method>-<k>)."})
    log_experiment: str = field(
        default="",
        metadata={"help": "Experiment of the new run (default: the members' one, else emoexp-ensembles)."},
    )
    log: bool = field(default=True, metadata={"help": "Log the ensemble as an MLflow run."})
    tracking_uri: str = field(
        default="", metadata={"help": "MLflow store (default $MLFLOW_TRACKING_URI or ./mlflow.db)."}
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is unknown; choose one of {list(METHODS)}.")
        if bool(self.runs) == bool(self.top_k):
            raise ValueError(
                "give either runs=<id>,<id>,... or top_k=<k> (with experiment=/filter=), not both or none."
            )
        if self.top_k == 1:
            raise ValueError("top_k=1 is a single run, not an ensemble; use top_k >= 2.")
        if self.select_by and not self.select_by.startswith("val/"):
            raise ValueError(
                f"select_by={self.select_by!r}: members are chosen on validation metrics only "
                "(the test split is locked); e.g. select_by=val/uar_best."
            )


def select_members(client, options: EnsembleOptions) -> list:
    """The member runs: explicit ids, or the top k by a validation metric (ensembles excluded)."""
    from emoexp.comparison import runs as selection
    from emoexp.comparison.scoring import higher_is_better

    if options.runs:
        return [selection.get_run(client, run_id) for run_id in options.runs]
    candidates = [
        r
        for r in selection.select_runs(client, options.experiment, options.filter)
        if r.tags.get("ensemble") != "true"
    ]
    if not candidates:
        raise selection.RunSelectionError("no finished run matches experiment=/filter=; nothing to ensemble.")
    metric = options.select_by or candidates[0].tags.get("emoexp.monitor", "val/uar") + "_best"
    return selection.top_k(candidates, metric, options.top_k, higher_is_better(metric.removesuffix("_best")))


def run(options: EnsembleOptions) -> dict[str, object]:
    """Build, evaluate and (optionally) log the ensemble.

    Returns:
        ``{"ensemble", "run_id"}``.
    """
    from emoexp.comparison.runs import client_for
    from emoexp.ensembles import builder

    client = client_for(options.tracking_uri or None)
    members = select_members(client, options)
    ensemble = builder.build(client, members, options.method)
    run_id = None
    if options.log:
        selection = {
            "ensemble.top_k": options.top_k or None,
            "ensemble.select_by": options.select_by or None,
            "ensemble.filter": options.filter or None,
        }
        run_id = builder.log_ensemble(
            client,
            ensemble,
            options.log_experiment or builder.members_experiment(ensemble),
            options.name or f"ensemble-{options.method}-{len(members)}",
            selection,
        )
    return {"ensemble": ensemble, "run_id": run_id}


def main(argv: Sequence[str]) -> dict[str, object]:
    """Parse ``key=value`` arguments, build the ensemble, print members and metrics."""
    options = cliargs.parse(EnsembleOptions, argv, PROG, DESCRIPTION)
    result = run(options)
    ensemble = result["ensemble"]
    for member in ensemble.members:
        run_ = member.run
        monitor = ensemble.scheme.monitor.replace("val/", "test/")
        print(
            f"member {run_.run_id}  {run_.tags.get('modality')}/{run_.tags.get('model')} seed={run_.seed}  "
            f"{monitor}={run_.metrics.get(monitor, float('nan')):.4f}"
        )
    summary = (
        k
        for k in ensemble.metrics
        if k.startswith("test/") and not k.endswith(("_std", "_ci_low", "_ci_high"))
    )
    for key in sorted(summary):
        print(f"ensemble {key} = {ensemble.metrics[key]:.4f}")
    if result["run_id"]:
        print(f"logged as MLflow run {result['run_id']} (tag ensemble=true)")
    return result


if __name__ == "__main__":
    sys.exit(cliargs.run_cli(main, prog=PROG))
