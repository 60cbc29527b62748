"""Finding a run's logged emoexp model, without importing MLflow's pyfunc machinery.

``python -m emoexp.predict`` needs only the model's folder: these names and
:func:`download_logged_model` live here so that it does not import :mod:`emoexp.serving.pyfunc`
(whose ``mlflow.pyfunc`` import costs ~0.5 s of the prediction's start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_NAME = "model"
"""The name under which a run logs its MLflow model (``runs:/<id>/model``)."""
BUNDLE_KEY = "emoexp_model"
"""The pyfunc artifact that holds the emoexp bundle (featurizer, network, label scheme)."""


def download_logged_model(client: Any, run_id: str) -> Path:
    """Download the run's logged MLflow model (named :data:`MODEL_NAME`) and return its local folder.

    The model is found through ``client``'s store: ``runs:/`` URIs would resolve logged models
    through the process-wide tracking URI, which need not be this store.

    Raises:
        mlflow.exceptions.MlflowException: If the run logged no such model (or it cannot be read).
        OSError: If the download fails.
    """
    import mlflow.artifacts  # deferred: the CLI's --help must not load the tracking stack
    from mlflow.exceptions import MlflowException

    experiment_id = client.get_run(run_id).info.experiment_id
    models = [
        m
        for m in client.search_logged_models([experiment_id], filter_string=f"name = '{MODEL_NAME}'")
        if m.source_run_id == run_id
    ]
    if not models:
        raise MlflowException(f"run {run_id} has no logged model named {MODEL_NAME!r}")
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=models[-1].artifact_location, tracking_uri=client.tracking_uri
        )
    )
