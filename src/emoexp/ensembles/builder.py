"""Build, evaluate and log an ensemble of tracked runs (no retraining: stored predictions only)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emoexp.comparison.runs import Run
from emoexp.data import schema
from emoexp.ensembles.combine import (
    Combined,
    ValidationOnlyFit,
    combine_dims,
    combine_probs,
)
from emoexp.ensembles.members import Member, align, build_scheme, load_members

KIND = "ensemble"
_CLIP = 1.0 - 1e-7


@dataclass
class Ensemble:
    """An evaluated ensemble.

    Attributes:
        method: Combination method.
        members: Member runs with their predictions.
        scheme: The common label scheme.
        predictions: Per-sample predictions, in the columns of a training run's ``predictions.csv``.
        metrics: ``val/*`` and ``test/*`` metrics under the training runs' names.
        combined: Raw combined outputs, weights and meta-learner details.
        guard: Every row a meta-learner was fitted on (validation rows only).
    """

    method: str
    members: list[Member]
    scheme: Any
    predictions: pd.DataFrame
    metrics: dict[str, float]
    combined: Combined
    guard: ValidationOnlyFit


def _samples(frame: pd.DataFrame, scheme: Any) -> pd.DataFrame:
    """A minimal manifest (labels) of aligned rows, as ``scheme.predictions_frame`` expects."""
    samples = pd.DataFrame(index=frame.index)
    if "target" in frame.columns:
        samples[schema.EMOTION] = frame["target"].to_numpy()
    for dim in scheme.dimension_names:
        samples[dim] = frame[f"{dim}_true"].to_numpy(float)
    return samples


def _outputs_and_targets(scheme: Any, frame: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """Head-like outputs whose decoding gives the frame's predictions, and the scheme's targets.

    Categorical: ``log(p)`` (softmax gives p back); dimensional: ``atanh(pred)`` (tanh gives the
    prediction back). The scheme's own metric collections then score the ensemble exactly as
    they score a trained network.
    """
    import torch

    parts, targets = [], {}
    classes = list(scheme.class_names)
    if classes:
        probs = frame[[f"prob_{c}" for c in classes]].to_numpy(float)
        parts.append(np.log(np.clip(probs, 1e-12, 1.0)))
        index = {c: i for i, c in enumerate(classes)}
        targets["label"] = torch.tensor(frame["target"].map(index).to_numpy(np.int64))
    dims = list(scheme.dimension_names)
    if dims:
        parts.append(np.arctanh(np.clip(frame[[f"{d}_pred" for d in dims]].to_numpy(float), -_CLIP, _CLIP)))
        targets["dims"] = torch.tensor(frame[[f"{d}_true" for d in dims]].to_numpy(np.float32))
    return torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.float32), targets


def scheme_metrics(scheme: Any, frame: pd.DataFrame, prefix: str) -> dict[str, float]:
    """The scheme's metrics (and loss, for hard targets) of a predictions frame, keys ``<prefix><name>``."""
    from emoexp.labels.schemes import LabelSchemeError

    outputs, targets = _outputs_and_targets(scheme, frame)
    collections = scheme.metrics(prefix=prefix)
    scheme.update_metrics(collections, outputs, targets)
    values = {k: float(v) for collection in collections for k, v in collection.compute().items()}
    if not scheme.uses_soft_targets:  # soft targets (annotator distributions) are not stored
        # class_weights="balanced" needs a training split, which an ensemble does not have.
        with contextlib.suppress(LabelSchemeError):
            values[f"{prefix}loss"] = float(scheme.loss(outputs, targets))
    return values


def evaluate(scheme: Any, predictions: pd.DataFrame) -> dict[str, float]:
    """``val/*`` and ``test/*`` metrics; for cross-validated members, per fold then mean/std/CI."""
    from emoexp.engine.run import summarise_folds

    per_block = []
    blocks = (
        predictions["fold"]
        if "fold" in predictions.columns
        else pd.Series("holdout", index=predictions.index)
    )
    for block in blocks.unique():
        part = predictions[blocks == block]
        metrics = {}
        for split in ("val", "test"):
            metrics.update(scheme_metrics(scheme, part[part["split"] == split], f"{split}/"))
        metrics[scheme.best_metric] = metrics[scheme.monitor]
        per_block.append(metrics)
    return per_block[0] if len(per_block) == 1 else summarise_folds(per_block)


def build(client: Any, runs: Sequence[Run], method: str = "soft") -> Ensemble:
    """Combine the stored predictions of ``runs`` with ``method`` and evaluate the result.

    Raises:
        EnsembleError: If the members do not fit together or the method is unknown.
    """
    members = load_members(client, runs)
    scheme = build_scheme(members)
    frames = align(members)
    reference = frames[0]
    split = reference["split"].to_numpy(str)
    blocks = reference["block"].to_numpy(str)
    guard = ValidationOnlyFit()
    decoded: dict[str, np.ndarray] = {}
    combined = Combined(None, None)
    classes = list(scheme.class_names)
    if classes:
        probs = np.stack([f[[f"prob_{c}" for c in classes]].to_numpy(float) for f in frames])
        labels = reference["target"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
        metric = (
            scheme.monitor.split("/", 1)[1]
            if scheme.monitor.split("/", 1)[1] in ("accuracy", "uar", "f1_macro", "f1_weighted")
            else "uar"
        )
        combined = combine_probs(method, probs, labels, split, blocks, guard, metric)
        decoded["probs"] = combined.probs
    dims = list(scheme.dimension_names)
    if dims:
        values = np.stack([f[[f"{d}_pred" for d in dims]].to_numpy(float) for f in frames])
        truth = reference[[f"{d}_true" for d in dims]].to_numpy(float)
        regression = combine_dims(method, values, truth, split, blocks, tuple(dims), guard)
        decoded["dims"] = regression.dims
        combined = Combined(
            combined.probs,
            regression.dims,
            {**combined.weights, **{f"dims_{k}": v for k, v in regression.weights.items()}},
            {**combined.details, **regression.details},
        )
    meta = [
        c for c in reference.columns if c in ("split", "id", "speaker") or c.startswith(schema.GROUP_PREFIX)
    ]
    frame = scheme.predictions_frame(decoded, _samples(reference, scheme))
    predictions = pd.concat([reference[meta], frame], axis=1)
    if (reference["block"] != "holdout").any():
        predictions["fold"] = reference["block"].to_numpy()
    return Ensemble(method, members, scheme, predictions, evaluate(scheme, predictions), combined, guard)


def _common(runs: Sequence[Run], tag: str, mixed: str = "mixed") -> str:
    values = {r.tags.get(tag, "") for r in runs}
    return values.pop() if len(values) == 1 else mixed


def log_ensemble(
    client: Any, ensemble: Ensemble, experiment: str, run_name: str, selection: dict[str, Any] | None = None
) -> str:
    """Log the ensemble as a new MLflow run tagged ``ensemble=true`` with its members' ids.

    The run records what a training run records where it applies: the training runs' metric
    names (``val/*``, ``test/*``, ``val/<monitor>_best``), ``predictions.csv``, the confusion
    matrix, per-class, per-group and calibration reports, and a ``config.yaml`` holding the
    label scheme (so an ensemble can itself be compared or ensembled). Everything is written
    through a :class:`~emoexp.engine.recorder.Recorder` on ``client``'s store.

    Returns:
        The new run's id.
    """
    from emoexp.engine.epilogue import record_report
    from emoexp.engine.recorder import ERROR_TAG, Recorder

    recorder = Recorder(client.tracking_uri)
    tags = _ensemble_tags(ensemble)
    run_id = recorder.create_run(recorder.experiment_id(experiment), run_name, tags)
    try:
        _log_values(recorder, run_id, ensemble, tags, selection)
        _log_files(recorder, run_id, ensemble, tags)
        record_report(recorder, run_id, ensemble.scheme, ensemble.predictions)
        recorder.flush()  # the recorder buffers metrics until flushed
    except BaseException as error:
        recorder.set_tags(run_id, {ERROR_TAG: f"{type(error).__name__}: {error}"[:5000]})
        recorder.end(run_id, "FAILED")
        raise
    recorder.end(run_id, "FINISHED")
    return run_id


def _ensemble_tags(ensemble: Ensemble) -> dict[str, str]:
    """The run tags: the members, and the tags training runs carry (``mixed`` where members differ)."""
    runs = [m.run for m in ensemble.members]
    modalities = sorted({r.tags.get("modality", "?") for r in runs})
    tags = {
        "ensemble": "true",
        "emoexp.kind": KIND,
        "ensemble.method": ensemble.method,
        "ensemble.members": ",".join(r.run_id for r in runs),
        "ensemble.member_models": ",".join(
            f"{r.tags.get('modality', '?')}/{r.tags.get('model', '?')}" for r in runs
        ),
        "modality": modalities[0] if len(modalities) == 1 else "multimodal",
        "model": f"ensemble-{ensemble.method}",
        "label_scheme": ensemble.scheme.name,
        "protocol": _common(runs, "protocol"),
        "data": _common(runs, "data"),
        "seed": _common(runs, "seed"),
        "data_fingerprint": _common(runs, "data_fingerprint"),
        "emoexp.monitor": ensemble.scheme.monitor,
    }
    if len(modalities) > 1:
        tags["fusion"] = "late"
    return tags


def _log_values(
    recorder: Any, run_id: str, ensemble: Ensemble, tags: dict[str, str], selection: dict[str, Any] | None
) -> None:
    """Log the finite metrics and the ensemble's parameters (with the selection)."""
    params = {
        "ensemble.method": ensemble.method,
        "ensemble.members": tags["ensemble.members"],
        "ensemble.size": len(ensemble.members),
        **(selection or {}),
    }
    recorder.log_params(run_id, {k: str(v)[:6000] for k, v in params.items() if v not in (None, "")})
    recorder.log_metrics(run_id, {k: v for k, v in ensemble.metrics.items() if np.isfinite(v)})


def _log_files(recorder: Any, run_id: str, ensemble: Ensemble, tags: dict[str, str]) -> None:
    """Log ``predictions.csv``, ``ensemble.json`` (members, weights) and ``config.yaml``."""
    import yaml

    runs = [m.run for m in ensemble.members]
    record = {
        "method": ensemble.method,
        "members": [
            {
                "run_id": r.run_id,
                "name": r.name,
                "experiment": r.experiment,
                "modality": r.tags.get("modality"),
                "model": r.tags.get("model"),
                "seed": r.tags.get("seed"),
            }
            for r in runs
        ],
        "weights": ensemble.combined.weights,
        "details": ensemble.combined.details,
        "meta_learner_fitted_on": "validation rows only",
    }
    config = {
        "modality": tags["modality"],
        "model": {"name": tags["model"]},
        "label_scheme": ensemble.members[0].scheme_config,
        "ensemble": {"method": ensemble.method, "members": [r.run_id for r in runs]},
    }
    recorder.log_frame(run_id, ensemble.predictions, "predictions.csv")
    recorder.log_text(run_id, json.dumps(record, indent=2), "ensemble.json")
    recorder.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")


def members_experiment(ensemble: Ensemble, default: str = "emoexp-ensembles") -> str:
    """The members' experiment when they share one, else ``default``."""
    experiments = {m.run.experiment for m in ensemble.members}
    return experiments.pop() if len(experiments) == 1 else default
