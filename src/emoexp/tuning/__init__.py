"""Optuna studies over ``train(cfg)``: search spaces, pruning, storage, workers, MLflow (docs/tuning.md)."""

from emoexp.tuning.tuner import tune

__all__ = ["tune"]
