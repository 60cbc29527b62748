"""Joint fusion on the embedded multimodal corpus: robustness metrics and prediction from its logged model."""

from __future__ import annotations

import hydra
import mlflow
import numpy as np
import pandas as pd
import pytest

from emoexp import predict
from emoexp.engine.samples import prepare_samples
from emoexp.train import train


def test_attention_fusion_logs_missing_modality_metrics_and_predicts(compose, tracking_uri, tmp_path):
    cfg = compose(["modality=multimodal", "model=attention_fusion", "trainer.max_epochs=1"])
    metrics = train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("emoexp-multimodal").experiment_id])
    logged = run.data.metrics
    assert run.data.tags["modality"] == "multimodal" and run.data.tags["model"] == "attention_fusion"
    for modality in ("audio", "visual", "text"):
        for name in ("uar", "accuracy", "f1_macro"):
            key = f"test/{name}_without_{modality}"
            assert 0.0 <= logged[key] <= 1.0 and metrics[key] == logged[key]
        assert 0.0 <= logged[f"test/attention_{modality}"] <= 1.0
    assert sum(logged[f"test/attention_{m}"] for m in ("audio", "visual", "text")) == pytest.approx(
        1.0, abs=1e-4
    )

    predictions = pd.read_csv(
        client.download_artifacts(run.info.run_id, "predictions.csv"), dtype={"id": str}
    )
    manifest = prepare_samples(cfg, hydra.utils.instantiate(cfg.label_scheme, _convert_="all"))
    test = predictions[predictions["split"] == "test"].set_index("id")
    inputs = manifest.set_index("id").loc[test.index, ["audio", "image", "text"]].reset_index()
    csv = tmp_path / "samples.csv"
    inputs.to_csv(csv, index=False)
    result = predict.main(
        [
            f"run_id={run.info.run_id}",
            f"input={csv}",
            f"tracking_uri={tracking_uri}",
            f"output={tmp_path / 'out.csv'}",
        ]
    )
    predicted = result["predictions"].set_index("id").loc[test.index]
    probs = [c for c in test.columns if c.startswith("prob_")]
    np.testing.assert_allclose(predicted[probs].to_numpy(float), test[probs].to_numpy(float), atol=1e-5)
