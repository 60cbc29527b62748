"""Fitting and evaluating one configured model on the folds of a protocol."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from emoexp.data import schema
from emoexp.data.splits import TEST, TRAIN, VAL, Fold

log = logging.getLogger(__name__)


def _callbacks(cfg: DictConfig, output_dir: Path) -> list[Any]:
    import hydra

    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if name == "model_checkpoint":
            callbacks.append(hydra.utils.instantiate(node, dirpath=str(output_dir / "checkpoints")))
        else:
            callbacks.append(hydra.utils.instantiate(node))
    return callbacks


def _log_frame(
    client: Any, run_id: str, frame: pd.DataFrame, name: str, artifact_path: str | None = None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_csv(path, index=False)
        client.log_artifact(run_id, str(path), artifact_path)


def _log_figure(client: Any, run_id: str, figure: Any, name: str) -> None:
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        client.log_artifact(run_id, str(path), "plots")


def predictions_frame(
    scheme: Any, outputs: Any, rows: np.ndarray, manifest: pd.DataFrame, part: str
) -> pd.DataFrame:
    """Per-sample predictions joined with sample id, speaker and group attributes."""
    samples = manifest.iloc[rows].reset_index(drop=True)
    frame = scheme.predictions_frame(scheme.decode(outputs), samples)
    meta = samples[[schema.ID, schema.SPEAKER, *schema.group_columns(samples)]]
    return pd.concat([pd.DataFrame({"split": part}, index=frame.index), meta, frame], axis=1)


def log_reports(client: Any, run_id: str, scheme: Any, predictions: pd.DataFrame) -> None:
    """Confusion matrix, per-class report and per-group metrics of the test predictions."""
    from emoexp.evaluation import report

    test = predictions[predictions["split"] == TEST]
    if hasattr(scheme, "report_frames"):  # schemes with their own reports (multi-label)
        for name, frame in scheme.report_frames(test).items():
            _log_frame(client, run_id, frame, name, "reports")
        return
    groups = [c for c in predictions.columns if c.startswith(schema.GROUP_PREFIX)]
    classes = list(getattr(scheme, "classes", ()) or [])
    if classes and "target" in test.columns:
        _log_frame(
            client,
            run_id,
            report.classification_report_frame(test, classes).reset_index(),
            "classification_report.csv",
            "reports",
        )
        _log_figure(
            client,
            run_id,
            report.confusion_matrix_figure(test, classes, title=f"{scheme.name} (test)"),
            "confusion_matrix.png",
        )
        probs, targets = report.class_probabilities(test, classes)
        client.log_metric(run_id, "test/ece", report.expected_calibration_error(probs, targets))
        _log_figure(client, run_id, report.reliability_diagram(probs, targets, 10), "reliability_diagram.png")
    if getattr(scheme, "kind", "") in ("dimensional", "both"):
        _log_frame(
            client,
            run_id,
            report.regression_report_frame(test, list(scheme.dims)).reset_index(),
            "regression_report.csv",
            "reports",
        )
    if groups:
        per_group = report.per_group_metrics(test, classes or None, groups)
        _log_frame(client, run_id, per_group, "per_group_metrics.csv", "reports")
        _log_frame(client, run_id, report.largest_gaps(per_group), "per_group_gaps.csv", "reports")


def fit_fold(
    cfg: DictConfig,
    scheme: Any,
    manifest: pd.DataFrame,
    fold: Fold,
    client: Any,
    run_id: str,
    tracking_uri: str,
    output_dir: Path,
    resume: bool = False,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Train on one fold, test the best checkpoint, log everything to ``run_id``.

    With ``resume``, an interrupted training of this fold continues from
    ``<output_dir>/checkpoints/last.ckpt`` (when it exists) without logging any metric step twice.

    Returns:
        Final metrics (``val/<monitor>_best``, ``test/*``) and the per-sample predictions.
    """
    if cfg.model.get("kind") == "sklearn":
        # Classical models (svm, random_forest, ...): fitted in seconds, so resume simply refits.
        from emoexp.sklearn_runner import fit_fold_sklearn

        return fit_fold_sklearn(cfg, scheme, manifest, fold, client, run_id, tracking_uri, output_dir)
    import hydra
    import lightning.pytorch as pl
    import torch

    from emoexp import distributed
    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.evaluation.dataset_report import dataset_reports
    from emoexp.features.pretrained import cached_backbone_features
    from emoexp.interruption import LAST_CHECKPOINT
    from emoexp.tasks import transfer
    from emoexp.tasks.emotion import EmotionTask
    from emoexp.tasks.guard import TrainingGuard
    from emoexp.tracking.lineage import initialise_from
    from emoexp.tracking.resume import ResumableMLFlowLogger
    from emoexp.train import _instantiate

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    featurizer = _instantiate(cfg.model.features[cfg.modality])
    datamodule = EmotionDataModule(
        manifest,
        fold,
        featurizer,
        scheme.targets(manifest),
        batch_size=cfg.datamodule.batch_size,
        num_workers=cfg.datamodule.num_workers,
        pin_memory=cfg.datamodule.pin_memory,
        sampler=cfg.datamodule.sampler,
        cache_dir=cfg.paths.cache_dir,
        use_cache=cfg.datamodule.use_cache,
        persistent_workers=cfg.datamodule.get("persistent_workers", True),
    )
    datamodule.setup()
    client.set_tag(run_id, "feature_cache", "hit" if datamodule.cache_hit else "miss")
    # Data-dependent loss weights (class_weights=balanced) come from this fold's training rows only.
    scheme = scheme.resolve_class_weights(manifest.loc[fold.mask(TRAIN)])
    for name, frame in dataset_reports(manifest, fold, scheme).items():
        _log_frame(client, run_id, frame, name, "reports")
    net = _instantiate(cfg.model.net, num_outputs=scheme.num_outputs, **featurizer.net_kwargs())
    # Transfer learning (emoexp.tasks.transfer): start from init_from's weights, freeze/unfreeze the
    # backbone, discriminative learning rates; a frozen backbone's outputs are computed once and cached.
    strategy = transfer.build(cfg.get("transfer"))
    if cfg.get("init_from"):
        import mlflow

        initialise_from(net, mlflow.MlflowClient(tracking_uri), cfg.init_from)
    if strategy.caches_features(net):
        device = "cuda" if torch.cuda.is_available() and cfg.trainer.get("accelerator") != "cpu" else "cpu"
        datamodule.inputs, hit = cached_backbone_features(
            net,
            datamodule.inputs,
            manifest,
            featurizer,
            cfg.paths.cache_dir,
            cfg.datamodule.use_cache,
            32,
            device,
        )
        client.set_tag(run_id, "backbone_feature_cache", "hit" if hit else "miss")
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    task = EmotionTask(
        net,
        scheme,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=scheduler,
        l1=cfg.regularization.l1,
        param_groups=strategy.param_groups if strategy.uses_backbone() else None,
    )
    client.log_metric(run_id, "model/parameters", float(sum(p.numel() for p in net.parameters())))
    logger = ResumableMLFlowLogger(
        tracking_uri=tracking_uri, run_id=run_id, experiment_name=cfg.tracking.experiment, resume=resume
    )
    # The guard saves last.ckpt on SIGTERM/SIGINT and fails the run on a non-finite loss.
    callbacks = [*_callbacks(cfg, output_dir), TrainingGuard(output_dir / "checkpoints")]
    callbacks += [c for c in (strategy.callback(net),) if c is not None]
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(output_dir)
    )
    distributed.check_strategy(trainer)
    last = output_dir / "checkpoints" / LAST_CHECKPOINT
    resume_from = str(last) if resume and last.exists() else None
    if resume:
        log.info("Resuming %s from %s", run_id, resume_from or "the start (no last.ckpt)")
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    best = trainer.callback_metrics.get(scheme.best_metric)  # read before test() resets them
    if best is None and resume_from and torch.isfinite(task.best.compute()):
        best = task.best.compute()  # resumed after the last epoch: the best so far is in the checkpoint
    checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt_path = checkpoint or None
    # Hook: schemes that tune decisions (multi-label thresholds) fit them on validation predictions
    # only, after training and before the test metrics are computed.
    if hasattr(scheme, "tune_on_validation"):
        val_batches = trainer.predict(
            task, dataloaders=datamodule.val_dataloader(), ckpt_path=ckpt_path, weights_only=True
        )
        [(val_outputs, val_rows)] = distributed.gather_predictions([val_batches])
        tuned = scheme.tune_on_validation(val_outputs, manifest.iloc[val_rows].reset_index(drop=True))
        for name, value in tuned.items():
            client.log_metric(run_id, name, value)
    if not cfg.get("evaluate_test", True):
        # Test lock (evaluate_test=false, tuning trials): validation only, no test pass or test predictions.
        if checkpoint and cfg.tracking.log_checkpoint:
            client.log_artifact(run_id, checkpoint, "checkpoints")
        return ({scheme.best_metric: float(best)} if best is not None else {}), pd.DataFrame(
            columns=["split"]
        )
    test_metrics = trainer.test(
        task, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
    )[0]
    batches = trainer.predict(
        task, dataloaders=datamodule.predict_dataloader(), ckpt_path=ckpt_path, weights_only=True
    )
    frames = []
    # Under DDP each rank predicted a share: gather all ranks, each sample once.
    for part, (outputs, rows) in zip((VAL, TEST), distributed.gather_predictions(batches), strict=True):
        frames.append(predictions_frame(scheme, outputs, rows, manifest, part))
    predictions = pd.concat(frames, ignore_index=True)
    _log_frame(client, run_id, predictions, "predictions.csv")
    log_reports(client, run_id, scheme, predictions)
    if checkpoint and cfg.tracking.log_checkpoint:
        client.log_artifact(run_id, checkpoint, "checkpoints")
    metrics = {k: float(v) for k, v in test_metrics.items()}
    if best is not None:
        metrics[scheme.best_metric] = float(best)
    if hasattr(net, "modalities"):
        # Fusion networks: test metrics with each modality missing (test/<metric>_without_<modality>).
        from emoexp.models.fusion import missing_modality_metrics

        robustness = missing_modality_metrics(task, datamodule, scheme)
        for name, value in robustness.items():
            client.log_metric(run_id, name, value)
        metrics.update(robustness)
    if cfg.tracking.get("log_model", True) and distributed.is_global_zero():
        # The served model (predict, `mlflow models predict`): the best checkpoint's weights, which
        # trainer.predict loaded into `net` above, with the featurizer's training-split state.
        from emoexp.serving.pyfunc import log_model

        log_model(tracking_uri, run_id, cfg, scheme, featurizer, net)
    return metrics, predictions


