"""Lightning data module: prepared manifest + fold + featurizer -> dataloaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from emoexp.data.splits import TEST, TRAIN, VAL, Fold
from emoexp.features.base import Features, Featurizer, take
from emoexp.features.cache import cached_feature_file, cached_features, content_key
from emoexp.features.store import IN_MEMORY, FeatureStorage, MappedFeatures, write_feature_file

if TYPE_CHECKING:
    from emoexp.features.augment import Augmentation

log = logging.getLogger(__name__)


class TensorDictDataset(Dataset):
    """Rows of precomputed input and target tensors, with their manifest row index.

    The inputs are tensors in memory, or :class:`~emoexp.features.store.MappedFeatures` whose rows
    are read from disk and standardised when a batch asks for them.
    """

    def __init__(self, inputs: Features | MappedFeatures, targets: dict[str, torch.Tensor], rows: np.ndarray):
        self.inputs = inputs
        self.targets = targets
        self.rows = torch.as_tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        return {
            "inputs": take(self.inputs, row),
            "targets": {k: v[row] for k, v in self.targets.items()},
            "row": row,
        }


def build_features(
    featurizer: Featurizer,
    manifest: pd.DataFrame,
    train_mask: np.ndarray,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    storage: FeatureStorage = IN_MEMORY,
) -> tuple[Features | MappedFeatures, bool]:
    """Extract (cached), fit on the training rows only, and finalize features for all rows.

    With the default ``storage`` the features are extracted in this process and held in memory.
    Otherwise, for a :attr:`~emoexp.features.base.Featurizer.rowwise` featurizer, they are extracted
    in chunks by ``storage.extract_workers`` processes into the feature file, then either loaded or,
    when ``storage`` says so, left on disk: the featurizer is fitted in a streaming pass over the
    training rows and the result reads and standardises rows as batches need them.

    Returns:
        The model inputs for every manifest row and whether extraction hit the cache.
    """
    if hasattr(featurizer, "build"):
        # Composite featurizers (multimodal) build each modality's part like this, each with its cache.
        return featurizer.build(manifest, train_mask, cache_dir, use_cache)
    train_rows = np.flatnonzero(train_mask)
    if featurizer.fit_before_extract:
        featurizer.fit(manifest.iloc[train_rows], None)
        return featurizer.finalize(featurizer.extract(manifest)), False
    key = content_key(manifest, featurizer.params(), type(featurizer).__qualname__)
    enabled = use_cache and featurizer.cacheable
    if storage.uses_file(featurizer, len(manifest)):
        return _build_from_file(featurizer, manifest, train_rows, key, (cache_dir, enabled), storage)
    raw, hit = cached_features(key, lambda: featurizer.extract(manifest), cache_dir, enabled)
    featurizer.fit(manifest.iloc[train_rows], take(raw, torch.as_tensor(train_rows)))
    return featurizer.finalize(raw), hit


def _build_from_file(
    featurizer: Featurizer,
    manifest: pd.DataFrame,
    train_rows: np.ndarray,
    key: str,
    cache: tuple[str | Path | None, bool],
    storage: FeatureStorage,
) -> tuple[Features | MappedFeatures, bool]:
    workers = storage.workers(len(manifest))

    def write(path: Path) -> None:
        write_feature_file(featurizer, manifest, path, workers)

    file, hit = cached_feature_file(key, write, *cache)
    train = manifest.iloc[train_rows]
    if storage.maps(file.nbytes):
        log.info("Features (%.0f MiB) are read from %s as batches need them", file.nbytes / 2**20, file.path)
        featurizer.fit_chunks(train, file.chunks(train_rows))
        return MappedFeatures(file, featurizer.finalize), hit
    raw = file.load()
    featurizer.fit(train, take(raw, torch.as_tensor(train_rows)))
    return featurizer.finalize(raw), hit


class EmotionDataModule(pl.LightningDataModule):
    """Serves the train/val/test parts of one fold as batches of precomputed tensors.

    Args:
        manifest: Samples prepared by the label scheme.
        fold: Train/val/test assignment.
        featurizer: Turns samples into model inputs.
        targets: Target arrays from the label scheme, one row per sample.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (with features in memory 0 is usually fastest).
        pin_memory: Pin host memory for faster GPU transfer; ``None``: when the trainer runs on a GPU.
        persistent_workers: Keep worker processes between epochs (with ``num_workers > 0``).
        sampler: ``None`` or ``"balanced"`` (class-balanced sampling of training batches).
        cache_dir: Feature cache root.
        use_cache: Read/write the feature cache.
        augmentation: Training-time augmentation (``conf/augment``): applied to training batches
            only, after the feature cache (emoexp.features.augment, docs/augmentation.md).
        storage: Where the features live (memory, or read from disk per batch) and how many
            processes extract them (``datamodule.storage``, ``extract_workers``,
            ``max_in_memory_mb``; docs/scaling.md).
    """

    def __init__(  # noqa: PLR0913 (the fold's data plus the config's loader options, by keyword)
        self,
        manifest: pd.DataFrame,
        fold: Fold,
        featurizer: Featurizer,
        targets: dict[str, np.ndarray],
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        sampler: str | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        persistent_workers: bool = True,
        augmentation: Augmentation | None = None,
        storage: FeatureStorage | None = None,
    ):
        super().__init__()
        self.manifest = manifest
        self.fold = fold
        self.featurizer = featurizer
        self.targets = {k: torch.as_tensor(np.array(v)) for k, v in targets.items()}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.sampler = sampler
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.augmentation = augmentation
        self.storage = storage or FeatureStorage()
        self.inputs: Features | MappedFeatures | None = None
        self.cache_hit = False

    def setup(self, stage: str | None = None) -> None:  # noqa: D102
        if self.inputs is None:
            self.inputs, self.cache_hit = build_features(
                self.featurizer,
                self.manifest,
                self.fold.mask(TRAIN),
                self.cache_dir,
                self.use_cache,
                self.storage,
            )
            if self.augmentation is not None:
                train_rows = self.rows(TRAIN)
                self.augmentation.prepare(
                    self.featurizer, self.manifest, train_rows, self.inputs, self.cache_dir, self.use_cache
                )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches (never validation, test or prediction ones) before the device.

        Here rather than in the dataset: the main process knows the epoch, so every draw is a
        function of the seed, the epoch and the sample whatever the number of loader workers.
        """
        trainer = self.trainer
        if self.augmentation is None or trainer is None or not trainer.training:
            return batch
        return self.augmentation.augment_batch(batch, trainer.current_epoch)

    def rows(self, part: str) -> np.ndarray:
        """Manifest row indices of one part."""
        return np.flatnonzero(self.fold.mask(part))

    def dataset(self, part: str) -> TensorDictDataset:
        """The dataset of one part (``train``, ``val`` or ``test``)."""
        self.setup()
        return TensorDictDataset(self.inputs, self.targets, self.rows(part))

    def _loader(self, part: str, shuffle: bool = False) -> DataLoader:
        sampler = None
        if part == TRAIN and self.sampler == "balanced" and "label" in self.targets:
            labels = self.targets["label"][self.rows(TRAIN)]
            weights = 1.0 / torch.bincount(labels).clamp_min(1)[labels].double()
            sampler = torch.utils.data.WeightedRandomSampler(
                weights, num_samples=len(labels), replacement=True
            )
            shuffle = False
        dataset = self.dataset(part)
        if part != TRAIN and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under DDP each rank evaluates a disjoint share, every sample exactly once (Lightning's
            # default DistributedSampler pads with repeats, which would count them twice in the metrics).
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        pin_memory = self.pin_memory
        if pin_memory is None:
            pin_memory = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader(TRAIN, shuffle=True)

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader(VAL)

    def test_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader(TEST)

    def predict_dataloader(self) -> list[DataLoader]:  # noqa: D102
        return [self._loader(VAL), self._loader(TEST)]
