"""Frame-level audio features (MFCC sequences, log-mel spectrograms) via torchaudio."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emoexp.data import schema
from emoexp.features.base import Features, Featurizer


class AudioReadError(ValueError):
    """An audio file is missing, empty or cannot be decoded."""


def load_waveform(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read an audio file as a mono float waveform at ``sample_rate``.

    Multi-channel audio is down-mixed and other sample rates are resampled, so corpora
    recorded at 44.1/48 kHz mix freely with 16 kHz ones.

    Raises:
        AudioReadError: Naming the file, if it is missing, empty or undecodable.
    """
    import soundfile as sf
    import torchaudio.functional as AF  # noqa: N812

    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"audio file not found: {path}. Check data.root and the manifest.")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several error types for bad files
        raise AudioReadError(f"cannot decode audio file {path}: {error}") from error
    if data.shape[0] == 0:
        raise AudioReadError(f"audio file {path} has no samples (empty or truncated).")
    waveform = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != sample_rate:
        waveform = AF.resample(waveform, rate, sample_rate)
    return waveform


class _SpectralFeaturizer(Featurizer):
    """Shared loading, padding and train-split standardisation of frame features."""

    modality = "audio"
    augment_stages = ("waveform", "spectrogram")
    rowwise = True  # every clip padded to max_frames, standardised on its own
    # Axes of one sample's model input ``x`` (after :meth:`finalize`) that SpecAugment masks.
    time_axis: int = 0
    frequency_axis: int = 1

    def __init__(self, sample_rate: int = 16000, max_seconds: float = 3.0, standardize: bool = True):
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.standardize = standardize
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None

    @property
    def max_frames(self) -> int:
        return int(self.max_seconds * self.sample_rate / self.hop_length) + 1

    hop_length: int = 160

    def frames(self, waveform: torch.Tensor) -> torch.Tensor:
        """Return ``[frames, features]`` for one waveform."""
        raise NotImplementedError

    def extract(self, manifest: pd.DataFrame) -> Features:
        """Decode every file and compute padded frame features (no standardisation)."""
        from tqdm.auto import tqdm

        paths = manifest[schema.AUDIO].tolist()
        progress = tqdm(paths, desc=f"{type(self).__name__}", leave=False, disable=len(paths) < 200)
        return self.from_waveforms(load_waveform(path, self.sample_rate) for path in progress)

    def from_waveforms(self, waveforms: Iterable[torch.Tensor]) -> Features:
        """Padded frame features of decoded waveforms at ``sample_rate`` (what :meth:`extract` returns)."""
        seqs, lengths = [], []
        for waveform in waveforms:
            feats = self.frames(waveform)[: self.max_frames]
            seqs.append(feats)
            lengths.append(feats.shape[0])
        out = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        if out.shape[1] < self.max_frames:
            out = torch.nn.functional.pad(out, (0, 0, 0, self.max_frames - out.shape[1]))
        return {"x": out.float(), "lengths": torch.tensor(lengths, dtype=torch.long)}

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:
        """Compute per-feature mean/std over the valid frames of training samples."""
        if not self.standardize or features is None:
            return
        x, lengths = features["x"], features["lengths"]
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        valid = x[mask]
        self._mean = valid.mean(dim=0)
        self._std = valid.std(dim=0).clamp_min(1e-5)

    def fit_chunks(self, manifest: pd.DataFrame, chunks: Iterable[Features]) -> None:
        """:meth:`fit` over training features read chunk by chunk (bounded memory, same statistics)."""
        from sklearn.preprocessing import StandardScaler  # deferred like torchaudio; streaming moments

        if not self.standardize:
            return
        scaler = StandardScaler()  # Chan et al.'s merge of chunk means and variances, in float64
        for chunk in chunks:
            x, lengths = chunk["x"], chunk["lengths"]
            valid = x[torch.arange(x.shape[1])[None, :] < lengths[:, None]]
            if len(valid):
                scaler.partial_fit(valid.double().numpy())
        count = scaler.n_samples_seen_
        self._mean = torch.from_numpy(scaler.mean_).float()
        self._std = torch.from_numpy(np.sqrt(scaler.var_ * count / (count - 1))).float().clamp_min(1e-5)

    def finalize(self, features: Features) -> Features:
        """Apply the training-split standardisation (padding stays zero)."""
        if not self.standardize or self._mean is None:
            return features
        x, lengths = features["x"], features["lengths"]
        mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
        x = torch.where(mask, (x - self._mean) / self._std, torch.zeros(()))
        return {**features, "x": x}

    def state_dict(self) -> dict:
        return {"mean": self._mean, "std": self._std}

    def load_state_dict(self, state: dict) -> None:
        self._mean, self._std = state.get("mean"), state.get("std")


