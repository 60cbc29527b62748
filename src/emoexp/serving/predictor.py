"""Predicting emotions of new inputs with a logged model (its own featurizer, network, scheme)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emoexp.data import schema


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, and why."""

    id: str
    source: str
    reason: str


class Predictor:
    """A logged model ready to predict: featurizer state + network + label scheme.

    Args:
        meta: ``meta.json`` of the model folder.
        scheme: The run's label scheme (with any validation-tuned thresholds).
        featurizer: The featurizer with its training-split state restored.
        net: The network in eval mode.
        batch_size: Inputs per forward pass.
    """

    def __init__(
        self, meta: dict[str, Any], scheme: Any, featurizer: Any, net: torch.nn.Module, batch_size: int = 64
    ):
        self.meta = meta
        self.scheme = scheme
        self.featurizer = featurizer
        self.net = net.eval()
        self.batch_size = batch_size

    @classmethod
    def from_folder(cls, folder: str | Path, batch_size: int = 64) -> Predictor:
        """Load a model folder written by :func:`emoexp.serving.bundle.save_bundle`."""
        from emoexp.serving.bundle import load_bundle

        meta, _, scheme, featurizer, net = load_bundle(folder)
        return cls(meta, scheme, featurizer, net, batch_size)

    @property
    def modality(self) -> str:
        """The modality the model was trained on (``audio``, ``text``, ``visual``, ``multimodal``)."""
        return self.meta["modality"]

    @property
    def input_columns(self) -> list[str]:
        """Manifest columns the model reads."""
        return list(self.meta["input_columns"])

    def _featurize_one(self, row: pd.DataFrame) -> dict[str, torch.Tensor]:
        return self.featurizer.finalize(self.featurizer.extract(row))

    def featurize(self, manifest: pd.DataFrame) -> tuple[dict[str, torch.Tensor], np.ndarray, list[Failure]]:
        """Model inputs of every readable row; unreadable rows become :class:`Failure` s.

        Returns:
            The inputs (first dimension: the readable rows), the readable rows' positions,
            and the failures.
        """
        features: list[dict[str, torch.Tensor]] = []
        ok, failures = [], []
        for position in range(len(manifest)):
            row = manifest.iloc[[position]].reset_index(drop=True)
            try:
                features.append(self._featurize_one(row))
                ok.append(position)
            except (ValueError, OSError, RuntimeError) as error:
                source = next(
                    (str(row[c].iloc[0]) for c in self.input_columns if c in row and c != schema.TEXT), ""
                )
                failures.append(
                    Failure(str(row[schema.ID].iloc[0]), source, f"{type(error).__name__}: {error}")
                )
        if not features:
            return {}, np.array([], dtype=int), failures
        batch = self.featurizer.join(features)
        return batch, np.asarray(ok), failures

    @torch.no_grad()
    def outputs(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Head outputs for model inputs, in batches."""
        n = len(next(iter(features.values())))
        chunks = []
        for start in range(0, n, self.batch_size):
            chunks.append(self.net(**{k: v[start : start + self.batch_size] for k, v in features.items()}))
        return torch.cat(chunks)

    def decode(self, outputs: torch.Tensor) -> pd.DataFrame:
        """Predicted emotion and class probabilities, and/or valence/arousal, one row per output."""
        # The scheme carries the run's learnt decoding state (restored by load_bundle).
        return self.scheme.served_predictions(self.scheme.decode(outputs))

    def predict(self, manifest: pd.DataFrame) -> tuple[pd.DataFrame, list[Failure]]:
        """Predict every readable row of a manifest (``id`` + the model's input columns).

        Returns:
            One row per readable input (``id``, the input, then the decoded outputs) and the
            unreadable inputs.
        """
        features, ok, failures = self.featurize(manifest)
        if not len(ok):
            return pd.DataFrame(columns=[schema.ID]), failures
        decoded = self.decode(self.outputs(features))
        inputs = manifest.iloc[ok][
            [schema.ID, *[c for c in self.input_columns if c in manifest]]
        ].reset_index(drop=True)
        return pd.concat([inputs, decoded], axis=1), failures


def manifest_from_frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A prediction manifest from a DataFrame with the input ``columns`` (and optionally ``id``)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(
            f"input has columns {list(frame.columns)} but the model needs {list(columns)} "
            f"(missing {missing})."
        )
    out = pd.DataFrame({c: frame[c].to_numpy(dtype=object) for c in columns})
    ids = (
        frame["id"].astype(str).to_numpy()
        if "id" in frame.columns
        else [f"row-{i}" for i in range(len(frame))]
    )
    out.insert(0, schema.ID, ids)
    out[schema.CORPUS] = "predict"
    out[schema.SPEAKER] = "unknown"
    return out
