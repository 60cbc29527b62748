"""The Lightning fitter: a datamodule, a network, transfer learning, a trainer, and resume."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from emoexp import distributed
from emoexp.config import instantiate
from emoexp.data.datamodule import EmotionDataModule
from emoexp.data.splits import TEST, VAL
from emoexp.engine.fitters.base import FoldContext
from emoexp.engine.lightning_logger import RecorderLogger
from emoexp.features.store import FeatureStorage
from emoexp.interruption import LAST_CHECKPOINT
from emoexp.tasks import transfer
from emoexp.tasks.emotion import EmotionTask
from emoexp.tasks.guard import TrainingGuard

log = logging.getLogger(__name__)


def _callbacks(ctx: FoldContext) -> list[Any]:
    """The configured callbacks, the checkpoint folder set to this fold's, plus the training guard."""
    callbacks = []
    for name, node in (ctx.cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        extra = {"dirpath": str(ctx.output_dir / "checkpoints")} if name == "model_checkpoint" else {}
        callbacks.append(instantiate(node, **extra))
    # The guard saves last.ckpt on SIGTERM/SIGINT and fails the run on a non-finite loss.
    return [*callbacks, TrainingGuard(ctx.output_dir / "checkpoints")]


def _datamodule(ctx: FoldContext, featurizer: Any) -> EmotionDataModule:
    from emoexp.features.augment import build_augmentation

    node = ctx.cfg.datamodule
    # Training batches only, after the feature cache (docs/augmentation.md).
    augmentation = build_augmentation(ctx.cfg.get("augment"))
    datamodule = EmotionDataModule(
        ctx.manifest,
        ctx.fold,
        featurizer,
        ctx.scheme.targets(ctx.manifest),
        batch_size=node.batch_size,
        num_workers=node.num_workers,
        pin_memory=node.pin_memory,
        sampler=node.sampler,
        cache_dir=ctx.cfg.paths.cache_dir,
        use_cache=node.use_cache,
        persistent_workers=node.get("persistent_workers", True),
        augmentation=augmentation,
        storage=FeatureStorage(
            node.get("storage", "auto"),
            node.get("extract_workers", "auto"),
            node.get("max_in_memory_mb", 2048),
        ),
    )
    datamodule.setup()
    ctx.recorder.set_tags(ctx.run_id, {"feature_cache": "hit" if datamodule.cache_hit else "miss"})
    if augmentation is not None and augmentation.copies:
        ctx.recorder.set_tags(ctx.run_id, {"augment_cache": "hit" if augmentation.copies_hit else "miss"})
    return datamodule


def _network(ctx: FoldContext, featurizer: Any, datamodule: EmotionDataModule) -> tuple[Any, Any]:
    """The network (initialised from ``init_from``) and its transfer strategy; caches frozen features."""
    from emoexp.features.pretrained import cached_backbone_features
    from emoexp.tracking.lineage import initialise_from

    cfg = ctx.cfg
    net = instantiate(cfg.model.net, num_outputs=ctx.scheme.num_outputs, **featurizer.net_kwargs())
    strategy = transfer.build(cfg.get("transfer"))
    if cfg.get("init_from"):
        initialise_from(net, ctx.recorder.client, cfg.init_from)
    if strategy.caches_features(net) and datamodule.augmentation is None:
        # A frozen backbone's outputs are computed once and cached (emoexp.tasks.transfer); augmented
        # inputs change every epoch, so with augmentation the backbone runs on each batch instead.
        device = "cuda" if torch.cuda.is_available() and cfg.trainer.get("accelerator") != "cpu" else "cpu"
        datamodule.inputs, hit = cached_backbone_features(
            net,
            datamodule.inputs,
            ctx.manifest,
            featurizer,
            cfg.paths.cache_dir,
            cfg.datamodule.use_cache,
            32,
            device,
        )
        ctx.recorder.set_tags(ctx.run_id, {"backbone_feature_cache": "hit" if hit else "miss"})
    return net, strategy


def _resume_checkpoint(ctx: FoldContext) -> str | None:
    last = ctx.output_dir / "checkpoints" / LAST_CHECKPOINT
    if not ctx.resume:
        return None
    if last.exists():
        log.info("Resuming fold %s from %s", ctx.fold.name, last)
        return str(last)
    log.info("Fold %s had saved no %s; it trains from the start", ctx.fold.name, LAST_CHECKPOINT)
    return None


def fit_lightning(ctx: FoldContext) -> LightningFold:
    """Train the configured network on the fold (resuming from ``last.ckpt`` when asked)."""
    cfg = ctx.cfg
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    featurizer = instantiate(cfg.model.features[cfg.modality])
    datamodule = _datamodule(ctx, featurizer)
    net, strategy = _network(ctx, featurizer, datamodule)
    task = EmotionTask(
        net,
        ctx.scheme,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        l1=cfg.regularization.l1,
        param_groups=strategy.param_groups if strategy.uses_backbone() else None,
    )
    ctx.recorder.log_metrics(
        ctx.run_id, {"model/parameters": float(sum(p.numel() for p in net.parameters()))}
    )
    callbacks = _callbacks(ctx) + [c for c in (strategy.callback(net),) if c is not None]
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=RecorderLogger(ctx.recorder, ctx.run_id),
        default_root_dir=str(ctx.output_dir),
    )
    distributed.check_strategy(trainer)
    resume_from = _resume_checkpoint(ctx)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    best = trainer.callback_metrics.get(ctx.scheme.best_metric)  # read before test() resets them
    if best is None and resume_from and torch.isfinite(task.best.compute()):
        best = task.best.compute()  # resumed after the last epoch: the best so far is in the checkpoint
    checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return LightningFold(ctx, trainer, task, datamodule, featurizer, net, best, checkpoint or None)


