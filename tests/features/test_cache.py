"""The feature cache key follows the input files and the extractor parameters (real WAV files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from emoexp.data.datamodule import build_features
from emoexp.features.audio import MFCCFeatures
from emoexp.features.cache import content_key

RATE = 16000


def _write(path: Path, freq: float, seconds: float = 0.5) -> None:
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), RATE, subtype="PCM_16")


@pytest.fixture
def manifest(tmp_path: Path) -> pd.DataFrame:
    paths = []
    for i, freq in enumerate((220.0, 330.0, 440.0)):
        path = tmp_path / f"clip{i}.wav"
        _write(path, freq)
        paths.append(str(path))
    return pd.DataFrame({"id": ["a", "b", "c"], "audio": paths})


def _key(manifest: pd.DataFrame, featurizer: MFCCFeatures) -> str:
    return content_key(manifest, featurizer.params(), type(featurizer).__qualname__)


def test_key_is_stable_and_changes_with_a_parameter(manifest):
    assert _key(manifest, MFCCFeatures()) == _key(manifest.copy(), MFCCFeatures())
    assert _key(manifest, MFCCFeatures(n_mfcc=20)) != _key(manifest, MFCCFeatures())
    assert _key(manifest, MFCCFeatures(n_mels=40)) != _key(manifest, MFCCFeatures())
    assert content_key(manifest, MFCCFeatures().params(), "LogMelFeatures") != _key(manifest, MFCCFeatures())


def test_key_changes_when_a_file_changes_size_or_mtime(manifest):
    path = manifest["audio"][1]
    before = _key(manifest, MFCCFeatures())
    stat = os.stat(path)
    # Longer file, modification time put back: the size alone invalidates.
    _write(Path(path), 330.0, seconds=0.75)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    longer = _key(manifest, MFCCFeatures())
    assert longer != before
    # Same size, new content and a new modification time: the mtime invalidates.
    stat = os.stat(path)
    _write(Path(path), 500.0, seconds=0.75)
    assert os.stat(path).st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _key(manifest, MFCCFeatures()) not in (before, longer)


def test_build_features_misses_then_hits_then_misses_after_an_edit(manifest, tmp_path):
    cache = tmp_path / "cache"
    train = np.array([True, True, False])
    cold, hit = build_features(MFCCFeatures(), manifest, train, cache)
    assert not hit
    warm, hit = build_features(MFCCFeatures(), manifest, train, cache)
    assert hit
    for name in cold:
        torch.testing.assert_close(warm[name], cold[name])
    assert len(list((cache / "features").glob("*.safetensors"))) == 1

    path = manifest["audio"][2]
    stat = os.stat(path)
    _write(Path(path), 880.0)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    edited, hit = build_features(MFCCFeatures(), manifest, train, cache)
    assert not hit
    assert not torch.allclose(edited["x"][2], cold["x"][2])
    torch.testing.assert_close(edited["x"][:2], cold["x"][:2])

    _, hit = build_features(MFCCFeatures(n_mfcc=20), manifest, train, cache)
    assert not hit
    assert len(list((cache / "features").glob("*.safetensors"))) == 3
    _, hit = build_features(MFCCFeatures(), manifest, train, cache, use_cache=False)
    assert not hit
