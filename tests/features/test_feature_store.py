"""Feature files for corpora bigger than memory: chunked, parallel extraction and rows read on demand.

Real WAV files on disk. The mapped path (features read from the file per batch, standardised per
sample, statistics from a streaming pass) must give what the in-memory path gives.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from emoexp.data.datamodule import EmotionDataModule, build_features
from emoexp.data.splits import Fold
from emoexp.features import store
from emoexp.features.audio import LogMelFeatures, MFCCFeatures
from emoexp.features.base import Featurizer
from emoexp.features.store import FeatureFile, FeatureStorage, MappedFeatures, write_feature_file

RATE = 16000
CLIPS = 14
MEMORY = FeatureStorage("memory", 1)
MAPPED = FeatureStorage("mapped", 1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("wav")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(CLIPS):
        seconds = 0.3 + 0.1 * (i % 9)  # some shorter than max_seconds=0.8 (padded), some cropped
        t = np.arange(int(seconds * RATE)) / RATE
        wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * rng.standard_normal(t.size)
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(str(path))
    return pd.DataFrame({"id": [f"s{i}" for i in range(CLIPS)], "audio": paths})


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "CHUNK_ROWS", 3)  # several chunks, the last one short


def _assignment() -> np.ndarray:
    parts = ["train"] * 8 + ["val"] * 3 + ["test"] * 3
    return np.array(parts)[np.random.default_rng(1).permutation(CLIPS)]


def _datamodule(manifest, featurizer, storage, cache, **kwargs) -> EmotionDataModule:
    targets = {"label": np.arange(CLIPS) % 3}
    fold = Fold("holdout", _assignment())
    return EmotionDataModule(
        manifest, fold, featurizer, targets, batch_size=4, cache_dir=cache, storage=storage, **kwargs
    )


def _batches(loader, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    return list(loader)


def _assert_same_batches(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert torch.equal(a["row"], b["row"])
        assert set(a["inputs"]) == set(b["inputs"])
        for name in a["inputs"]:
            torch.testing.assert_close(a["inputs"][name], b["inputs"][name])
        assert torch.equal(a["targets"]["label"], b["targets"]["label"])


@pytest.mark.parametrize("featurizer_class", [MFCCFeatures, LogMelFeatures])
def test_file_written_in_chunks_holds_what_extract_returns(
    manifest, tmp_path, small_chunks, featurizer_class
):
    featurizer = featurizer_class(max_seconds=0.8)
    path = tmp_path / "features.safetensors"
    write_feature_file(featurizer, manifest, path)
    expected = featurizer.extract(manifest)
    written = load_file(path)  # safetensors itself reads the hand-written header
    assert set(written) == set(expected)
    for name in expected:
        assert torch.equal(written[name], expected[name])
    with safe_open(path, framework="pt") as mapped:
        assert torch.equal(mapped.get_slice("x")[5:7], expected["x"][5:7])
    file = FeatureFile(path)
    assert len(file) == CLIPS
    assert file.nbytes == path.stat().st_size
    rows = [9, 2, 3, 4, 13, 0]
    for name, tensor in file.take(rows).items():
        assert torch.equal(tensor, expected[name][rows])
        assert file.take([])[name].shape == (0, *expected[name].shape[1:])


def test_two_processes_write_the_same_bytes_as_one(manifest, tmp_path, small_chunks):
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    write_feature_file(LogMelFeatures(max_seconds=0.8), manifest, one, workers=1)
    write_feature_file(LogMelFeatures(max_seconds=0.8), manifest, two, workers=2)
    assert one.read_bytes() == two.read_bytes()


@pytest.mark.parametrize("featurizer_class", [MFCCFeatures, LogMelFeatures])
def test_mapped_features_serve_the_batches_of_the_in_memory_path(manifest, tmp_path, featurizer_class):
    memory = _datamodule(manifest, featurizer_class(max_seconds=0.8), MEMORY, tmp_path / "a")
    mapped = _datamodule(manifest, featurizer_class(max_seconds=0.8), MAPPED, tmp_path / "b")
    memory.setup()
    mapped.setup()
    assert isinstance(mapped.inputs, MappedFeatures)
    assert isinstance(memory.inputs, dict)
    # The streaming statistics equal those of the whole training tensor (to float32 rounding).
    for name, value in memory.featurizer.state_dict().items():
        torch.testing.assert_close(mapped.featurizer.state_dict()[name], value)
    _assert_same_batches(_batches(memory.train_dataloader()), _batches(mapped.train_dataloader()))
    for loader in ("val_dataloader", "test_dataloader"):
        _assert_same_batches(_batches(getattr(memory, loader)()), _batches(getattr(mapped, loader)()))


def test_mapped_features_index_like_tensors(manifest, tmp_path):
    memory, _ = build_features(MFCCFeatures(max_seconds=0.8), manifest, _assignment() == "train", tmp_path)
    mapped, hit = build_features(
        MFCCFeatures(max_seconds=0.8), manifest, _assignment() == "train", tmp_path, storage=MAPPED
    )
    assert hit  # the same cache entry, whichever path wrote it
    mask = np.arange(CLIPS) % 4 == 0
    for index in (3, torch.tensor(5), slice(2, 9, 3), torch.tensor([7, 1, 8]), [0, 13], mask):
        for name, tensor in memory.items():
            torch.testing.assert_close(mapped[name][index], tensor[index])
    assert mapped["x"].shape == memory["x"].shape
    assert len(mapped["lengths"]) == CLIPS
    with pytest.raises(IndexError, match="out of range"):
        mapped.take([CLIPS])


def test_loader_workers_read_the_file_in_their_own_processes(manifest, tmp_path):
    single = _datamodule(manifest, LogMelFeatures(max_seconds=0.8), MAPPED, tmp_path)
    workers = _datamodule(
        manifest, LogMelFeatures(max_seconds=0.8), MAPPED, tmp_path, num_workers=2, persistent_workers=False
    )
    _assert_same_batches(_batches(single.val_dataloader()), _batches(workers.val_dataloader()))


def test_one_cache_file_per_key_whichever_path_writes_it(manifest, tmp_path):
    train = _assignment() == "train"
    _, hit = build_features(LogMelFeatures(max_seconds=0.8), manifest, train, tmp_path, storage=MAPPED)
    assert not hit
    _, hit = build_features(LogMelFeatures(max_seconds=0.8), manifest, train, tmp_path)  # in memory
    assert hit
    _, hit = build_features(
        LogMelFeatures(max_seconds=0.8), manifest, train, tmp_path, storage=FeatureStorage("memory", 2)
    )
    assert hit
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 1
    assert not list((tmp_path / "features").glob("*.tmp"))


def test_auto_maps_features_larger_than_the_threshold(manifest, tmp_path):
    train = _assignment() == "train"
    small, _ = build_features(
        LogMelFeatures(max_seconds=0.8), manifest, train, tmp_path, storage=FeatureStorage("auto", 1, 1.0)
    )
    assert isinstance(small, dict)  # ~0.3 MB: in memory
    large, _ = build_features(
        LogMelFeatures(max_seconds=0.8), manifest, train, tmp_path, storage=FeatureStorage("auto", 1, 0.1)
    )
    assert isinstance(large, MappedFeatures)
    torch.testing.assert_close(large["x"][:], small["x"])


def test_a_truncated_cache_file_is_written_again(manifest, tmp_path):
    train = _assignment() == "train"
    featurizer = MFCCFeatures(max_seconds=0.8)
    expected = build_features(featurizer, manifest, train, tmp_path, storage=MAPPED)[0]["x"][:]
    key_path = next((tmp_path / "features").glob("*.safetensors"))
    with key_path.open("r+b") as f:
        f.truncate(key_path.stat().st_size - 100)
    again, hit = build_features(MFCCFeatures(max_seconds=0.8), manifest, train, tmp_path, storage=MAPPED)
    assert not hit
    torch.testing.assert_close(again["x"][:], expected)


def test_without_the_cache_the_file_is_temporary(manifest, tmp_path):
    train = _assignment() == "train"
    mapped, hit = build_features(
        LogMelFeatures(max_seconds=0.8), manifest, train, tmp_path, use_cache=False, storage=MAPPED
    )
    assert not hit
    assert not (tmp_path / "features").exists()
    path = mapped.file.path
    assert path.exists()
    del mapped
    gc.collect()
    assert not path.exists()


def test_extract_workers_auto_scales_with_the_corpus(monkeypatch):
    monkeypatch.setattr(store.os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    auto = FeatureStorage()
    assert auto.workers(840) == 1
    assert auto.workers(5000) == 2
    assert auto.workers(1_000_000) == 4
    assert FeatureStorage(extract_workers=3).workers(10) == 3
    assert not FeatureStorage("memory", 1).uses_file(MFCCFeatures(), 10_000)
    assert FeatureStorage("memory", 2).uses_file(MFCCFeatures(), 10_000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"storage": "disk"}, "datamodule.storage='disk'"),
        ({"extract_workers": 0}, "datamodule.extract_workers=0"),
        ({"extract_workers": "many"}, "datamodule.extract_workers='many'"),
    ],
)
def test_invalid_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureStorage(**kwargs)


class _Ragged(Featurizer):
    """Pads each call's rows to its longest id: not rowwise, although it claims to be."""

    rowwise = True

    def extract(self, manifest: pd.DataFrame) -> dict[str, torch.Tensor]:
        width = max(len(i) for i in manifest["id"])
        return {"x": torch.zeros(len(manifest), width)}


