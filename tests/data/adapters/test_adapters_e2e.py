"""train(cfg) end to end on corpora read by the adapters: RAVDESS audio and GoEmotions multi-label text."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from emoexp.train import train

TINY = [
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "datamodule.batch_size=32",
    "model.net.hidden_size=16",
    "model.net.num_layers=1",
]


def _run(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def _csv(client, run, path: str) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run.info.run_id, path))


def test_ravdess_speaker_holdout_trains_and_logs_skipped_files(compose, tracking_uri, make_ravdess, files):
    root = make_ravdess(actors=range(1, 9), emotions=range(1, 9))
    bad = files.corrupt(root / "Actor_03" / "03-01-02-02-01-02-03.wav")
    # debug=fast sets sizes of the embedded corpora, which adapters do not take: use explicit tiny settings.
    cfg = compose(
        [
            "data=ravdess",
            f"data.root={root}",
            "data.corpus.on_error=skip",
            "modality=audio",
            "protocol=speaker_holdout",
            *TINY,
        ],
        debug=False,
    )
    metrics = train(cfg)
    client, run = _run(tracking_uri, "emoexp-audio")
    assert run.info.status == "FINISHED" and run.data.tags["data"] == "ravdess"
    assert 0.0 <= metrics["test/uar"] <= 1.0 and "val/uar_best" in metrics
    assert run.data.metrics["data/samples"] == 128 and run.data.metrics["data/skipped_files"] == 1
    skipped = _csv(client, run, "reports/skipped_files.csv")
    assert skipped["file"].tolist() == [str(bad)] and "cannot be decoded" in skipped["problem"].iloc[0]
    predictions = _csv(client, run, "predictions.csv")
    assert set(predictions["target"]) <= {
        "neutral",
        "anger",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
    }
    assert "calm" not in set(predictions["target"])  # ekman7 maps calm -> neutral
    speakers = predictions.groupby("split")["speaker"].agg(set)
    assert not speakers["val"] & speakers["test"]
    assert set(predictions["group_gender"]) <= {"male", "female"}
    per_group = _csv(client, run, "reports/per_group_metrics.csv")
    assert "group_gender" in set(per_group["group_column"])


def test_goemotions_multilabel_tunes_thresholds_on_validation(
    compose, tracking_uri, tmp_path, make_goemotions
):
    root = make_goemotions(tmp_path / "goemotions", n=48)
    cfg = compose(
        [
            "data=goemotions",
            f"data.root={root}",
            "modality=text",
            "model=lstm",
            "label_scheme=goemotions_ekman",
            "protocol=official",
            *TINY,
            "trainer.max_epochs=3",
        ],
        debug=False,
    )
    assert cfg.callbacks.early_stopping.monitor == "val/f1_macro"
    metrics = train(cfg)
    client, run = _run(tracking_uri, "emoexp-text")
    logged = run.data.metrics
    for name in ("f1_macro", "f1_micro", "jaccard_samples", "jaccard_macro"):
        assert 0.0 <= logged[f"test/{name}"] <= 1.0
        assert math.isclose(logged[f"test/{name}"], metrics[f"test/{name}"], rel_tol=1e-6)
    assert "val/f1_macro_best" in metrics and "val/f1_macro_tuned" in logged
    labels = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    thresholds = np.array([logged[f"threshold/{label}"] for label in labels])
    assert ((thresholds > 0) & (thresholds < 1)).all()
    predictions = _csv(client, run, "predictions.csv")
    assert {"target_labels", "predicted_labels"} <= set(predictions.columns)
    assert [c for c in predictions.columns if c.startswith("prob_")] == [f"prob_{label}" for label in labels]
    assert predictions.groupby("split").size().to_dict() == {"val": 48, "test": 48}
    # The tuned thresholds decide both the logged test metrics and the predicted labels.
    test = predictions[predictions["split"] == "test"]
    probs = test[[f"prob_{label}" for label in labels]].to_numpy()
    predicted = probs > thresholds
    assert [set(str(p).split("|")) - {"nan"} for p in test["predicted_labels"]] == [
        {label for label, hit in zip(labels, row, strict=True) if hit} for row in predicted
    ]
    truth = np.array([[label in str(t).split("|") for label in labels] for t in test["target_labels"]])
    f1 = f1_score(truth, predicted, average="macro", zero_division=0)
    assert math.isclose(f1, logged["test/f1_macro"], abs_tol=1e-5)
    report = _csv(client, run, "reports/multilabel_report.csv")
    assert report["label"].tolist() == labels
    assert math.isclose(report["f1"].mean(), logged["test/f1_macro"], abs_tol=1e-5)
