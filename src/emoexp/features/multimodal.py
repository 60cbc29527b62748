"""Several modalities' featurizers side by side, for joint (early / attention) fusion models.

Each child featurizer works exactly as it does for a unimodal model (its own disk cache, its
own state fitted on the training split); the outputs are prefixed with the modality, e.g.
``audio.x``, ``audio.lengths``, ``visual.x``, ``text.input_ids``, which the fusion network splits
back by prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emoexp.features.base import Features, Featurizer

SEPARATOR = "."


def prefixed(modality: str, features: Features) -> Features:
    """``{"x": t}`` -> ``{"audio.x": t}``."""
    return {f"{modality}{SEPARATOR}{k}": v for k, v in features.items()}


def unprefixed(modality: str, features: Features) -> Features:
    """The features of one modality with the prefix removed."""
    start = f"{modality}{SEPARATOR}"
    return {k[len(start) :]: v for k, v in features.items() if k.startswith(start)}


class MultimodalFeatures(Featurizer):
    """Audio, visual and text featurizers applied to the same samples.

    Args:
        audio: Featurizer of the ``audio`` column (e.g. :class:`~emoexp.features.audio.MFCCFeatures`).
        visual: Featurizer of the ``image`` column.
        text: Featurizer of the ``text`` column.
    """

    modality = "multimodal"
    cacheable = False  # each child caches its own extraction
    fit_before_extract = True  # :meth:`fit` copes with not having the features yet

    def __init__(
        self,
        audio: Featurizer | None = None,
        visual: Featurizer | None = None,
        text: Featurizer | None = None,
    ):
        self.children = {
            m: f for m, f in (("audio", audio), ("visual", visual), ("text", text)) if f is not None
        }
        if len(self.children) < 2:
            raise ValueError(
                "MultimodalFeatures needs featurizers for at least two modalities, "
                f"got {sorted(self.children)}."
            )

    @property
    def modalities(self) -> list[str]:
        """The modalities, in a fixed order (audio, visual, text)."""
        return list(self.children)

    def build(
        self,
        manifest: pd.DataFrame,
        train_mask: Any,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> tuple[Features, bool]:
        """Build each modality's features as the data module builds a unimodal model's (cached, train-fitted).

        Returns:
            The prefixed model inputs and whether every cacheable extraction hit the cache.
        """
        from emoexp.data.datamodule import build_features

        out: Features = {}
        hits = []
        for modality, featurizer in self.children.items():
            features, hit = build_features(featurizer, manifest, train_mask, cache_dir, use_cache)
            out.update(prefixed(modality, features))
            if featurizer.cacheable and not featurizer.fit_before_extract:
                hits.append(hit)
        return out, bool(hits) and all(hits)

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:
        """Fit every child on the training samples (extracting their features if not given)."""
        for modality, featurizer in self.children.items():
            if featurizer.fit_before_extract:
                featurizer.fit(manifest, None)
            else:
                own = unprefixed(modality, features) if features else featurizer.extract(manifest)
                featurizer.fit(manifest, own)

    def extract(self, manifest: pd.DataFrame) -> Features:  # noqa: D102
        out: Features = {}
        for modality, featurizer in self.children.items():
            out.update(prefixed(modality, featurizer.extract(manifest)))
        return out

    def finalize(self, features: Features) -> Features:  # noqa: D102
        out: Features = {}
        for modality, featurizer in self.children.items():
            out.update(prefixed(modality, featurizer.finalize(unprefixed(modality, features))))
        return out

    def join(self, parts: list[Features]) -> Features:
        """Row groups as one, each modality's by its own featurizer (which may pad ragged rows)."""
        out: Features = {}
        for modality, featurizer in self.children.items():
            out.update(prefixed(modality, featurizer.join([unprefixed(modality, part) for part in parts])))
        return out

    def net_kwargs(self) -> dict[str, Any]:
        """``{"modality_kwargs": {modality: child.net_kwargs()}}`` for the fusion network's encoders."""
        return {"modality_kwargs": {m: f.net_kwargs() for m, f in self.children.items()}}

    def params(self) -> dict[str, Any]:  # noqa: D102
        return {m: f.params() for m, f in self.children.items()}

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {m: f.state_dict() for m, f in self.children.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        for modality, featurizer in self.children.items():
            featurizer.load_state_dict(state.get(modality, {}))