def test_a_featurizer_whose_rows_change_shape_is_refused(tmp_path, small_chunks):
    manifest = pd.DataFrame({"id": ["a", "b", "c", "dddd", "e"]})
    with pytest.raises(ValueError, match="a rowwise featurizer gives every row the same shape"):
        write_feature_file(_Ragged(), manifest, Path(tmp_path / "ragged.safetensors"))


def test_train_runs_on_mapped_features_extracted_by_two_processes(compose, tracking_uri):
    import mlflow

    from emoexp.train import train

    results = {}
    for storage, workers in (("memory", 1), ("mapped", 2)):
        overrides = [f"datamodule.storage={storage}", f"datamodule.extract_workers={workers}"]
        # No cache: the mapped run extracts with 2 processes into a temporary file of its own.
        overrides += ["model=cnn", "datamodule.use_cache=false", f"tracking.experiment={storage}"]
        results[storage] = train(compose(overrides))
    client = mlflow.MlflowClient(tracking_uri)
    for storage in results:
        [run] = client.search_runs([client.get_experiment_by_name(storage).experiment_id])
        assert run.info.status == "FINISHED"
    # The batches are the same (above); the statistics differ in float32 rounding, which two
    # epochs on 84 clips may turn into a different prediction or two: the same metrics, all finite.
    assert set(results["mapped"]) == set(results["memory"])
    assert all(math.isfinite(value) for value in results["mapped"].values())
    assert 0.0 <= results["mapped"]["test/uar"] <= 1.0
