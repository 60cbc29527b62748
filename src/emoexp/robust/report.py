"""Score a run's model on its perturbed test samples and log the report to the run.

For the clean test samples and every level of every perturbation family that fits the
model's inputs (:data:`emoexp.evaluation.perturbations.FAMILIES`), the model predicts the
samples and the label scheme scores them with its own metrics. The run gets
(docs/robustness.md):

* ``robustness/report.csv``: one row per condition (family, level, severity, samples, metrics,
  change of the headline metric against the clean samples);
* metrics ``robust/<family>/<level>/<metric>`` (``robust/clean/none/<metric>`` for the clean run);
* ``robustness/<family>.png``: the headline metrics against severity;
* ``robustness/group_gaps.csv``: per condition, each group's gap to the rest of the samples
  with a bootstrap interval, flagged where it excludes zero;
* ``robustness/settings.json``: seed, families and resamples, equal for reports that compare.

A cross-validated run is reported per fold run, and the parent gets the mean over folds.
All writes go through the recorder (docs/design.md#the-recorder).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.evaluation import group_gaps as gaps_module
from emoexp.evaluation.perturbations import FAMILIES, MULTIMODAL, Family, Level, families_for
from emoexp.robust import record
from emoexp.robust.inputs import COLUMNS, perturb_manifest

log = logging.getLogger(__name__)

CLEAN = "clean"
CLEAN_LEVEL = Level("none", 0, None)
PREFIX = "robust"
FOLDER = "robustness"
KEY_COLUMNS = ("family", "modality", "level", "severity", "n", "failed")


@dataclass
class RobustnessSettings:
    """What a report perturbs and how; reports with equal settings compare sample for sample.

    Attributes:
        families: Family names to run (empty: every family that fits the model).
        seed: Seed of the perturbations and the bootstrap (not the run's seed: equal for every model).
        n_resamples: Bootstrap resamples of the group-gap intervals.
    """

    families: tuple[str, ...] = ()
    seed: int = 0
    n_resamples: int = 1000

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown robustness families {unknown}; choose from {sorted(FAMILIES)}.")
        if self.n_resamples < 100:
            raise ValueError(f"n_resamples={self.n_resamples} is too few for a bootstrap; use at least 1000.")


@dataclass
class RobustnessReport:
    """The report of one model: the table, the group gaps and the headline metric names."""

    table: pd.DataFrame
    gaps: pd.DataFrame
    headline: list[str]
    settings: RobustnessSettings
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """``robust/<family>/<level>/<metric>`` for every finite value of the table."""
        names = metric_columns(self.table)
        out = {}
        for row in self.table.itertuples(index=False):
            for name in names:
                value = getattr(row, name)
                if np.isfinite(value):
                    out[f"{PREFIX}/{row.family}/{row.level}/{name}"] = float(value)
        out[f"{PREFIX}/group_gaps_flagged"] = (
            float(self.gaps["excludes_zero"].sum()) if len(self.gaps) else 0.0
        )
        return out


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of a report table (not keys, counts or deltas)."""
    return [c for c in table.columns if c not in KEY_COLUMNS and not c.startswith("delta_") and c != "fold"]


def applicable_families(model: Any, settings: RobustnessSettings) -> list[Family]:
    """The families that fit the model's inputs, narrowed to ``settings.families`` when given.

    Raises:
        ValueError: If a requested family does not fit the model.
    """
    modalities = {m for m, column in COLUMNS.items() if column in model.input_columns}
    fitting = families_for(modalities, len(model.fused_modalities) > 1)
    if not settings.families:
        return fitting
    misfits = sorted(set(settings.families) - {f.name for f in fitting})
    if misfits:
        raise ValueError(
            f"families {misfits} do not fit this {model.modality} model; "
            f"it takes {[f.name for f in fitting]}."
        )
    return [f for f in fitting if f.name in settings.families]


def _conditions(model: Any, families: list[Family]) -> list[tuple[Family | None, Level]]:
    conditions: list[tuple[Family | None, Level]] = [(None, CLEAN_LEVEL)]
    for family in families:
        levels = family.levels
        if family.modality == MULTIMODAL:
            levels = tuple(lv for lv in levels if lv.value in model.fused_modalities)
        conditions += [(family, level) for level in levels]
    return conditions


def score_condition(
    model: Any, samples: pd.DataFrame, family: Family | None, level: Level, seed: int, work: Path
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The model's metrics and predictions frame on the samples perturbed by ``family`` at ``level``."""
    import torch

    from emoexp.engine.fitters.sklearn import stage_metrics

    context = record.nothing()
    manifest = samples
    if family is not None and family.modality == MULTIMODAL:
        context = model.without(level.value)
    elif family is not None:
        manifest = perturb_manifest(samples, family, level, seed, work / family.name / level.name)
    with context:
        outputs, ok, failures = model.outputs(manifest)
    if family is not None:
        shutil.rmtree(work / family.name, ignore_errors=True)  # perturbed files live for one condition
    row = {
        "family": family.name if family is not None else CLEAN,
        "modality": family.modality if family is not None else model.modality,
        "level": level.name,
        "severity": level.severity,
        "n": len(ok),
        "failed": len(failures),
    }
    if not len(ok):
        return row, pd.DataFrame()
    kept = samples.iloc[ok].reset_index(drop=True)
    scheme = model.scheme
    targets = {k: torch.as_tensor(np.array(v)) for k, v in scheme.targets(kept).items()}
    row.update(stage_metrics(scheme, outputs.float(), targets, ""))
    frame = scheme.predictions_frame(scheme.decode(outputs), kept)
    meta = kept[[schema.ID, *schema.group_columns(kept)]]
    return row, pd.concat([meta, frame], axis=1)


def _gap_metric(headline: str, frame: pd.DataFrame) -> str | None:
    categorical = "target" in frame.columns
    supported = gaps_module.CATEGORICAL_METRICS if categorical else gaps_module.DIMENSIONAL_METRICS
    if headline in supported:
        return headline
    return supported[0] if categorical or any(c.endswith("_true") for c in frame.columns) else None


def _with_deltas(table: pd.DataFrame, headline: list[str]) -> pd.DataFrame:
    clean = table[table["family"] == CLEAN].iloc[0]
    for name in headline:
        if name in table:
            table[f"delta_{name}"] = table[name] - clean[name]
    return table


def robustness_report(model: Any, samples: pd.DataFrame, settings: RobustnessSettings) -> RobustnessReport:
    """Score every condition (see the module docstring); nothing is logged."""
    families = applicable_families(model, settings)
    monitored = model.scheme.monitor.partition("/")[2]
    headline = [monitored, *[m for m in ("uar", "f1_macro", "ccc", "mae") if m != monitored]]
    rows, gap_frames, notes = [], [], []
    work = Path(tempfile.mkdtemp(prefix="emoexp-robustness-"))
    try:
        for family, level in _conditions(model, families):
            row, frame = score_condition(model, samples, family, level, settings.seed, work)
            rows.append(row)
            groups = schema.group_columns(frame) if len(frame) else []
            metric = _gap_metric(monitored, frame) if groups else None
            if metric is None:
                continue
            found = gaps_module.group_gaps(frame, groups, metric, settings.n_resamples, seed=settings.seed)
            gap_frames.append(found.assign(family=row["family"], level=row["level"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = _with_deltas(pd.DataFrame(rows), [m for m in headline if m in rows[0]])
    if any(r["failed"] for r in rows):
        notes.append("some perturbed inputs could not be read; see the 'failed' column.")
    gaps = pd.concat(gap_frames, ignore_index=True) if gap_frames else pd.DataFrame()
    if len(gaps):
        gaps = gaps[["family", "level", *[c for c in gaps.columns if c not in ("family", "level")]]]
    return RobustnessReport(table, gaps, [m for m in headline if m in table.columns], settings, notes)


def log_report(recorder: Any, run_id: str, report: RobustnessReport) -> None:
    """Write the report's table, gaps, metrics, plots and settings to ``run_id`` through the recorder."""
    from emoexp.robust.plots import family_figure

    recorder.log_frame(run_id, report.table, f"{FOLDER}/report.csv")
    if len(report.gaps):
        recorder.log_frame(run_id, report.gaps, f"{FOLDER}/group_gaps.csv")
    recorder.log_json(run_id, {**asdict(report.settings), "notes": report.notes}, f"{FOLDER}/settings.json")
    recorder.log_metrics(run_id, report.metrics())
    for family in dict.fromkeys(report.table["family"]):
        if family != CLEAN:
            recorder.log_figure(
                run_id, family_figure(report.table, family, report.headline), f"{FOLDER}/{family}.png"
            )
    recorder.flush()


def evaluate_run(recorder: Any, run_id: str, settings: RobustnessSettings) -> RobustnessReport:
    """Rebuild the run's test samples and model, score every condition and log the report to the run.

    A cross-validated run is reported fold by fold (each fold run gets its own report) and the
    parent gets the mean over folds.

    Raises:
        RobustnessInputError: If the run (or a fold run) has no model or no test predictions.
    """
    folds = record.fold_runs(recorder.client, run_id)
    if not folds:
        return _single(recorder, run_id, settings)
    reports = [_single(recorder, fold.info.run_id, settings) for fold in folds]
    report = mean_over_folds(reports, [fold.data.tags["fold"] for fold in folds])
    log_report(recorder, run_id, report)
    return report


def _single(recorder: Any, run_id: str, settings: RobustnessSettings) -> RobustnessReport:
    """The report of a holdout or fold run, logged to it."""
    client = recorder.client
    cfg = record.run_config(client, run_id)
    scheme, samples = record.run_test_samples(client, run_id, cfg)
    model = record.load_model(client, run_id, cfg, scheme)
    report = robustness_report(model, samples, settings)
    log_report(recorder, run_id, report)
    return report


def mean_over_folds(reports: list[RobustnessReport], folds: list[str]) -> RobustnessReport:
    """The parent's report: each condition's metrics averaged over folds, gaps listed per fold."""
    tables = pd.concat([r.table.assign(fold=f) for r, f in zip(reports, folds, strict=True)])
    keys = ["family", "modality", "level", "severity"]
    numeric = [c for c in tables.columns if c not in (*keys, "fold")]
    table = tables.groupby(keys, sort=False, as_index=False)[numeric].mean()
    table[["n", "failed"]] = tables.groupby(keys, sort=False)[["n", "failed"]].sum().to_numpy()
    gaps = [r.gaps.assign(fold=f) for r, f in zip(reports, folds, strict=True) if len(r.gaps)]
    notes = [note for r in reports for note in r.notes]
    merged = pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame()
    return RobustnessReport(table, merged, reports[0].headline, reports[0].settings, notes)


def after_training(recorder: Any, run_id: str, cfg: Any) -> RobustnessReport | None:
    """``evaluate.robustness=true``: report the just-trained run; a failure is tagged, never fatal.

    The run's training and test results stand whatever happens here, so an error is logged and
    tagged ``robustness.error`` on the run instead of failing it. Runs that logged no test
    predictions (``evaluate_test=false``) or no model (``tracking.log_model=false``) have
    nothing to re-evaluate and are tagged so.
    """
    if not recorder.writes or not run_id:
        return None
    reason = ""
    if not cfg.get("evaluate_test", True):
        reason = "evaluate_test=false: the run has no test predictions to re-evaluate"
    elif not cfg.tracking.get("log_model", True):
        reason = "tracking.log_model=false: the run has no model to re-evaluate"
    if reason:
        log.warning("evaluate.robustness=true skipped: %s.", reason)
        recorder.set_tags(run_id, {"robustness.error": reason})
        return None
    node = cfg.get("evaluate") or {}
    settings = RobustnessSettings(
        families=tuple(node.get("robustness_families") or ()), seed=int(node.get("robustness_seed", 0))
    )
    try:
        return evaluate_run(recorder, run_id, settings)
    except Exception as error:  # the trained run stands; the report's failure is recorded on it
        log.error("The robustness report of run %s failed: %s: %s", run_id, type(error).__name__, error)
        recorder.set_tags(run_id, {"robustness.error": f"{type(error).__name__}: {error}"[:5000]})
        return None
