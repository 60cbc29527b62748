"""Resuming an interrupted run into the same MLflow run, with nothing logged twice.

A run records its config fingerprint and output folder as tags when it is created; an
interrupted run is tagged ``interrupted=true`` (and KILLED). ``resume=true`` finds the latest
such run with the same fingerprint, ``resume=<run_id>`` names one; training then continues from
``<output_dir>/checkpoints/last.ckpt`` and logs into the same run. Metrics that the run already
has are not logged again: one-off metrics by key (:class:`NoReplayClient`), epoch metrics by
step (:class:`ResumableMLFlowLogger`), so every history continues at the right steps.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from emoexp.config import ConfigError

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "config_fingerprint"
OUTPUT_DIR_TAG = "output_dir"
INTERRUPTED_TAG = "interrupted"
RESUMED_TAG = "resumed"
# Tags about one run's own life, not copied from a cross-validation parent to its fold runs.
RUN_STATE_TAGS = (INTERRUPTED_TAG, RESUMED_TAG, "interrupted_by", "error")
# Keys that may differ between an interrupted process and the one resuming it without changing
# what is trained: where files go, which store, how many loader workers or threads.
VOLATILE_KEYS = (
    "resume",
    "paths",
    "tracking.uri",
    "num_threads",
    "datamodule.num_workers",
    "datamodule.pin_memory",
    "datamodule.persistent_workers",
)


def config_fingerprint(cfg: DictConfig) -> str:
    """A short hash of the config as composed, without :data:`VOLATILE_KEYS`.

    Interpolations are hashed unresolved (``${paths.output_dir}/checkpoints``), so values derived
    from a volatile key (the timestamped Hydra output folder) do not change the fingerprint.
    """
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in VOLATILE_KEYS:
        *parents, leaf = key.split(".")
        node: Any = container
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(container, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resume_requested(value: Any) -> bool:
    """Whether ``resume`` asks for a resume (``true`` or a run id)."""
    return value not in (None, False, "", "false", "False")


def find_run_to_resume(client: Any, experiment: str, fingerprint: str, resume: Any) -> Any | None:
    """The run to continue: the one named by ``resume``, else the latest interrupted one of this config.

    Args:
        client: An MLflow client (reads only).
        experiment: Experiment name (``tracking.experiment``).
        fingerprint: :func:`config_fingerprint` of the config being run.
        resume: ``true`` or a run id.

    Returns:
        The run, or ``None`` when ``resume=true`` finds no interrupted run (a new run starts: the
        same command then works for the first submission of a requeueable job and for its requeues).

    Raises:
        ConfigError: If the named run does not exist or finished already.
    """
    if resume is True or str(resume).lower() == "true":
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return None
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.{FINGERPRINT_TAG} = '{fingerprint}' and tags.{INTERRUPTED_TAG} = 'true'",
            order_by=["attributes.start_time DESC"],
        )
        # Child runs of a cross-validation copy the parent's tags; the parent is what resumes.
        runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.status != "FINISHED"]
        if not runs:
            log.info(
                "resume=true: no interrupted run with config fingerprint %s; starting a new run", fingerprint
            )
            return None
        return runs[0]
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(str(resume))
    except MlflowException as error:
        raise ConfigError(
            f"resume={resume}: no such run in {client.tracking_uri} ({error.message}). "
            "Use resume=true to find the latest interrupted run of this config."
        ) from error
    if run.info.status == "FINISHED":
        raise ConfigError(f"resume={resume}: the run finished already; there is nothing to resume.")
    if run.data.tags.get(FINGERPRINT_TAG) != fingerprint:
        # Named explicitly, so resumed anyway (a config default may have changed in between); say so.
        log.warning(
            "resume=%s: the run was started with another config (config_fingerprint %s, now %s); its "
            "config.yaml artifact has the original. Continuing it as asked.",
            resume,
            run.data.tags.get(FINGERPRINT_TAG),
            fingerprint,
        )
    return run


class NoReplayClient:
    """An MLflow client for a resumed run that does not log a one-off metric or param twice.

    Metrics logged through the client (``data/samples``, ``model/parameters``, ``test/ece``...)
    are logged once per run; on resume those the run already has are skipped. Everything else is
    passed through to the wrapped client.

    Args:
        client: The ``mlflow.MlflowClient``.
    """

    def __init__(self, client: Any):
        self._client = client
        self._logged: dict[str, tuple[set[str], set[str]]] = {}

    def _existing(self, run_id: str) -> tuple[set[str], set[str]]:
        if run_id not in self._logged:
            data = self._client.get_run(run_id).data
            self._logged[run_id] = (set(data.metrics), set(data.params))
        return self._logged[run_id]

    def log_metric(self, run_id: str, key: str, *args: Any, **kwargs: Any) -> Any:
        """Log ``key`` unless the run already has it."""
        if key in self._existing(run_id)[0]:
            return None
        return self._client.log_metric(run_id, key, *args, **kwargs)

    def log_batch(
        self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kwargs: Any
    ) -> Any:
        """Log the metrics and params the run does not have yet, and all tags."""
        metric_keys, param_keys = self._existing(run_id)
        metrics = [m for m in metrics if m.key not in metric_keys]
        params = [p for p in params if p.key not in param_keys]
        return self._client.log_batch(run_id, metrics=metrics, params=params, tags=list(tags), **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class ResumableMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger for runs that may stop early and resume.

    On a resumed run it drops points at steps already logged: epoch metrics are logged at the
    global step, and after resuming from ``last.ckpt`` Lightning continues at the saved step, so a
    point at or before a key's last logged step can only be a replay (e.g. the test metrics of a
    run interrupted during its evaluation). :meth:`record_stop` marks the run interrupted or failed
    from inside training, and Lightning's ``finalize("failed")`` then leaves that mark alone.

    Args:
        resume: Whether the run already has metrics to protect.
        *args: Passed to ``MLFlowLogger``.
        **kwargs: Passed to ``MLFlowLogger``.
    """

    def __init__(self, *args: Any, resume: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._resume = resume
        self._last_step: dict[str, int] | None = None
        self._stopped = False

    def _logged_steps(self) -> dict[str, int]:
        if self._last_step is None:
            client = self.experiment
            keys = client.get_run(self.run_id).data.metrics
            self._last_step = {
                key: max(m.step for m in client.get_metric_history(self.run_id, key)) for key in keys
            }
        return self._last_step

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        if self._resume and step is not None:
            last = self._logged_steps()
            metrics = {k: v for k, v in metrics.items() if step > last.get(k, -1)}
            if not metrics:
                return
        super().log_metrics(metrics, step)

    @rank_zero_only
    def record_stop(self, error: BaseException) -> None:
        """Mark the run interrupted (KILLED) or failed (FAILED) now, see :func:`mark_stopped`."""
        mark_stopped(self.experiment, self.run_id, error)
        self._stopped = True

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:  # noqa: D102
        if self._stopped:
            return
        super().finalize(status)


def mark_resumed(client: Any, run: Any) -> None:
    """Set an interrupted run running again and count its resumes (tag ``resumed``)."""
    client.update_run(run.info.run_id, status="RUNNING")
    client.set_tag(run.info.run_id, RESUMED_TAG, str(int(run.data.tags.get(RESUMED_TAG, 0)) + 1))


def mark_stopped(client: Any, run_id: str, error: BaseException) -> None:
    """Record how a run ended early: interrupted (KILLED) or crashed (FAILED, with ``error.txt``).

    An interruption (SIGTERM/SIGINT) is resumable: status KILLED and tag ``interrupted=true``.
    Anything else is a failure: status FAILED, the error as tag ``error`` and its traceback as the
    artifact ``error.txt``. Metrics, artifacts and checkpoints logged before stay in either case.
    """
    import signal
    import tempfile
    import traceback
    from pathlib import Path

    from emoexp.interruption import TrainingInterrupted

    if isinstance(error, TrainingInterrupted | KeyboardInterrupt):
        client.set_tag(run_id, INTERRUPTED_TAG, "true")
        by = (
            signal.Signals(error.signum).name
            if isinstance(error, TrainingInterrupted)
            else "KeyboardInterrupt"
        )
        client.set_tag(run_id, "interrupted_by", by)
        client.set_terminated(run_id, "KILLED")
        return
    client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "error.txt"
        path.write_text("".join(traceback.format_exception(error)))
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FAILED")


def fold_run(client: Any, parent: Any, fold: str) -> Any | None:
    """The child run of ``fold`` under the cross-validation run ``parent``, if it was created."""
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.fold = '{fold}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


def finished_fold(client: Any, run: Any, best_metric: str) -> tuple[dict[str, float], Any]:
    """What ``fit_fold`` returned for a fold that finished before the interruption, read back from its run.

    Returns:
        The fold's test metrics (those of the test pass, not the report's ``test/ece``) and
        ``val/<monitor>_best``, and its per-sample predictions.
    """
    import pandas as pd

    metrics = {
        k: float(v)
        for k, v in run.data.metrics.items()
        if (k.startswith("test/") and k != "test/ece") or k == best_metric
    }
    if not any(item.path == "predictions.csv" for item in client.list_artifacts(run.info.run_id)):
        return metrics, pd.DataFrame(columns=["split"])  # a validation-only fold (evaluate_test=false)
    return metrics, pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))


def with_output_dir(cfg: DictConfig, run: Any) -> DictConfig:
    """A copy of ``cfg`` writing into ``run``'s output folder (where its ``last.ckpt`` is)."""
    output_dir = run.data.tags.get(OUTPUT_DIR_TAG)
    if not output_dir:
        raise ConfigError(
            f"resume: run {run.info.run_id} has no {OUTPUT_DIR_TAG!r} tag, so its checkpoints are unknown."
        )
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg
