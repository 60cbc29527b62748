"""``train(cfg)``: one composed config in, one tracked, evaluated MLflow run out."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from emoexp import config as config_checks
from emoexp.interruption import stop_on_signals

if TYPE_CHECKING:  # pandas stays off the `--cfg job` / `--help` path
    import pandas as pd

log = logging.getLogger(__name__)

# Offline by default (DESIGN invariant 5): HF libraries never reach for the hub unless asked.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """Instantiate a config node with plain Python containers for its arguments."""
    return hydra.utils.instantiate(node, **kwargs, _convert_="all")


def load_corpus(cfg: DictConfig) -> pd.DataFrame:
    """Load the configured corpus as a validated manifest restricted to usable inputs."""
    from emoexp.data import schema

    manifest = hydra.utils.instantiate(cfg.data.corpus, _convert_="all")
    return schema.validate_manifest(manifest, cfg.data.name)


def prepare_samples(cfg: DictConfig, scheme: Any) -> pd.DataFrame:
    """Corpus -> samples of the run's modality -> aggregated annotations -> labels of the scheme."""
    from emoexp.data import schema

    manifest = load_corpus(cfg)
    if cfg.modality != "multimodal":
        column = schema.INPUT_COLUMNS[cfg.modality]
        manifest = manifest.loc[manifest[column].notna()].reset_index(drop=True)
        if manifest.empty:
            raise config_checks.ConfigError(
                f"data={cfg.data.name} has no sample with a {cfg.modality} input."
            )
    if cfg.get("aggregation") is not None:
        # Recompute `emotion` from the annotator labels (aggregation=majority|dawid_skene).
        manifest = _instantiate(cfg.aggregation)(manifest)
    return limit_samples(scheme.prepare(manifest), cfg.data.get("max_samples"), scheme)


def limit_samples(manifest: pd.DataFrame, max_samples: int | None, scheme: Any) -> pd.DataFrame:
    """Keep a fixed, class-stratified subset of at most ``max_samples`` samples (for quick runs).

    The subset is drawn with a fixed seed, independent of the run's seed, so that every run
    of a quick experiment sees the same samples.
    """
    if not max_samples or len(manifest) <= max_samples:
        return manifest
    from sklearn.model_selection import train_test_split

    stratify = scheme.stratify_labels(manifest)
    try:
        keep, _ = train_test_split(
            manifest.index, train_size=int(max_samples), random_state=0, stratify=stratify
        )
    except ValueError:
        keep, _ = train_test_split(manifest.index, train_size=int(max_samples), random_state=0)
    return manifest.loc[sorted(keep)].reset_index(drop=True)


def _log_json(client: Any, run_id: str, obj: Any, name: str) -> None:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(obj, indent=2, default=str))
        client.log_artifact(run_id, str(path))


