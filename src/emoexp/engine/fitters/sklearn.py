"""The scikit-learn fitter (``model.kind: sklearn``): a feature pipeline and an estimator on one fold.

The classical counterpart of the Lightning fitter; the fold epilogue records both the same way:
the label scheme's own metric collections (``train/*``, ``val/*``, ``test/*``, with
``val/<monitor>_best``), ``predictions.csv``, the reports, and the fitted pipeline as an MLflow
sklearn model under ``model``.

Pipeline: [text vectorizer] -> [variance threshold] -> [scaler] -> [k best] -> estimator, fitted
on the training rows only. A ``model.search`` grid is a model selection on the *validation*
rows (every candidate is fitted on the training rows; the best ``val/<monitor>`` wins); the
test rows are only ever predicted by the selected model (docs/design.md#3-the-test-split-is-locked).

Estimator outputs enter the schemes' metrics as the deep models' heads would: classifiers
give ``log(predict_proba)`` (whose softmax is the probabilities), regressors give
``atanh(clip(predict, -1, 1))`` (whose tanh, the dimensional scheme's squashing, is the
prediction clipped to the target range).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from emoexp.config import ConfigError, instantiate
from emoexp.data.splits import TEST, TRAIN, VAL
from emoexp.engine.fitters.base import FoldContext

log = logging.getLogger(__name__)

CLASSIFIER, REGRESSOR = "classifier", "regressor"
MODEL_ARTIFACT = "model"
_CLIP = 1.0 - 1e-6


def estimator_role(model_cfg: DictConfig, scheme: Any) -> str:
    """``"classifier"`` or ``"regressor"``: the scheme says which, the model must have that estimator.

    Raises:
        ConfigError: If the scheme cannot be served by a scikit-learn estimator, or the model
            config has none for its role.
    """
    name = model_cfg.get("name", "?")
    role = scheme.estimator_role(name)
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

    preprocessing = model_cfg.get("preprocessing") or {}
    steps = list(featurizer.pipeline_steps())
    if preprocessing.get("variance_threshold") is not None:
        steps.append(("variance", VarianceThreshold(float(preprocessing.variance_threshold))))
    scaler = _scaler(preprocessing.get("scaler", "auto"), featurizer.sparse)
    if scaler is not None:
        steps.append(("scale", scaler))
    k_best = preprocessing.get("k_best")
    if k_best and str(k_best) != "all":  # "all" (a choice of the svm search space) keeps every feature
        score = f_classif if role == CLASSIFIER else f_regression_mean
        steps.append(("select", SelectKBest(score, k=int(k_best))))

    estimator = instantiate(model_cfg.estimator[role])
    if role == CLASSIFIER:
        present, counts = np.unique(y_train, return_counts=True)
        weights = scheme.class_loss_weights
        if weights is not None and "class_weight" in estimator.get_params():
            estimator.set_params(class_weight={int(c): float(weights[int(c)]) for c in present})
        if not hasattr(estimator, "predict_proba"):
            # SVC(probability=True) is deprecated in scikit-learn 1.9; this is its replacement:
            # Platt scaling on cross-validated decision values of the training rows.
            folds = min(int(model_cfg.get("calibration_cv", 5)), int(counts.min()))
            if folds < 2:
                rare = [scheme.class_names[int(c)] for c, n in zip(present, counts, strict=True) if n < 2]
                raise ConfigError(
                    f"model={model_cfg.name}: probability calibration needs at least 2 training samples "
                    f"per class, but {rare} have 1. Use more data or a model with predict_proba."
                )
            estimator = CalibratedClassifierCV(estimator, method="sigmoid", cv=folds, ensemble=False)
    elif len(scheme.dimension_names) > 1 and not get_tags(estimator).target_tags.multi_output:
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
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


def log_sklearn_model(
    pipeline: Any, inputs: Any, role: str, run_id: str, tracking_uri: str, serialization: str
) -> None:
    """Log the fitted pipeline as an MLflow sklearn model under ``model`` of ``run_id``, with a signature.

    Loaded with ``mlflow.sklearn.load_model("runs:/<run_id>/model")``, it takes the output of the
    featurizer's ``extract`` (functionals, HOG/LBP/geometry, or raw texts for TF-IDF/BoW); its
    pyfunc flavour returns class probabilities (classifiers) or predictions (regressors).
    Pipelines with emoexp steps (the text tokenizer) need emoexp importable to load. Called
    through :meth:`emoexp.engine.recorder.Recorder.log_model`, which keeps the run RUNNING.
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
    with _tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            signature=signature,
            serialization_format=serialization,
            # Explicit requirements: inferring them imports the model in a subprocess (~20 s).
            pip_requirements=requirements,
            pyfunc_predict_fn=predict,
        )