class MFCCFeatures(_SpectralFeaturizer):
    """MFCC (optionally with deltas) frame sequences for recurrent models.

    Args:
        n_mfcc: Number of cepstral coefficients.
        n_mels: Mel bands before the DCT.
        deltas: Append first and second derivatives.
        sample_rate: Rate every file is resampled to.
        max_seconds: Longer clips are cropped.
        standardize: Standardise each coefficient with training-split statistics.
    """

    def __init__(
        self,
        n_mfcc: int = 40,
        n_mels: int = 64,
        deltas: bool = False,
        sample_rate: int = 16000,
        max_seconds: float = 3.0,
        standardize: bool = True,
    ):
        super().__init__(sample_rate, max_seconds, standardize)
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.deltas = deltas
        self._transform = None

    def frames(self, waveform: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torchaudio

        if self._transform is None:
            self._transform = torchaudio.transforms.MFCC(
                sample_rate=self.sample_rate,
                n_mfcc=self.n_mfcc,
                melkwargs={"n_fft": 400, "hop_length": self.hop_length, "n_mels": self.n_mels},
            )
        mfcc = self._transform(waveform)  # [n_mfcc, frames]
        if self.deltas:
            d1 = torchaudio.functional.compute_deltas(mfcc)
            mfcc = torch.cat([mfcc, d1, torchaudio.functional.compute_deltas(d1)], dim=0)
        return mfcc.T

    def net_kwargs(self) -> dict:  # noqa: D102
        return {"input_size": self.n_mfcc * (3 if self.deltas else 1)}


class LogMelFeatures(_SpectralFeaturizer):
    """Log-mel spectrograms as single-channel images ``[1, n_mels, frames]`` for CNNs.

    Args:
        n_mels: Mel bands.
        sample_rate: Rate every file is resampled to.
        max_seconds: Clips are cropped/zero-padded to this length.
        standardize: Standardise each mel band with training-split statistics.
    """

    time_axis = 2
    frequency_axis = 1

    def __init__(
        self, n_mels: int = 64, sample_rate: int = 16000, max_seconds: float = 3.0, standardize: bool = True
    ):
        super().__init__(sample_rate, max_seconds, standardize)
        self.n_mels = n_mels
        self._transform = None

    def frames(self, waveform: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torchaudio

        if self._transform is None:
            self._transform = torch.nn.Sequential(
                torchaudio.transforms.MelSpectrogram(
                    sample_rate=self.sample_rate, n_fft=400, hop_length=self.hop_length, n_mels=self.n_mels
                ),
                torchaudio.transforms.AmplitudeToDB(top_db=80.0),
            )
        return self._transform(waveform).T

    def finalize(self, features: Features) -> Features:
        """Standardise, then reshape to channel-first images ``[N, 1, mels, frames]``."""
        x = super().finalize(features)["x"]
        return {"x": x.transpose(1, 2).unsqueeze(1).contiguous()}

    def net_kwargs(self) -> dict:  # noqa: D102
        return {"in_chans": 1}
