"""Runs with known per-sample predictions logged into a real MLflow store (no training needed).

The comparison and ensemble tools read only what a run logged (tags, metrics, config.yaml,
predictions.csv), so these runs exercise them exactly as trained runs would, in milliseconds.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from emoexp.comparison.scoring import CLASSIFICATION, classification_score, regression_score
from emoexp.config import CONF_DIR
from emoexp.labels.emotions import EKMAN7
from emoexp.tracking.store import ensure_experiment


def synthetic_predictions(
    skill: float, seed: int, n_val: int = 70, n_test: int = 105, salt: str = ""
) -> pd.DataFrame:
    """Validation and test predictions of a classifier that is right with probability ``skill``."""
    rng = np.random.default_rng(zlib.crc32(f"{salt}-{seed}-{skill}".encode()))
    n = n_val + n_test
    target = np.arange(n) % len(EKMAN7)
    right = rng.random(n) < skill
    prediction = np.where(right, target, rng.integers(0, len(EKMAN7), n))
    logits = rng.normal(0, 0.5, (n, len(EKMAN7)))
    logits[np.arange(n), prediction] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "split": ["val"] * n_val + ["test"] * n_test,
            "id": [f"emb-{i:05d}" for i in range(n)],
            "speaker": [f"spk{i % 6:02d}" for i in range(n)],
            "group_gender": np.where(np.arange(n) % 6 < 3, "female", "male"),
            "target": np.asarray(EKMAN7)[target],
            "prediction": np.asarray(EKMAN7)[probs.argmax(axis=1)],
        }
    )
    for i, name in enumerate(EKMAN7):
        frame[f"prob_{name}"] = probs[:, i]
    return frame


def synthetic_regression(noise: float, seed: int = 0, n_val: int = 60, n_test: int = 90) -> pd.DataFrame:
    """Valence/arousal predictions: the truth plus Gaussian noise of scale ``noise``, clipped to [-1, 1]."""
    truth = np.random.default_rng(0).uniform(-1, 1, (n_val + n_test, 2))
    pred = np.clip(
        truth + np.random.default_rng(zlib.crc32(f"{noise}-{seed}".encode())).normal(0, noise, truth.shape),
        -1,
        1,
    )
    return pd.DataFrame(
        {
            "split": ["val"] * n_val + ["test"] * n_test,
            "id": [f"emb-{i:05d}" for i in range(n_val + n_test)],
            "speaker": [f"spk{i % 6:02d}" for i in range(n_val + n_test)],
            "valence_true": truth[:, 0],
            "valence_pred": pred[:, 0],
            "arousal_true": truth[:, 1],
            "arousal_pred": pred[:, 1],
        }
    )


def _metrics(frame: pd.DataFrame) -> dict[str, float]:
    metrics = {}
    for split in ("val", "test"):
        part = frame[frame["split"] == split]
        if "prediction" in part.columns:
            index = {c: i for i, c in enumerate(EKMAN7)}
            true, pred = part["target"].map(index).to_numpy(), part["prediction"].map(index).to_numpy()
            for name in CLASSIFICATION:
                metrics[f"{split}/{name}"] = classification_score(name, true, pred, len(EKMAN7))
        else:
            true = part[["valence_true", "arousal_true"]].to_numpy()
            pred = part[["valence_pred", "arousal_pred"]].to_numpy()
            for name in ("ccc", "mae", "valence_ccc", "arousal_ccc"):
                metrics[f"{split}/{name}"] = regression_score(name, true, pred, ("valence", "arousal"))
    monitor = "val/uar" if "val/uar" in metrics else "val/ccc"
    metrics[f"{monitor}_best"] = metrics[monitor]
    return metrics


@pytest.fixture
def synthetic() -> object:
    """The synthetic prediction builders, for tests that craft members by hand."""

    class Builders:
        classes = EKMAN7
        predictions = staticmethod(synthetic_predictions)
        regression = staticmethod(synthetic_regression)

    return Builders


@pytest.fixture
def log_run(tracking_uri: str) -> Callable[..., str]:
    """``log_run(model=..., seed=..., skill=..., predictions=None, experiment=..., **tags) -> run_id``.

    A predictions frame with ``<dim>_true`` columns logs a valence_arousal run.
    """

    def _log(
        model: str = "lstm",
        seed: int = 0,
        skill: float = 0.6,
        predictions: pd.DataFrame | None = None,
        experiment: str = "emoexp-audio",
        modality: str = "audio",
        **tags: str,
    ) -> str:
        frame = predictions if predictions is not None else synthetic_predictions(skill, seed, salt=model)
        scheme_name = "ekman7" if "prediction" in frame.columns else "valence_arousal"
        scheme = yaml.safe_load((CONF_DIR / "label_scheme" / f"{scheme_name}.yaml").read_text())
        client = mlflow.MlflowClient(tracking_uri)
        experiment_id = ensure_experiment(tracking_uri, experiment)
        run = client.create_run(
            experiment_id,
            run_name=f"{model}-s{seed}",
            tags={
                "modality": modality,
                "model": model,
                "label_scheme": scheme_name,
                "protocol": "holdout",
                "data": "embedded_multimodal",
                "seed": str(seed),
                "data_fingerprint": f"fp-{seed}",
                "emoexp.monitor": scheme["monitor"],
                **tags,
            },
        )
        run_id = run.info.run_id
        timestamp = 0
        client.log_batch(
            run_id, metrics=[mlflow.entities.Metric(k, v, timestamp, 0) for k, v in _metrics(frame).items()]
        )
        config = {"modality": modality, "seed": seed, "model": {"name": model}, "label_scheme": scheme}
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "predictions.csv").write_text(frame.to_csv(index=False))
            (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(config))
            client.log_artifact(run_id, str(Path(tmp) / "predictions.csv"))
            client.log_artifact(run_id, str(Path(tmp) / "config.yaml"))
        client.set_terminated(run_id, "FINISHED")
        return run_id

    return _log


@pytest.fixture
def log_cv_run(log_run: Callable[..., str], tracking_uri: str) -> Callable[..., str]:
    """``log_cv_run(model=..., skill=..., folds=3) -> parent id``: a cross-validated run with fold runs.

    The parent holds the out-of-fold predictions (with a ``fold`` column), each fold run its own
    metrics, as ``fit_cross_validated`` logs them.
    """

    def _log(model: str = "lstm", seed: int = 0, skill: float = 0.6, folds: int = 3) -> str:
        frames = []
        for k in range(folds):
            part = synthetic_predictions(skill, seed=seed * 100 + k, n_val=30, n_test=40, salt=model)
            # Every sample is a test sample in exactly one fold; validation ids repeat across folds.
            part["id"] = [
                f"emb-{k}-{i:04d}" if s == "test" else f"val-{k}-{i:04d}" for i, s in enumerate(part["split"])
            ]
            frames.append(part.assign(fold=f"fold{k}"))
        oof = pd.concat(frames, ignore_index=True)
        parent = log_run(model=model, seed=seed, predictions=oof.drop(columns="fold"), protocol="kfold")
        client = mlflow.MlflowClient(tracking_uri)
        local = client.download_artifacts(parent, "predictions.csv")
        Path(local).write_text(oof.to_csv(index=False))
        client.log_artifact(parent, local)
        experiment = client.get_run(parent).info.experiment_id
        for k, part in enumerate(frames):
            child = client.create_run(
                experiment,
                run_name=f"{model}-fold{k}",
                tags={
                    "mlflow.parentRunId": parent,
                    "fold": f"fold{k}",
                    "model": model,
                    "seed": str(seed),
                    "label_scheme": "ekman7",
                },
            ).info.run_id
            client.log_batch(
                child, metrics=[mlflow.entities.Metric(k_, v, 0, 0) for k_, v in _metrics(part).items()]
            )
            client.set_terminated(child, "FINISHED")
        return parent

    return _log
