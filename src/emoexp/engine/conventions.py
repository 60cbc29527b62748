"""MLflow's own conventions for a run: its dataset input, its description, its registered model.

What the MLflow UI shows in a run's "Datasets", "Description" and "Registered models" fields
(docs/tracking.md):

* the training data as an MLflow dataset input: name ``data.name``, digest the protocol card's
  samples fingerprint (every sample id with its inputs), source the corpus root (or
  ``emoexp.embedded/<name>`` for a built-in corpus; pseudonymised under
  ``tracking.privacy=pseudonymise``), the sample schema's columns and a small profile;
* a one-line description (``mlflow.note.content``): model, data, label scheme, protocol, seed
  and, once tested, the headline test figure with its interval;
* with ``tracking.register_model=<name>``, the logged model registered as a new version of
  ``<name>`` (tagged with the headline figure), so ``models:/<name>/<version>`` works in
  ``emoexp.predict`` and ``init_from``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.engine.card import corpus_fingerprint
from emoexp.engine.preflight import RunPlan
from emoexp.engine.recorder import Recorder

log = logging.getLogger(__name__)

DESCRIPTION_TAG = "mlflow.note.content"
REGISTERED_TAG = "registered_model"


def dataset_source(cfg: Any) -> str:
    """Where the corpus comes from: its root, or ``emoexp.embedded/<name>`` for a built-in corpus."""
    root = cfg.data.get("root")
    return str(root) if root else f"emoexp.embedded/{cfg.data.name}"


def _schema(manifest: pd.DataFrame) -> str:
    """The samples' columns in MLflow's column-spec JSON (types as MLflow names them)."""
    kinds = {"i": "long", "u": "long", "f": "double", "b": "boolean"}
    columns = [
        {"name": str(column), "type": kinds.get(manifest[column].dtype.kind, "string")}
        for column in manifest.columns
        if manifest[column].notna().any()
    ]
    return json.dumps({"mlflow_colspec": columns})


def _profile(manifest: pd.DataFrame) -> str:
    profile: dict[str, Any] = {
        "num_rows": len(manifest),
        "num_speakers": int(manifest[schema.SPEAKER].nunique()),
    }
    if schema.EMOTION in manifest and manifest[schema.EMOTION].notna().any():
        counts = manifest[schema.EMOTION].value_counts().sort_index()
        profile["emotions"] = {str(k): int(v) for k, v in counts.items()}
    return json.dumps(profile)


def record_dataset(recorder: Recorder, run_id: str, plan: RunPlan) -> None:
    """Log the run's samples as its MLflow dataset input (context ``training``)."""
    recorder.log_dataset(
        run_id,
        name=str(plan.cfg.data.name),
        digest=corpus_fingerprint(plan.manifest),
        source=dataset_source(plan.cfg),
        schema=_schema(plan.manifest),
        profile=_profile(plan.manifest),
    )


def headline(metrics: dict[str, float], main_metric: str) -> str:
    """``test/uar 0.537 [0.505, 0.570]``: the main figure with its interval where the run has one."""
    value = metrics.get(main_metric)
    if value is None or not np.isfinite(value):
        return ""
    low, high = metrics.get(f"{main_metric}_ci_low"), metrics.get(f"{main_metric}_ci_high")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{main_metric} {value:.3f}{interval}"


def description(cfg: Any, scheme_name: str, figure: str = "") -> str:
    """One line: ``svm on embedded_audio (ekman7, speaker_holdout, seed 42): test/uar 0.537 [...]``."""
    what = f"{cfg.model.name} on {cfg.data.name} ({scheme_name}, {cfg.protocol.name}, seed {cfg.seed})"
    return f"{what}: {figure}" if figure else what


def finish(
    recorder: Recorder, run_id: str, plan: RunPlan, metrics: dict[str, float], main_metric: str
) -> None:
    """After a finished run: its description with the headline figure, and the registry (if asked)."""
    figure = headline(metrics, main_metric)
    recorder.set_tags(run_id, {DESCRIPTION_TAG: description(plan.cfg, plan.scheme.name, figure)})
    name = plan.cfg.tracking.get("register_model")
    if not name:
        return
    tags = {main_metric: f"{metrics[main_metric]:.6g}"} if main_metric in metrics else {}
    version = recorder.register_model(run_id, str(name), tags={**tags, "run_name": str(plan.cfg.run_name)})
    if version is None:
        log.warning(
            "tracking.register_model=%s: run %s logged no model (cross-validated parents and "
            "tracking.log_model=false runs have none); nothing was registered.",
            name,
            run_id,
        )
        return
    recorder.set_tags(run_id, {REGISTERED_TAG: f"models:/{name}/{version}"})
    log.info("Registered models:/%s/%s (run %s)", name, version, run_id)
