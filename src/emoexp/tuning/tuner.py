"""emoexp's tuner: an Optuna study over ``train(cfg)`` that prunes, survives failures and resumes.

One study, three steps, any number of workers in between:

* **setup** opens the storage, creates (or loads) the study, records its fixed settings
  (:mod:`emoexp.tuning.fixed`), queues trials up to ``n_trials`` and opens the study's MLflow
  parent run, all under the study's lock (:func:`emoexp.tuning.storage.study_lock`).
* **worker** claims queued trials one at a time until none is left: it composes the trial's
  config from the search space, trains it with ``evaluate_test=false`` (validation only), reports
  each epoch to the pruner, and tells Optuna COMPLETE, PRUNED or FAIL. A trial that raises is
  FAIL and the worker goes on; a trial whose worker died is failed and queued again; a trial
  whose worker was pre-empted (SIGTERM/SIGINT) goes back to the queue and is resumed in the same
  MLflow run; a worker takes no trial while the tracking store does not answer.
* **finalize** logs the best value(s) and parameters, the Pareto front and Optuna's plots to the
  parent run, then claims the final run in the storage and trains the best trial's recorded
  configuration once more, evaluated on test (test lock): exactly one final run per best trial.

``role=all`` does the three in one command, with ``n_workers`` local worker processes.
Running the same command again continues the study: finished trials are never run again.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from emoexp.config import CONF_DIR, ConfigError, group_options
from emoexp.tuning import fixed, liveness, storage, tracking
from emoexp.tuning.space import SearchSpace, check_against_config, parse_search_space, suggest, to_overrides

log = logging.getLogger(__name__)

ROLES = ("all", "setup", "worker", "finalize")
# How a cross-validated trial reports to the pruner (tuner.cv_pruning; see pruning.py).
CV_PRUNING = ("epoch", "fold")
FINAL_ATTR = "emoexp:final_run"
FINAL_CLAIM_ATTR = "emoexp:final_claim"
SETTINGS_ATTR = "emoexp:objectives"
COMMAND_ATTR = "command"
"""Trial user attribute: the command-line overrides (all but volatile keys) the trial was composed from."""
RESUME_ATTR = "emoexp:resume"
"""Trial system attribute of an interrupted trial back in the queue: ``{"trial", "run_id"}`` to resume."""
TRACKING_RETRIES_ATTR = "emoexp:tracking_retries"
MAX_TRACKING_RETRIES = 3


@dataclass
class Objective:
    """One optimised metric and its direction (``maximize``/``minimize``)."""

    metric: str
    direction: str


@dataclass
class StudySettings:
    """Everything that defines a study, read from ``hydra.sweeper`` and ``tuner`` (see conf/tune.yaml)."""

    study_name: str
    storage_url: str
    n_trials: int
    objectives: list[Objective]
    space: SearchSpace
    sampler: DictConfig
    pruner: DictConfig
    source: str

    @property
    def directions(self) -> list[str]:
        """Optuna directions, one per objective."""
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """Names of the objectives (the primary one first)."""
        return [o.metric for o in self.objectives]


def _direction(value: Any, where: str) -> str:
    text = getattr(value, "name", value)
    text = {"max": "maximize", "min": "minimize"}.get(str(text), str(text))
    if text not in ("maximize", "minimize"):
        raise ConfigError(f"{where}={value!r} is not a direction; use maximize or minimize.")
    return text


def search_space_file(hparams_search: str, config_sources: Sequence[Any] = ()) -> str:
    """The file that defines ``hparams_search`` (conf/ or a directory on ``hydra.searchpath``)."""
    for source in config_sources:
        if source.get("schema") == "file":
            path = Path(source.path) / "hparams_search" / f"{hparams_search}.yaml"
            if path.exists():
                return str(path)
    return f"conf/hparams_search/{hparams_search}.yaml"


def settings_from_config(
    cfg: DictConfig, sweeper: DictConfig, hparams_search: str | None, source: str | None = None
) -> StudySettings:
    """Read and check the study's settings; every error here comes before any trial starts.

    Args:
        cfg: The composed ``tune`` config (without the ``hydra`` node).
        sweeper: ``hydra.sweeper`` of the same composition (the hparams_search file's settings).
        hparams_search: The chosen ``hparams_search`` option (named in errors).
        source: The file that defines it (named in errors).

    Raises:
        ConfigError: No search space chosen, an unknown or empty parameter, a direction that
            contradicts the label scheme, or an unknown extra objective direction.
    """
    if not hparams_search:
        raise ConfigError(
            f"choose a search space: python -m emoexp.tune hparams_search=NAME "
            f"(options: {group_options('hparams_search')})."
        )
    source = source or f"conf/hparams_search/{hparams_search}.yaml"
    if sweeper.get("params") is None:
        raise ConfigError(
            f"{source} sets no hydra.sweeper.params; is hydra/sweeper overridden to optuna there?"
        )
    space = parse_search_space(OmegaConf.to_container(sweeper.params, resolve=True), source)
    check_against_config(space, cfg)
    direction = sweeper.get("direction")
    if isinstance(direction, Sequence) and not isinstance(direction, str):
        raise ConfigError(
            f"{source}: hydra.sweeper.direction is a list; for emoexp.tune give one direction and put the "
            "further objectives in tuner.extra_objectives."
        )
    primary = Objective(str(cfg.optimized_metric), _direction(direction, "hydra.sweeper.direction"))
    scheme = cfg.label_scheme
    if primary.metric == f"{scheme.monitor}_best" and primary.direction != _direction(scheme.mode, "mode"):
        raise ConfigError(
            f"hydra.sweeper.direction={primary.direction} contradicts label_scheme.mode={scheme.mode} for "
            f"{primary.metric} (docs/design.md#1-the-label-scheme-decides-together): "
            f"use direction: ${{label_scheme.mode}}imize in {source}."
        )
    objectives = [primary]
    for i, extra in enumerate(cfg.tuner.get("extra_objectives") or []):
        if "metric" not in extra:
            raise ConfigError(f"tuner.extra_objectives[{i}] needs a metric (and a direction).")
        objectives.append(
            Objective(str(extra.metric), _direction(extra.get("direction", "minimize"), "direction"))
        )
    trainer = cfg.trainer
    if "ddp" in str(trainer.get("strategy", "")) or str(trainer.get("devices", 1)) not in ("1", "auto"):
        raise ConfigError(
            f"emoexp.tune trains each trial on one device (trainer.strategy={trainer.get('strategy')}, "
            f"trainer.devices={trainer.get('devices')}): Lightning's DDP launcher would start the tuner "
            "again in every rank. Run one trial per GPU instead: trainer=gpu tuner.n_workers=<GPUs>."
        )
    n_trials = int(sweeper.get("n_trials") or 0)
    if n_trials < 1:
        raise ConfigError(f"hydra.sweeper.n_trials={n_trials}: a study needs at least one trial.")
    study_name = sweeper.get("study_name") or f"{hparams_search}-{cfg.data.name}-{scheme.name}"
    return StudySettings(
        study_name=str(study_name),
        storage_url=storage.resolve_url(str(sweeper.get("storage") or cfg.tuner.default_storage)),
        n_trials=n_trials,
        objectives=objectives,
        space=space,
        sampler=sweeper.sampler,
        pruner=cfg.pruner,
        source=source,
    )


def _override_key(text: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(text).get_key_element().lstrip("+~")


@dataclass
class Tuner:
    """One study's setup, workers and final step (see the module docstring).

    Args:
        cfg: The composed ``tune`` config.
        settings: The study settings (:func:`settings_from_config`).
        overrides: The command-line overrides the config was composed from; every trial's config
            is composed again from them plus the trial's parameters.
    """

    cfg: DictConfig
    settings: StudySettings
    overrides: list[str]

    def __post_init__(self) -> None:
        fixed_by_user = [_override_key(o) for o in self.overrides if not o.startswith("hydra")]
        searched = [*self.settings.space.distributions, *self.settings.space.fixed]
        pinned = [k for k in searched if k.lstrip("+") in fixed_by_user]
        if pinned:
            log.info("not searching %s: fixed on the command line", pinned)
            self.settings.space = self.settings.space.without(pinned)
        self.output_dir = Path(self.cfg.paths.output_dir)
        self.tuner = self.cfg.tuner

    # ----------------------------------------------------------------------------- storage & study
    def open_storage(self) -> Any:
        """The study's storage (raises :class:`storage.StorageError` before any trial if unreachable)."""
        t = self.tuner
        return storage.open_storage(
            self.settings.storage_url, int(t.heartbeat_interval), int(t.grace_period), t.get("max_retry")
        )

    def _sampler(self, study_storage: Any) -> Any:
        import hydra
        import numpy as np

        node = OmegaConf.to_container(self.settings.sampler, resolve=True)
        if node.get("_partial_"):
            raise ConfigError(
                "the grid sampler is for `train.py -m`; emoexp.tune takes tpe, random, cmaes, nsgaii."
            )
        # Each worker (and each restart) samples from its own stream: equal seeds in two workers
        # would propose the same parameters twice. A restarted worker (same worker_id) sees more
        # started trials than its previous start (the trials are all queued up front, so the
        # study's size alone would give it the same stream, and its killed trial's retry the same
        # parameters as its next trial).
        if node.get("seed") is not None:
            known = self._started_trials(study_storage)
            seed_parts = [int(node["seed"]), int(self.tuner.get("worker_id", 0)), known]
            node["seed"] = int(np.random.SeedSequence(seed_parts).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # hydra-optuna-sweeper's sampler defaults
            return hydra.utils.instantiate(node)

    def _started_trials(self, study_storage: Any) -> int:
        """How many of the study's trials have started (claimed, or with parameters); 0 if new."""
        from optuna.trial import TrialState

        try:
            study_id = study_storage.get_study_id_from_name(self.settings.study_name)
        except KeyError:
            return 0
        trials = study_storage.get_all_trials(study_id, deepcopy=False)
        return sum(1 for t in trials if t.params or t.state != TrialState.WAITING)

    def _pruner(self) -> Any:
        import hydra
        import optuna

        pruner = hydra.utils.instantiate(self.settings.pruner)
        if len(self.settings.objectives) > 1 and not isinstance(pruner, optuna.pruners.NopPruner):
            log.warning(
                "Optuna cannot prune multi-objective studies: pruner=%s is not used.", type(pruner).__name__
            )
            return optuna.pruners.NopPruner()
        return pruner

    def load_study(self, study_storage: Any, create: bool) -> Any:
        """Create or load the study; refuse one whose objectives differ from this configuration."""
        import optuna

        where = storage.redact(self.settings.storage_url)
        kwargs = {"study_name": self.settings.study_name, "storage": study_storage}
        kwargs |= {"sampler": self._sampler(study_storage), "pruner": self._pruner()}
        if create:
            study = optuna.create_study(directions=self.settings.directions, load_if_exists=True, **kwargs)
        else:
            try:
                study = optuna.load_study(**kwargs)
            except KeyError as error:
                raise ConfigError(
                    f"study {self.settings.study_name!r} does not exist in {where}; "
                    "run tuner.role=setup (or role=all) first."
                ) from error
        directions = [d.name.lower() for d in study.directions]
        recorded = study.user_attrs.get(SETTINGS_ATTR)
        wanted = f"{self.settings.metric_names} ({self.settings.directions})"
        if directions != self.settings.directions or (recorded and recorded != self.settings.metric_names):
            raise ConfigError(
                f"study {study.study_name!r} in {where} optimises {recorded or '?'} ({directions}), not "
                f"{wanted}; give this search another hydra.sweeper.study_name."
            )
        if recorded is None:
            study.set_user_attr(SETTINGS_ATTR, self.settings.metric_names)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.set_metric_names(self.settings.metric_names)
        recorded_fixed = study.user_attrs.get(fixed.FIXED_ATTR)
        fixed.check(recorded_fixed, self.fixed_settings(self.cfg), study.study_name)
        if recorded_fixed is None and create:
            record = fixed.record(self.fixed_settings(self.cfg))
            study.set_user_attr(fixed.FIXED_ATTR, record | {"settings": self._attribute(record["settings"])})
        return study

    def fixed_settings(self, cfg: DictConfig) -> dict[str, str]:
        """``cfg``'s fixed settings: all but the searched keys and volatile ones (:mod:`.fixed`)."""
        space = self.settings.space
        return fixed.fixed_settings(cfg, space.distributions, space.fixed)

    def _retry(self) -> Any:
        import optuna

        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.tuner.get("max_retry"))

    def counted_trials(self, study: Any) -> list[Any]:
        """Trials that use up the budget: all but a dead worker's trial that was queued again."""
        import optuna

        retried = set()
        for trial in study.get_trials(deepcopy=False):
            retried.update(optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial))
        return [t for t in study.get_trials(deepcopy=False) if t.number not in retried]

    # ------------------------------------------------------------------------------------- MLflow
    def _mlflow(self) -> tuple[Any, str]:
        """A recorder (the tuner's writes: parent run, trial states) and the experiment's id."""
        from emoexp.engine.recorder import Recorder
        from emoexp.tracking import store

        recorder = Recorder(store.resolve_tracking_uri(self.cfg.tracking.uri))
        recorder.privacy = self.privacy
        return recorder, recorder.experiment_id(self.cfg.tracking.experiment)

    @functools.cached_property
    def privacy(self) -> Any:
        """The pseudonymiser of ``tracking.privacy=pseudonymise`` (else ``None``), also for attributes."""
        from emoexp.tracking.privacy import pseudonymiser_for

        return pseudonymiser_for(self.cfg.tracking, OmegaConf.to_container(self.cfg, resolve=True))

    def _attribute(self, value: Any) -> Any:
        """A study/trial attribute as stored: scrubbed under ``tracking.privacy=pseudonymise``."""
        return value if self.privacy is None else self.privacy.scrub(value)

    def _parent_params(self) -> dict[str, str]:
        s = self.settings
        params = {
            "study_name": s.study_name,
            "storage": storage.redact(s.storage_url),
            "sampler": str(s.sampler.get("_target_", "?")).rsplit(".", 1)[-1],
            "pruner": str(s.pruner.get("_target_", "?")).rsplit(".", 1)[-1],
            "objectives": ",".join(s.metric_names),
            "directions": ",".join(s.directions),
            "hparams_search": s.source,
            "modality": str(self.cfg.modality),
            "model": str(self.cfg.model.name),
            "label_scheme": str(self.cfg.label_scheme.name),
            "data": str(self.cfg.data.name),
        }
        sampler = OmegaConf.to_container(s.sampler, resolve=True)
        params |= {f"sampler.{k}": str(v) for k, v in sampler.items() if not k.startswith("_")}
        params |= {
            f"pruner.{k}": str(v)
            for k, v in OmegaConf.to_container(s.pruner, resolve=True).items()
            if k != "_target_"
        }
        params |= {f"search.{k}": v for k, v in s.space.expressions.items()}
        return params

    # -------------------------------------------------------------------------------------- setup
    def setup(self) -> tuple[Any, str]:
        """Open storage and study, queue trials up to ``n_trials``, open the MLflow parent run.

        The whole step holds the study's lock (:func:`storage.study_lock`): two setups started
        together queue ``n_trials`` trials and open one parent run between them.
        """
        study_storage = self.open_storage()  # an unreachable server is reported here, clearly
        with storage.study_lock(self.settings.storage_url, self.settings.study_name):
            study = self.load_study(study_storage, create=True)
            with storage.claim_lock(self.settings.storage_url):
                stale = liveness.fail_stale_trials(study, float(self.tuner.grace_period), self._retry())
            counted = self.counted_trials(study)
            missing = self.settings.n_trials - len(counted)
            for _ in range(max(0, missing)):
                study.enqueue_trial({}, skip_if_exists=False)
            recorder, experiment_id = self._mlflow()
            parent_id = tracking.open_parent_run(
                recorder,
                experiment_id,
                study,
                self._parent_params(),
                {
                    "optuna.n_trials": str(self.settings.n_trials),
                    "optuna.storage": storage.redact(self.settings.storage_url),
                },
            )
        for number in stale:
            self._record_stale(recorder, experiment_id, parent_id, study, number)
        done = sum(t.state.is_finished() for t in counted)
        log.info(
            "study %r in %s: %d/%d trials finished, %d queued now (MLflow parent run %s)",
            study.study_name,
            storage.redact(self.settings.storage_url),
            done,
            self.settings.n_trials,
            max(0, missing),
            parent_id,
        )
        return study, parent_id

    # -------------------------------------------------------------------------------------- trials
    def compose_trial(
        self, trial_overrides: Sequence[str], command: Sequence[str] | None = None
    ) -> DictConfig:
        """Compose the config of one trial: a command line (this one by default) plus its parameters."""
        command = self.overrides if command is None else command
        with _hydra_initialized():
            from hydra import compose

            return compose(config_name="tune", overrides=[*command, *trial_overrides])

    def _training_overrides(self) -> list[str]:
        """This command line's overrides that decide what a trial trains (all but volatile keys)."""
        from emoexp.engine.resume import is_volatile

        return [o for o in self.overrides if not is_volatile(_override_key(o))]

    def _volatile_overrides(self) -> list[str]:
        """This command line's overrides of where things go and how fast they run (paths, URIs, threads)."""
        from emoexp.engine.resume import is_volatile

        return [o for o in self.overrides if is_volatile(_override_key(o))]

    def _threads(self) -> int:
        value = self.tuner.get("threads_per_worker") or os.environ.get("OMP_NUM_THREADS")
        if value:  # set by hand, by the launcher (SLURM scripts export OMP_NUM_THREADS) or by tune's parent
            return int(value)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = int(self.tuner.n_workers) if self.tuner.role == "all" else 1
        return max(1, cores // max(1, workers))

    def _prepare_trial_config(
        self, trial_cfg: DictConfig, trial: Any, parent_id: str, recorder: Any, experiment_id: str
    ) -> None:
        name, number = self.settings.study_name, trial.number
        resume = _system_attrs(trial).get(RESUME_ATTR) or {}
        run_id = None
        if resume.get("trial") == number:
            # An interrupted trial. Released without its run id when the tracking store did not
            # answer then: found now by its trial number (this worker waited for the store).
            run_id = resume.get("run_id") or tracking.find_trial_run(
                recorder.client, experiment_id, parent_id, number
            )
        with open_dict(trial_cfg):
            if run_id:
                # The same MLflow run, from its last.ckpt. Its config fingerprint leaves out the
                # tuner's own settings (tuner.*: another worker_id is the same training), so the run
                # is not rewritten. Forced all the same: the study allows what a fingerprint does
                # not (another pruner), having checked the fixed settings and parameters itself.
                trial_cfg.resume = str(run_id)
                trial_cfg.resume_force = True
                log.info("trial %d resumes its interrupted MLflow run %s", number, run_id)
            trial_cfg.evaluate_test = False  # test lock: trials never read the test split
            trial_cfg.run_name = f"{name}-trial-{number}"
            trial_cfg.paths.output_dir = str(self.output_dir / "trials" / str(number))
            trial_cfg.tracking.parent_run_id = parent_id
            trial_cfg.tracking.log_checkpoint = bool(self.tuner.log_trial_checkpoints)
            trial_cfg.tracking.tags = {
                tracking.STUDY_TAG: name,
                tracking.TRIAL_TAG: str(number),
                tracking.ROLE_TAG: "trial",
            }
            if trial_cfg.get("num_threads") is None:
                trial_cfg.num_threads = self._threads()
            if trial_cfg.get("callbacks") is None:
                trial_cfg.callbacks = {}
            trial_cfg.callbacks.optuna_pruning = {
                "_target_": "emoexp.tuning.pruning.trial_pruning_callback",
                "monitor": self.settings.metric_names[0],
            }

    def _objective_values(self, metrics: dict[str, float], client: Any, run_id: str | None) -> list[float]:
        logged = client.get_run(run_id).data.metrics if run_id else {}
        values = []
        for objective in self.settings.objectives:
            value = metrics.get(objective.metric, logged.get(objective.metric))
            if value is None:
                raise KeyError(
                    f"objective {objective.metric!r} was not logged by the trial; logged: "
                    f"{sorted(set(metrics) | set(logged))}. Fix optimized_metric or tuner.extra_objectives."
                )
            if not math.isfinite(float(value)):
                raise FloatingPointError(f"objective {objective.metric} is {value} (diverged training?)")
            values.append(float(value))
        return values

    def run_trial(self, study: Any, trial: Any, parent_id: str, recorder: Any, experiment_id: str) -> Any:
        """Run one claimed trial to COMPLETE, PRUNED or FAIL; never raise for a failed trial.

        An interrupted trial (SIGTERM, SIGINT: :class:`~emoexp.interruption.TrainingInterrupted`)
        goes back to the queue with its MLflow run and output folder, for the next worker to resume
        (same trial, same run, from ``last.ckpt``), and the interruption is raised again. A trial
        whose tracking store did not answer when its run was to be created goes back to the queue
        too (at most :data:`MAX_TRACKING_RETRIES` times); it returns ``None`` then.
        """
        import optuna
        from optuna.trial import TrialState

        from emoexp.engine.recorder import TrackingStoreError
        from emoexp.interruption import TrainingInterrupted

        trial_overrides = _retrying("starting the trial", lambda: self._begin_trial(trial))
        owner = liveness.Ownership(study, trial)
        values, state, reason, keep = None, TrialState.COMPLETE, "", False
        trial_cfg = None
        try:
            with liveness.heartbeat(study, trial, float(self.tuner.heartbeat_interval), owner):
                trial_cfg = self.compose_trial(trial_overrides)
                self._prepare_trial_config(trial_cfg, trial, parent_id, recorder, experiment_id)
                values = self._train_trial(owner, trial_cfg, recorder, experiment_id, parent_id)
        except optuna.TrialPruned as pruned:
            state, reason = TrialState.PRUNED, str(pruned)
        except (KeyboardInterrupt, TrainingInterrupted):
            keep = True
            self._release_interrupted(study, owner, recorder, experiment_id, parent_id)
            raise
        except TrackingStoreError as error:
            if self._release_unrecorded(study, owner, error):
                return None
            state, reason = TrialState.FAIL, self._failed(trial, error)
        except Exception as error:
            state, reason = TrialState.FAIL, self._failed(trial, error)
        finally:
            if trial_cfg is not None and not keep and not self.tuner.keep_trial_outputs:
                shutil.rmtree(trial_cfg.paths.output_dir, ignore_errors=True)
        return self._tell(study, owner, values, state, reason, (recorder, experiment_id, parent_id))

    def _train_trial(
        self, owner: Any, trial_cfg: DictConfig, recorder: Any, experiment_id: str, parent_id: str
    ) -> list[float]:
        """Train the trial's config, reporting epochs to the pruner; its objective values."""
        from emoexp.engine.run import train_run as train
        from emoexp.tuning.pruning import active_trial

        trial = owner.trial
        prune = len(self.settings.objectives) == 1
        by_fold = self._prunes_by_fold(trial_cfg)
        with active_trial(trial, int(trial_cfg.trainer.max_epochs), prune=prune, by_fold=by_fold) as progress:
            try:
                metrics = train(trial_cfg)
            finally:
                _record_epochs(owner, progress.epochs)
        run_id = tracking.find_trial_run(recorder.client, experiment_id, parent_id, owner.claimed)
        return self._objective_values(metrics, recorder.client, run_id)

    def _prunes_by_fold(self, trial_cfg: DictConfig) -> bool:
        """Whether this trial reports per finished fold (``tuner.cv_pruning=fold`` and a cross-validation)."""
        from hydra.utils import get_class

        mode = str(self.tuner.get("cv_pruning", "epoch"))
        protocol = get_class(str(trial_cfg.protocol._target_))
        return mode == "fold" and bool(getattr(protocol, "cross_validates", False))

    def _failed(self, trial: Any, error: BaseException) -> str:
        """Record a failed trial's error (on the trial, in the log); the reason."""
        reason = f"{type(error).__name__}: {error}"
        trial.set_user_attr("error", self._attribute(reason[:2000]))
        log.warning("trial %d failed (the study goes on):\n%s", trial.number, traceback.format_exc())
        _free_accelerator_memory()
        return reason

    def _tell(
        self, study: Any, owner: Any, values: Any, state: Any, reason: str, mlflow: tuple[Any, str, str]
    ) -> Any:
        """Tell the trial's result to the trial this worker still owns, and record it in MLflow.

        A trial declared stale while it was finishing here (late heartbeats) gives its result to its
        queued retry, which this worker adopted (:class:`liveness.Ownership`); when the retry already
        runs elsewhere, the result is not counted (the retry's is) and the stale trial stays FAIL.
        """
        recorder, experiment_id, parent_id = mlflow
        name = f"{study.study_name}-trial-{{}}"
        if not _retrying("checking the trial", owner.check):
            frozen = study.get_trials(deepcopy=False)[owner.claimed]
            why = "declared stale (late heartbeats) while finishing; its retry ran in another worker"
            tracking.record_trial(recorder, experiment_id, parent_id, frozen, name.format(frozen.number), why)
            return frozen
        number = owner.trial.number
        if number != owner.claimed:
            tracking.move_trial_run(recorder, experiment_id, parent_id, owner.claimed, number)
        frozen = _retrying(
            "telling the trial's result",
            lambda: study.tell(owner.trial, values=values, state=state, skip_if_finished=True),
        )
        tracking.record_trial(recorder, experiment_id, parent_id, frozen, name.format(number), reason)
        if number != owner.claimed:
            stale = study.get_trials(deepcopy=False)[owner.claimed]
            why = f"declared stale (late heartbeats); its worker finished it as trial {number}"
            tracking.record_trial(recorder, experiment_id, parent_id, stale, name.format(stale.number), why)
        tracking.log_progress(recorder, parent_id, study, frozen)
        log.info("trial %d %s %s", number, frozen.state.name, frozen.values if frozen.values else reason)
        return frozen

    def _begin_trial(self, trial: Any) -> list[str]:
        """Suggest the trial's parameters; record them and this worker on the trial; return overrides."""
        if trial.user_attrs.get("error"):  # a retry inherits the user attributes of the trial it retries
            trial.set_user_attr("error", "")
        params = suggest(trial, self.settings.space)
        trial_overrides = to_overrides(params, self.settings.space.fixed)
        trial.set_user_attr("overrides", self._attribute(trial_overrides))
        trial.set_user_attr(COMMAND_ATTR, self._attribute(self._training_overrides()))
        trial.set_user_attr(
            "worker", f"{socket.gethostname()}:{os.getpid()} (worker {self.tuner.get('worker_id', 0)})"
        )
        log.info("trial %d: %s", trial.number, " ".join(trial_overrides))
        return trial_overrides

    def _release_interrupted(
        self, study: Any, owner: Any, recorder: Any, experiment_id: str, parent_id: str
    ) -> None:
        """Interrupted, not failed: the trial goes back to the queue, to be resumed where it stopped.

        Its MLflow run (KILLED, ``interrupted=true``) and output folder (``last.ckpt``) are kept;
        the worker that claims it next continues the same run (:meth:`_prepare_trial_config`).
        When the tracking store does not answer, the trial goes back without its run id, and the
        worker that resumes it finds the run by the trial's number.
        """
        trial = owner.trial
        try:
            run_id = tracking.find_trial_run(recorder.client, experiment_id, parent_id, owner.claimed)
        except Exception as error:  # the store is gone too: the run is found again on resume
            log.warning(
                "trial %d: the tracking store did not answer (%s); the trial goes back to the queue "
                "without its MLflow run id, and the worker that resumes it finds the run by trial number",
                trial.number,
                (str(error).strip().splitlines() or [""])[0][:300],
            )
            run_id = None
        study._storage.set_trial_system_attr(
            trial._trial_id, RESUME_ATTR, {"trial": trial.number, "run_id": run_id}
        )
        if liveness.release(study, trial):
            log.warning(
                "trial %d interrupted: back in the queue, to be resumed by the next worker (MLflow run %s)",
                trial.number,
                run_id,
            )

    def _release_unrecorded(self, study: Any, owner: Any, error: BaseException) -> bool:
        """Put a trial whose tracking store did not answer back in the queue; whether it was.

        Its run was never created, so the trial has not started: it must not count as a failure.
        After :data:`MAX_TRACKING_RETRIES` such returns it fails like any trial.
        """
        trial = owner.trial
        retries = int(_system_attrs(trial).get(TRACKING_RETRIES_ATTR, 0)) + 1
        if retries > MAX_TRACKING_RETRIES:
            return False
        study._storage.set_trial_system_attr(trial._trial_id, TRACKING_RETRIES_ATTR, retries)
        released = liveness.release(study, trial)
        if released:
            log.warning(
                "trial %d: the tracking store did not answer (%s); the trial is back in the queue (%d/%d)",
                trial.number,
                str(error).splitlines()[0],
                retries,
                MAX_TRACKING_RETRIES,
            )
        return released

    def _record_stale(
        self, recorder: Any, experiment_id: str, parent_id: str, study: Any, number: int
    ) -> None:
        frozen = study.get_trials(deepcopy=False)[number]
        reason = (
            f"worker died: no heartbeat for {self.tuner.grace_period} s (queued again if retries are left)"
        )
        log.warning("trial %d: %s", number, reason)
        tracking.record_trial(
            recorder, experiment_id, parent_id, frozen, f"{study.study_name}-trial-{number}", reason
        )

    def work(self) -> int:
        """Claim and run queued trials until none is left; return how many this worker ran.

        SIGTERM/SIGINT anywhere in the worker raise :class:`~emoexp.interruption.TrainingInterrupted`
        (SIGINT as ``KeyboardInterrupt``): a running trial goes back to the queue to be resumed.
        """
        from emoexp.interruption import stop_on_signals

        with stop_on_signals():
            return self._work()

    def _work(self) -> int:
        from optuna.trial import TrialState

        self.wait_for_tracking()
        study = self.load_study(self.open_storage(), create=False)
        parent_id = study.user_attrs.get(tracking.PARENT_ATTR)
        if parent_id is None:
            raise ConfigError(
                f"study {study.study_name!r} has no MLflow parent run; run tuner.role=setup first."
            )
        recorder, experiment_id = self._mlflow()
        tracking.parent_run(recorder, study.study_name, parent_id)  # found, or a clear error
        retry = self._retry()
        lock = storage.claim_lock(self.settings.storage_url)
        ran = 0
        while True:
            self.wait_for_tracking()  # a trial taken while the store is down would be lost
            stale, trial = _retrying("claiming a trial", lambda: self._claim(study, retry, lock))
            for number in stale:
                self._record_stale(recorder, experiment_id, parent_id, study, number)
            if trial is None:
                if self.tuner.wait_for_running and study.get_trials(
                    deepcopy=False, states=(TrialState.RUNNING,)
                ):
                    time.sleep(min(5.0, float(self.tuner.heartbeat_interval)))  # others' trials may die
                    continue
                break
            ran += self.run_trial(study, trial, parent_id, recorder, experiment_id) is not None
        log.info("worker %s: ran %d trial(s); no queued trial left", self.tuner.get("worker_id", 0), ran)
        return ran

    def _claim(self, study: Any, retry: Any, lock: Any) -> tuple[list[int], Any]:
        """Fail the stale trials, then claim a queued one: ``(stale numbers, trial or None)``."""
        with lock:
            stale = liveness.fail_stale_trials(study, float(self.tuner.grace_period), retry)
            return stale, liveness.claim(study)

    def wait_for_tracking(self) -> None:
        """Wait until the tracking store answers, at most ``tuner.tracking_wait_s`` seconds (logged).

        Raises:
            TrackingStoreError: The store did not answer in time; no trial was taken, the queued
                trials wait for a worker that can record them.
        """
        from emoexp.engine.recorder import Recorder, TrackingStoreError
        from emoexp.tracking import store

        uri = store.resolve_tracking_uri(self.cfg.tracking.uri)
        limit = float(self.tuner.get("tracking_wait_s", 600))
        deadline = time.monotonic() + limit
        while True:
            try:
                Recorder.connect(uri, timeout_s=max(3.0, min(15.0, deadline - time.monotonic())))
                return
            except TrackingStoreError as error:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TrackingStoreError(
                        f"{error} The worker waited {limit:.0f} s (tuner.tracking_wait_s) and took no "
                        "trial: the queued trials wait for a worker that can record them."
                    ) from None
                log.warning(
                    "the tracking store %s does not answer: waiting up to %.0f s more before taking a "
                    "trial (tuner.tracking_wait_s)",
                    uri,
                    left,
                )

    # -------------------------------------------------------------------------------------- final
    def finalize(self) -> dict[str, Any]:
        """Summarise the study on its parent run, then train and test the best configuration once."""
        from optuna.trial import TrialState

        study = self.load_study(self.open_storage(), create=False)
        parent_id = study.user_attrs.get(tracking.PARENT_ATTR)
        recorder, _ = self._mlflow()
        if parent_id is None:
            raise ConfigError(
                f"study {study.study_name!r} has no MLflow parent run; run tuner.role=setup first."
            )
        tracking.parent_run(recorder, study.study_name, parent_id)  # found, or a clear error
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if running:
            log.warning("%d trial(s) still running or queued: summarising what has finished", len(running))
        summary = tracking.summarise(recorder, parent_id, study, self.settings.metric_names)
        summary["parent_run_id"] = parent_id
        if summary["best"] and self.tuner.final_run:
            # Of the Pareto front (one trial when single-objective), the best on the first objective.
            pick = max if self.settings.directions[0] == "maximize" else min
            best = pick(summary["best"], key=lambda trial: trial["values"][0])
            summary["final"] = self.final_run(study, best["number"], parent_id, recorder)
        elif not summary["best"]:
            log.warning("no trial completed: nothing to evaluate on test")
        if not running:
            recorder.end(parent_id, "FINISHED")
        return summary

    def final_run(self, study: Any, number: int, parent_id: str, recorder: Any) -> dict[str, Any]:
        """Train trial ``number``'s configuration with ``evaluate_test=true``: the study's one test run.

        The configuration is the trial's recorded overrides on the study's recorded fixed settings
        (checked). The run is claimed first, atomically (:meth:`_claim_final`): of two finalize
        steps that reach it together one trains and the other skips; the claim of a holder that
        died (no heartbeat for ``tuner.grace_period`` s) is taken over.
        """
        from emoexp.engine.run import train_run as train

        trial_cfg = self._final_config(study, number, parent_id)
        claim, mine = self._claim_final(study, number)
        if not mine:
            return claim
        beat = functools.partial(self._beat_final, study, claim["token"])
        try:
            with liveness.beating(beat, float(self.tuner.heartbeat_interval), "heartbeat-final-run"):
                metrics = train(trial_cfg)
        except BaseException:
            self._settle_final(study, claim, None)  # the next finalize step trains it
            raise
        recorder.log_metrics(parent_id, {f"final/{k}": float(v) for k, v in metrics.items()})
        recorder.flush()
        record = {"trial": number, "run_id": tracking.find_final_run(recorder.client, parent_id)}
        record = self._settle_final(study, claim, record | {"count": claim["count"]})
        recorder.set_tags(parent_id, {"final.run_id": str(record["run_id"])})
        log.info("final run of trial %d on test: %s", number, {k: round(v, 4) for k, v in metrics.items()})
        return record | {"metrics": metrics}

    def _final_config(self, study: Any, number: int, parent_id: str) -> DictConfig:
        """Trial ``number``'s stored configuration, refused if its fixed settings moved.

        Composed from what the study stored for the trial: the command-line overrides it was
        composed from and its parameters' overrides, on the study's recorded fixed settings
        (checked). Only volatile keys (paths, tracking URI, threads) come from this command line.
        """
        trial = study.get_trials(deepcopy=False)[number]
        recorded = trial.user_attrs.get(COMMAND_ATTR)
        # The trial's own command line (where and how fast may come from this one), not this one's.
        # Under tracking.privacy=pseudonymise the stored one holds path pseudonyms, not paths: this
        # command line is used, and the fixed-settings check below still refuses any other setting.
        stored = recorded is not None and self.privacy is None
        command = [*recorded, *self._volatile_overrides()] if stored else self.overrides
        trial_overrides = list(trial.user_attrs.get("overrides") or to_overrides(trial.params))
        trial_cfg = self.compose_trial(trial_overrides, command)
        fixed.check(study.user_attrs.get(fixed.FIXED_ATTR), self.fixed_settings(trial_cfg), study.study_name)
        with open_dict(trial_cfg):
            trial_cfg.evaluate_test = True
            trial_cfg.run_name = f"{study.study_name}-final"
            trial_cfg.paths.output_dir = str(self.output_dir / "final")
            trial_cfg.tracking.parent_run_id = parent_id
            trial_cfg.tracking.tags = {
                tracking.STUDY_TAG: study.study_name,
                tracking.ROLE_TAG: "final",
                "optuna.best_trial": str(number),
            }
            if trial_cfg.get("num_threads") is None:
                trial_cfg.num_threads = self._threads()
        return trial_cfg

    def _claim_final(self, study: Any, number: int) -> tuple[dict[str, Any], bool]:
        """Claim the final run of trial ``number`` under the study's lock; ``(record, claimed here)``.

        Not claimed here when trial ``number`` was already tested (the record of that run) or when
        a live worker holds the claim (its claim, with ``skipped``).
        """
        with storage.study_lock(self.settings.storage_url, study.study_name):
            attrs = study.user_attrs
            done, claim = attrs.get(FINAL_ATTR), attrs.get(FINAL_CLAIM_ATTR)
            if done and done.get("trial") == number:
                log.info(
                    "best trial %d was already evaluated on test (run %s): not again",
                    number,
                    done.get("run_id"),
                )
                return done, False
            now = liveness.storage_clock(study._storage).now()
            if claim and liveness.claim_alive(claim, float(self.tuner.grace_period), now):
                log.info(
                    "the final run (trial %s) is claimed by %s, which is alive: not run here",
                    claim.get("trial"),
                    claim.get("owner"),
                )
                return claim | {"skipped": True}, False
            if claim:
                log.warning(
                    "the final run's claim by %s is stale (no heartbeat): taking it over", claim.get("owner")
                )
            if done:
                log.warning(
                    "the best trial changed (%s -> %d): evaluating on test once more; "
                    "this study has now used the test split %d times",
                    done.get("trial"),
                    number,
                    int(done.get("count", 1)) + 1,
                )
            mine = {
                "trial": number,
                "owner": f"{socket.gethostname()}:{os.getpid()} (worker {self.tuner.get('worker_id', 0)})",
                "token": uuid.uuid4().hex,
                "heartbeat": now,  # the storage's clock, never this host's
                "count": int((done or {}).get("count", 0)) + 1,
            }
            study.set_user_attr(FINAL_CLAIM_ATTR, mine)
        return mine, True

    def _beat_final(self, study: Any, token: str) -> None:
        """Refresh this process's claim of the final run (unless it was taken over)."""
        with storage.study_lock(self.settings.storage_url, study.study_name):
            claim = study.user_attrs.get(FINAL_CLAIM_ATTR)
            if claim and claim.get("token") == token:
                now = liveness.storage_clock(study._storage).now()
                study.set_user_attr(FINAL_CLAIM_ATTR, claim | {"heartbeat": now})

    def _settle_final(
        self, study: Any, claim: dict[str, Any], record: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Release the claim; with the final run's ``record`` (it succeeded), keep it as the test run."""
        with storage.study_lock(self.settings.storage_url, study.study_name):
            current = study.user_attrs.get(FINAL_CLAIM_ATTR)
            if current and current.get("token") == claim["token"]:
                study.set_user_attr(FINAL_CLAIM_ATTR, None)
            elif current:
                log.error("this final run's claim was taken over by %s meanwhile", current.get("owner"))
            if record is not None:
                study.set_user_attr(FINAL_ATTR, record)
        return record

    # ------------------------------------------------------------------------------ local workers
    def spawn_workers(self, n_workers: int) -> list[int]:
        """Run ``n_workers`` worker processes on this machine and wait for them; return exit codes."""
        threads = self._threads()
        gpu_ids = self._gpu_ids()
        processes = []
        for k in range(n_workers):
            run_dir = self.output_dir / "workers" / str(k)
            run_dir.mkdir(parents=True, exist_ok=True)
            env = dict(
                os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1"
            )
            if gpu_ids:
                env["CUDA_VISIBLE_DEVICES"] = str(gpu_ids[k % len(gpu_ids)])
            command = [
                sys.executable,
                "-m",
                "emoexp.tune",
                *self.overrides,
                "tuner.role=worker",
                f"tuner.worker_id={k}",
                f"tuner.threads_per_worker={threads}",
                f"paths.output_dir={self.output_dir}",
                f"hydra.run.dir={run_dir}",
            ]
            with open(run_dir / "worker.log", "ab") as out:
                processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
            log.info(
                "worker %d: pid %d, %d thread(s)%s, log %s",
                k,
                processes[-1].pid,
                threads,
                f", GPU {env['CUDA_VISIBLE_DEVICES']}" if gpu_ids else "",
                run_dir / "worker.log",
            )
        try:
            codes = [p.wait() for p in processes]
        except KeyboardInterrupt:
            for p in processes:
                p.send_signal(signal.SIGINT)  # each worker puts its interrupted trial back in the queue
            codes = [p.wait() for p in processes]
            raise
        for k, code in enumerate(codes):
            if code != 0:
                log.warning(
                    "worker %d exited with %d: see %s",
                    k,
                    code,
                    self.output_dir / "workers" / str(k) / "worker.log",
                )
        return codes

    def _gpu_ids(self) -> list[int]:
        if self.tuner.get("gpu_ids") is not None:
            return [int(i) for i in self.tuner.gpu_ids]
        if str(self.cfg.trainer.get("accelerator")) not in ("gpu", "cuda", "auto"):
            return []
        import torch

        return list(range(torch.cuda.device_count()))

    def run(self) -> dict[str, Any] | None:
        """Do what ``tuner.role`` says (all: setup, workers, finalize)."""
        role = str(self.tuner.role)
        if role not in ROLES:
            raise ConfigError(f"tuner.role={role!r} is unknown; choose one of {list(ROLES)}.")
        if str(self.tuner.get("cv_pruning", "epoch")) not in CV_PRUNING:
            raise ConfigError(
                f"tuner.cv_pruning={self.tuner.cv_pruning!r} is unknown; choose one of {list(CV_PRUNING)}."
            )
        if role in ("all", "setup"):
            self.setup()
        if role == "worker" or (role == "all" and int(self.tuner.n_workers) <= 1):
            self.work()
        elif role == "all":
            self.spawn_workers(int(self.tuner.n_workers))
        if role in ("all", "finalize"):
            return self.finalize()
        return None


def _retrying(what: str, call: Any, attempts: int = 4) -> Any:
    """``call()``, again after a storage connection error (a database restart, a cut connection).

    Each retry is logged; the last error is raised. Optuna's storages reconnect on the next call.
    """
    import optuna
    import sqlalchemy.exc

    for attempt in range(1, attempts):
        try:
            return call()
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.DBAPIError) as error:
            log.warning(
                "%s failed (%s); retrying (%d/%d)", what, str(error).splitlines()[0], attempt, attempts - 1
            )
            time.sleep(float(attempt))
    return call()


def _record_epochs(owner: Any, epochs: int) -> None:
    """Record the trial's epochs; never let that bookkeeping replace the trial's own outcome."""
    try:
        _retrying("recording the trial's epochs", lambda: owner.trial.set_user_attr("epochs", epochs))
    except Exception as error:  # e.g. the trial was declared stale meanwhile: told in _tell
        log.warning("trial %d: its epochs were not recorded (%s)", owner.trial.number, error)


def _system_attrs(trial: Any) -> dict[str, Any]:
    """A running trial's system attributes, as stored now."""
    return trial.study._storage.get_trial(trial._trial_id).system_attrs


def _free_accelerator_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


@contextmanager
def _hydra_initialized() -> Iterator[None]:
    """Hydra's compose API needs an initialised Hydra: the tuner's own (``@hydra.main``) or a new one."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def tune(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any] | None:
    """Run ``cfg.tuner.role`` of the study that ``cfg`` (a composed ``tune`` config) describes.

    Args:
        cfg: The composed ``conf/tune.yaml`` (with or without its ``hydra`` node).
        overrides: The overrides it was composed from (trial configs are composed from them again).

    Returns:
        The final summary (best trial(s), counts, final test run) for roles ``all``/``finalize``.
    """
    if "hydra" in cfg:  # composed with return_hydra_config=True (tests, notebooks)
        hydra_cfg = cfg.hydra
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    else:  # inside `python -m emoexp.tune` (@hydra.main)
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
    hparams_search = hydra_cfg.runtime.choices.get("hparams_search")
    source = search_space_file(hparams_search, hydra_cfg.runtime.config_sources) if hparams_search else None
    settings = settings_from_config(cfg, hydra_cfg.sweeper, hparams_search, source)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*heartbeat.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
        return Tuner(cfg, settings, list(overrides)).run()
