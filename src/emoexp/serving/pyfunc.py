"""The logged model as an MLflow pyfunc model, so ``mlflow models predict``/``serve`` work with it.

Input: a DataFrame with the model's input columns (``text`` holds the text; ``audio`` and
``image`` hold file paths) and optionally ``id``. Output: ``prediction``, ``confidence`` and
``prob_<class>`` columns and/or one column per dimension (``valence``, ``arousal``); inputs that
cannot be read give a row with ``error`` set instead of failing the whole batch.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from emoexp.serving.bundle import save_bundle, scheme_state
from emoexp.serving.logged import BUNDLE_KEY, MODEL_NAME, download_logged_model

__all__ = ["BUNDLE_KEY", "MODEL_NAME", "EmotionModel", "download_logged_model", "log_model", "signature"]


class EmotionModel(mlflow.pyfunc.PythonModel):
    """Featurizer + network + label scheme of an emoexp run, behind MLflow's pyfunc interface."""

    def load_context(self, context: Any) -> None:  # noqa: D102
        from emoexp.serving.predictor import Predictor

        self.predictor = Predictor.from_folder(context.artifacts[BUNDLE_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Predict every row; unreadable inputs get their ``error`` column filled."""
        from emoexp.serving.predictor import manifest_from_frame

        manifest = manifest_from_frame(pd.DataFrame(model_input), self.predictor.input_columns)
        predicted, failures = self.predictor.predict(manifest)
        if not failures:
            return predicted.drop(columns=[c for c in self.predictor.input_columns if c in predicted])
        errors = pd.DataFrame({"id": [f.id for f in failures], "error": [f.reason for f in failures]})
        merged = manifest[["id"]].merge(predicted, on="id", how="left").merge(errors, on="id", how="left")
        return merged.drop(columns=[c for c in self.predictor.input_columns if c in merged])


def signature(input_columns: list[str], scheme: Any) -> Any:
    """Model signature: string input columns (and optional ``id``); prediction/probabilities/dimensions."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string", c) for c in input_columns] + [ColSpec("string", "id", required=False)]
    info = scheme_state(scheme)
    outputs = [ColSpec("string", "id")]
    labels = info.get("labels") or info.get("classes") or []
    if labels:
        outputs.append(ColSpec("string", "prediction"))
        if "thresholds" not in info:
            outputs.append(ColSpec("double", "confidence"))
        outputs += [ColSpec("double", f"prob_{c}") for c in labels]
    outputs += [ColSpec("double", d) for d in info.get("dims", [])]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _requirements() -> list[str]:
    """Pinned requirements of the serving environment (inferring them imports the model in a subprocess)."""
    import importlib.metadata

    names = (
        "torch",
        "torchaudio",
        "lightning",
        "hydra-core",
        "omegaconf",
        "numpy",
        "pandas",
        "safetensors",
        "soundfile",
        "pillow",
        "transformers",
        "timm",
        "scikit-learn",
        "mlflow",
    )
    pins = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


@contextlib.contextmanager
def _fluent_run(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Make ``run_id`` the active fluent run (the only API that logs models), then put things back.

    ``mlflow.start_run(run_id=...)`` ends the run on exit; the run is set back to RUNNING for
    the caller (``train``/``fit_cross_validated``) to finish, and the process's tracking URI
    (and ``$MLFLOW_TRACKING_URI``, which ``set_tracking_uri`` rewrites) are restored.
    """
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous_uri = tracking_utils._tracking_uri
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    client = mlflow.MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            yield
    finally:
        client.update_run(run_id, status="RUNNING")
        mlflow.set_tracking_uri(previous_uri)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def log_model(tracking_uri: str, run_id: str, cfg: Any, scheme: Any, featurizer: Any, net: Any) -> None:
    """Log the run's model as an MLflow pyfunc model named ``model`` (``runs:/<run_id>/model``).

    The model folder (:mod:`emoexp.serving.bundle`) is the pyfunc model's artifact; the
    signature gives the input columns of the run's modality and the scheme's outputs.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_bundle(Path(tmp) / BUNDLE_KEY, cfg, scheme, featurizer, net, run_id)
        with _fluent_run(tracking_uri, run_id), warnings.catch_warnings():
            # No input example on purpose: one would need a real audio/image file to validate.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(Path(__file__).with_name("model_code.py")),
                artifacts={BUNDLE_KEY: str(folder)},
                signature=signature(_columns(folder), scheme),
                pip_requirements=_requirements(),
            )


def _columns(folder: Path) -> list[str]:
    """The input columns recorded in a model folder's ``meta.json``."""
    import json

    return json.loads((folder / "meta.json").read_text())["input_columns"]
