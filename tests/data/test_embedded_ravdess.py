"""The RAVDESS-layout corpus: RAVDESS's design and file names, read by the real adapter, cached."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pytest
import soundfile as sf

from emoexp.data.embedded.ravdess_layout import load_embedded_ravdess, ravdess_design, render_ravdess_layout
from emoexp.data.schema import validate_manifest
from emoexp.train import train


def test_the_design_is_ravdess_speech():
    design = ravdess_design(24)
    assert len(design) == 1440 and (design.groupby("actor").size() == 60).all()
    counts = Counter(design["emotion"])
    assert counts["neutral"] == 24 * 4 and counts["calm"] == 24 * 8 and len(counts) == 8
    assert not ((design["emotion"] == "neutral") & (design["intensity"] == "02")).any()  # no strong neutral
    assert design["id"].is_unique
    assert design.loc[design["actor"] == 12, "id"].str.endswith("-12").all()
    with pytest.raises(ValueError, match="n_actors=25"):
        ravdess_design(25)


def test_the_adapter_reads_the_rendered_files_and_the_cache_serves_them_again(tmp_path):
    manifest = load_embedded_ravdess(cache_dir=tmp_path, n_actors=2)
    validate_manifest(manifest, "ravdess")
    assert len(manifest) == 120 and set(manifest["corpus"]) == {"ravdess"}
    assert sorted(set(manifest["speaker"])) == ["Actor_01", "Actor_02"]
    assert dict(zip(manifest["speaker"], manifest["group_gender"], strict=True)) == {
        "Actor_01": "male",
        "Actor_02": "female",
    }
    assert set(manifest["group_intensity"]) == {"normal", "strong"}
    data, rate = sf.read(manifest["audio"].iloc[0])
    assert rate == 16000 and data.ndim == 1 and 0 < np.abs(data).max() <= 1.0
    [folder] = (tmp_path / "embedded").iterdir()
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*.wav")}
    again = load_embedded_ravdess(cache_dir=tmp_path, n_actors=2)
    assert again.equals(manifest) and stamp == {p: p.stat().st_mtime_ns for p in folder.rglob("*.wav")}
    # The same parameters render the same bytes.
    other = render_ravdess_layout(tmp_path / "other", n_actors=1)
    first = "Actor_01/03-01-05-02-01-02-01.wav"
    assert (other / first).read_bytes() == (folder / first).read_bytes()


def test_a_run_on_it_is_speaker_independent_over_its_actors(compose, tracking_uri):
    cfg = compose(
        ["data=embedded_ravdess", "data.corpus.n_actors=6", "label_scheme=native", "model=svm"], debug=False
    )
    metrics = train(cfg)
    assert metrics["test/uar"] > 1 / 8  # chance with RAVDESS's 8 classes
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    card = json.loads(Path(client.download_artifacts(run.info.run_id, "protocol_card.json")).read_text())
    [fold] = card["instance"]["folds"]
    assert card["definition"]["split"]["kind"] == "speaker_holdout" and fold["speakers_shared"] == 0
    assert sum(fold["speakers"].values()) == 6 and fold["sizes"] == {"train": 240, "val": 60, "test": 60}
    # every actor says every emotion, so each split has every class
    assert all(len(sizes) == 8 for sizes in fold["class_sizes"].values())