class LightningFold:
    """A trained Lightning model; the best checkpoint (``weights_only``) answers every question."""

    logs_test_metrics = True  # trainer.test logs test/* through the RecorderLogger

    def __init__(
        self,
        ctx: FoldContext,
        trainer: pl.Trainer,
        task: EmotionTask,
        datamodule: EmotionDataModule,
        featurizer: Any,
        net: Any,
        best: Any,
        checkpoint: str | None,
    ):
        self.ctx, self.trainer, self.task, self.datamodule = ctx, trainer, task, datamodule
        self.featurizer, self.net, self.checkpoint = featurizer, net, checkpoint
        self.best = {ctx.scheme.best_metric: float(best)} if best is not None else {}
        self._outputs: dict[str, tuple[Any, np.ndarray]] = {}

    def outputs(self, part: str) -> tuple[Any, np.ndarray]:  # noqa: D102
        if part not in self._outputs:
            loader = self.datamodule.val_dataloader() if part == VAL else self.datamodule.test_dataloader()
            batches = self.trainer.predict(
                self.task, dataloaders=loader, ckpt_path=self.checkpoint, weights_only=True
            )
            # Under DDP each rank predicted a share: gather all ranks, each sample once.
            [self._outputs[part]] = distributed.gather_predictions([batches])
        return self._outputs[part]

    def test_metrics(self) -> dict[str, float]:  # noqa: D102
        results = self.trainer.test(
            self.task, datamodule=self.datamodule, ckpt_path=self.checkpoint, verbose=False, weights_only=True
        )
        return {k: float(v) for k, v in results[0].items()}

    def extra_test_metrics(self) -> dict[str, float]:  # noqa: D102
        if not self.net.fused_modalities():
            return {}
        from emoexp.models.fusion import missing_modality_metrics

        # Fusion networks: test metrics with each modality missing (test/<metric>_without_<modality>).
        return missing_modality_metrics(self.task, self.datamodule, self.ctx.scheme)

    def log_model(self) -> None:  # noqa: D102
        from emoexp.serving.pyfunc import log_model

        # The served model (predict, `mlflow models predict`): the best checkpoint's weights, which
        # trainer.predict loaded into `net`, with the featurizer's training-split state.
        if TEST not in self._outputs and VAL not in self._outputs:
            self.outputs(VAL)
        ctx = self.ctx
        ctx.recorder.log_model(
            ctx.run_id,
            lambda: log_model(
                ctx.recorder.tracking_uri,
                ctx.run_id,
                ctx.recorder.recordable_config(ctx.cfg),
                ctx.scheme,
                self.featurizer,
                self.net,
            ),
        )
