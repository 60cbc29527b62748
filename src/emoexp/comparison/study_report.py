"""A study's results table from its runs: per system mean and 95% interval over units, one test rule.

The study runner (``python -m emoexp.study``) hands over the run of every unit it found or
trained; this module groups them into systems by the tag ``study.system`` and writes
``results.md`` and ``results.csv`` with the comparison engine (:mod:`emoexp.comparison.analysis`):

* per system: units (seeds, or seeds x folds), mean, std and Student's t 95% interval of the
  headline metric over units, whether the interval lies above chance, wall time per run, and the
  means of the study's ``report_metrics``;
* per tested pair: the rule :data:`RULE` (paired t-test over matched units, one correction over
  all pairs); a sample-level bootstrap never decides significance here;
* per unit: the metric values and run ids (``results.csv``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.comparison import analysis
from emoexp.comparison.report import Report, to_markdown
from emoexp.comparison.runs import Run, RunSelectionError, get_run
from emoexp.comparison.scoring import scorer_for

SYSTEM_TAG = "study.system"
BATCH_TAG = "study.batch"
RULE = (
    "**Significance rule (applied to every pair in this report).** For each pair of systems, the "
    "difference of `{metric}` is taken per matched unit (same seed, and fold under cross-validation: the "
    "same split), and a two-sided paired t-test over those units gives p; the p-values of all {pairs} "
    "tested pairs are {correction}-corrected together, and a pair is significant when its corrected "
    "p < {alpha}. `delta` and its 95% interval are the mean difference over the matched units. "
    "Sample-level statistics (bootstrap, McNemar) are not used to decide."
)


@dataclass
class StudyInputs:
    """What the report is about (the study definition, in plain values).

    Attributes:
        name: Study name.
        question: What it answers.
        systems: System name -> description, in definition order.
        pairs: Pairs the rule tests.
        run_ids: The run of every unit found or trained.
        metric: Headline metric (``None``: the runs' monitor on test).
        report_metrics: More logged metrics to average per system.
        alpha: Significance level.
        correction: Multiple-testing correction over the pairs.
        seeds: The study's seeds.
        command: The command that regenerates the report.
        tracking_uri: Where the runs are.
        notes: Units missing or failed, and other remarks.
    """

    name: str
    question: str
    systems: Mapping[str, str]
    pairs: Sequence[tuple[str, str]]
    run_ids: Sequence[str]
    metric: str | None = None
    report_metrics: Sequence[str] = ()
    alpha: float = 0.05
    correction: str = "holm"
    seeds: Sequence[int] = ()
    command: str = ""
    tracking_uri: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class StudyResults:
    """The tables of a study report.

    Attributes:
        metric: Headline metric.
        chance: Its value for uniform guessing (``None`` when it has none).
        leaderboard: One row per system (definition order).
        pairwise: One row per tested pair (:func:`analysis.unit_pairwise_tests`).
        units: One row per unit (``results.csv``).
        runs: The runs, for the provenance lines.
    """

    metric: str
    chance: float | None
    leaderboard: pd.DataFrame
    pairwise: pd.DataFrame
    units: pd.DataFrame
    runs: list[Run]


def _n_classes(systems: Sequence[analysis.System], scorer: Any) -> int:
    if scorer.classes:
        return len(scorer.classes)
    targets = pd.concat([s.predictions()["target"] for s in systems if s.units])
    return int(targets.nunique())


def _leaderboard(
    systems: Sequence[analysis.System], inputs: StudyInputs, metric: str, scorer: Any, chance: float | None
) -> pd.DataFrame:
    board = analysis.leaderboard(systems, metric, scorer, list(inputs.report_metrics))
    board = board.set_index("system").reindex([s.name for s in systems]).reset_index()
    board.insert(1, "description", [inputs.systems.get(s.name, "") for s in systems])
    board = board.rename(columns={"ci": "interval"})
    if chance is not None:
        above = board["ci_low"] > chance if scorer.higher_is_better else board["ci_high"] < chance
        board.insert(board.columns.get_loc("interval") + 1, "above_chance", above)
    walls = [[r.wall_seconds for r in s.runs if r.wall_seconds is not None] for s in systems]
    board.insert(
        board.columns.get_loc("interval") + 1, "wall_s_per_run", [np.mean(w) if w else np.nan for w in walls]
    )
    return board


def _units(
    systems: Sequence[analysis.System], metric: str, scorer: Any, extra: Sequence[str]
) -> pd.DataFrame:
    runs = {r.run_id: r for s in systems for r in s.runs}
    rows = []
    for system in systems:
        values = system.values(metric, scorer)
        for key, unit in system.units.items():
            run = runs.get(unit.run_id) or next(
                (r for r in system.runs if key.startswith(f"seed={r.seed}")), None
            )
            row = {"system": system.name, "unit": key, metric: values[key]}
            row |= {m: unit.metrics.get(m, np.nan) for m in extra}
            row |= {
                "run_id": unit.run_id,
                "batch": run.tags.get(BATCH_TAG, "") if run else "",
                "run_wall_s": run.wall_seconds if run else np.nan,
            }
            rows.append(row)
    return pd.DataFrame(rows)


def analyse(client: Any, inputs: StudyInputs) -> StudyResults:
    """Read the units' runs and compute the study's tables.

    Raises:
        RunSelectionError: With no finished run, or runs of different label schemes.
    """
    runs = analysis.ranked_runs([get_run(client, run_id) for run_id in inputs.run_ids])
    if not runs:
        raise RunSelectionError(f"study {inputs.name}: no finished run with test metrics to report yet.")
    analysis.check_comparable(runs)
    metric = inputs.metric or analysis.default_metric(runs)
    systems, notes = analysis.build_systems(client, runs, [SYSTEM_TAG])
    inputs.notes.extend(notes)
    order = {name: i for i, name in enumerate(inputs.systems)}
    systems.sort(key=lambda s: order.get(s.name, len(order)))
    try:
        scorer = scorer_for(metric, next(iter(systems[0].units.values())).predictions)
    except KeyError as error:
        raise RunSelectionError(str(error.args[0])) from error
    chance = analysis.chance_level(metric, _n_classes(systems, scorer))
    return StudyResults(
        metric=metric,
        chance=chance,
        leaderboard=_leaderboard(systems, inputs, metric, scorer, chance),
        pairwise=analysis.unit_pairwise_tests(
            systems, metric, scorer, list(inputs.pairs), inputs.alpha, inputs.correction
        ),
        units=_units(systems, metric, scorer, list(inputs.report_metrics)),
        runs=runs,
    )


def _batch_spans(runs: Sequence[Run]) -> str:
    """Per batch: its runs and the wall-clock span from the first start to the last end."""
    parts = []
    for batch in sorted({r.tags.get(BATCH_TAG, "") for r in runs} - {""}):
        mine = [r for r in runs if r.tags.get(BATCH_TAG) == batch and r.wall_seconds is not None]
        if mine:
            span = (max(r.end_time for r in mine) - min(r.start_time for r in mine)) / 60_000
            parts.append(f"`{batch}` ({len(mine)} runs, {span:.1f} min from first start to last end)")
    return ", ".join(parts) or "-"


def _provenance(inputs: StudyInputs, results: StudyResults) -> str:
    walls = [r.wall_seconds for r in results.runs if r.wall_seconds is not None]
    commits = sorted({r.tags.get("git_commit", "")[:10] for r in results.runs} - {""})
    return (
        f"Regenerated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{inputs.command}` from "
        f"{len(results.runs)} runs in `{inputs.tracking_uri}` (seeds {list(inputs.seeds)}; git "
        f"{', '.join(commits) or '-'}). Batches: {_batch_spans(results.runs)}. The runs' own wall "
        f"time adds up to {sum(walls) / 60:.1f} min."
    )


def build(inputs: StudyInputs, results: StudyResults) -> Report:
    """Lay out ``results.md``: question, provenance, rule, systems, pairs, units per system, notes."""
    report = Report(f"Study: {inputs.name}")
    report.text(f"**Question.** {inputs.question}")
    report.text(_provenance(inputs, results))
    report.heading("Systems")
    chance = f"{results.chance:.3f}" if results.chance is not None else "not defined for this metric"
    report.text(
        f"`{results.metric}` per system: mean, std and 95% Student's t interval over its units (seeds, or "
        f"seeds x folds); `interval` says how it was computed (a single unit falls back to a bootstrap over "
        f"its test samples). Chance level (uniform guessing): {chance}; `above_chance`: the whole interval "
        "is better than chance. `wall_s_per_run`: mean wall-clock seconds of a run."
    )
    report.table(results.leaderboard, "leaderboard")
    report.heading("Is the difference real?")
    report.text(
        RULE.format(
            metric=results.metric,
            pairs=len(results.pairwise),
            correction=inputs.correction.capitalize(),
            alpha=inputs.alpha,
        )
    )
    bold = pd.DataFrame(False, index=results.pairwise.index, columns=results.pairwise.columns)
    bold["significant"] = results.pairwise["significant"]
    report.table(results.pairwise, "pairwise", bold)
    report.heading("Per unit")
    wide = results.units.pivot_table(index="unit", columns="system", values=results.metric, sort=False)
    report.table(wide.reset_index(), "units")
    report.text("Per-run values, run ids and batches: `results.csv`.")
    if inputs.notes:
        report.heading("Notes")
        for note in inputs.notes:
            report.text(f"- {note}")
    return report


def write(inputs: StudyInputs, results: StudyResults, folder: str | Path) -> dict[str, Path]:
    """Write ``results.md`` and ``results.csv`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    markdown, table = folder / "results.md", folder / "results.csv"
    markdown.write_text(to_markdown(build(inputs, results), "report_files"))
    results.units.to_csv(table, index=False)
    return {"markdown": markdown, "csv": table}