def fit_and_evaluate(
    cfg: DictConfig, scheme: Any, client: Any, run_id: str, tracking_uri: str, resume: bool = False
) -> dict[str, float]:
    """Prepare the samples, split them by the protocol and fit every fold.

    A single-fold protocol logs into ``run_id``; a multi-fold protocol logs one child run
    per fold and the mean/std/CI of each metric on the parent. ``resume`` continues an
    interrupted ``run_id`` (see :func:`fit_fold`).
    """
    from emoexp.labels.aggregation import agreement
    from emoexp.train import _instantiate, prepare_samples

    manifest = prepare_samples(cfg, scheme)
    if manifest.attrs.get("skipped"):  # bad corpus files an adapter skipped (on_error=skip)
        _log_frame(client, run_id, pd.DataFrame(manifest.attrs["skipped"]), "skipped_files.csv", "reports")
        client.log_metric(run_id, "data/skipped_files", float(len(manifest.attrs["skipped"])))
    protocol = _instantiate(cfg.protocol)
    folds = list(protocol.folds(manifest, scheme.stratify_labels(manifest), cfg.seed))
    output_dir = Path(cfg.paths.output_dir)
    for fold in folds:
        client.set_tag(
            run_id,
            f"data_fingerprint{'' if len(folds) == 1 else '.' + fold.name}",
            fold.fingerprint(manifest),
        )
    client.log_metric(run_id, "data/samples", float(len(manifest)))
    for name, value in agreement(manifest).items():
        if np.isfinite(value):
            client.log_metric(run_id, f"data/{name}", value)
    if len(folds) == 1:
        fold_args = (cfg, scheme, manifest, folds[0], client, run_id, tracking_uri, output_dir, resume)
        metrics, _ = fit_fold(*fold_args)
        return metrics
    return fit_cross_validated(cfg, scheme, manifest, folds, client, run_id, tracking_uri, output_dir, resume)


