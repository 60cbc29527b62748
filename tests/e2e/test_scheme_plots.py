"""Every scheme logs its pictures: dimensional scatters and circumplex, the multi-label per-label F1 chart.

The runs are real (debug data, one epoch, a SQLite MLflow store); the artifacts are opened as PNGs. The
dimensional model also predicts a long recording, whose timeline carries valence and arousal.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import mlflow
import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from emoexp import predict
from emoexp.engine.samples import prepare_samples
from emoexp.train import train


def _run(compose, tracking_uri: str, overrides: list[str]) -> tuple[mlflow.MlflowClient, str, object]:
    cfg = compose(["modality=audio", "model=lstm", "trainer.max_epochs=1", *overrides])
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    return client, run.info.run_id, cfg


def _plots(client: mlflow.MlflowClient, run_id: str, tmp_path: Path) -> dict[str, Path]:
    """Every ``plots/`` artifact of the run, downloaded, each checked to be a readable PNG."""
    names = [Path(a.path).name for a in client.list_artifacts(run_id, "plots")]
    local = Path(client.download_artifacts(run_id, "plots", str(tmp_path)))
    for name in names:
        with Image.open(local / name) as image:
            image.verify()
        with Image.open(local / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
    return {name: local / name for name in names}


def test_valence_arousal_run_logs_scatters_and_circumplex(compose, tracking_uri, tmp_path):
    client, run_id, cfg = _run(compose, tracking_uri, ["label_scheme=valence_arousal"])
    plots = _plots(client, run_id, tmp_path)
    assert {"scatter_valence.png", "scatter_arousal.png", "circumplex.png"} <= set(plots)
    assert "confusion_matrix.png" not in plots

    # The same model on a long recording: a timeline of valence and arousal.
    scheme = hydra.utils.instantiate(cfg.label_scheme, _convert_="all")
    clips = prepare_samples(cfg, scheme)["audio"].tolist()[:12]
    recording = tmp_path / "long.wav"
    data = [sf.read(c, dtype="float32")[0] for c in clips]
    rate = sf.info(clips[0]).samplerate
    sf.write(recording, np.concatenate(data)[: 15 * rate], rate)
    out = tmp_path / "va.csv"
    argv = [f"run_id={run_id}", f"input={recording}", f"tracking_uri={tracking_uri}", f"output={out}"]
    predict.main([*argv, "progress=false"])
    timeline = pd.read_csv(tmp_path / "va_timelines" / "long_timeline.csv")
    segments = pd.read_csv(tmp_path / "va_timelines" / "long_segments.csv")
    assert {"valence", "arousal", "smoothed_valence", "smoothed_arousal"} <= set(timeline.columns)
    assert timeline["valence"].abs().max() <= 1.0
    assert set(segments["emotion"]) <= {f"valence{v} arousal{a}" for v in "+-" for a in "+-"}
    assert segments["end"].iloc[-1] == timeline["end"].iloc[-1] == 15.0


def test_multilabel_run_logs_the_per_label_f1_chart(compose, tracking_uri, tmp_path):
    client, run_id, _ = _run(compose, tracking_uri, ["label_scheme=multilabel"])
    plots = _plots(client, run_id, tmp_path)
    assert "per_label_f1.png" in plots
    report = pd.read_csv(client.download_artifacts(run_id, "reports/multilabel_report.csv", str(tmp_path)))
    assert len(report) >= 2 and report["f1"].between(0, 1).all()
