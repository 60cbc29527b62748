"""Fitting and evaluating one scikit-learn model (``model.kind: sklearn``) on one fold.

The classical counterpart of :func:`emoexp.runner.fit_fold`, logging the same record:
the label scheme's own metric collections (``train/*``, ``val/*``, ``test/*``, with
``val/<monitor>_best``), ``predictions.csv``, the dataset/confusion/per-class/per-group
reports, and the fitted pipeline as an MLflow sklearn model under ``model``.

Pipeline: [text vectorizer] -> [variance threshold] -> [scaler] -> [k best] -> estimator, fitted
on the training rows only. A ``model.search`` grid is a model selection on the *validation*
rows (every candidate is fitted on the training rows; the best ``val/<monitor>`` wins); the
test rows are only ever predicted by the selected model (DESIGN invariant 3).

Estimator outputs enter the schemes' metrics as the deep models' heads would: classifiers
give ``log(predict_proba)`` (whose softmax is the probabilities), regressors give
``atanh(clip(predict, -1, 1))`` (whose tanh, the dimensional scheme's squashing, is the
prediction clipped to the target range).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from emoexp.config import ConfigError
from emoexp.data.splits import TEST, TRAIN, VAL, Fold

log = logging.getLogger(__name__)

CLASSIFIER, REGRESSOR = "classifier", "regressor"
MODEL_ARTIFACT = "model"
_CLIP = 1.0 - 1e-6


def estimator_role(model_cfg: DictConfig, scheme: Any) -> str:
    """Return ``"classifier"`` or ``"regressor"`` for the scheme, or raise a clear :class:`ConfigError`.

    Categorical schemes take the model's classifier, the dimensional scheme its regressor;
    schemes that need one estimator for several kinds of targets (``both``, multi-label) and
    soft (annotator-distribution) targets are rejected.
    """
    kind = getattr(scheme, "kind", "")
    name = model_cfg.get("name", "?")
    if kind == "categorical":
        if getattr(scheme, "target", "hard") != "hard":
            raise ConfigError(
                f"model={name} (scikit-learn) trains on hard labels; label_scheme.target=soft needs a "
                "neural model (lstm, cnn, transformer, timm). Use label_scheme.target=hard."
            )
        role = CLASSIFIER
    elif kind == "dimensional":
        role = REGRESSOR
    else:
        raise ConfigError(
            f"model={name} (scikit-learn) supports categorical schemes (ekman6, ekman7, ...) with its "
            f"classifier and valence_arousal with its regressor, not label_scheme={scheme.name} "
            f"(kind {kind!r}). Use a neural model for it, or one of those schemes."
        )
    if model_cfg.get("estimator", {}).get(role) is None:
        raise ConfigError(f"model={name} has no estimator.{role} for label_scheme={scheme.name}.")
    return role


def f_regression_mean(features: Any, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Univariate F scores against several targets: the mean F and the smallest p-value per feature.

    ``SelectKBest`` score function for multi-output regression (valence and arousal), where
    scikit-learn's ``f_regression`` takes one target.
    """
    from sklearn.feature_selection import f_regression

    targets = np.asarray(targets)
    if targets.ndim == 1:
        return f_regression(features, targets)
    scores = [f_regression(features, targets[:, j]) for j in range(targets.shape[1])]
    f = np.nanmean(np.stack([s[0] for s in scores]), axis=0)
    p = np.nanmin(np.stack([s[1] for s in scores]), axis=0)
    return f, p


def _scaler(name: str | None, sparse: bool) -> Any:
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

    if name == "auto":
        # Dense functionals/histograms are standardised; TF-IDF rows are already L2-normalised
        # and bag-of-words counts are left as they are.
        return None if sparse else StandardScaler()
    if name is None:
        return None
    if name == "standard":
        return StandardScaler(with_mean=not sparse)  # centring would densify sparse n-gram matrices
    if name == "maxabs":
        return MaxAbsScaler()
    if name == "minmax":
        if sparse:
            raise ConfigError(
                "model.preprocessing.scaler=minmax cannot scale sparse bag-of-words features; use "
                "standard, maxabs, auto or null."
            )
        return MinMaxScaler()
    raise ConfigError(
        f"model.preprocessing.scaler={name!r} is unknown; choose auto, standard, minmax, maxabs or null."
    )


