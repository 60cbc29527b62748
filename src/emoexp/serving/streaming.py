"""Predicting many inputs in bounded memory, and long recordings in sliding windows.

:func:`predict_manifest` walks a prediction manifest in batches of ``batch_size`` inputs
(featurised, predicted and released one batch at a time, behind a progress bar), so a folder
of thousands of files never holds more than one batch of features. An audio input longer than
:attr:`Windowing.long_s` is not cropped to the model's clip length: it is read window by window
(never whole), each window predicted as a clip, and written as a timeline (per-window CSV, a
smoothed segment list and a plot, :mod:`emoexp.serving.timeline`); its row in the predictions
averages its windows. docs/predict.md describes the outputs.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp import modalities
from emoexp.data import schema
from emoexp.serving.predictor import Failure, Predictor
from emoexp.serving.timeline import build_timeline, window_starts

DEFAULT_WINDOW_S = 3.0
"""Window length when the model's featurizer does not say how long its training clips were."""


@dataclass(frozen=True)
class Windowing:
    """How long recordings are cut into windows.

    Attributes:
        window_s: Window length in seconds.
        hop_s: Distance between window starts in seconds.
        long_s: Recordings longer than this are predicted in windows; shorter ones as one clip.
        smooth: Windows in the moving average before segmenting (1: none).
    """

    window_s: float
    hop_s: float
    long_s: float
    smooth: int = 3


def windowing_for(
    predictor: Predictor, window_s: float = 0.0, hop_s: float = 0.0, long_s: float = 0.0, smooth: int = 3
) -> Windowing | None:
    """The windowing of an audio model (``None`` for other modalities), defaults filled in.

    Args:
        predictor: The model.
        window_s: Window length; 0 takes the model's training clip length (its featurizer's
            ``max_seconds``: what the model saw of each clip).
        hop_s: Hop; 0 takes half the window.
        long_s: Longest recording predicted as one clip; 0 takes twice the window.
        smooth: Windows in the moving average.

    Raises:
        ValueError: If the hop is longer than the window (the windows would leave gaps).
    """
    if predictor.modality != modalities.AUDIO:
        return None
    window = window_s or float(getattr(predictor.featurizer, "max_seconds", 0.0) or DEFAULT_WINDOW_S)
    hop = hop_s or window / 2
    if hop > window:
        raise ValueError(
            f"hop_s={hop:g} is longer than the window ({window:g} s): the windows would leave gaps; "
            f"use hop_s <= {window:g}."
        )
    return Windowing(window, hop, long_s or 2 * window, smooth)


@dataclass
class Prediction:
    """What :func:`predict_manifest` produced.

    Attributes:
        predictions: One row per predicted input, in manifest order.
        failures: Inputs that could not be predicted.
        timelines: One entry per long recording: ``id``, ``windows``, ``segments`` and the
            paths of its ``timeline``, ``segment_list`` and ``plot``.
    """

    predictions: pd.DataFrame
    failures: list[Failure] = field(default_factory=list)
    timelines: list[dict[str, Any]] = field(default_factory=list)


