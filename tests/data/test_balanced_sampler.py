"""datamodule.sampler=balanced: training batches are class-balanced, evaluation is untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from emoexp.data.datamodule import EmotionDataModule
from emoexp.data.splits import Fold
from emoexp.features.base import Features, Featurizer


class RowIndexFeatures(Featurizer):
    """The row number as the only feature: enough to serve batches."""

    cacheable = False

    def extract(self, manifest: pd.DataFrame) -> Features:
        return {"x": torch.arange(len(manifest), dtype=torch.float32)[:, None]}


def _datamodule(sampler: str | None) -> tuple[EmotionDataModule, np.ndarray]:
    # 90% class 0, 8% class 1, 2% class 2 in training; a small val/test part.
    labels = np.array([0] * 900 + [1] * 80 + [2] * 20 + [0, 1, 2] * 10)
    assignment = np.array(["train"] * 1000 + ["val", "test"] * 15)
    manifest = pd.DataFrame({"id": [f"s{i}" for i in range(len(labels))]})
    module = EmotionDataModule(
        manifest,
        Fold("holdout", assignment),
        RowIndexFeatures(),
        {"label": labels},
        batch_size=64,
        sampler=sampler,
    )
    return module, labels


def _class_shares(loader) -> np.ndarray:
    drawn = torch.cat([batch["targets"]["label"] for batch in loader])
    return np.bincount(drawn.numpy(), minlength=3) / len(drawn)


def test_balanced_sampler_balances_training_batches():
    torch.manual_seed(0)
    module, _ = _datamodule("balanced")
    loader = module.train_dataloader()
    assert isinstance(loader.sampler, torch.utils.data.WeightedRandomSampler)
    shares = np.mean([_class_shares(loader) for _ in range(5)], axis=0)
    np.testing.assert_allclose(shares, 1 / 3, atol=0.03)
    # Only training rows are drawn, and an epoch keeps its length.
    rows = torch.cat([batch["row"] for batch in loader])
    assert len(rows) == 1000 and rows.max() < 1000
    # Evaluation loaders keep every row exactly once.
    val_rows = torch.cat([batch["row"] for batch in module.val_dataloader()])
    assert sorted(val_rows.tolist()) == list(range(1000, 1030, 2))


def test_without_the_sampler_batches_follow_the_data():
    torch.manual_seed(0)
    module, _ = _datamodule(None)
    np.testing.assert_allclose(_class_shares(module.train_dataloader()), [0.9, 0.08, 0.02], atol=1e-9)
