"""Where runs go: resolving the tracking URI and creating stores and experiments."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(uri: str | None) -> str:
    """Return an absolute tracking URI, creating the folder of a local SQLite store.

    ``None`` means ``$MLFLOW_TRACKING_URI`` or the default ``./mlflow.db`` SQLite store.
    Relative SQLite paths are made absolute so that every process of a run (and the
    ``mlflow ui`` started from the project root) sees the same store.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    if "://" not in uri:
        raise ValueError(
            f"tracking.uri={uri!r} is not a URI; use e.g. sqlite:///mlflow.db, "
            "postgresql://user@host/db or http://mlflow-server:5000."
        )
    return uri


def default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifact folder beside a local SQLite store (``mlartifacts/``); ``None`` for servers."""
    if tracking_uri.startswith("sqlite:///"):
        root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
        return (root / safe).as_uri()
    return None


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """Return the id of experiment ``name``, creating it (with a local artifact root) if needed."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri, name))
    except MlflowException:
        # Another worker created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