def audio_duration(path: str) -> float | None:
    """Seconds of audio in a file from its header (``None`` if unreadable: prediction reports why)."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # soundfile raises several error types; the featurizer names the problem
        return None


def _is_long(path: str | None, windowing: Windowing | None) -> bool:
    if windowing is None or path is None:
        return False
    duration = audio_duration(path)
    return duration is not None and duration > windowing.long_s


def _batches(manifest: pd.DataFrame, size: int, windowing: Windowing | None) -> Iterator[pd.DataFrame]:
    """Consecutive rows in batches of at most ``size``; a long recording is a batch of its own."""
    windowed = windowing is not None and schema.AUDIO in manifest.columns
    paths = manifest[schema.AUDIO].astype(str).tolist() if windowed else [None] * len(manifest)
    pending: list[int] = []
    for position, path in enumerate(paths):
        if _is_long(path, windowing):
            if pending:
                yield manifest.iloc[pending]
                pending = []
            yield manifest.iloc[[position]].assign(_long=True)
            continue
        pending.append(position)
        if len(pending) == size:
            yield manifest.iloc[pending]
            pending = []
    if pending:
        yield manifest.iloc[pending]


def predict_manifest(
    predictor: Predictor,
    manifest: pd.DataFrame,
    windowing: Windowing | None = None,
    timeline_dir: str | Path | None = None,
    progress: bool = True,
) -> Prediction:
    """Predict a manifest batch by batch; long recordings as timelines under ``timeline_dir``.

    Args:
        predictor: The model (its ``batch_size`` is the batch size).
        manifest: ``id`` and the model's input columns.
        windowing: How to window long recordings (``None``: every input is one clip).
        timeline_dir: Where timelines are written (default ``timelines/``).
        progress: Show a progress bar (inputs; windows of a long recording).

    Returns:
        The predictions (long recordings add ``windows`` and ``timeline`` columns), the
        failures and the timelines written.
    """
    from tqdm.auto import tqdm

    result = Prediction(pd.DataFrame())
    frames = []
    show = progress and len(manifest) > predictor.batch_size
    with tqdm(total=len(manifest), unit="input", desc="predict", disable=not show) as bar:
        for batch in _batches(manifest, predictor.batch_size, windowing):
            if "_long" in batch.columns:
                folder = Path(timeline_dir or "timelines")
                frame = _predict_long(predictor, batch.iloc[0], windowing, folder, result, progress)
            else:
                frame, failures = predictor.predict(batch.reset_index(drop=True))
                result.failures.extend(failures)
            if len(frame):
                frames.append(frame)
            bar.update(len(batch))
    result.predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[schema.ID])
    if "windows" in result.predictions.columns:  # blank, not NaN-as-float, for the ordinary clips
        result.predictions["windows"] = result.predictions["windows"].astype("Int64")
    return result


def _predict_long(
    predictor: Predictor,
    row: pd.Series,
    windowing: Windowing,
    folder: Path,
    result: Prediction,
    progress: bool,
) -> pd.DataFrame:
    """Predict one long recording as a timeline; its summary row, or an empty frame if it failed."""
    source = str(row[schema.AUDIO])
    try:
        written = predict_recording(predictor, source, str(row[schema.ID]), windowing, folder, progress)
    except (ValueError, OSError, RuntimeError) as error:
        result.failures.append(Failure(str(row[schema.ID]), source, f"{type(error).__name__}: {error}"))
        return pd.DataFrame()
    summary = written.pop("summary")
    result.timelines.append(written)
    return summary


def _window_clips(path: str, starts: np.ndarray, length: int, folder: Path) -> Iterator[str]:
    """Write each window as a WAV file in ``folder`` (reading only that window) and yield its path."""
    import soundfile as sf

    with sf.SoundFile(path) as recording:
        for index, start in enumerate(starts):
            recording.seek(int(start))
            clip = folder / f"window{index}.wav"
            sf.write(
                clip, recording.read(length, dtype="float32", always_2d=True), recording.samplerate, "FLOAT"
            )
            yield str(clip)


def _decoded_windows(
    predictor: Predictor, path: str, starts: np.ndarray, length: int, progress: bool
) -> dict[str, np.ndarray]:
    """The scheme's decoded outputs of every window, predicted ``batch_size`` windows at a time."""
    from tqdm.auto import tqdm

    parts: list[dict[str, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = _window_clips(path, starts, length, Path(tmp))
        bar = tqdm(total=len(starts), unit="window", desc=Path(path).name, leave=False, disable=not progress)
        with bar:
            while batch := [clip for _, clip in zip(range(predictor.batch_size), clips, strict=False)]:
                manifest = pd.DataFrame({schema.ID: [Path(c).stem for c in batch], schema.AUDIO: batch})
                features, _, failures = predictor.featurize(manifest)
                if failures:
                    raise ValueError(f"window {failures[0].id} of {path}: {failures[0].reason}")
                parts.append(predictor.scheme.decode(predictor.outputs(features)))
                for clip in batch:
                    Path(clip).unlink()
                bar.update(len(batch))
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _file_stem(sample_id: str) -> str:
    """A file name for an input id (``sub/talk.wav`` -> ``sub_talk``)."""
    stem = str(Path(sample_id).with_suffix("")) if Path(sample_id).suffix else sample_id
    return re.sub(r"[^\w.-]+", "_", stem).strip("._") or "recording"


def predict_recording(
    predictor: Predictor,
    path: str,
    sample_id: str,
    windowing: Windowing,
    folder: Path,
    progress: bool = False,
) -> dict[str, Any]:
    """Predict a long recording in windows and write its timeline, segments and plot.

    Args:
        predictor: An audio model.
        path: The recording.
        sample_id: Its id (names the files).
        windowing: Window, hop and smoothing.
        folder: Where ``<id>_timeline.csv``, ``<id>_segments.csv`` and ``<id>_timeline.png`` go.
        progress: Show a progress bar over the windows.

    Returns:
        ``id``, ``windows``, ``segments``, the three paths, and ``summary``: the recording's
        prediction row (window scores averaged) with ``windows`` and ``timeline``.
    """
    import soundfile as sf

    from emoexp.evaluation.plots import timeline_figure

    info = sf.info(path)
    rate, n_samples = info.samplerate, info.frames
    length = max(1, round(windowing.window_s * rate))
    starts = window_starts(n_samples, length, max(1, round(windowing.hop_s * rate)))
    decoded = _decoded_windows(predictor, path, starts, min(length, n_samples), progress)
    duration = n_samples / rate
    window_s = min(length, n_samples) / rate
    timeline, segments = build_timeline(
        predictor.scheme, decoded, starts / rate, window_s, duration, windowing.smooth
    )
    folder.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(sample_id)
    paths = {
        "timeline": folder / f"{stem}_timeline.csv",
        "segment_list": folder / f"{stem}_segments.csv",
        "plot": folder / f"{stem}_timeline.png",
    }
    timeline.to_csv(paths["timeline"], index=False)
    segments.to_csv(paths["segment_list"], index=False)
    timeline_figure(timeline, segments, title=f"{sample_id} ({duration:.1f} s)").savefig(
        paths["plot"], dpi=100
    )
    mean = predictor.scheme.served_predictions({k: v.mean(axis=0, keepdims=True) for k, v in decoded.items()})
    summary = pd.concat([pd.DataFrame({schema.ID: [sample_id], schema.AUDIO: [path]}), mean], axis=1)
    summary["windows"] = len(starts)
    summary["timeline"] = str(paths["timeline"])
    return {"id": sample_id, "windows": len(starts), "segments": len(segments), **paths, "summary": summary}
