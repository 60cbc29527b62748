"""The one LightningModule: any network, any label scheme.

The label scheme supplies the loss, the metrics and the monitored metric
(docs/design.md#1-the-label-scheme-decides-together); this module only wires them into Lightning's loop
and adds the regularisation options (weight decay lives in the optimiser config, L1 here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MinMetric

from emoexp.labels.schemes import LabelScheme

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class EmotionTask(pl.LightningModule):
    """Trains ``net`` for ``scheme``; logs ``train/*``, ``val/*``, ``val/<monitor>_best``, ``test/*``.

    Args:
        net: Network returning ``[B, scheme.num_outputs]``.
        scheme: The label scheme.
        optimizer: Partial optimiser factory taking the parameters (or param groups).
        scheduler: Optional partial LR-scheduler factory taking the optimiser.
        l1: L1 penalty weight on all weights (0 disables it).
        param_groups: Optional ``net -> optimiser parameter groups`` (a transfer strategy's
            backbone/head split); a group's ``lr_mult`` scales the optimiser's ``lr`` for it.
    """

    def __init__(
        self,
        net: nn.Module,
        scheme: LabelScheme,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        l1: float = 0.0,
        param_groups: Callable[[nn.Module], list[dict[str, Any]]] | None = None,
    ):
        super().__init__()
        self.net = net
        self.scheme = scheme
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.l1 = l1
        self.param_groups = param_groups
        self.metrics = nn.ModuleDict(
            # ModuleDict keys may not shadow nn.Module attributes such as ``train``.
            {
                f"{stage}_": nn.ModuleList(scheme.metrics(prefix=f"{stage}/"))
                for stage in ("train", "val", "test")
            }
        )
        # Epoch losses (sample-weighted means) as metrics: like the scheme's metrics they are synchronised
        # across DDP ranks in this module's epoch-end hooks, where every rank reaches them in the same order.
        self.losses = nn.ModuleDict(
            {f"{stage}_": MeanMetric(nan_strategy="disable") for stage in ("train", "val", "test")}
        )
        self.best = MaxMetric() if scheme.mode == "max" else MinMetric()
        # In the checkpoint, so that a resumed run continues val/<monitor>_best instead of restarting it.
        self.best.persistent(True)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Head outputs for a batch of model inputs."""
        return self.net(**inputs)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        outputs = self(**batch["inputs"])
        loss = self.scheme.loss(outputs, batch["targets"])
        self.scheme.update_metrics(self.metrics[f"{stage}_"], outputs.detach(), batch["targets"])
        batch_size = outputs.shape[0]
        # One value per sample, for a sample-weighted mean (torchmetrics 1.9 ignores `weight` when
        # nan_strategy="disable", and NaN must propagate to the logged loss rather than be dropped).
        self.losses[f"{stage}_"].update(loss.detach().expand(batch_size))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:  # noqa: D102
        loss = self._step(batch, "train")
        if self.l1 > 0:
            penalty = sum(
                p.abs().sum()
                for name, p in self.net.named_parameters()
                if p.requires_grad and "bias" not in name
            )
            loss = loss + self.l1 * penalty
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:  # noqa: D102
        return {"outputs": self(**batch["inputs"]).detach(), "rows": batch["row"]}

    def _log_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values: dict[str, torch.Tensor] = {}
        for collection in self.metrics[f"{stage}_"]:
            values.update(collection.compute())
            collection.reset()
        self.log_dict(values, prog_bar=False)
        # Logged synchronised already: Lightning's sync_dist would add a collective that a progress bar
        # triggers on rank 0 alone, out of order with the ones above (a DDP deadlock).
        loss = self.losses[f"{stage}_"]
        values[f"{stage}/loss"] = loss.compute()
        loss.reset()
        self.log(f"{stage}/loss", values[f"{stage}/loss"], prog_bar=stage != "test")
        return values

    def on_train_epoch_end(self) -> None:  # noqa: D102
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        values = self._log_metrics("val")
        if self.trainer.sanity_checking:
            return
        monitored = values.get(self.scheme.monitor)
        if monitored is None:
            monitored = self.trainer.callback_metrics.get(self.scheme.monitor)
        if monitored is not None:
            self.best.update(monitored)
            self.log(self.scheme.best_metric, self.best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self._log_metrics("test")

    def configure_optimizers(self) -> Any:  # noqa: D102
        params = [p for p in self.parameters() if p.requires_grad]
        if self.param_groups is not None:
            params = self.param_groups(self.net)
        optimizer = self.optimizer_factory(params=params)
        for group in optimizer.param_groups:  # discriminative learning rates (emoexp.tasks.transfer)
            group["lr"] = group["lr"] * group.get("lr_mult", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.scheme.monitor, "interval": "epoch"},
        }
