"""``init_from``: start a run from an earlier run's checkpoint, and record where it came from.

``init_from`` is an MLflow run id or a registered model URI (``models:/<name>/<version>`` or
``models:/<name>@<alias>``; the version's source run is used). The source run's
``checkpoints/best.ckpt`` artifact is loaded with ``torch.load(weights_only=True)``; a head of
another width (another label scheme) keeps its fresh initialisation; any other difference is an
error. The new run gets lineage tags: ``init_from.run_id``, ``init_from.corpus``,
``init_from.model`` (and ``init_from.label_scheme``, ``init_from.uri`` for a registered model).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from emoexp.config import ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT = "checkpoints/best.ckpt"


class InitFromError(ConfigError):
    """``init_from`` names no usable source run or checkpoint; the message says which and why."""


def resolve_source_run(client: Any, init_from: str) -> Any:
    """The MLflow run that ``init_from`` names (a run id or a ``models:/`` URI)."""
    from mlflow.exceptions import MlflowException

    init_from = str(init_from).strip()
    try:
        if init_from.startswith("models:/"):
            name, _, version = init_from[len("models:/") :].partition("/")
            if "@" in name and not version:
                name, _, alias = name.partition("@")
                model_version = client.get_model_version_by_alias(name, alias)
            elif name and version.isdigit():
                model_version = client.get_model_version(name, version)
            else:
                raise InitFromError(
                    f"init_from={init_from!r}: expected models:/<name>/<version> or models:/<name>@<alias>."
                )
            if not model_version.run_id:
                raise InitFromError(f"init_from={init_from!r}: that model version has no source run.")
            return client.get_run(model_version.run_id)
        return client.get_run(init_from)
    except MlflowException as error:
        raise InitFromError(
            f"init_from={init_from!r} names no run or registered model version in the tracking store "
            f"{client.tracking_uri} ({error.message}). Give a run id (see `mlflow ui`) or "
            "models:/<name>/<version>."
        ) from error


def lineage_tags(client: Any, init_from: str | None) -> dict[str, str]:
    """Tags recording the source of ``init_from`` (empty when it is not set)."""
    if not init_from:
        return {}
    run = resolve_source_run(client, init_from)
    tags = run.data.tags
    lineage = {
        "init_from.run_id": run.info.run_id,
        "init_from.corpus": tags.get("data", "unknown"),
        "init_from.model": tags.get("model", "unknown"),
        "init_from.label_scheme": tags.get("label_scheme", "unknown"),
    }
    if str(init_from).startswith("models:/"):
        lineage["init_from.uri"] = str(init_from)
    return lineage


def download_checkpoint(client: Any, run_id: str, dst: str | Path) -> Path:
    """Download the source run's ``checkpoints/best.ckpt`` into ``dst``.

    A run whose output folder already held a ``best.ckpt`` logged Lightning's ``best-v1.ckpt``:
    that one is used when there is no ``best.ckpt``.
    """
    try:
        names = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
        best = [n for n in names if Path(n).name.startswith("best") and n.endswith(".ckpt")]
        artifact = CHECKPOINT_ARTIFACT if CHECKPOINT_ARTIFACT in names or not best else sorted(best)[-1]
        return Path(client.download_artifacts(run_id, artifact, str(dst)))
    except Exception as error:  # MLflow raises OSError/MlflowException for a missing artifact
        raise InitFromError(
            f"init_from: run {run_id} has no {CHECKPOINT_ARTIFACT} artifact ({type(error).__name__}). "
            "Runs log it with tracking.log_checkpoint=true; a cross-validated run keeps one per fold run."
        ) from error


def initialise_from(net: Any, client: Any, init_from: str) -> dict[str, list[str]]:
    """Load the ``init_from`` source run's network weights into ``net``.

    Returns:
        ``{"loaded": [...], "skipped": [...]}`` parameter names (skipped: a head of another width).

    Raises:
        InitFromError: The source run or its checkpoint cannot be found or read.
        PretrainedWeightsError: The checkpoint's network differs from ``net`` beyond the head.
    """
    import torch

    from emoexp.models.pretrained import load_matching
    from emoexp.tasks.transfer import head_parameter_names

    run = resolve_source_run(client, init_from)
    with tempfile.TemporaryDirectory() as tmp:
        path = download_checkpoint(client, run.info.run_id, tmp)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or non-checkpoint file
            raise InitFromError(
                f"init_from: cannot read {CHECKPOINT_ARTIFACT} of run {run.info.run_id}: {error}"
            ) from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise InitFromError(f"init_from: {CHECKPOINT_ARTIFACT} of run {run.info.run_id} holds no state dict.")
    net_state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    source = f"{CHECKPOINT_ARTIFACT} of run {run.info.run_id} (init_from={init_from})"
    report = load_matching(net, net_state, source, skippable=head_parameter_names(net))
    if report["skipped"]:
        log.info("init_from %s: head %s starts fresh (another width)", run.info.run_id, report["skipped"])
    return report