def build_pipeline(
    model_cfg: DictConfig, featurizer: Any, role: str, scheme: Any, y_train: np.ndarray
) -> Any:
    """The unfitted pipeline for one fold (see the module docstring).

    Args:
        model_cfg: The ``model`` config node.
        featurizer: The handcrafted extractor (its pipeline steps come first).
        role: ``"classifier"`` or ``"regressor"``.
        scheme: The label scheme (class weights, number of dimensions).
        y_train: Training targets (class counts for calibration and class weights).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.utils import get_tags

    from emoexp.train import _instantiate

    preprocessing = model_cfg.get("preprocessing") or {}
    steps = list(featurizer.pipeline_steps())
    if preprocessing.get("variance_threshold") is not None:
        steps.append(("variance", VarianceThreshold(float(preprocessing.variance_threshold))))
    scaler = _scaler(preprocessing.get("scaler", "auto"), featurizer.sparse)
    if scaler is not None:
        steps.append(("scale", scaler))
    if preprocessing.get("k_best"):
        score = f_classif if role == CLASSIFIER else f_regression_mean
        steps.append(("select", SelectKBest(score, k=int(preprocessing.k_best))))

    estimator = _instantiate(model_cfg.estimator[role])
    if role == CLASSIFIER:
        present, counts = np.unique(y_train, return_counts=True)
        weights = getattr(scheme, "class_weights", None)
        if weights is not None and not isinstance(weights, str) and "class_weight" in estimator.get_params():
            estimator.set_params(class_weight={int(c): float(weights[int(c)]) for c in present})
        if not hasattr(estimator, "predict_proba"):
            # SVC(probability=True) is deprecated in scikit-learn 1.9; this is its replacement:
            # Platt scaling on cross-validated decision values of the training rows.
            folds = min(int(model_cfg.get("calibration_cv", 5)), int(counts.min()))
            if folds < 2:
                rare = [scheme.classes[int(c)] for c, n in zip(present, counts, strict=True) if n < 2]
                raise ConfigError(
                    f"model={model_cfg.name}: probability calibration needs at least 2 training samples "
                    f"per class, but {rare} have 1. Use more data or a model with predict_proba."
                )
            estimator = CalibratedClassifierCV(estimator, method="sigmoid", cv=folds, ensemble=False)
    elif len(scheme.dims) > 1 and not get_tags(estimator).target_tags.multi_output:
        estimator = MultiOutputRegressor(estimator)  # e.g. SVR: one model per dimension
    steps.append(("model", estimator))
    return Pipeline(steps)


def _search_grid(model_cfg: DictConfig, role: str, pipeline: Any) -> list[dict[str, Any]]:
    """Candidate parameter settings of ``model.search.<role>`` with keys valid for ``pipeline``."""
    from sklearn.model_selection import ParameterGrid

    node = (model_cfg.get("search") or {}).get(role)
    grid = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    if not grid:
        return [{}]
    valid = set(pipeline.get_params(deep=True))
    translated = {}
    for key, values in grid.items():
        # A wrapped estimator (calibration, one model per output) takes its parameters one level down.
        wrapped = key.replace("model__", "model__estimator__", 1)
        name = key if key in valid else wrapped if wrapped in valid else None
        if name is None:
            options = sorted(
                k for k in valid if k.startswith(("model__", "select__", "variance__", "scale__"))
            )
            raise ConfigError(
                f"model.search.{role}.{key} is not a parameter of the pipeline; valid keys include "
                f"{options[:40]}."
            )
        translated[name] = values if isinstance(values, list) else [values]
    return list(ParameterGrid(translated))


def pipeline_outputs(pipeline: Any, inputs: Any, role: str, scheme: Any) -> Any:
    """Head-like outputs ``[N, scheme.num_outputs]`` (see the module docstring) as a float32 tensor."""
    import torch

    if role == CLASSIFIER:
        probs = np.zeros((len(inputs), scheme.num_outputs))
        probs[:, pipeline.classes_.astype(int)] = pipeline.predict_proba(inputs)
        return torch.from_numpy(np.log(np.clip(probs, 1e-12, None))).float()
    predicted = np.asarray(pipeline.predict(inputs), dtype=np.float64).reshape(len(inputs), -1)
    return torch.from_numpy(np.arctanh(np.clip(predicted, -_CLIP, _CLIP))).float()


def stage_metrics(scheme: Any, outputs: Any, targets: dict[str, Any], prefix: str) -> dict[str, float]:
    """The scheme's metrics and loss of ``outputs`` for one stage, e.g. ``val/uar`` and ``val/loss``."""
    collections = scheme.metrics(prefix)
    scheme.update_metrics(collections, outputs, targets)
    values = {f"{prefix}loss": float(scheme.loss(outputs, targets))}
    for collection in collections:
        values.update({k: float(v) for k, v in collection.compute().items()})
    return values


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the block, leaving the caller's setting as it was."""
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover - the private helper moved; fall back to the public API
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)
        return
    with _use_tracking_uri(uri):
        yield


