"""Predict a 60-second recording as a timeline and a folder of clips in small batches (tiny trained model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from emoexp import cliargs, predict
from emoexp.engine.samples import prepare_samples
from emoexp.serving.predictor import Predictor
from emoexp.train import train

LONG_SECONDS = 60.0


@pytest.fixture
def audio_run(compose, tracking_uri):
    """A one-epoch audio BiLSTM run (debug data) and the corpus manifest."""
    cfg = compose(["modality=audio", "model=lstm", "trainer.max_epochs=1"])
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    manifest = prepare_samples(cfg, hydra.utils.instantiate(cfg.label_scheme, _convert_="all"))
    return run.info.run_id, manifest


def long_recording(clips: list[str], path: Path, seconds: float = LONG_SECONDS) -> int:
    """Concatenate corpus clips (at the corpus rate) into a WAV of exactly ``seconds``; return the rate."""
    rate = sf.info(clips[0]).samplerate
    pieces, total, index = [], 0, 0
    while total < seconds * rate:
        data, clip_rate = sf.read(clips[index % len(clips)], dtype="float32")
        assert clip_rate == rate
        pieces.append(data)
        total += len(data)
        index += 1
    sf.write(path, np.concatenate(pieces)[: int(seconds * rate)], rate)
    return rate


def check_timeline(timeline: pd.DataFrame, segments: pd.DataFrame, duration: float) -> None:
    """Windows cover the recording; segments tile it and agree with the smoothed window emotions."""
    assert timeline["start"].iloc[0] == 0.0 and timeline["end"].iloc[-1] == pytest.approx(duration)
    assert (timeline["start"].diff().dropna() > 0).all()
    assert (timeline["start"].iloc[1:].to_numpy() <= timeline["end"].iloc[:-1].to_numpy()).all()  # no gap
    assert segments["start"].iloc[0] == 0.0 and segments["end"].iloc[-1] == pytest.approx(duration)
    np.testing.assert_allclose(segments["start"].iloc[1:], segments["end"].iloc[:-1])
    assert (segments["emotion"].iloc[1:].to_numpy() != segments["emotion"].iloc[:-1].to_numpy()).all()
    assert segments["windows"].sum() == len(timeline)
    for segment in segments.itertuples():
        windows = timeline.iloc[segment.first_window : segment.last_window + 1]
        assert (windows["smoothed_emotion"] == segment.emotion).all()
        assert windows["start"].min() <= segment.start + 1e-9 and segment.end <= windows["end"].max() + 1e-9


def check_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_a_60_second_recording_becomes_a_timeline(audio_run, tracking_uri, tmp_path, capsys):
    run_id, manifest = audio_run
    recording = tmp_path / "talk.wav"
    long_recording(manifest["audio"].tolist()[:40], recording)
    out = tmp_path / "talk.csv"
    argv = [f"run_id={run_id}", f"input={recording}", f"tracking_uri={tracking_uri}", f"output={out}"]
    assert cliargs.run_cli(predict.main, [*argv, "batch_size=8", "progress=false"]) == 0

    folder = tmp_path / "talk_timelines"
    timeline = pd.read_csv(folder / "talk_timeline.csv")
    segments = pd.read_csv(folder / "talk_segments.csv")
    # Defaults from the model: 3-second windows (the featurizer's clip length), 1.5-second hop.
    assert (timeline["end"] - timeline["start"]).tolist() == pytest.approx([3.0] * len(timeline))
    assert len(timeline) == 39 and timeline["start"].iloc[1] == pytest.approx(1.5)
    check_timeline(timeline, segments, LONG_SECONDS)
    probs = timeline.filter(regex="^prob_")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (timeline["emotion"] == probs.idxmax(axis=1).str.removeprefix("prob_")).all()
    check_png(folder / "talk_timeline.png")

    [row] = pd.read_csv(out).to_dict("records")  # one row for the recording: its windows averaged
    assert row["id"] == "talk.wav" and row["windows"] == 39
    assert row["prediction"] == probs.mean().idxmax().removeprefix("prob_")
    assert "39 windows" in capsys.readouterr().out

    # Smaller windows and no smoothing: more windows, still covering it all.
    out2 = tmp_path / "fine.csv"
    argv2 = [f"run_id={run_id}", f"input={recording}", f"tracking_uri={tracking_uri}", f"output={out2}"]
    predict.main([*argv2, "window_s=2", "hop_s=2", "smooth=1", "progress=false"])
    fine = pd.read_csv(tmp_path / "fine_timelines" / "talk_timeline.csv")
    fine_segments = pd.read_csv(tmp_path / "fine_timelines" / "talk_segments.csv")
    assert len(fine) == 30
    check_timeline(fine, fine_segments, LONG_SECONDS)
    assert (fine["smoothed_emotion"] == fine["emotion"]).all()

    # A hop longer than the window would leave gaps: refused, naming the fix.
    assert cliargs.run_cli(predict.main, [*argv2, "hop_s=5"]) == 2
    assert "hop_s=5 is longer than the window (3 s)" in capsys.readouterr().err

    # An ordinary clip is one row as before: no windows, no timeline.
    clip = manifest["audio"].iloc[0]
    short = predict.main(
        [f"run_id={run_id}", f"input={clip}", f"tracking_uri={tracking_uri}", f"output={out}"]
    )
    assert len(short["predictions"]) == 1 and not short["timelines"]
    assert not {"windows", "timeline"} & set(short["predictions"].columns)


def test_a_folder_predicts_in_small_batches_one_row_per_file(audio_run, tracking_uri, tmp_path, monkeypatch):
    run_id, manifest = audio_run
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    clips = manifest["audio"].tolist()[:36]
    for i, path in enumerate(clips):
        shutil.copy(path, folder / ("sub" if i % 3 == 0 else ".") / f"clip{i:02d}.wav")
    long_recording(clips, folder / "sub" / "meeting.wav", seconds=12.0)

    seen: list[int] = []
    featurize = Predictor.featurize

    def spy(self, batch):
        seen.append(len(batch))
        return featurize(self, batch)

    monkeypatch.setattr(Predictor, "featurize", spy)
    out = tmp_path / "folder.csv"
    argv = [f"run_id={run_id}", f"input={folder}", f"tracking_uri={tracking_uri}", f"output={out}"]
    result = predict.main([*argv, "batch_size=5"])
    written = pd.read_csv(out)
    expected = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.wav"))
    assert written["id"].tolist() == expected and len(written) == 37  # one row per file, in order
    assert max(seen) <= 5  # never more than a batch of inputs (or windows) featurised at once
    assert written.set_index("id").loc["sub/meeting.wav", "windows"] == 7  # 12 s: 3 s windows, 1.5 s hop
    assert written["windows"].isna().sum() == 36 and not result["failures"]

    # Batching changes nothing: the same probabilities as predicting every clip in one batch.
    monkeypatch.setattr(Predictor, "featurize", featurize)
    predictor = result["predictor"]
    predictor.batch_size = 64
    ordinary = written[written["windows"].isna()].reset_index(drop=True)
    at_once, _ = predictor.predict(ordinary[["id", "audio"]])
    probs = [c for c in written.columns if c.startswith("prob_")]
    np.testing.assert_allclose(ordinary[probs].to_numpy(), at_once[probs].to_numpy(), atol=1e-5)
