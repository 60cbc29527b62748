"""Builders of tiny corpora in each corpus's official layout, written under ``tmp_path``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR

RATE = 16000
GOEMOTIONS: list[str] = list(OmegaConf.load(CONF_DIR / "data" / "goemotions_tsv.yaml").corpus.label_names)


def write_wav(path: Path, seconds: float = 0.2, freq: float = 220.0) -> Path:
    """A short sine tone as a real 16-bit WAV file."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * seconds)) / RATE
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * freq * t), RATE, subtype="PCM_16")
    return path


def write_empty_wav(path: Path) -> Path:
    """A valid WAV header with no frames."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(0), RATE, subtype="PCM_16")
    return path


def write_corrupt(path: Path) -> Path:
    """Bytes that claim nothing: neither a WAV nor an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x00\x00garbage that is not audio")
    return path


def write_png(path: Path, value: int = 128, side: int = 48) -> Path:
    """A small grayscale PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def make_ravdess(tmp_path: Path) -> Callable[..., Path]:
    """``make_ravdess(actors, emotions)`` writes ``Actor_XX/03-01-EE-01-SS-01-XX.wav`` files."""

    def _make(actors: range | list[int] = range(1, 5), emotions: range | list[int] = range(1, 9)) -> Path:
        root = tmp_path / "ravdess"
        for actor in actors:
            for emotion in emotions:
                for statement in (1, 2):
                    name = f"03-01-{emotion:02d}-01-{statement:02d}-01-{actor:02d}.wav"
                    write_wav(root / f"Actor_{actor:02d}" / name, freq=110.0 * emotion + 7 * actor)
        return root

    return _make


def save_goemotions(path: Path, n: int = 12) -> Path:
    """A GoEmotions-like DatasetDict: text, labels (Sequence of 28 ClassLabels), id."""
    import datasets

    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.ClassLabel(names=GOEMOTIONS)),
            "id": datasets.Value("string"),
        }
    )
    label_sets = [[17], [2, 3], [27], [25, 9], [14], [26, 6], [15, 18], [11]]
    parts = {}
    for split, offset in (("train", 0), ("validation", 1000), ("test", 2000)):
        rows = [label_sets[i % len(label_sets)] for i in range(n)]
        texts = [
            f"sample {i} of {split} with " + " ".join(GOEMOTIONS[j] for j in labels)
            for i, labels in enumerate(rows)
        ]
        parts[split] = datasets.Dataset.from_dict(
            {"text": texts, "labels": rows, "id": [f"e{offset + i}" for i in range(n)]}, features=features
        )
    datasets.DatasetDict(parts).save_to_disk(str(path))
    return path


@pytest.fixture
def make_goemotions() -> Callable[..., Path]:
    """``make_goemotions(path, n)`` saves a GoEmotions-like DatasetDict with n samples per split."""
    return save_goemotions


@pytest.fixture
def files() -> SimpleNamespace:
    """The file writers: ``files.wav``, ``files.empty_wav``, ``files.corrupt``, ``files.png``."""
    return SimpleNamespace(wav=write_wav, empty_wav=write_empty_wav, corrupt=write_corrupt, png=write_png)
