"""One run, one path: check -> connect -> record -> fit every fold -> summary (docs/design.md#run-lifecycle).

Nothing is recorded until :func:`~emoexp.engine.preflight.prepare_run` has checked the config
and prepared the samples and folds. From the moment the run exists it always ends in a true
state: FINISHED, FAILED (error tag, ``error.txt``) or KILLED (SIGTERM/SIGINT, resumable).

Under DDP every rank runs this function; only global rank 0 writes (its recorder), the others
compute alongside it with a recorder that only reads (docs/scaling.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from emoexp import distributed
from emoexp.data.splits import TRAIN, Fold
from emoexp.engine import conventions
from emoexp.engine import resume as resuming
from emoexp.engine.card import record_card
from emoexp.engine.epilogue import finish_fold, record_report
from emoexp.engine.fitters import fitter_for
from emoexp.engine.fitters.base import FoldContext
from emoexp.engine.preflight import RunPlan, prepare_run
from emoexp.engine.recorder import INTERRUPTED_TAG, RUN_STATE_TAGS, Recorder, TrackingStoreError
from emoexp.evaluation.statistics import mean_std_ci
from emoexp.interruption import TrainingInterrupted, stop_on_signals
from emoexp.tracking import privacy, record, store

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """What a finished run reports: its id, status, metrics and where to look at it."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    status: str
    metrics: dict[str, float]
    main_metrics: list[str]
    error: str = ""


@stop_on_signals()
def train_run(
    cfg: DictConfig, on_end: Callable[[RunOutcome, Recorder], None] | None = None
) -> dict[str, float]:
    """Check, record and train the run of ``cfg``; return its final metrics.

    Args:
        cfg: A config composed from ``conf/train.yaml``.
        on_end: Called with the outcome once the run ended, whatever its status (the terminal summary).

    Raises:
        ConfigError: For a config or data error (before any run exists) or a refused resume.
        TrainingInterrupted: On SIGTERM (``KeyboardInterrupt`` on SIGINT), after marking the run.
    """
    plan = prepare_run(cfg)
    recorder = connect(cfg)
    experiment_id = recorder.experiment_id(cfg.tracking.experiment) if recorder.writes else ""
    if recorder.writes:
        resuming.sweep_abandoned(recorder, experiment_id, plan.fingerprint)
    resumed = None
    if resuming.resume_requested(cfg.get("resume")):
        resumed = resuming.plan_resume(recorder, cfg, cfg.tracking.experiment, plan.fingerprint)
    if resumed is not None:
        # Continue in the interrupted run's output folder, where its checkpoints are.
        plan.cfg = _with_output_dir(cfg, resumed.output_dir)
        experiment_id = resumed.run.info.experiment_id
    output_dir = Path(plan.cfg.paths.output_dir)
    recorder.spool_dir = output_dir
    run_id = _open(recorder, plan, experiment_id, resumed)
    outcome = RunOutcome(
        run_id, experiment_id, recorder.tracking_uri, "FINISHED", {}, main_metrics(plan.scheme)
    )
    try:
        outcome.metrics = fit_run(plan, recorder, run_id, experiment_id, resumed is not None)
        if (plan.cfg.get("evaluate") or {}).get("robustness"):
            from emoexp.robust.report import after_training  # deferred: only runs that ask for it

            after_training(recorder, run_id, plan.cfg)  # docs/robustness.md; never fails the run
        conventions.finish(recorder, run_id, plan, outcome.metrics, outcome.main_metrics[0])
    except BaseException as error:
        recorder.stop(run_id, error, fallback_dir=output_dir)
        outcome.status = "KILLED" if isinstance(error, TrainingInterrupted | KeyboardInterrupt) else "FAILED"
        outcome.error = f"{type(error).__name__}: {error}"
        if on_end is not None and recorder.writes:
            on_end(outcome, recorder)
        raise
    if resumed is not None:
        recorder.set_tags(run_id, {INTERRUPTED_TAG: "false"})
    recorder.end(run_id, "FINISHED")
    if on_end is not None and recorder.writes:
        on_end(outcome, recorder)
    return outcome.metrics


def main_metrics(scheme: Any) -> list[str]:
    """The test figures a summary shows first: the monitored metric, then the scheme's other main ones."""
    monitored = scheme.monitor.partition("/")[2]
    # The figures papers report first; then whatever else the scheme has, in its own order.
    headline = ("uar", "f1_macro", "accuracy", "ccc", "mae", "f1_micro")
    names = [m for m in scheme.metric_names if m not in ("loss", monitored)]
    names.sort(key=lambda m: headline.index(m) if m in headline else len(headline))
    return [f"test/{m}" for m in [monitored, *names][:4]]


