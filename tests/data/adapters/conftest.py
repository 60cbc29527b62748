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


@pytest.fixture
def make_cremad(tmp_path: Path) -> Callable[..., Path]:
    """``make_cremad(actors)`` writes ``AudioWAV/<actor>_DFA_<EMO>_XX.wav`` for all six emotions."""

    def _make(actors: tuple[int, ...] = (1001, 1002, 1003)) -> Path:
        root = tmp_path / "CREMA-D"
        for actor in actors:
            for k, emotion in enumerate(("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")):
                write_wav(root / "AudioWAV" / f"{actor}_DFA_{emotion}_XX.wav", freq=150.0 + 20 * k)
        return root

    return _make


@pytest.fixture
def make_emodb(tmp_path: Path) -> Callable[..., Path]:
    """``make_emodb(speakers)`` writes ``wav/<speaker>a01<E>a.wav`` for all seven emotion letters."""

    def _make(speakers: tuple[str, ...] = ("03", "08", "09")) -> Path:
        root = tmp_path / "emodb"
        for speaker in speakers:
            for k, letter in enumerate("WLEAFTN"):
                write_wav(root / "wav" / f"{speaker}a01{letter}a.wav", freq=150.0 + 20 * k)
        return root

    return _make


IEMOCAP_CODES: tuple[str, ...] = ("neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth", "xxx")


@pytest.fixture
def make_iemocap(tmp_path: Path) -> Callable[..., Path]:
    """``make_iemocap(sessions, codes)``: one improvised dialog per session, one turn per code.

    Turns alternate between the session's female and male speaker; annotator lines spell the
    categories as the release does (``Neutral state``, ``Excited``, ...).
    """
    votes = {
        **{"neu": "Neutral state", "hap": "Happiness", "exc": "Excited", "sad": "Sadness", "ang": "Anger"},
        **{"fru": "Frustration", "sur": "Surprise", "fea": "Fear", "dis": "Disgust"},
    }

    def _make(sessions: tuple[int, ...] = (1, 2), codes: tuple[str, ...] = IEMOCAP_CODES) -> Path:
        root = tmp_path / "IEMOCAP_full_release"
        for session in sessions:
            dialog = f"Ses{session:02d}F_impro01"
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for k, code in enumerate(codes):
                utterance = f"{dialog}_{'FM'[k % 2]}{k:03d}"
                lines += [
                    f"[{k}.0000 - {k}.5000]\t{utterance}\t{code}\t[2.5000, 3.5000, 3.0000]",
                    f"C-E1:\t{votes.get(code, 'Other')};\t()",
                    "",
                ]
                write_wav(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav")
            evaluation = root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            evaluation.parent.mkdir(parents=True, exist_ok=True)
            evaluation.write_text("\n".join(lines))
        return root

    return _make


def fer_pixels(seed: int) -> str:
    """One FER2013 ``pixels`` cell: 48x48 space-separated gray values."""
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, 48 * 48)))


@pytest.fixture
def make_fer2013(tmp_path: Path) -> Callable[..., Path]:
    """``make_fer2013(per_class)`` writes ``fer2013/fer2013.csv``: every label 0-6 in every Usage."""

    def _make(per_class: int = 3) -> Path:
        root = tmp_path / "fer2013"
        root.mkdir(parents=True, exist_ok=True)
        rows = ["emotion,pixels,Usage"]
        for usage in ("Training", "PublicTest", "PrivateTest"):
            for label in range(7):
                rows += [f"{label},{fer_pixels(len(rows))},{usage}" for _ in range(per_class)]
        (root / "fer2013.csv").write_text("\n".join(rows) + "\n")
        return root

    return _make


@pytest.fixture
def make_image_folder(tmp_path: Path) -> Callable[..., Path]:
    """``make_image_folder(folders, per_class)`` writes ``<folder>/<k>.png`` faces under one root."""

    def _make(folders: tuple[str, ...], per_class: int = 2) -> Path:
        root = tmp_path / "faces"
        for i, folder in enumerate(folders):
            for k in range(per_class):
                write_png(root / folder / f"{k}.png", value=10 * i + k)
        return root

    return _make
