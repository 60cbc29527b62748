"""Which run a ``resume=`` continues, and the refusals that keep a run from joining the wrong one.

A run records its config fingerprint (:func:`config_fingerprint`) and output folder as tags
when it is created. ``resume=true`` continues the latest *interrupted* run (KILLED, tag
``interrupted=true``) with the same fingerprint that no live process holds; ``resume=<run id>``
names one and is refused for another fingerprint, a FINISHED or FAILED run, a fold of a
cross-validation or a run another live process holds, each with the reason. ``resume_force=true``
overrides the fingerprint/FAILED refusals and the run's tags and config are rewritten to the new
truth (docs/design.md#resume-and-leases).

A run left RUNNING by a process that died without a word (``kill -9``, a lost node) is marked
KILLED by :func:`sweep_abandoned` at the next start or resume of the same config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emoexp.config import ConfigError
from emoexp.engine.lease import LEASE_TAG, Lease
from emoexp.engine.recorder import INTERRUPTED_TAG, RESUMED_TAG, Recorder
from emoexp.interruption import LAST_CHECKPOINT

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "config_fingerprint"
OUTPUT_DIR_TAG = "output_dir"
FOLD_TAG = "fold"
# Keys that may differ between an interrupted process and the one resuming it without changing
# what is trained: where files go, which store, how many loader workers or threads, resume itself.
VOLATILE_KEYS = (
    "resume",
    "resume_force",
    "resume_restart",
    "paths",
    "tracking.uri",
    # a secret: never hashed into a tag
    "tracking.privacy_salt",
    "num_threads",
    "datamodule.num_workers",
    "datamodule.pin_memory",
    "datamodule.persistent_workers",
    "datamodule.extract_workers",
    # what is evaluated after training (robustness reports) does not change the training
    "evaluate",
    # how emoexp.tune schedules a trial (role, worker index, heartbeats, final run): a resumed
    # trial may run in another worker; what it trains is checked by the study's fixed settings
    "tuner",
)
# A run created this recently may not have written its lease yet: never declare it abandoned.
GRACE_S = 120.0


def config_fingerprint(cfg: DictConfig) -> str:
    """A short hash of the config as composed, without :data:`VOLATILE_KEYS`.

    Interpolations are hashed unresolved (``${paths.output_dir}/checkpoints``), so values derived
    from a volatile key (the timestamped Hydra output folder) do not change the fingerprint.
    """
    container = OmegaConf.to_container(cfg, resolve=False)
    _drop_volatile(container)
    text = json.dumps(container, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _drop_volatile(container: Any) -> None:
    for key in VOLATILE_KEYS:
        *parents, leaf = key.split(".")
        node: Any = container
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)


def is_volatile(param: str) -> bool:
    """Whether a flattened config key (``paths.output_dir``) is one of :data:`VOLATILE_KEYS`."""
    return any(param == key or param.startswith(f"{key}.") for key in VOLATILE_KEYS)


def resume_requested(value: Any) -> bool:
    """Whether ``resume`` asks for a resume (``true`` or a run id)."""
    return value not in (None, False, "", "false", "False")


@dataclass
class ResumePlan:
    """The run a resume continues and what has to be rewritten because the config changed.

    Attributes:
        run: The MLflow run to continue.
        output_dir: Its output folder (where ``checkpoints/last.ckpt`` is).
        changed: ``{key: (recorded, now)}`` of config keys that differ (only when forced).
        was_failed: Whether the run had FAILED (forced): its error tag is removed.
    """

    run: Any
    output_dir: Path
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    was_failed: bool = False

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.info.run_id

    @property
    def resumes(self) -> int:
        """How many times the run will have been resumed, this time included."""
        return int(self.run.data.tags.get(RESUMED_TAG, 0)) + 1


def sweep_abandoned(recorder: Recorder, experiment_id: str, fingerprint: str) -> list[str]:
    """Mark KILLED (``interrupted_by=lost``) the RUNNING runs of this config whose holder is gone.

    Returns:
        The ids of the runs marked.
    """
    if not recorder.writes:
        return []
    runs = recorder.client.search_runs(
        [experiment_id],
        filter_string=f"tags.{FINGERPRINT_TAG} = '{fingerprint}' and attributes.status = 'RUNNING'",
    )
    marked = []
    for run in runs:
        if FOLD_TAG in run.data.tags or _held(run):
            continue  # fold runs hold no lease: they end with their parent
        children = recorder.client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{run.info.run_id}' and attributes.status = 'RUNNING'"
            ),
        )
        for abandoned in [run, *children]:
            recorder.set_tags(abandoned.info.run_id, {INTERRUPTED_TAG: "true", "interrupted_by": "lost"})
            recorder.client.set_terminated(abandoned.info.run_id, "KILLED")
        marked.append(run.info.run_id)
        log.warning(
            "Run %s was left RUNNING by a process that is gone; marked KILLED (resume=true continues it).",
            run.info.run_id,
        )
    return marked


def _held(run: Any) -> bool:
    """Whether a live process holds ``run`` (a lease), counting a just-created run as held."""
    lease = Lease.parse(run.data.tags.get(LEASE_TAG))
    if lease is not None:
        return lease.is_live()
    # A RUNNING run without a lease was either created a moment ago (its lease is being written)
    # or left by a process that predates leases; an ended run is held by nobody.
    return run.info.status == "RUNNING" and (time.time() - run.info.start_time / 1000) < GRACE_S


def plan_resume(recorder: Recorder, cfg: DictConfig, experiment: str, fingerprint: str) -> ResumePlan | None:
    """The run that ``cfg.resume`` continues, or ``None`` for a fresh run.

    ``resume=true`` with nothing to resume starts a new run, so that the same command serves the
    first submission of a requeueable job and its requeues.

    Raises:
        ConfigError: For a run that must not be continued (see the module docstring), or a
            missing ``last.ckpt`` of a run that had trained (unless ``resume_restart=true``).
    """
    force = bool(cfg.get("resume_force", False))
    if str(cfg.resume).lower() == "true":
        run = _latest_interrupted(recorder, experiment, fingerprint)
        if run is None:
            log.info(
                "resume=true: no interrupted run with config fingerprint %s; starting a new run", fingerprint
            )
            return None
        plan = ResumePlan(run, _output_dir(run, recorder.privacy))
    else:
        plan = _named_run(recorder, str(cfg.resume), cfg, fingerprint, force)
    _check_checkpoint(plan, bool(cfg.get("resume_restart", False)))
    return plan


def _latest_interrupted(recorder: Recorder, experiment: str, fingerprint: str) -> Any | None:
    found = recorder.client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = recorder.client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.{FINGERPRINT_TAG} = '{fingerprint}' and tags.{INTERRUPTED_TAG} = 'true'",
        order_by=["attributes.start_time DESC"],
    )
    for run in runs:
        if FOLD_TAG in run.data.tags or run.info.status in ("FINISHED", "FAILED"):
            continue  # fold runs resume with their parent; finished and failed runs never do
        if not recorder.writes:
            return run  # a DDP rank > 0 follows rank 0, which holds the run by now
        if run.info.status == "KILLED" and not _held(run):
            return run
    return None


def _named_run(recorder: Recorder, run_id: str, cfg: DictConfig, fingerprint: str, force: bool) -> ResumePlan:
    from mlflow.exceptions import MlflowException

    try:
        run = recorder.client.get_run(run_id)
    except MlflowException as error:
        raise ConfigError(
            f"resume={run_id}: no such run in {recorder.tracking_uri} ({error.message}). "
            "Use resume=true to find the latest interrupted run of this config."
        ) from None
    status = run.info.status
    if status == "FINISHED":
        raise ConfigError(f"resume={run_id}: the run finished already; there is nothing to resume.")
    if FOLD_TAG in run.data.tags:
        raise ConfigError(
            f"resume={run_id}: this is the {run.data.tags[FOLD_TAG]} run of a cross-validation; "
            f"resume its parent run {run.data.tags.get('mlflow.parentRunId')} instead."
        )
    lease = Lease.parse(run.data.tags.get(LEASE_TAG))
    if recorder.writes and status == "RUNNING" and lease is not None and lease.is_live():
        raise ConfigError(
            f"resume={run_id}: the run is held by a live process, {lease.describe()}. Wait for it to "
            "end or stop it (its SIGTERM marks the run interrupted), then resume."
        )
    if status == "FAILED" and not force:
        raise ConfigError(
            f"resume={run_id}: the run FAILED ({run.data.tags.get('error', 'no error recorded')}). Start a "
            "new run, or add resume_force=true to continue it from its last.ckpt anyway."
        )
    changed = _changed_keys(run, cfg) if run.data.tags.get(FINGERPRINT_TAG) != fingerprint else {}
    if changed and not force:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changed.items())[:12])
        raise ConfigError(
            f"resume={run_id}: the run was made with another config "
            f"({len(changed)} key(s) differ: {listed}). "
            "Resume with the original overrides, start a new run, or add resume_force=true to continue it "
            "with this config (its tags and config.yaml are then rewritten)."
        )
    return ResumePlan(run, _output_dir(run, recorder.privacy), changed, was_failed=status == "FAILED")


def _changed_keys(run: Any, cfg: DictConfig) -> dict[str, tuple[str, str]]:
    """Config keys whose recorded param differs from ``cfg`` (volatile keys left out)."""
    from emoexp.tracking.record import flatten_config

    unresolved = flatten_config(OmegaConf.to_container(cfg, resolve=False))
    derived = {k for k, v in unresolved.items() if any(f"${{{key}" in v for key in VOLATILE_KEYS)}
    now = {k: v for k, v in flatten_config(cfg).items() if not is_volatile(k) and k not in derived}
    before = {
        k: v
        for k, v in run.data.params.items()
        if not is_volatile(k) and k not in derived and not k.startswith("selected.")
    }
    keys = sorted(set(now) | set(before))
    changed = {
        k: (before.get(k, "<absent>"), now.get(k, "<absent>")) for k in keys if before.get(k) != now.get(k)
    }
    # A fingerprint differs also when only an unresolved interpolation changed: say so rather than nothing.
    return changed or {"config": ("<recorded fingerprint>", "<another fingerprint>")}


def _output_dir(run: Any, privacy: Any = None) -> Path:
    output_dir = run.data.tags.get(OUTPUT_DIR_TAG)
    if not output_dir:
        raise ConfigError(
            f"resume: run {run.info.run_id} has no {OUTPUT_DIR_TAG!r} tag, so its checkpoints are unknown."
        )
    if output_dir.startswith("path-"):
        # A pseudonymised run (tracking.privacy=pseudonymise): its folder is in this machine's index.
        revealed = privacy.reveal(output_dir) if privacy is not None else None
        if revealed is None:
            raise ConfigError(
                f"resume: run {run.info.run_id} was recorded with tracking.privacy=pseudonymise and its "
                "output folder is not in this machine's index (paths.cache_dir/privacy_paths.json); "
                "resume it where it ran, with the same paths.cache_dir and tracking.privacy."
            )
        return Path(revealed)
    return Path(output_dir)


def _check_checkpoint(plan: ResumePlan, restart: bool) -> None:
    """Refuse a run that had trained but whose ``last.ckpt`` is gone, unless ``restart``."""
    trained = "epoch" in plan.run.data.metrics
    checkpoints = list(plan.output_dir.glob(f"**/checkpoints/{LAST_CHECKPOINT}"))
    if not trained or checkpoints:
        return
    if restart:
        log.warning(
            "resume: %s has no checkpoints/%s; restarting its training from scratch in the same run "
            "(resume_restart=true).",
            plan.output_dir,
            LAST_CHECKPOINT,
        )
        return
    raise ConfigError(
        f"resume={plan.run_id}: the run trained for {int(plan.run.data.metrics['epoch']) + 1} epoch(s) but "
        f"{plan.output_dir}/checkpoints/{LAST_CHECKPOINT} does not exist (moved or on another machine?). "
        "Copy the folder back, or add resume_restart=true to retrain from scratch in the same run."
    )


def fold_run(recorder: Recorder, parent: Any, fold: str) -> Any | None:
    """The child run of ``fold`` under the cross-validation run ``parent``, if it was created."""
    runs = recorder.client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.{FOLD_TAG} = '{fold}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None
