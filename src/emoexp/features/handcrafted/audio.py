"""Utterance-level acoustic functionals (eGeMAPS-like in spirit) for classical models.

Frame features every ``hop_length`` samples (10 ms at 16 kHz), all frames centred on the same
instants:

- MFCCs and their deltas (torchaudio), the spectral envelope;
- F0 in Hz from the normalised cross-correlation (NCCF) of each 2 x (longest period) window:
  the first NCCF peak in ``[f0_min, f0_max]`` that reaches 90 % of the highest one (which
  avoids sub-octave errors), refined by parabolic interpolation; a frame is *voiced* when that
  peak reaches ``voicing_threshold`` and the frame is at most ``silence_db`` below the loudest
  one. Unvoiced frames have no F0 (their F0 is left out of the F0 statistics);
- intensity as RMS level in dB (re full scale), zero-crossing rate (share of sign changes
  between consecutive samples), spectral centroid, roll-off (frequency below which
  ``rolloff`` of the energy lies) and flux (L2 distance of successive sum-normalised spectra).

Each frame feature is summarised by mean, std, percentiles (10/50/90) and linear slope per
second (:func:`emoexp.features.handcrafted.functionals`), plus the voiced ratio, voiced onsets
per second (a tempo cue) and the duration. The matrix is cached by content key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.features.audio import load_waveform
from emoexp.features.handcrafted import VectorFeatures, functional_names, functionals

_EPS = 1e-10


def frame_signal(x: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Cut ``x`` into ``[1 + len(x) // hop_length, frame_length]`` frames centred every hop.

    The signal is zero-padded by half a frame on both sides (as ``torch.stft(center=True)``),
    so frame ``t`` is centred on sample ``t * hop_length`` whatever the frame length.
    """
    x = np.asarray(x, dtype=np.float64)
    half = frame_length // 2
    padded = np.pad(x, (half, frame_length - half))
    n_frames = 1 + len(x) // hop_length
    starts = np.arange(n_frames) * hop_length
    return padded[starts[:, None] + np.arange(frame_length)[None, :]]


def rms_db(frames: np.ndarray) -> np.ndarray:
    """RMS level of each frame in dB re full scale (a full-scale sine is -3.01 dB); floor -200 dB."""
    return 20.0 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + _EPS)


def zero_crossing_rate(frames: np.ndarray) -> np.ndarray:
    """Share of consecutive sample pairs with a sign change, per frame (a sine of f Hz gives ~2f/sr)."""
    return np.mean(np.diff(np.signbit(frames), axis=1), axis=1)


def spectral_features(frames: np.ndarray, sample_rate: int, rolloff: float = 0.85) -> np.ndarray:
    """Spectral centroid (Hz), roll-off (Hz) and flux of Hann-windowed frames, ``[T, 3]``.

    The flux of the first frame is NaN (no previous frame).
    """
    window = np.hanning(frames.shape[1] + 1)[:-1]  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))
    freqs = np.fft.rfftfreq(frames.shape[1], 1.0 / sample_rate)
    total = magnitude.sum(axis=1) + _EPS
    centroid = magnitude @ freqs / total
    energy = np.cumsum(magnitude**2, axis=1)
    below = energy < rolloff * energy[:, -1:]
    roll = freqs[np.minimum(below.sum(axis=1), len(freqs) - 1)]
    normalised = magnitude / total[:, None]
    flux = np.full(len(frames), np.nan)
    flux[1:] = np.sqrt(np.sum(np.diff(normalised, axis=0) ** 2, axis=1))
    return np.stack([centroid, roll, flux], axis=1)