def _select(
    ctx: FoldContext, template: Any, candidates: list[dict[str, Any]], data: _FoldData
) -> tuple[Any, dict, dict]:
    """Fit every candidate on the training rows; the best ``val/<monitor>`` wins (validation only)."""
    from sklearn.base import clone

    scheme = ctx.scheme
    sign = 1.0 if scheme.mode == "max" else -1.0
    best_pipeline, best_params, best_val, best_score = None, {}, {}, -np.inf
    for params in candidates:
        pipeline = clone(template).set_params(**params)
        pipeline.fit(data.inputs[data.rows[TRAIN]], data.y[data.rows[TRAIN]])
        val = data.stage(pipeline, VAL) if len(data.rows[VAL]) else {}
        score = sign * val.get(scheme.monitor, 0.0)
        score = score if np.isfinite(score) else -np.inf  # an undefined score never wins
        if best_pipeline is None or score > best_score:
            best_pipeline, best_params, best_val, best_score = pipeline, params, val, score
        if len(candidates) > 1:
            log.info("%s: %s = %.4f", params, scheme.monitor, val.get(scheme.monitor, float("nan")))
    return best_pipeline, best_params, best_val


class _FoldData:
    """A fold's extracted inputs, targets and rows, and the scheme's metrics of a pipeline on one part."""

    def __init__(self, ctx: FoldContext, inputs: Any, role: str):
        targets = {k: np.asarray(v) for k, v in ctx.scheme.targets(ctx.manifest).items()}
        self.scheme, self.inputs, self.role, self.targets = ctx.scheme, inputs, role, targets
        self.y = targets["label"] if role == CLASSIFIER else targets["dims"]
        self.rows = {part: np.flatnonzero(ctx.fold.mask(part)) for part in (TRAIN, VAL, TEST)}

    def outputs(self, pipeline: Any, part: str) -> Any:
        return pipeline_outputs(pipeline, self.inputs[self.rows[part]], self.role, self.scheme)

    def stage(self, pipeline: Any, part: str) -> dict[str, float]:
        import torch

        targets = {k: torch.as_tensor(v[self.rows[part]]) for k, v in self.targets.items()}
        return stage_metrics(self.scheme, self.outputs(pipeline, part), targets, f"{part}/")


def fit_sklearn(ctx: FoldContext) -> SklearnFold:
    """Fit the configured scikit-learn pipeline on the fold's training rows (see the module docstring).

    Raises:
        ConfigError: For a label scheme the model cannot serve, or a bad search/preprocessing key.
    """
    cfg, scheme = ctx.cfg, ctx.scheme
    role = estimator_role(cfg.model, scheme)
    featurizer = instantiate(cfg.model.features[cfg.modality])
    inputs, hit = featurizer.extract(ctx.manifest, cfg.paths.cache_dir, cfg.datamodule.use_cache)
    ctx.recorder.set_tags(
        ctx.run_id, {"feature_cache": "hit" if hit else "miss", "emoexp.model_kind": "sklearn"}
    )
    data = _FoldData(ctx, inputs, role)
    template = build_pipeline(cfg.model, featurizer, role, scheme, data.y[data.rows[TRAIN]])
    candidates = _search_grid(cfg.model, role, template)
    if len(candidates) > 1 and len(data.rows[VAL]) == 0:
        raise ConfigError(
            f"model.search needs validation rows to select among {len(candidates)} settings, and "
            f"protocol={cfg.protocol.name} has none; empty model.search.{role} or use a protocol with val."
        )
    pipeline, params, val = _select(ctx, template, candidates, data)
    if params:
        ctx.recorder.log_params(ctx.run_id, {f"selected.{k}": str(v) for k, v in params.items()})
    vectorizer = pipeline.named_steps.get("vectorize")
    # A vectorizer, or a FeatureUnion of a word and a character one: count all their n-grams.
    extracted = len(vectorizer.get_feature_names_out()) if vectorizer is not None else np.shape(inputs)[1]
    train_rows = data.rows[TRAIN]
    used = pipeline[:-1].transform(inputs[train_rows[:1]]).shape[1] if len(pipeline) > 1 else extracted
    logged = {
        "model/features_extracted": float(extracted),
        "model/features_used": float(used),
        **data.stage(pipeline, TRAIN),
        **val,
    }
    best = {scheme.best_metric: val[scheme.monitor]} if scheme.monitor in val else {}
    ctx.recorder.log_metrics(ctx.run_id, {**logged, **best})
    return SklearnFold(ctx, pipeline, data, best)


class SklearnFold:
    """A fitted pipeline; the test rows are predicted only when the fold epilogue asks."""

    logs_test_metrics = False
    checkpoint = None

    def __init__(self, ctx: FoldContext, pipeline: Any, data: _FoldData, best: dict[str, float]):
        self.ctx, self.pipeline, self.data, self.best = ctx, pipeline, data, best

    def outputs(self, part: str) -> tuple[Any, np.ndarray]:  # noqa: D102
        return self.data.outputs(self.pipeline, part), self.data.rows[part]

    def test_metrics(self) -> dict[str, float]:  # noqa: D102
        return self.data.stage(self.pipeline, TEST)

    def extra_test_metrics(self) -> dict[str, float]:  # noqa: D102
        return {}

    def log_model(self) -> None:  # noqa: D102
        ctx, data = self.ctx, self.data
        example = data.inputs[data.rows[TRAIN][:32]]
        serialization = ctx.cfg.model.get("serialization_format", "cloudpickle")
        ctx.recorder.log_model(
            ctx.run_id,
            lambda: log_sklearn_model(
                self.pipeline, example, data.role, ctx.run_id, ctx.recorder.tracking_uri, serialization
            ),
        )
