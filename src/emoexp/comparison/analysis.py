"""Systems (groups of runs), their replicates, and the statistics that compare them.

A *system* is a group of runs sharing the ``group_by`` tags (e.g. every ``model=lstm`` run).
Its *units* are its replicates: one per seed for holdout runs, one per (seed, fold) for
cross-validated runs. Units with the same key in two systems are matched: same seed (and
fold), hence the same split and the same test samples, which is what makes paired tests valid.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emoexp.comparison.runs import Run, RunSelectionError, load_predictions
from emoexp.comparison.scoring import Scorer, scorer_for
from emoexp.evaluation import significance
from emoexp.evaluation.statistics import mean_std_ci

TEST = "test"


@dataclass
class Unit:
    """One replicate of a system: a seed (holdout) or a seed's fold (cross-validation).

    Attributes:
        key: ``seed=42`` or ``seed=42/fold0``; equal keys are matched across systems.
        run_id: The run that logged it (the fold's child run for cross-validation).
        metrics: Its logged metrics.
        predictions: Its test predictions.
    """

    key: str
    run_id: str
    metrics: dict[str, float]
    predictions: pd.DataFrame


@dataclass
class System:
    """A group of runs compared as one system.

    Attributes:
        name: Group label (tag values joined by ``/``).
        runs: Its top-level runs.
        units: Its replicates by key.
    """

    name: str
    runs: list[Run]
    units: dict[str, Unit] = field(default_factory=dict)

    def predictions(self) -> pd.DataFrame:
        """All test predictions of the system, with a ``unit`` column."""
        return pd.concat([u.predictions.assign(unit=k) for k, u in self.units.items()], ignore_index=True)

    def values(self, metric: str, scorer: Scorer) -> dict[str, float]:
        """The metric per unit: the logged value, or recomputed from predictions if not logged."""
        return {k: float(u.metrics.get(metric, scorer(u.predictions))) for k, u in self.units.items()}


def build_systems(
    client: Any, runs: Sequence[Run], group_by: Sequence[str]
) -> tuple[list[System], list[str]]:
    """Group runs into systems and expand them into units (reading their predictions).

    Returns:
        The systems (in first-seen order) and notes about what was left out or replaced.
    """
    notes: list[str] = []
    systems: dict[str, System] = {}
    for run in runs:
        system = systems.setdefault(run.label(group_by), System(run.label(group_by), []))
        system.runs.append(run)
        predictions = load_predictions(client, run)
        test = predictions[predictions["split"] == TEST]
        if run.children and "fold" in test.columns:
            units = [
                Unit(
                    f"seed={run.seed}/{c.tags.get('fold', c.name)}",
                    c.run_id,
                    c.metrics,
                    test[test["fold"] == c.tags.get("fold")].drop(columns="fold").reset_index(drop=True),
                )
                for c in run.children
            ]
        else:
            units = [Unit(f"seed={run.seed}", run.run_id, run.metrics, test.reset_index(drop=True))]
        for unit in units:
            if unit.key in system.units:
                notes.append(
                    f"{system.name}: runs {system.units[unit.key].run_id} and {unit.run_id} are both "
                    f"{unit.key}; "
                    f"the later one ({unit.run_id}) is used."
                )
            system.units[unit.key] = unit
    return list(systems.values()), notes


def check_comparable(runs: Sequence[Run]) -> None:
    """Raise if the runs do not share one label scheme (their metrics would not be comparable)."""
    schemes = sorted({r.tags.get("label_scheme", "?") for r in runs})
    if len(schemes) > 1:
        raise RunSelectionError(
            f"the selected runs use different label schemes {schemes}; metrics are only comparable within "
            f"one scheme: add e.g. filter='label_scheme={schemes[0]}'."
        )


def _paired_frames(a: System, b: System) -> tuple[pd.DataFrame, list[str], str]:
    """Test rows of both systems joined on (unit, id) over matched units.

    With no unit key in common and one unit each, the two runs are paired directly (they
    may still share their test samples, e.g. two models trained with different seeds on an
    official split).
    """
    shared = [k for k in a.units if k in b.units]
    pairs = [(k, k) for k in shared]
    how = "matched units"
    if not shared and len(a.units) == 1 and len(b.units) == 1:
        pairs = [(next(iter(a.units)), next(iter(b.units)))]
        how = "single runs"
    frames = []
    for key_a, key_b in pairs:
        left, right = a.units[key_a].predictions, b.units[key_b].predictions
        joined = left.merge(right, on="id", suffixes=("", "_b"))
        frames.append(joined.assign(unit=key_a))
    if not frames:
        return pd.DataFrame(), [], how
    return pd.concat(frames, ignore_index=True), [k for k, _ in pairs], how


def _b_side(frame: pd.DataFrame) -> pd.DataFrame:
    """The B-system columns of a joined frame under their own names."""
    renamed = {c: c.removesuffix("_b") for c in frame.columns if c.endswith("_b")}
    keep = [c for c in frame.columns if c.endswith("_b")] + ["id"]
    return frame[keep].rename(columns=renamed)


def pairwise_tests(
    systems: Sequence[System],
    metric: str,
    scorer: Scorer,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    correction: str = "holm",
    seed: int = 0,
) -> pd.DataFrame:
    """Every pair of systems: difference, paired bootstrap, McNemar and Wilcoxon, corrected.

    * Paired bootstrap over the shared test samples of matched units (pooled, resampling
      sample ids so one sample's rows of several seeds stay together).
    * McNemar per matched unit; the reported p is the largest over units: "A and B differ
      in every seed" is then rejected at level alpha only if it is in each (an
      intersection-union test, valid without assumptions about how seeds relate).
    * Wilcoxon signed-rank over the matched units' logged metric (needs >= 2 units).

    Each family of p-values is corrected across pairs with ``correction`` (Holm).

    Returns:
        One row per pair (A listed first), columns described in the report.
    """
    rows = [_pair_row(a, b, metric, scorer, n_resamples, seed) for a, b in itertools.combinations(systems, 2)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in ("p_bootstrap", "p_mcnemar", "p_wilcoxon"):
        if column in frame:
            frame[f"{column}_{correction}"] = significance.adjust_pvalues(
                frame[column].to_numpy(float), correction
            )
    tested = [c for c in (f"p_bootstrap_{correction}", f"p_mcnemar_{correction}") if c in frame]
    frame["significant"] = (frame[tested] < alpha).any(axis=1) if tested else False
    return frame


def _pair_row(
    a: System, b: System, metric: str, scorer: Scorer, n_resamples: int, seed: int
) -> dict[str, Any]:
    """One row of :func:`pairwise_tests`: the difference of A and B and its uncorrected tests."""
    joined, units, how = _paired_frames(a, b)
    row: dict[str, Any] = {
        "A": a.name,
        "B": b.name,
        "units": len(units),
        "pairing": how,
        "samples": len(joined),
    }
    values_a, values_b = a.values(metric, scorer), b.values(metric, scorer)
    shared = [u for u in units if u in values_a and u in values_b]
    row["delta"] = (
        float(np.mean([values_a[u] - values_b[u] for u in shared]))
        if shared
        else (float(np.mean(list(values_a.values())) - np.mean(list(values_b.values()))))
    )
    if len(joined):
        if scorer.categorical and not (joined["target"] == joined["target_b"]).all():
            raise RunSelectionError(
                f"{a.name} and {b.name} disagree on the true label of shared samples: they were not "
                "evaluated on the same data (check the data and label_scheme tags)."
            )
        row.update(_sample_tests(joined, units, scorer, n_resamples, seed))
    wilcoxon = significance.wilcoxon_signed_rank([values_a[u] for u in shared], [values_b[u] for u in shared])
    row["p_wilcoxon"] = wilcoxon.p_value
    return row


def _sample_tests(
    joined: pd.DataFrame, units: list[str], scorer: Scorer, n_resamples: int, seed: int
) -> dict[str, Any]:
    """Paired bootstrap over the shared samples and, for categories, McNemar per matched unit."""
    true, pred_a = scorer.arrays(joined)
    _, pred_b = scorer.arrays(_b_side(joined))
    boot = significance.paired_bootstrap(
        scorer.metric(),
        true,
        pred_a,
        pred_b,
        n_resamples=n_resamples,
        seed=seed,
        clusters=joined["id"],
    )
    tests: dict[str, Any] = {
        "sample_delta": boot.difference,
        "ci_low": boot.ci_low,
        "ci_high": boot.ci_high,
        "p_bootstrap": boot.p_value,
    }
    if scorer.categorical:
        results = []
        for unit in units:
            part = joined[joined["unit"] == unit]
            results.append(
                significance.mcnemar_test(
                    part["target"] == part["prediction"], part["target"] == part["prediction_b"]
                )
            )
        tests.update(
            only_a_correct=sum(r.only_a for r in results),
            only_b_correct=sum(r.only_b for r in results),
            p_mcnemar=max(r.p_value for r in results),
        )
    return tests


def unit_pairwise_tests(
    systems: Sequence[System],
    metric: str,
    scorer: Scorer,
    pairs: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
) -> pd.DataFrame:
    """Pairs of systems compared over their matched units only: a paired t-test, corrected.

    The rule a study applies everywhere: the difference of the headline metric per matched
    unit (seed, or seed x fold), a two-sided paired t-test over those units, and one
    ``correction`` over all tested pairs; a pair is significant when its corrected p < alpha.
    No sample-level statistic enters the decision, so it speaks for a re-run with another
    seed/split, not for one test set.

    Args:
        systems: The systems.
        metric: Headline metric.
        scorer: Recomputes it from predictions where a unit did not log it.
        pairs: ``(A, B)`` names to test (default: every pair, in system order).
        alpha: Significance level.
        correction: ``statsmodels`` multiple-testing method over the pairs.

    Returns:
        One row per pair: ``A``, ``B``, ``units``, ``delta`` (mean A - B), ``ci_low``/``ci_high``
        (t interval of the mean difference), ``p``, ``p_<correction>``, ``significant``.
    """
    by_name = {s.name: s for s in systems}
    if pairs is None:
        pairs = [(a.name, b.name) for a, b in itertools.combinations(systems, 2)]
    rows = []
    for name_a, name_b in pairs:
        if name_a not in by_name or name_b not in by_name:
            continue
        values_a = by_name[name_a].values(metric, scorer)
        values_b = by_name[name_b].values(metric, scorer)
        shared = [k for k in values_a if k in values_b]
        test = significance.paired_t_test([values_a[k] for k in shared], [values_b[k] for k in shared])
        rows.append(
            {"A": name_a, "B": name_b, "units": test.n, "delta": test.mean_difference}
            | {"ci_low": test.ci_low, "ci_high": test.ci_high, "p": test.p_value}
        )
    frame = pd.DataFrame(rows, columns=["A", "B", "units", "delta", "ci_low", "ci_high", "p"])
    frame[f"p_{correction}"] = significance.adjust_pvalues(frame["p"].to_numpy(float), correction)
    frame["significant"] = frame[f"p_{correction}"] < alpha
    return frame


def chance_level(metric: str, n_classes: int) -> float | None:
    """The metric of uniform guessing over ``n_classes`` classes (UAR, accuracy, macro-F1: 1/k).

    Returns ``None`` for metrics without such a level (CCC, MAE, ECE) or no classes.
    """
    name = metric.rsplit("/", 1)[-1]
    if n_classes < 1 or name not in ("uar", "accuracy", "f1_macro", "balanced_accuracy"):
        return None
    return 1.0 / n_classes


def rank_test(
    systems: Sequence[System], metric: str, scorer: Scorer, alpha: float = 0.05
) -> dict[str, Any] | None:
    """Friedman test and Nemenyi post-hoc over blocks shared by all systems (k >= 3).

    Blocks are the units all systems share when there are at least two (their logged
    metric); otherwise the shared test samples (per-sample correctness, or minus the
    absolute error), which is a repeated-measures design too.

    Returns:
        ``{"blocks", "block_kind", "friedman", "nemenyi", "critical_difference", "mean_ranks"}``
        or ``None`` for fewer than three systems.
    """
    if len(systems) < 3:
        return None
    names = [s.name for s in systems]
    common = [k for k in systems[0].units if all(k in s.units for s in systems[1:])]
    if len(common) >= 2:
        scores = np.array([[s.values(metric, scorer)[k] for s in systems] for k in common])
        kind = "units (seeds/folds)"
        higher = scorer.higher_is_better
    else:
        columns = []
        joined: pd.DataFrame | None = None
        for s in systems:
            # The shared unit's samples, or (no unit in common) each system's first unit on its own.
            first = next(iter(s.units.values())).predictions.assign(unit="*")
            frame = s.predictions().loc[lambda f: f["unit"].isin(common)] if common else first
            per_sample = frame[["unit", "id"]].assign(**{s.name: scorer.per_sample(frame)})
            joined = per_sample if joined is None else joined.merge(per_sample, on=["unit", "id"])
            columns.append(s.name)
        scores = joined[columns].to_numpy(float) if joined is not None else np.empty((0, len(systems)))
        kind = "test samples"
        higher = True
    if scores.shape[0] < 2:
        return None
    friedman = significance.friedman_test(scores, higher_is_better=higher)
    return {
        "blocks": int(scores.shape[0]),
        "block_kind": kind,
        "friedman": friedman,
        "mean_ranks": pd.Series(friedman.mean_ranks, index=names).sort_values(),
        "nemenyi": significance.nemenyi_test(scores, names, higher_is_better=higher),
        "critical_difference": significance.nemenyi_critical_difference(len(systems), scores.shape[0], alpha),
    }


def leaderboard(
    systems: Sequence[System], metric: str, scorer: Scorer, extra: Sequence[str] = (), n_resamples: int = 2000
) -> pd.DataFrame:
    """Per system: runs, units, the metric's mean, std and 95% CI, and the means of ``extra`` metrics.

    The interval is Student's t over units when there are at least two, else a percentile
    bootstrap over the single unit's test samples.
    """
    rows = []
    for system in systems:
        values = list(system.values(metric, scorer).values())
        summary = mean_std_ci(values)
        row: dict[str, Any] = {"system": system.name, "runs": len(system.runs), "units": len(values)}
        row.update(
            mean=summary["mean"], std=summary["std"], ci_low=summary["ci_low"], ci_high=summary["ci_high"]
        )
        if len(values) < 2:
            unit = next(iter(system.units.values()))
            _, row["ci_low"], row["ci_high"] = significance.bootstrap_metric(
                scorer.metric(), *scorer.arrays(unit.predictions), n_resamples=n_resamples
            )
            row["ci"] = "bootstrap (samples)"
        else:
            row["ci"] = "t (units)"
        for name in extra:
            logged = [u.metrics[name] for u in system.units.values() if name in u.metrics]
            row[name] = float(np.mean(logged)) if logged else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values("mean", ascending=not scorer.higher_is_better, ignore_index=True)


@dataclass
class Comparison:
    """Everything a comparison report shows.

    Attributes:
        metric: The headline metric (e.g. ``test/uar``).
        scorer: Recomputes it from predictions.
        systems: Systems in leaderboard order.
        leaderboard: See :func:`leaderboard`.
        pairwise: See :func:`pairwise_tests`.
        ranks: See :func:`rank_test` (``None`` for fewer than 3 systems).
        notes: What was left out, replaced or approximated.
        alpha: Significance level.
        correction: Multiple-comparison correction method.
    """

    metric: str
    scorer: Scorer
    systems: list[System]
    leaderboard: pd.DataFrame
    pairwise: pd.DataFrame
    ranks: dict[str, Any] | None
    notes: list[str]
    alpha: float
    correction: str


def ranked_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs a comparison ranks: those with test metrics (not tuning studies or trials)."""
    return [r for r in runs if any(m.startswith("test/") for m in r.metrics)]


def default_metric(runs: Sequence[Run]) -> str:
    """The test counterpart of the runs' monitored metric (tag ``emoexp.monitor``), e.g. ``test/uar``."""
    monitors = {r.tags.get("emoexp.monitor") for r in runs} - {None}
    monitor = sorted(monitors)[0] if monitors else "val/uar"
    return "test/" + monitor.split("/", 1)[1]


def compare(
    client: Any,
    runs: Sequence[Run],
    group_by: Sequence[str] = ("model",),
    metric: str | None = None,
    extra_metrics: Sequence[str] | None = None,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    correction: str = "holm",
) -> Comparison:
    """Group runs into systems and compute the leaderboard, pairwise tests and rank tests.

    Raises:
        RunSelectionError: With no runs, mixed label schemes or an unknown metric.
    """
    notes: list[str] = []
    tested = ranked_runs(runs)
    if len(tested) < len(runs):
        skipped = [r.name for r in runs if r not in tested]
        notes.append(
            f"{len(skipped)} selected runs without test metrics were left out (e.g. tuning studies or "
            f"trials): {', '.join(skipped[:10])}."
        )
    runs = tested
    if not runs:
        raise RunSelectionError(
            "no finished run matches the selection; loosen the filters or check experiment=."
        )
    check_comparable(runs)
    metric = metric or default_metric(runs)
    systems, grouping_notes = build_systems(client, runs, group_by)
    notes += grouping_notes
    first = next(iter(systems[0].units.values())).predictions
    try:
        scorer = scorer_for(metric, first)
    except KeyError as error:
        raise RunSelectionError(str(error.args[0])) from error
    if extra_metrics is None:
        extra_metrics = (
            ["test/accuracy", "test/f1_macro", "test/ece"] if scorer.categorical else ["test/mae", "test/ccc"]
        )
        extra_metrics = [m for m in extra_metrics if m != metric]
    board = leaderboard(systems, metric, scorer, extra_metrics, n_resamples)
    order = {name: i for i, name in enumerate(board["system"])}
    systems.sort(key=lambda s: order[s.name])
    pairs = pairwise_tests(systems, metric, scorer, n_resamples, alpha, correction)
    ranks = rank_test(systems, metric, scorer, alpha)
    return Comparison(metric, scorer, systems, board, pairs, ranks, notes, alpha, correction)
