"""Raw waveforms for self-supervised speech encoders (wav2vec2, HuBERT, WavLM)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch

from emoexp.data import schema
from emoexp.features.audio import load_waveform
from emoexp.features.base import Features, Featurizer


class WaveformFeatures(Featurizer):
    """Mono waveforms at one rate, cropped/zero-padded to ``max_seconds``, with their lengths.

    Each utterance is normalised to zero mean and unit variance over its own samples, as
    wav2vec2's feature extractor does (``do_normalize``): per sample, so nothing is learnt from
    the data and the extraction is cacheable.

    Args:
        sample_rate: Rate every file is resampled to (16 kHz for wav2vec2/HuBERT checkpoints).
        max_seconds: Longer clips are cropped.
        normalize: Per-utterance zero-mean unit-variance normalisation.
    """

    modality = "audio"
    augment_stages = ("waveform",)

    def __init__(self, sample_rate: int = 16000, max_seconds: float = 3.0, normalize: bool = True):
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.normalize = normalize

    def extract(self, manifest: pd.DataFrame) -> Features:
        """Decode every file: ``{"waveform": [N, samples], "lengths": [N]}``."""
        return self.from_waveforms(load_waveform(path, self.sample_rate) for path in manifest[schema.AUDIO])

    def from_waveforms(self, waveforms: Iterable[torch.Tensor]) -> Features:
        """Crop, normalise and pad decoded waveforms at ``sample_rate`` (what :meth:`extract` returns)."""
        limit = int(self.max_seconds * self.sample_rate)
        signals = []
        for signal in waveforms:
            signal = signal[:limit]
            if self.normalize:
                signal = (signal - signal.mean()) / (signal.std(unbiased=False) + 1e-7)
            signals.append(signal)
        waveform = torch.zeros((len(signals), limit))
        lengths = torch.zeros(len(signals), dtype=torch.long)
        for row, signal in enumerate(signals):
            waveform[row, : len(signal)] = signal
            lengths[row] = len(signal)
        return {"waveform": waveform, "lengths": lengths}