def log_sklearn_model(
    pipeline: Any, inputs: Any, role: str, client: Any, run_id: str, tracking_uri: str, serialization: str
) -> None:
    """Log the fitted pipeline as an MLflow sklearn model under ``model`` of ``run_id``, with a signature.

    Loaded with ``mlflow.sklearn.load_model("runs:/<run_id>/model")``, it takes the output of the
    featurizer's ``extract`` (functionals, HOG/LBP/geometry, or raw texts for TF-IDF/BoW); its
    pyfunc flavour returns class probabilities (classifiers) or predictions (regressors).
    Pipelines with emoexp steps (the text tokenizer) need emoexp importable to load.
    """
    import cloudpickle
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    predict = "predict_proba" if role == CLASSIFIER else "predict"
    signature = infer_signature(inputs, getattr(pipeline, predict)(inputs))
    requirements = [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]
    if serialization == "cloudpickle":
        requirements.append(f"cloudpickle=={cloudpickle.__version__}")
    # The fluent API is the only one that logs models; it ends the run it resumed, so the
    # run is set back to RUNNING for the caller (train / fit_cross_validated) to finish.
    with _tracking_uri(tracking_uri):
        try:
            with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
                mlflow.sklearn.log_model(
                    pipeline,
                    name=MODEL_ARTIFACT,
                    signature=signature,
                    serialization_format=serialization,
                    # Explicit requirements: inferring them imports the model in a subprocess (~20 s).
                    pip_requirements=requirements,
                    pyfunc_predict_fn=predict,
                )
        finally:
            client.update_run(run_id, status="RUNNING")