def summarise_folds(per_fold: list[dict[str, float]], ci_method: str = "bootstrap") -> dict[str, float]:
    """Mean, std and 95% CI over folds of every metric; the mean keeps the plain name.

    The plain name (``test/uar``, ``val/uar_best``) holding the mean lets tuners and
    comparisons treat a cross-validated run like a holdout run. ``ci_method`` is
    ``bootstrap`` (percentile-BCa over folds) or ``t`` (Student's t, wider and more honest
    with very few folds).
    """
    from emoexp.evaluation.statistics import mean_std_ci

    summary: dict[str, float] = {}
    for name in sorted(set().union(*per_fold)):
        values = [m[name] for m in per_fold if name in m]
        stats = mean_std_ci(values, method=ci_method)
        summary[name] = stats["mean"]
        for key in ("std", "ci_low", "ci_high"):
            summary[f"{name}_{key}"] = stats[key]
    return {k: float(v) for k, v in summary.items() if np.isfinite(v)}


def fit_cross_validated(
    cfg: DictConfig,
    scheme: Any,
    manifest: pd.DataFrame,
    folds: list[Fold],
    client: Any,
    parent_id: str,
    tracking_uri: str,
    output_dir: Path,
    resume: bool = False,
) -> dict[str, float]:
    """One child run per fold under ``parent_id``; the parent gets the fold summary and OOF predictions.

    With ``resume``, folds whose child run finished are read back, an interrupted fold continues
    in its child run, and the remaining folds start as usual.
    """
    import time

    import mlflow

    from emoexp.tracking import resume as resuming

    parent = client.get_run(parent_id)
    per_fold, oof = [], []
    for fold in folds:
        previous = resuming.fold_run(client, parent, fold.name) if resume else None
        if previous is not None and previous.info.status == "FINISHED":
            metrics, predictions = resuming.finished_fold(client, previous, scheme.best_metric)
            per_fold.append(metrics)
            oof.append(predictions.assign(fold=fold.name))
            continue
        if previous is not None:
            child_id = previous.info.run_id
            resuming.mark_resumed(client, previous)
        else:
            child_id = client.create_run(
                parent.info.experiment_id,
                run_name=f"{parent.info.run_name}-{fold.name}",
                tags={
                    **{
                        k: v
                        for k, v in parent.data.tags.items()
                        if not k.startswith("mlflow.") and k not in resuming.RUN_STATE_TAGS
                    },
                    "mlflow.parentRunId": parent_id,
                    "fold": fold.name,
                    "data_fingerprint": fold.fingerprint(manifest),
                },
            ).info.run_id
        try:
            fold_dir = output_dir / fold.name
            resumed = previous is not None
            metrics, predictions = fit_fold(
                cfg, scheme, manifest, fold, client, child_id, tracking_uri, fold_dir, resumed
            )
        except BaseException as error:
            resuming.mark_stopped(client, child_id, error)
            raise
        client.set_terminated(child_id, "FINISHED")
        per_fold.append(metrics)
        oof.append(predictions.assign(fold=fold.name))
        log.info("%s: %s", fold.name, {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
    summary = summarise_folds(per_fold, cfg.get("cv_ci_method", "bootstrap"))
    client.log_batch(
        parent_id,
        metrics=[mlflow.entities.Metric(k, v, int(time.time() * 1000), 0) for k, v in summary.items()],
    )
    client.log_metric(parent_id, "folds", float(len(folds)))
    predictions = pd.concat(oof, ignore_index=True)
    if not cfg.get("evaluate_test", True):  # test lock: no test predictions to report
        return summary
    _log_frame(client, parent_id, predictions, "predictions.csv")
    _log_frame(
        client,
        parent_id,
        pd.DataFrame(per_fold).assign(fold=[f.name for f in folds]),
        "per_fold_metrics.csv",
        "reports",
    )
    log_reports(client, parent_id, scheme, predictions)
    return summary