def connect(cfg: DictConfig) -> Recorder:
    """The run's recorder, after a bounded probe of the tracking store (rank 0 writes, others read).

    Raises:
        TrackingStoreError: For a store that cannot be created or reached.
    """
    try:
        tracking_uri = store.resolve_tracking_uri(cfg.tracking.uri)
    except OSError as error:
        raise TrackingStoreError(
            f"The MLflow tracking store {cfg.tracking.uri or '$MLFLOW_TRACKING_URI'} cannot be created "
            f"({error.strerror or error}: {error.filename}). Use a writable path, e.g. "
            "tracking.uri=sqlite:///mlflow.db; nothing was recorded."
        ) from None
    recorder = Recorder.connect(tracking_uri, writes=distributed.is_global_zero())
    recorder.privacy = privacy.pseudonymiser_for(cfg.tracking, OmegaConf.to_container(cfg, resolve=True))
    return recorder


def _with_output_dir(cfg: DictConfig, output_dir: Path) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def run_tags(plan: RunPlan, lineage: dict[str, str]) -> dict[str, str]:
    """The tags a run is found and compared by (modality, model, scheme, data, seed, commit, ...)."""
    cfg = plan.cfg
    commit = record.git_commit(Path(__file__).parent)
    tags = {
        "modality": cfg.modality,
        "model": cfg.model.name,
        "label_scheme": plan.scheme.name,
        "protocol": cfg.protocol.name,
        "data": cfg.data.name,
        "seed": str(cfg.seed),
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "emoexp.monitor": plan.scheme.monitor,
        conventions.DESCRIPTION_TAG: conventions.description(cfg, plan.scheme.name),
        **({"transfer": str(cfg.transfer.name)} if cfg.get("transfer") else {}),
        **({"augment": str(cfg.augment.name)} if cfg.get("augment") else {}),
        **lineage,
        # A child of tracking.parent_run_id when given (tuning trials nest under their study run).
        **({"mlflow.parentRunId": cfg.tracking.parent_run_id} if cfg.tracking.get("parent_run_id") else {}),
        **{str(k): str(v) for k, v in (cfg.tracking.get("tags") or {}).items()},
        **(
            {"derived_targets": ",".join(derived)}
            if (derived := plan.scheme.derived_targets(plan.manifest))
            else {}
        ),
        # What resume=true matches, and where this run's checkpoints live.
        resuming.FINGERPRINT_TAG: plan.fingerprint,
        resuming.OUTPUT_DIR_TAG: str(Path(cfg.paths.output_dir).resolve()),
    }
    return {k: str(v) for k, v in tags.items()}


def _open(recorder: Recorder, plan: RunPlan, experiment_id: str, resumed: resuming.ResumePlan | None) -> str:
    """Create (or reopen) the run, take its lease and record the config; returns its id."""
    from emoexp.tracking.lineage import lineage_tags

    # init_from: an unknown source fails here, before any run exists; its lineage is tagged on the run.
    lineage = lineage_tags(recorder.client, plan.cfg.get("init_from"))
    if resumed is None:
        run_id = recorder.create_run(experiment_id, plan.cfg.run_name, run_tags(plan, lineage))
        log.info(
            "MLflow run %s in %s (experiment %s)", run_id, recorder.tracking_uri, plan.cfg.tracking.experiment
        )
    else:
        # A DDP rank > 0 reads the run (finished folds) but writes nothing: its recorder does not write.
        run_id = resumed.run_id
        recorder.reopen(run_id, resumed.resumes)
        log.info("Resuming MLflow run %s from %s", resumed.run_id, plan.cfg.paths.output_dir)
    recorder.hold(run_id)
    try:
        if resumed is not None and recorder.writes and (resumed.changed or resumed.was_failed):
            _rewrite_forced(recorder, plan, resumed, lineage)
        elif resumed is not None:
            recorder.protect(run_id)
        _record_config(recorder, run_id, plan.cfg)
    except BaseException as error:
        recorder.stop(run_id, error, fallback_dir=Path(plan.cfg.paths.output_dir))
        raise
    return run_id


