"""``python -m emoexp.study <name>``: train a study's systems x seeds, then regenerate its results table.

A study is ``conf/experiment/<name>.yaml`` with a ``study:`` block (docs/experiments.md). Examples::

    python -m emoexp.study fusion_embedded                        # train what is missing, report
    python -m emoexp.study fusion_embedded report_only=true       # the table again from the store
    python -m emoexp.study classical_vs_deep_audio seeds=0,1 overrides="trainer.max_epochs=2"
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emoexp import cliargs

PROG = "python -m emoexp.study"

DESCRIPTION = """Run a study: conf/experiment/<name>.yaml is a train.py overlay (the shared data, protocol
and budget) with a study: block naming the systems (name -> train.py overrides, or an ensemble of other
systems), the seeds and the question. Every system x seed is trained through emoexp.train into the
study's MLflow store (experiments/<name>/mlflow.db), skipping units whose config already has a FINISHED
run, so an interrupted study resumes; then experiments/<name>/results.md and results.csv are regenerated:
per system the mean and 95% interval over seeds/folds, wall time and chance level, and every pair judged
by one rule (paired t-test over matched seeds/folds, Holm-corrected). The first argument may be the
name alone: python -m emoexp.study fusion_embedded."""


@dataclass
class StudyOptions:
    """Options of ``python -m emoexp.study``."""

    name: str = field(metadata={"help": "Study: conf/experiment/<name>.yaml with a study: block."})
    seeds: list[str] = field(default_factory=list, metadata={"help": "Seeds (default: the study's)."})
    systems: list[str] = field(
        default_factory=list, metadata={"help": "Only these systems and what they need (default: all)."}
    )
    overrides: str = field(
        default="",
        metadata={
            "help": "train.py overrides for every unit, e.g. 'trainer.max_epochs=3 data.max_samples=140'."
        },
    )
    report_only: bool = field(default=False, metadata={"help": "Train nothing; regenerate results.md."})
    output_dir: str = field(default="", metadata={"help": "Study folder (default experiments/<name>)."})
    tracking_uri: str = field(
        default="", metadata={"help": "MLflow store (default: the study's, else <output_dir>/mlflow.db)."}
    )
    config_dir: list[str] = field(
        default_factory=list, metadata={"help": "More config folders holding experiment/<name>.yaml."}
    )

    def __post_init__(self) -> None:
        bad = [s for s in self.seeds if not s.lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"seeds={','.join(self.seeds)}: {bad[0]!r} is not an integer.")
        try:
            shlex.split(self.overrides)
        except ValueError as error:
            raise ValueError(f"overrides={self.overrides!r}: {error}.") from error


def _context(options: StudyOptions):
    """The checked study definition and where it runs."""
    from dataclasses import replace

    from emoexp.studies.runner import StudyContext, load_definition

    overrides = tuple(shlex.split(options.overrides))
    config_dirs = tuple(Path(d) for d in options.config_dir)
    definition = load_definition(options.name, overrides, config_dirs)
    if options.seeds:
        definition = replace(definition, seeds=tuple(int(s) for s in options.seeds))
    output_dir = Path(options.output_dir or Path("experiments") / options.name).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite store lives in it
    uri = options.tracking_uri or definition.tracking_uri or f"sqlite:///{output_dir / 'mlflow.db'}"
    return StudyContext(definition, overrides, output_dir, uri, config_dirs)


def _command(options: StudyOptions) -> str:
    parts = [PROG, options.name]
    parts += [f"seeds={','.join(options.seeds)}"] if options.seeds else []
    parts += [f"systems={','.join(options.systems)}"] if options.systems else []
    parts += [f"overrides={shlex.quote(options.overrides)}"] if options.overrides else []
    return " ".join(parts)


def _notes(outcomes, seeds: Sequence[int]) -> list[str]:
    notes = [
        f"{o.system} seed {o.seed}: {o.status}, {o.error}"
        for o in outcomes
        if o.status in ("missing", "failed")
    ]
    if len(seeds) < 5:
        notes.append(
            f"Only {len(seeds)} seeds: intervals are wide and few differences can be significant; "
            "the study's default is at least 5 seeds (or cross-validation folds)."
        )
    return notes


def run(options: StudyOptions) -> dict[str, object]:
    """Train the missing units (unless ``report_only``) and regenerate the results table.

    Returns:
        ``{"outcomes", "results", "paths"}``: what became of each unit, the tables, the files.
    """
    from emoexp.comparison import study_report
    from emoexp.comparison.runs import client_for
    from emoexp.studies.runner import run_units

    context = _context(options)
    outcomes = run_units(context, options.systems, train=not options.report_only)
    definition = context.definition
    shown = [s for s in definition.systems if not options.systems or s in options.systems]
    inputs = study_report.StudyInputs(
        name=definition.name,
        question=definition.question,
        systems={s: definition.systems[s].description for s in shown},
        pairs=[p for p in definition.pairs if p[0] in shown and p[1] in shown],
        run_ids=[o.run_id for o in outcomes if o.run_id and o.system in shown],
        metric=definition.metric,
        report_metrics=definition.report_metrics,
        alpha=definition.alpha,
        correction=definition.correction,
        seeds=definition.seeds,
        command=_command(options),
        tracking_uri=context.tracking_uri.replace(f"{Path.cwd()}/", ""),
        notes=_notes(outcomes, definition.seeds),
    )
    results = study_report.analyse(client_for(context.tracking_uri), inputs)
    paths = study_report.write(inputs, results, context.output_dir)
    return {"outcomes": outcomes, "results": results, "paths": paths}


def main(argv: Sequence[str]) -> dict[str, object]:
    """Parse arguments (a bare first argument is the name), run the study, print the table's path."""
    arguments = list(argv)
    if arguments and "=" not in arguments[0] and not cliargs.wants_help(arguments[:1]):
        arguments[0] = f"name={arguments[0]}"
    options = cliargs.parse(StudyOptions, arguments, PROG, DESCRIPTION)
    result = run(options)
    board = result["results"].leaderboard
    for row in board.itertuples():
        print(f"{row.system:<32} {row.mean:.4f}  [{row.ci_low:.4f}, {row.ci_high:.4f}]  units={row.units}")
    failed = [o for o in result["outcomes"] if o.status == "failed"]
    print(f"results: {result['paths']['markdown']} and {result['paths']['csv']}")
    if failed:
        raise SystemExit(f"{len(failed)} unit(s) failed; see the notes in {result['paths']['markdown']}.")
    return result


if __name__ == "__main__":
    sys.exit(cliargs.run_cli(main, prog=PROG))
