"""The contract shared by all neural-input featurizers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch

Features = dict[str, torch.Tensor]


class Featurizer:
    """Turns a manifest into model-input tensors, one row per sample, in three steps.

    1. :meth:`extract`: data-independent work (decoding, spectrograms, resizing). For
       ``cacheable`` featurizers its output is cached on disk by content hash.
    2. :meth:`fit`: learn data-dependent state (vocabulary, normalisation statistics)
       from the *training split only* (the test split is locked, docs/design.md#3-the-test-split-is-locked).
       Featurizers with ``fit_before_extract`` (tokenisers) are fitted before extraction.
    3. :meth:`finalize`: apply that state (standardise, reshape).

    The learnt state travels with the model (:meth:`state_dict`) so that prediction on
    new inputs uses the run's own preprocessing.
    """

    modality: str = ""
    cacheable: bool = True
    fit_before_extract: bool = False
    # The training-time augmentation stages whose inputs this featurizer produces or consumes
    # (``waveform``, ``spectrogram``, ``image``; emoexp.features.augment, docs/augmentation.md).
    augment_stages: tuple[str, ...] = ()
    # True when extract and finalize treat every row on its own and give every row the same shape:
    # extraction can then be split in chunks over processes and the features read from disk row by
    # row (emoexp.features.store, for corpora whose features do not fit in memory).
    rowwise: bool = False

    def extract(self, manifest: pd.DataFrame) -> Features:
        """Return tensors whose first dimension indexes the manifest's rows."""
        raise NotImplementedError

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:
        """Learn state from the training samples (and their extracted features)."""

    def fit_chunks(self, manifest: pd.DataFrame, chunks: Iterable[Features]) -> None:
        """:meth:`fit` on the training features given in chunks of rows, in manifest order.

        Used when the features are read from disk (emoexp.features.store). This default joins the
        chunks and calls :meth:`fit`; a featurizer whose state accumulates over rows overrides it
        to keep memory bounded, with the same result.
        """
        parts = list(chunks)
        self.fit(manifest, self.join(parts) if parts else None)

    def join(self, parts: list[Features]) -> Features:
        """Features of consecutive row groups as one (the rows of ``parts[0]`` first).

        This default concatenates along the rows; a featurizer whose rows differ in width
        (sparse n-gram rows) overrides it to pad them to a common one.
        """
        return {k: torch.cat([part[k] for part in parts]) for k in parts[0]}

    def finalize(self, features: Features) -> Features:
        """Apply the learnt state; returns the model inputs."""
        return features

    def net_kwargs(self) -> dict[str, Any]:
        """Keyword arguments the network needs from the features (input size, vocab size)."""
        return {}

    def params(self) -> dict[str, Any]:
        """Parameters that change the extracted values (part of the cache key)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def state_dict(self) -> dict[str, Any]:
        """Data-dependent state learnt in :meth:`fit`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore state saved by :meth:`state_dict`."""


def take(features: Features, index: Any) -> Features:
    """Select rows of every tensor in a features dict (or of features read on demand, which say how)."""
    rows_of = getattr(features, "take", None)  # emoexp.features.store.MappedFeatures: one read per row
    if rows_of is not None:
        return rows_of(index)
    return {k: v[index] for k, v in features.items()}