def _record_config(recorder: Recorder, run_id: str, cfg: DictConfig) -> None:
    """Params (the flattened resolved config), ``config.yaml`` and ``environment.json``."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    recorder.log_params(run_id, record.flatten_config(resolved))
    recorder.log_text(run_id, OmegaConf.to_yaml(OmegaConf.create(resolved)), "config.yaml")
    recorder.log_json(run_id, record.environment(), "environment.json")


def _rewrite_forced(recorder: Recorder, plan: RunPlan, resumed: resuming.ResumePlan, lineage: dict) -> None:
    """``resume_force=true``: the run's tags and config become the new truth; the old are kept aside.

    MLflow params cannot change value, so the keys whose param still shows the old value are
    listed in the tag ``emoexp.params_stale``; ``config.yaml`` has the new values and
    ``previous/config.yaml`` the old ones.
    """
    run_id = resumed.run_id
    previous = Path(recorder.client.download_artifacts(run_id, "config.yaml"))
    recorder.log_artifact(run_id, previous, "previous")
    recorder.set_tags(run_id, run_tags(plan, lineage))
    if resumed.changed:
        recorder.set_tags(run_id, {"emoexp.params_stale": ",".join(sorted(resumed.changed))[:5000]})
    if resumed.was_failed:
        recorder.delete_tag(run_id, "error")
        if any(a.path == "error.txt" for a in recorder.client.list_artifacts(run_id)):
            recorder.log_artifact(run_id, recorder.client.download_artifacts(run_id, "error.txt"), "previous")
    recorder.protect(run_id)
    log.warning(
        "resume_force=true: run %s continues with this config (%d key(s) changed)",
        run_id,
        len(resumed.changed),
    )


def fit_run(
    plan: RunPlan, recorder: Recorder, run_id: str, experiment_id: str, resume: bool
) -> dict[str, float]:
    """Record the data facts, then fit the single fold or every fold of a cross-validation."""
    from emoexp.labels.aggregation import agreement

    manifest, folds = plan.manifest, plan.folds
    if manifest.attrs.get("skipped"):  # bad corpus files an adapter skipped (on_error=skip)
        recorder.log_frame(run_id, pd.DataFrame(manifest.attrs["skipped"]), "reports/skipped_files.csv")
        recorder.log_metrics(run_id, {"data/skipped_files": float(len(manifest.attrs["skipped"]))})
    suffix = (lambda fold: "") if len(folds) == 1 else (lambda fold: f".{fold.name}")
    recorder.set_tags(run_id, {f"data_fingerprint{suffix(f)}": f.fingerprint(manifest) for f in folds})
    facts = {"data/samples": float(len(manifest))}
    facts.update({f"data/{k}": v for k, v in agreement(manifest).items() if np.isfinite(v)})
    recorder.log_metrics(run_id, facts)
    record_card(recorder, run_id, plan)  # protocol card (docs/protocols.md)
    conventions.record_dataset(recorder, run_id, plan)  # the run's MLflow dataset input (docs/tracking.md)
    if plan.leakage is not None:  # the leakage guard's findings (docs/leakage.md)
        recorder.log_metrics(run_id, {f"leakage/{k}": float(v) for k, v in plan.leakage.summary.items()})
        if not plan.leakage.report.empty:
            recorder.log_frame(run_id, plan.leakage.report, "reports/leakage.csv")
    output_dir = Path(plan.cfg.paths.output_dir)
    if len(folds) == 1:
        metrics, _ = fit_fold(plan, recorder, run_id, folds[0], output_dir, resume)
        return metrics
    return fit_cross_validated(plan, recorder, run_id, experiment_id, resume)


def fit_fold(
    plan: RunPlan, recorder: Recorder, run_id: str, fold: Fold, output_dir: Path, resume: bool
) -> tuple[dict[str, float], pd.DataFrame]:
    """Fit one fold with the model's fitter and record it through the fold epilogue."""
    from emoexp.evaluation.dataset_report import dataset_reports

    manifest = plan.manifest
    # Data-dependent loss weights (class_weights=balanced) come from this fold's training rows only.
    scheme = plan.scheme.resolve_class_weights(manifest.loc[fold.mask(TRAIN)])
    for name, frame in dataset_reports(manifest, fold, scheme).items():
        recorder.log_frame(run_id, frame, f"reports/{name}")
    ctx = FoldContext(plan.cfg, scheme, manifest, fold, recorder, run_id, output_dir, resume)
    fitted = fitter_for(plan.cfg.model)(ctx)
    return finish_fold(ctx, fitted)


