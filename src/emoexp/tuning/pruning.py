"""Pruning from inside Lightning: report once per validation epoch, stop unpromising trials.

The tuner adds ``callbacks.optuna_pruning: {_target_: emoexp.tuning.pruning.trial_pruning_callback}``
to each trial's config; ``runner.fit_fold`` instantiates it like any callback, once per fold, and it
binds to the trial that the tuner made active with :func:`active_trial`.

It is optuna-integration's ``PyTorchLightningPruningCallback`` (built on ``lightning.pytorch``, as
emoexp is): on the first (or only) fold it reports the optimised metric at step = epoch, exactly
as that callback does. A cross-validated trial continues on later folds at step
``fold * max_epochs + epoch`` with the running mean over folds (finished folds' best values and
the current fold's best so far), so trials are compared at the same point of their folds.

With ``tuner.cv_pruning=fold`` a cross-validated trial reports only at fold boundaries: after
k finished folds it reports their mean at step k (1, 2, ...), and the pruner decides before the
next fold starts (never after the last fold, whose trial is complete). On small validation parts the
first epochs hardly rank trials (docs/benchmarks.md#tuning); whole folds do. Optuna's pruners
take any step sequence, so this needs no pruner of its own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import optuna
from lightning.pytorch import LightningModule, Trainer
from optuna_integration import PyTorchLightningPruningCallback


@dataclass
class TrialProgress:
    """What one trial has reported so far, shared by the callbacks of its folds.

    Attributes:
        trial: The running Optuna trial.
        max_epochs: ``trainer.max_epochs`` (spaces the steps of successive folds).
        prune: Report to the pruner (False for multi-objective studies, which Optuna cannot prune).
        fold: Index of the fold being trained (-1 before the first).
        fold_values: Final value of the monitored metric of each finished fold.
        current: Latest value of the monitored metric in the current fold.
        epochs: Validation epochs run over all folds.
        by_fold: Report once per finished fold (``tuner.cv_pruning=fold``), not once per epoch.
    """

    trial: optuna.trial.Trial
    max_epochs: int
    prune: bool = True
    fold: int = -1
    fold_values: list[float] = field(default_factory=list)
    current: float | None = None
    epochs: int = 0
    by_fold: bool = False


_ACTIVE: contextvars.ContextVar[TrialProgress | None] = contextvars.ContextVar(
    "emoexp_active_trial", default=None
)


@contextmanager
def active_trial(
    trial: optuna.trial.Trial, max_epochs: int, prune: bool = True, by_fold: bool = False
) -> Iterator[TrialProgress]:
    """Make ``trial`` the one that pruning callbacks created in this block report to."""
    progress = TrialProgress(trial, max(1, int(max_epochs)), prune, by_fold=by_fold)
    token = _ACTIVE.set(progress)
    try:
        yield progress
    finally:
        _ACTIVE.reset(token)


class TrialPruningCallback(PyTorchLightningPruningCallback):
    """optuna-integration's pruning callback, aware of the fold it runs in.

    Args:
        progress: The trial's shared progress (one callback per fold, one progress per trial).
        monitor: The metric to report (the study's optimised metric, e.g. ``val/uar_best``).
    """

    def __init__(self, progress: TrialProgress, monitor: str) -> None:
        super().__init__(progress.trial, monitor)
        progress.fold += 1
        progress.current = None
        self.progress = progress
        self.fold = progress.fold

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        super().on_fit_start(trainer, pl_module)
        if self.is_ddp_backend and self.fold > 0 and self.progress.prune:
            raise ValueError(
                "Pruning a cross-validated trial under DDP is not supported: use pruner=none, "
                "or one device per trial (several tuner workers, one GPU each)."
            )
        # By fold: the mean over the finished folds was reported at the last fold's end; decide
        # now that another fold is about to cost its epochs.
        if self.progress.by_fold and self.progress.prune and self.fold > 0 and self._trial.should_prune():
            raise optuna.TrialPruned(f"Trial was pruned after {self.fold} fold(s).")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        self.progress.epochs += 1
        if score is not None:
            self.progress.current = float(score)
        if not self.progress.prune or self.progress.by_fold:
            return
        if self.fold == 0:
            super().on_validation_end(trainer, pl_module)
            return
        if score is None:
            return
        step = self.fold * self.progress.max_epochs + pl_module.current_epoch
        values = [*self.progress.fold_values, float(score)]
        self._trial.report(sum(values) / len(values), step=step)
        if self._trial.should_prune():
            raise optuna.TrialPruned(
                f"Trial was pruned at fold {self.fold}, epoch {pl_module.current_epoch}."
            )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        if self.progress.current is not None:
            self.progress.fold_values.append(self.progress.current)
            if self.progress.by_fold and self.progress.prune:
                values = self.progress.fold_values
                self._trial.report(sum(values) / len(values), step=len(values))


def trial_pruning_callback(monitor: str) -> TrialPruningCallback:
    """The pruning callback for the active trial (the ``_target_`` the tuner puts in trial configs).

    Raises:
        RuntimeError: Outside a tuner trial (a config that names this callback was run by hand).
    """
    progress = _ACTIVE.get()
    if progress is None:
        raise RuntimeError(
            "callbacks.optuna_pruning only works inside a trial of `python -m emoexp.tune`; "
            "remove it from the config to train by hand."
        )
    return TrialPruningCallback(progress, monitor)