def pitch_track(
    x: np.ndarray,
    sample_rate: int,
    hop_length: int = 160,
    f0_min: float = 60.0,
    f0_max: float = 600.0,
    voicing_threshold: float = 0.5,
    silence_db: float = 40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame by normalised cross-correlation, frames centred every ``hop_length`` samples.

    Args:
        x: Mono waveform.
        sample_rate: Its sample rate in Hz.
        hop_length: Frame step in samples.
        f0_min: Lowest F0 searched, Hz.
        f0_max: Highest F0 searched, Hz.
        voicing_threshold: NCCF peak a voiced frame must reach (1 = perfectly periodic).
        silence_db: Frames this many dB below the loudest frame are unvoiced.

    Returns:
        F0 in Hz (NaN where unvoiced) and the voiced mask, both ``[1 + len(x) // hop_length]``.
    """
    lag_min = max(2, int(np.floor(sample_rate / f0_max)))
    lag_max = int(np.ceil(sample_rate / f0_min))
    window = 2 * (lag_max + 1)
    frames = frame_signal(x, window, hop_length)
    # r[k] = sum_n x[n] x[n+k] for all lags at once, via the power spectrum.
    spectrum = np.fft.rfft(frames, n=2 * window, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * window, axis=1)[:, : lag_max + 2]
    cumulative = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(lag_max + 2)
    head = cumulative[:, window - lags]  # energy of x[0 : W-k]
    tail = cumulative[:, -1:] - cumulative[:, lags]  # energy of x[k : W]
    nccf = corr / np.sqrt(head * tail + _EPS)

    segment = nccf[:, lag_min - 1 : lag_max + 2]
    inner = segment[:, 1:-1]
    peaks = (inner > segment[:, :-2]) & (inner >= segment[:, 2:])
    values = np.where(peaks, inner, -np.inf)
    best = values.max(axis=1)
    good = peaks & (inner >= 0.9 * best[:, None])
    first = np.argmax(good, axis=1)
    rows = np.arange(len(frames))
    y0, y1, y2 = segment[rows, first], segment[rows, first + 1], segment[rows, first + 2]
    denominator = y0 - 2 * y1 + y2
    offset = np.where(
        np.abs(denominator) > _EPS, 0.5 * (y0 - y2) / np.where(denominator == 0, 1, denominator), 0.0
    )
    lag = lag_min + first + np.clip(offset, -0.5, 0.5)

    level = rms_db(frames)
    voiced = np.isfinite(best) & (best >= voicing_threshold) & (level >= level.max() - silence_db)
    f0 = np.where(voiced, sample_rate / lag, np.nan)
    return f0, voiced


class AudioFunctionals(VectorFeatures):
    """Utterance-level functionals of MFCC, F0, energy, ZCR and spectral frame features.

    Args:
        sample_rate: Rate every file is resampled to.
        n_mfcc: MFCC coefficients (``mfcc_0`` is the log-energy-like c0).
        n_mels: Mel bands before the DCT.
        deltas: Add the first derivatives of the MFCCs.
        frame_length: Analysis window of MFCC/energy/ZCR/spectral features, samples (25 ms).
        hop_length: Frame step, samples (10 ms).
        f0_min: Lowest F0 searched, Hz.
        f0_max: Highest F0 searched, Hz.
        voicing_threshold: NCCF peak a voiced frame must reach.
        silence_db: Frames this far below the loudest frame count as silence (unvoiced).
        rolloff: Energy share of the spectral roll-off point.
        percentiles: Percentiles among the functionals.
    """

    modality = "audio"

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 13,
        n_mels: int = 40,
        deltas: bool = True,
        frame_length: int = 400,
        hop_length: int = 160,
        f0_min: float = 60.0,
        f0_max: float = 600.0,
        voicing_threshold: float = 0.5,
        silence_db: float = 40.0,
        rolloff: float = 0.85,
        percentiles: Sequence[int] = (10, 50, 90),
    ):
        if not 0 < f0_min < f0_max < sample_rate / 2:
            raise ValueError(
                f"need 0 < f0_min < f0_max < sample_rate/2, got f0_min={f0_min}, f0_max={f0_max}."
            )
        self.sample_rate = sample_rate
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.deltas = deltas
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.f0_min = f0_min
        self.f0_max = f0_max
        self.voicing_threshold = voicing_threshold
        self.silence_db = silence_db
        self.rolloff = rolloff
        self.percentiles = tuple(int(p) for p in percentiles)
        self._mfcc = None

    def frame_names(self) -> list[str]:
        """Names of the frame features, in column order of :meth:`frame_features`."""
        names = [f"mfcc_{i}" for i in range(self.n_mfcc)]
        if self.deltas:
            names += [f"mfcc_delta_{i}" for i in range(self.n_mfcc)]
        return [
            *names,
            "f0_hz",
            "rms_db",
            "zcr",
            "spectral_centroid_hz",
            "spectral_rolloff_hz",
            "spectral_flux",
        ]

    def feature_names(self) -> list[str]:  # noqa: D102
        names = functional_names(self.frame_names(), self.percentiles)
        return [*names, "voiced_ratio", "voiced_onsets_per_s", "duration_s"]

    def frame_features(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame features ``[T, F]`` (NaN F0 where unvoiced) and the voiced mask ``[T]``."""
        import torch
        import torchaudio

        if self._mfcc is None:
            self._mfcc = torchaudio.transforms.MFCC(
                sample_rate=self.sample_rate,
                n_mfcc=self.n_mfcc,
                melkwargs={"n_fft": self.frame_length, "hop_length": self.hop_length, "n_mels": self.n_mels},
            )
        x = np.asarray(waveform, dtype=np.float64)
        mfcc = self._mfcc(torch.as_tensor(x, dtype=torch.float32))
        if self.deltas:
            mfcc = torch.cat([mfcc, torchaudio.functional.compute_deltas(mfcc)], dim=0)
        frames = frame_signal(x, self.frame_length, self.hop_length)
        f0, voiced = pitch_track(
            x,
            self.sample_rate,
            self.hop_length,
            self.f0_min,
            self.f0_max,
            self.voicing_threshold,
            self.silence_db,
        )
        columns = [
            mfcc.T.double().numpy(),
            f0[:, None],
            rms_db(frames)[:, None],
            zero_crossing_rate(frames)[:, None],
            spectral_features(frames, self.sample_rate, self.rolloff),
        ]
        n = min(len(c) for c in columns)
        return np.concatenate([c[:n] for c in columns], axis=1), voiced[:n]

    def vector(self, waveform: np.ndarray) -> np.ndarray:
        """The feature vector of one waveform (see :meth:`feature_names`)."""
        frames, voiced = self.frame_features(waveform)
        hop_seconds = self.hop_length / self.sample_rate
        duration = len(waveform) / self.sample_rate
        onsets = int(voiced[0]) + int(np.sum(voiced[1:] & ~voiced[:-1]))
        scalars = [voiced.mean(), onsets / max(duration, _EPS), duration]
        return np.concatenate([functionals(frames, hop_seconds, self.percentiles), scalars]).astype(
            np.float32
        )

    def extract(
        self, manifest: pd.DataFrame, cache_dir: str | Path | None = None, use_cache: bool = True
    ) -> tuple[np.ndarray, bool]:
        """Functionals ``[N, len(feature_names())]`` of every audio file (cached by content key)."""

        def compute() -> np.ndarray:
            from tqdm.auto import tqdm

            paths = manifest[schema.AUDIO].tolist()
            rows = [
                self.vector(load_waveform(path, self.sample_rate).numpy())
                for path in tqdm(paths, desc="AudioFunctionals", leave=False, disable=len(paths) < 200)
            ]
            return np.stack(rows) if rows else np.zeros((0, len(self.feature_names())), np.float32)

        return self._cached(manifest, compute, cache_dir, use_cache)