def summarise_folds(per_fold: list[dict[str, float]], ci_method: str = "bootstrap") -> dict[str, float]:
    """Mean, std and 95% CI over folds of every metric; the mean keeps the plain name.

    The plain name (``test/uar``, ``val/uar_best``) holding the mean lets tuners and
    comparisons treat a cross-validated run like a holdout run. ``ci_method`` is
    ``bootstrap`` (percentile-BCa over folds) or ``t`` (Student's t, wider and more honest
    with very few folds).
    """
    summary: dict[str, float] = {}
    # A fold's own intervals (speakers resampled within its test split) are the fold's; the
    # parent's interval of a figure is the one over folds, computed here.
    names = {name for name in set().union(*per_fold) if not name.endswith(("_ci_low", "_ci_high"))}
    for name in sorted(names):
        values = [m[name] for m in per_fold if name in m]
        stats = mean_std_ci(values, method=ci_method)
        summary[name] = stats["mean"]
        for key in ("std", "ci_low", "ci_high"):
            summary[f"{name}_{key}"] = stats[key]
    return {k: float(v) for k, v in summary.items() if np.isfinite(v)}


def fit_cross_validated(
    plan: RunPlan, recorder: Recorder, parent_id: str, experiment_id: str, resume: bool
) -> dict[str, float]:
    """One child run per fold under ``parent_id``; the parent gets the fold summary and OOF predictions.

    With ``resume``, folds whose child run finished are read back, an interrupted fold continues
    in its child run, and the remaining folds start as usual.
    """
    cfg, folds = plan.cfg, plan.folds
    parent = recorder.client.get_run(parent_id) if parent_id else None
    per_fold, oof = [], []
    for fold in folds:
        metrics, predictions = _cross_validation_fold(plan, recorder, parent, experiment_id, fold, resume)
        per_fold.append(metrics)
        oof.append(predictions.assign(fold=fold.name))
        log.info("%s: %s", fold.name, {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
    summary = summarise_folds(per_fold, cfg.get("cv_ci_method", "bootstrap"))
    recorder.log_metrics(parent_id, {**summary, "folds": float(len(folds))})
    if not cfg.get("evaluate_test", True):  # test lock: no test predictions to report
        return summary
    predictions = pd.concat(oof, ignore_index=True)
    recorder.log_frame(parent_id, predictions, "predictions.csv")
    per_fold_frame = pd.DataFrame(per_fold).assign(fold=[f.name for f in folds])
    recorder.log_frame(parent_id, per_fold_frame, "reports/per_fold_metrics.csv")
    record_report(recorder, parent_id, plan.scheme, predictions, interval_metrics=False)
    return summary


def _cross_validation_fold(
    plan: RunPlan, recorder: Recorder, parent: Any, experiment_id: str, fold: Fold, resume: bool
) -> tuple[dict[str, float], pd.DataFrame]:
    """Fit (or read back, or resume) one fold of a cross-validation in its child run."""
    previous = resuming.fold_run(recorder, parent, fold.name) if resume and parent is not None else None
    if previous is not None and previous.info.status == "FINISHED":
        return finished_fold(recorder, previous, plan.scheme.best_metric)
    if previous is not None:
        child_id = previous.info.run_id
        recorder.reopen(child_id, int(previous.data.tags.get("resumed", 0)) + 1)
        recorder.protect(child_id)
    else:
        inherited = {
            k: v
            for k, v in (parent.data.tags.items() if parent is not None else ())
            if not k.startswith("mlflow.") and k not in RUN_STATE_TAGS
        }
        name = f"{parent.info.run_name}-{fold.name}" if parent is not None else fold.name
        child_tags = {
            **inherited,
            "mlflow.parentRunId": parent.info.run_id if parent is not None else "",
            resuming.FOLD_TAG: fold.name,
            "data_fingerprint": fold.fingerprint(plan.manifest),
        }
        child_id = recorder.create_run(experiment_id, name, child_tags)
    fold_dir = Path(plan.cfg.paths.output_dir) / fold.name
    try:
        result = fit_fold(plan, recorder, child_id, fold, fold_dir, previous is not None)
    except BaseException as error:
        recorder.stop(child_id, error, fallback_dir=fold_dir)
        raise
    recorder.end(child_id, "FINISHED")
    return result


def finished_fold(recorder: Recorder, run: Any, best_metric: str) -> tuple[dict[str, float], pd.DataFrame]:
    """What a fold that finished before an interruption returned, read back from its run.

    Returns:
        The fold's test metrics (those of the test pass, not the report's ``test/ece``) and
        ``val/<monitor>_best``, and its per-sample predictions.
    """
    metrics = {
        k: float(v)
        for k, v in run.data.metrics.items()
        if (k.startswith("test/") and k != "test/ece") or k == best_metric
    }
    if not any(item.path == "predictions.csv" for item in recorder.client.list_artifacts(run.info.run_id)):
        return metrics, pd.DataFrame(columns=["split"])  # a validation-only fold (evaluate_test=false)
    return metrics, pd.read_csv(recorder.client.download_artifacts(run.info.run_id, "predictions.csv"))