def fit_fold_sklearn(
    cfg: DictConfig,
    scheme: Any,
    manifest: pd.DataFrame,
    fold: Fold,
    client: Any,
    run_id: str,
    tracking_uri: str,
    output_dir: Path,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Fit the configured scikit-learn pipeline on one fold and log it like :func:`emoexp.runner.fit_fold`.

    Returns:
        Final metrics (``val/<monitor>_best``, ``test/*``) and the per-sample predictions.

    Raises:
        ConfigError: For a label scheme the model cannot serve, or a bad search/preprocessing key.
    """
    import mlflow
    import torch
    from sklearn.base import clone

    from emoexp.evaluation.dataset_report import dataset_reports
    from emoexp.runner import _log_frame, log_reports, predictions_frame
    from emoexp.train import _instantiate

    role = estimator_role(cfg.model, scheme)
    featurizer = _instantiate(cfg.model.features[cfg.modality])
    inputs, hit = featurizer.extract(manifest, cfg.paths.cache_dir, cfg.datamodule.use_cache)
    client.set_tag(run_id, "feature_cache", "hit" if hit else "miss")
    client.set_tag(run_id, "emoexp.model_kind", "sklearn")
    scheme = scheme.resolve_class_weights(manifest.loc[fold.mask(TRAIN)])
    for name, frame in dataset_reports(manifest, fold, scheme).items():
        _log_frame(client, run_id, frame, name, "reports")

    targets = {k: np.asarray(v) for k, v in scheme.targets(manifest).items()}
    y = targets["label"] if role == CLASSIFIER else targets["dims"]
    rows = {part: np.flatnonzero(fold.mask(part)) for part in (TRAIN, VAL, TEST)}

    def part_targets(part: str) -> dict[str, Any]:
        return {k: torch.as_tensor(v[rows[part]]) for k, v in targets.items()}

    template = build_pipeline(cfg.model, featurizer, role, scheme, y[rows[TRAIN]])
    candidates = _search_grid(cfg.model, role, template)
    if len(candidates) > 1 and len(rows[VAL]) == 0:
        raise ConfigError(
            f"model.search needs validation rows to select among {len(candidates)} settings, and "
            f"protocol={cfg.protocol.name} has none; empty model.search.{role} or use a protocol with val."
        )
    sign = 1.0 if scheme.mode == "max" else -1.0
    best_pipeline, best_params, best_val, best_score = None, {}, {}, -np.inf
    for params in candidates:
        pipeline = clone(template).set_params(**params)
        pipeline.fit(inputs[rows[TRAIN]], y[rows[TRAIN]])
        val = {}
        if len(rows[VAL]):
            val = stage_metrics(
                scheme, pipeline_outputs(pipeline, inputs[rows[VAL]], role, scheme), part_targets(VAL), "val/"
            )
        score = sign * val.get(scheme.monitor, 0.0)
        score = score if np.isfinite(score) else -np.inf  # an undefined score never wins
        if best_pipeline is None or score > best_score:
            best_pipeline, best_params, best_val, best_score = pipeline, params, val, score
        if len(candidates) > 1:
            log.info("%s: %s = %.4f", params, scheme.monitor, val.get(scheme.monitor, float("nan")))
    pipeline = best_pipeline
    if best_params:
        client.log_batch(
            run_id, params=[mlflow.entities.Param(f"selected.{k}", str(v)) for k, v in best_params.items()]
        )

    vectorizer = pipeline.named_steps.get("vectorize")
    extracted = len(vectorizer.vocabulary_) if vectorizer is not None else np.shape(inputs)[1]
    used = pipeline[:-1].transform(inputs[rows[TRAIN][:1]]).shape[1] if len(pipeline) > 1 else extracted
    logged = {
        "model/features_extracted": float(extracted),
        "model/features_used": float(used),
        **stage_metrics(
            scheme,
            pipeline_outputs(pipeline, inputs[rows[TRAIN]], role, scheme),
            part_targets(TRAIN),
            "train/",
        ),
        **best_val,
    }
    if scheme.monitor in best_val:
        logged[scheme.best_metric] = best_val[scheme.monitor]
    evaluate_test = cfg.get("evaluate_test", True)
    outputs = {VAL: pipeline_outputs(pipeline, inputs[rows[VAL]], role, scheme)}
    if evaluate_test:
        outputs[TEST] = pipeline_outputs(pipeline, inputs[rows[TEST]], role, scheme)
        logged.update(stage_metrics(scheme, outputs[TEST], part_targets(TEST), "test/"))
    timestamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, timestamp, 0) for k, v in logged.items()])

    if cfg.tracking.log_checkpoint and run_id:  # no run id: a non-zero DDP rank, which records nothing
        log_sklearn_model(
            pipeline,
            inputs[rows[TRAIN][:32]],
            role,
            client,
            run_id,
            tracking_uri,
            cfg.model.get("serialization_format", "cloudpickle"),
        )
    metrics = {k: v for k, v in logged.items() if k.startswith("test/") or k == scheme.best_metric}
    if not evaluate_test:
        # Test lock (tuning trials): validation only, no test metrics or test predictions.
        return metrics, pd.DataFrame(columns=["split"])
    predictions = pd.concat(
        [predictions_frame(scheme, outputs[part], rows[part], manifest, part) for part in (VAL, TEST)],
        ignore_index=True,
    )
    _log_frame(client, run_id, predictions, "predictions.csv")
    log_reports(client, run_id, scheme, predictions)
    return metrics, predictions