@stop_on_signals()
def train(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate the configured experiment; everything is logged to one MLflow run.

    SIGTERM/SIGINT mark the run interrupted (KILLED, tag ``interrupted=true``) after saving
    ``last.ckpt``; ``resume=true`` continues it. Under DDP every rank runs this function and only
    global rank 0 records anything (docs/scaling.md).

    Args:
        cfg: A config composed from ``conf/train.yaml`` (by ``@hydra.main`` or ``hydra.compose``).

    Returns:
        The run's final metrics (``val/*_best`` and ``test/*``) plus ``run_id``-free floats.

    Raises:
        ConfigError: If modality, data and model do not fit together (before anything runs).
        TrainingInterrupted: On SIGTERM (``KeyboardInterrupt`` on SIGINT), after marking the run.
    """
    config_checks.validate(cfg)
    import mlflow

    from emoexp import distributed
    from emoexp.runner import fit_and_evaluate
    from emoexp.tracking import record, store
    from emoexp.tracking import resume as resuming
    from emoexp.tracking.lineage import lineage_tags

    tracking_uri = store.resolve_tracking_uri(cfg.tracking.uri)
    client = mlflow.MlflowClient(tracking_uri)
    scheme = _instantiate(cfg.label_scheme)
    fingerprint = resuming.config_fingerprint(cfg)
    previous = None
    if resuming.resume_requested(cfg.get("resume")):
        previous = resuming.find_run_to_resume(client, cfg.tracking.experiment, fingerprint, cfg.resume)
    if previous is not None:
        # Continue in the interrupted run's output folder, where its checkpoints are.
        cfg = resuming.with_output_dir(cfg, previous)
    if not distributed.is_global_zero():
        # The other DDP ranks train alongside rank 0 and record nothing.
        run_id = previous.info.run_id if previous is not None else ""
        reader = distributed.RankZeroOnlyClient(client)
        return fit_and_evaluate(cfg, scheme, reader, run_id, tracking_uri, resume=previous is not None)
    if previous is not None:
        resuming.mark_resumed(client, previous)
        log.info("Resuming MLflow run %s from %s", previous.info.run_id, cfg.paths.output_dir)
        no_replay = resuming.NoReplayClient(client)
        metrics = _fit_recorded(cfg, scheme, no_replay, previous.info.run_id, tracking_uri, resume=True)
        client.set_tag(previous.info.run_id, resuming.INTERRUPTED_TAG, "false")
        client.set_terminated(previous.info.run_id, "FINISHED")
        return metrics
    # init_from: an unknown source fails here, before any run exists; its lineage is tagged on the run.
    lineage = lineage_tags(client, cfg.get("init_from"))
    experiment_id = store.ensure_experiment(tracking_uri, cfg.tracking.experiment)
    run = client.create_run(
        experiment_id,
        run_name=cfg.run_name,
        tags={
            "modality": cfg.modality,
            "model": cfg.model.name,
            "label_scheme": scheme.name,
            "protocol": cfg.protocol.name,
            "data": cfg.data.name,
            "seed": str(cfg.seed),
            "git_commit": record.git_commit(Path(__file__).parent),
            "mlflow.source.git.commit": record.git_commit(Path(__file__).parent),
            "emoexp.monitor": scheme.monitor,
            **({"transfer": str(cfg.transfer.name)} if cfg.get("transfer") else {}),
            **lineage,
            # A child of tracking.parent_run_id when given (tuning trials nest under their study run).
            **(
                {"mlflow.parentRunId": cfg.tracking.parent_run_id}
                if cfg.tracking.get("parent_run_id")
                else {}
            ),
            **{str(k): str(v) for k, v in (cfg.tracking.get("tags") or {}).items()},
            # What resume=true matches, and where this run's checkpoints live.
            resuming.FINGERPRINT_TAG: fingerprint,
            resuming.OUTPUT_DIR_TAG: str(Path(cfg.paths.output_dir).resolve()),
        },
    )
    run_id = run.info.run_id
    log.info("MLflow run %s in %s (experiment %s)", run_id, tracking_uri, cfg.tracking.experiment)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        params = record.flatten_config(resolved)
        items = sorted(params.items())
        for start in range(0, len(items), 100):
            client.log_batch(
                run_id, params=[mlflow.entities.Param(k, v) for k, v in items[start : start + 100]]
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
            client.log_artifact(run_id, str(path))
        _log_json(client, run_id, record.environment(), "environment.json")
    except BaseException as error:
        resuming.mark_stopped(client, run_id, error)
        raise
    metrics = _fit_recorded(cfg, scheme, client, run_id, tracking_uri, resume=False)
    client.set_terminated(run_id, "FINISHED")
    return metrics


def _fit_recorded(
    cfg: DictConfig, scheme: Any, client: Any, run_id: str, tracking_uri: str, resume: bool
) -> dict[str, float]:
    """``fit_and_evaluate`` into ``run_id``, marking the run interrupted or failed if it stops early."""
    from emoexp.runner import fit_and_evaluate
    from emoexp.tracking import resume as resuming

    try:
        return fit_and_evaluate(cfg, scheme, client, run_id, tracking_uri, resume=resume)
    except BaseException as error:
        resuming.mark_stopped(client, run_id, error)
        log.error("MLflow run %s stopped: %s: %s", run_id, type(error).__name__, error)
        raise


def get_metric_value(metrics: dict[str, float], name: str) -> float:
    """Return ``metrics[name]``, or raise an error naming ``optimized_metric`` and what exists."""
    if name not in metrics:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; available: {sorted(metrics)}. "
            "Set optimized_metric in the config (it defaults to the label scheme's monitor + '_best')."
        )
    return float(metrics[name])


def main() -> None:
    """Console entry point equivalent to ``python train.py``."""
    _hydra_main()


@hydra.main(version_base="1.3", config_path=str(config_checks.CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    return get_metric_value(train(cfg), cfg.optimized_metric)
