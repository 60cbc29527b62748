"""A run's test samples and model, rebuilt from what the run recorded.

See docs/design.md#4-every-run-is-reproducible-from-its-record.

The samples come from the run's resolved ``config.yaml`` (corpus, modality, label scheme,
sample limit) and the test ids of its ``predictions.csv``; the model is the run's logged model,
loaded by the serving code as ``python -m emoexp.predict`` loads it (the emoexp model folder:
featurizer state, network, scheme), or the logged scikit-learn pipeline for ``kind: sklearn``
models with the run's featurizer in front of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from emoexp.config import instantiate
from emoexp.data import schema
from emoexp.serving.predictor import Failure

TEST = "test"


class RobustnessInputError(LookupError):
    """The run cannot be re-evaluated (no model, no test predictions, samples gone); says what to do."""


class BundleModel:
    """An emoexp model folder behind :class:`~emoexp.serving.predictor.Predictor` (Lightning models)."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.scheme = predictor.scheme
        self.modality = predictor.modality
        self.input_columns = predictor.input_columns

    @property
    def fused_modalities(self) -> tuple[str, ...]:
        """The modalities a fusion network combines (empty for unimodal models)."""
        fused = getattr(self.predictor.net, "fused_modalities", None)
        return tuple(fused()) if fused is not None else ()

    def without(self, modality: str) -> contextlib.AbstractContextManager:
        """Inside the block the fusion network treats ``modality`` as missing in every sample."""
        return self.predictor.net.without(modality)

    def outputs(self, manifest: pd.DataFrame) -> tuple[Any, np.ndarray, list[Failure]]:
        """Head outputs of the readable rows, their positions, and the unreadable rows."""
        features, ok, failures = self.predictor.featurize(manifest)
        if not len(ok):
            return None, ok, failures
        return self.predictor.outputs(features), ok, failures


class PipelineModel:
    """A logged scikit-learn pipeline with the run's handcrafted featurizer in front (``kind: sklearn``)."""

    fused_modalities: tuple[str, ...] = ()

    def __init__(self, pipeline: Any, cfg: DictConfig, scheme: Any):
        from emoexp.engine.fitters.sklearn import estimator_role

        self.pipeline, self.scheme, self.modality = pipeline, scheme, str(cfg.modality)
        self.featurizer = instantiate(cfg.model.features[self.modality])
        self.role = estimator_role(cfg.model, scheme)
        self.input_columns = [schema.INPUT_COLUMNS[self.modality]]

    def without(self, modality: str) -> contextlib.AbstractContextManager:  # noqa: D102
        raise ValueError("a scikit-learn model fuses no modalities.")

    def outputs(self, manifest: pd.DataFrame) -> tuple[Any, np.ndarray, list[Failure]]:
        """Head-like outputs (the scikit-learn fitter's) of every row; an unreadable batch fails whole."""
        from emoexp.engine.fitters.sklearn import pipeline_outputs

        # Perturbed files are temporary: their features must not enter the feature cache.
        inputs, _ = self.featurizer.extract(manifest, None, False)
        outputs = pipeline_outputs(self.pipeline, inputs, self.role, self.scheme)
        return outputs, np.arange(len(manifest)), []


def _download(client: Any, run_id: str, path: str, what: str) -> Path:
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, path))
    except (MlflowException, OSError) as error:
        raise RobustnessInputError(f"run {run_id} has no {path} ({what}).") from error


def run_config(client: Any, run_id: str) -> DictConfig:
    """The run's resolved ``config.yaml`` (a fold run's is its cross-validation parent's)."""
    tags = client.get_run(run_id).data.tags
    parent = tags.get("mlflow.parentRunId") if "fold" in tags else None
    path = _download(client, parent or run_id, "config.yaml", "it predates emoexp's run record")
    return OmegaConf.load(path)


def run_test_samples(client: Any, run_id: str, cfg: DictConfig) -> tuple[Any, pd.DataFrame]:
    """The scheme prepared on the run's samples, and its test samples in ``predictions.csv`` order.

    Raises:
        RobustnessInputError: If the run logged no test predictions, or a test sample is no
            longer in the corpus (the data changed since the run).
    """
    from emoexp.engine.samples import prepare_samples

    path = _download(client, run_id, "predictions.csv", "trained with evaluate_test=false, or it failed")
    logged = pd.read_csv(path, dtype={schema.ID: str}, usecols=[schema.ID, "split"])
    ids = logged.loc[logged["split"] == TEST, schema.ID].tolist()
    if not ids:
        raise RobustnessInputError(f"run {run_id} has no test predictions (evaluate_test=false).")
    scheme = instantiate(cfg.label_scheme)
    manifest = prepare_samples(cfg, scheme)
    manifest[schema.ID] = manifest[schema.ID].astype(str)
    missing = sorted(set(ids) - set(manifest[schema.ID]))
    if missing:
        raise RobustnessInputError(
            f"{len(missing)} test sample(s) of run {run_id} are not in data={cfg.data.name} any more "
            f"(e.g. {missing[:3]}); the corpus changed since the run, so its test split cannot be rebuilt."
        )
    samples = manifest.set_index(schema.ID, drop=False).loc[ids].reset_index(drop=True)
    return scheme, samples


def logged_model_folder(client: Any, run_id: str) -> Path:
    """Download the run's logged MLflow model (named ``model``) and return its local folder.

    Raises:
        RobustnessInputError: If the run logged no model.
    """
    from mlflow.exceptions import MlflowException

    from emoexp.serving.pyfunc import download_logged_model

    try:
        return download_logged_model(client, run_id)
    except (MlflowException, OSError) as error:
        raise RobustnessInputError(
            f"run {run_id} has no logged model (trained with tracking.log_model=false, or it failed "
            "before testing); retrain it with tracking.log_model=true."
        ) from error


def load_model(client: Any, run_id: str, cfg: DictConfig, scheme: Any) -> BundleModel | PipelineModel:
    """The run's model ready to score manifests (see the module docstring).

    Raises:
        RobustnessInputError: If the run logged no model, or one emoexp cannot serve.
    """
    import mlflow

    from emoexp.serving.predictor import Predictor
    from emoexp.serving.pyfunc import BUNDLE_KEY

    local = logged_model_folder(client, run_id)
    flavors = mlflow.models.Model.load(str(local)).flavors
    bundle = flavors.get("python_function", {}).get("artifacts", {}).get(BUNDLE_KEY, {}).get("path")
    if bundle is not None:
        return BundleModel(Predictor.from_folder(local / bundle))
    if "sklearn" in flavors:
        return PipelineModel(mlflow.sklearn.load_model(str(local)), cfg, scheme)
    raise RobustnessInputError(f"run {run_id}'s model is not an emoexp or scikit-learn model.")


def fold_runs(client: Any, run_id: str) -> list[Any]:
    """The fold runs of a cross-validated run (``[]`` for a holdout or fold run), in fold order."""
    run = client.get_run(run_id)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'"
    )
    return sorted((c for c in children if "fold" in c.data.tags), key=lambda c: c.data.tags["fold"])


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    """A block that changes nothing (the clean condition and input perturbations)."""
    yield
