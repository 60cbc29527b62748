"""``python -m emoexp.compare``: compare tracked runs with significance tests; write and log a report.

Examples::

    python -m emoexp.compare experiment=emoexp-audio filter="label_scheme=ekman7" group_by=model
    python -m emoexp.compare name=fusion experiment=fusion_embedded group_by=modality,model
    python -m emoexp.compare runs=<id1>,<id2> metric=test/f1_macro
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from emoexp import cliargs

PROG = "python -m emoexp.compare"

DESCRIPTION = """Select finished runs from MLflow (experiment, tag filters, or run ids), group them into
systems (by tags such as model, modality, transfer, ensemble), and write a Markdown + HTML report
with metric bars and CIs, paired bootstrap / McNemar / Wilcoxon tests (Holm-corrected), Friedman +
Nemenyi for 3+ systems, confusion matrices, per-class F1, per-group (bias) metrics and calibration
into experiments/<name>/, logged as an MLflow run tagged emoexp.kind=comparison. Runs of different
protocols (tag protocol.hash, docs/protocols.md) are not ranked together unless mixed_protocols=true."""


@dataclass
class CompareOptions:
    """Options of ``python -m emoexp.compare``."""

    name: str = field(default="comparison", metadata={"help": "Report name: the folder experiments/<name>/."})
    experiment: list[str] = field(
        default_factory=list, metadata={"help": "MLflow experiment name(s), comma-separated (default: all)."}
    )
    filter: str = field(
        default="",
        metadata={"help": "Tag filters, e.g. 'modality=audio label_scheme=ekman7 model=lstm,cnn seed!=0'."},
    )
    where: str = field(
        default="",
        metadata={"help": "Extra raw MLflow filter string, e.g. \"params.`trainer.max_epochs` = '30'\"."},
    )
    runs: list[str] = field(
        default_factory=list, metadata={"help": "Explicit run ids (comma-separated) instead of a search."}
    )
    group_by: list[str] = field(
        default_factory=lambda: ["model"],
        metadata={
            "help": "Tags that define a system, e.g. model | modality,model | transfer | ensemble.method."
        },
    )
    metric: str = field(
        default="", metadata={"help": "Headline metric (default: test/<monitor>, e.g. test/uar)."}
    )
    extra_metrics: list[str] = field(
        default_factory=list, metadata={"help": "More metrics for the leaderboard."}
    )
    alpha: float = field(default=0.05, metadata={"help": "Significance level."})
    correction: str = field(
        default="holm", metadata={"help": "Multiple-comparison correction (statsmodels method)."}
    )
    n_resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples."})
    mixed_protocols: bool = field(
        default=False,
        metadata={
            "help": "Rank runs of different protocols (tag protocol.hash) together; notes say what differs."
        },
    )
    output_dir: str = field(
        default="", metadata={"help": "Where to write the report (default experiments/<name>)."}
    )
    log: bool = field(default=True, metadata={"help": "Log the report as an MLflow comparison run."})
    log_experiment: str = field(
        default="emoexp-comparisons", metadata={"help": "Experiment of the comparison run."}
    )
    tracking_uri: str = field(
        default="", metadata={"help": "MLflow store (default $MLFLOW_TRACKING_URI or ./mlflow.db)."}
    )

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[\w.-]+", self.name):
            raise ValueError(f"name={self.name!r} must be a folder name (letters, digits, _ . -).")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha} must be in (0, 1).")
        if self.n_resamples < 100:
            raise ValueError(f"n_resamples={self.n_resamples} is too few for a bootstrap; use at least 1000.")
        if not self.group_by:
            raise ValueError("group_by needs at least one tag, e.g. group_by=model.")


def run(options: CompareOptions) -> dict[str, object]:
    """Compare the selected runs, write the report, and log it.

    Returns:
        ``{"comparison", "paths", "run_id"}``: the analysis, the written files and the
        comparison run id (``None`` with ``log=false``).
    """
    from emoexp.comparison import analysis, protocols, report, runs

    client = runs.client_for(options.tracking_uri or None)
    selected = runs.select_runs(
        client, options.experiment, options.filter, options.where or None, options.runs
    )
    # Runs of different protocols (split, labels, corpus) are refused before any statistics.
    protocol_notes = protocols.check_protocols(client, selected, options.mixed_protocols)
    comparison = analysis.compare(
        client,
        selected,
        group_by=options.group_by,
        metric=options.metric or None,
        extra_metrics=options.extra_metrics or None,
        n_resamples=options.n_resamples,
        alpha=options.alpha,
        correction=options.correction,
    )
    comparison.notes[:0] = protocol_notes
    selection = {k: v for k, v in asdict(options).items() if k not in ("output_dir", "log", "tracking_uri")}
    selection = {k: ",".join(v) if isinstance(v, list) else v for k, v in selection.items()}
    document = report.build_report(comparison, f"Comparison: {options.name}", selection)
    folder = Path(options.output_dir or Path("experiments") / options.name)
    paths = report.write_report(document, folder)
    run_id = None
    if options.log:
        run_id = report.log_comparison(
            client, options.log_experiment, options.name, folder, comparison, selection
        )
    return {"comparison": comparison, "paths": paths, "run_id": run_id}


def main(argv: Sequence[str]) -> dict[str, object]:
    """Parse ``key=value`` arguments, compare, print a summary."""
    options = cliargs.parse(CompareOptions, argv, PROG, DESCRIPTION)
    from emoexp.comparison import report  # deferred: --help and argument errors stay fast (no torch)

    result = run(options)
    for line in report.summary_lines(result["comparison"]):
        print(line)
    print(f"report: {result['paths']['markdown']} and {result['paths']['html']}")
    if result["run_id"]:
        print(f"logged as MLflow run {result['run_id']} (experiment {options.log_experiment})")
    return result


if __name__ == "__main__":
    sys.exit(cliargs.run_cli(main, prog=PROG))
