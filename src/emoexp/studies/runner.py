"""Train a study's units (system x seed) through ``emoexp.train``, skipping those already finished.

A unit's config is ``conf/train.yaml`` + ``experiment=<study>`` + the system's overrides + the
command line's overrides + ``seed=``. Its identity is the config fingerprint of that composed
config (:func:`emoexp.engine.resume.config_fingerprint`, docs/design.md#resume-and-leases),
set as the tag ``study.unit``: a FINISHED run with the same tag in the study's store *is* that
unit, so a second invocation trains nothing and a changed budget trains anew. Units run with
``resume=true``, so one interrupted mid-training continues its own run. Late-fusion systems are
ensembles of the same seed's member runs (``emoexp.ensemble``), identified by the tag
``study.unit`` too (a hash of the method and the member run ids).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoexp.studies.definition import StudyConfigError, StudyDefinition, SystemSpec, parse_study

log = logging.getLogger(__name__)

STUDY_TAG = "study"
SYSTEM_TAG = "study.system"
BATCH_TAG = "study.batch"
UNIT_TAG = "study.unit"


@dataclass
class StudyContext:
    """Where and how a study runs.

    Attributes:
        definition: The checked study.
        overrides: Command-line overrides applied to every unit after the system's own.
        output_dir: The study folder (results, outputs, default store).
        tracking_uri: Its MLflow store.
        config_dirs: Extra config folders searched for ``experiment/<name>.yaml``.
        batch: This invocation's batch id (tag ``study.batch`` on what it trains).
    """

    definition: StudyDefinition
    overrides: tuple[str, ...]
    output_dir: Path
    tracking_uri: str
    config_dirs: tuple[Path, ...] = ()
    batch: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S", time.gmtime()))


@dataclass
class UnitOutcome:
    """What became of one unit.

    Attributes:
        system: The system's name.
        seed: The seed.
        run_id: Its run (``None`` if it is missing or failed).
        status: ``existing`` (found in the store), ``trained``, ``missing`` (report only) or ``failed``.
        error: The error of a failed unit.
    """

    system: str
    seed: int
    run_id: str | None
    status: str
    error: str = ""


def compose(overrides: Sequence[str], config_dirs: Sequence[Path] = ()) -> Any:
    """``conf/train.yaml`` composed with ``overrides`` (extra config folders searched first)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from emoexp.config import CONF_DIR

    search = [f"hydra.searchpath=[{','.join(f'file://{Path(d).resolve()}' for d in config_dirs)}]"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=[*(search if config_dirs else []), *overrides])


def load_definition(
    name: str, overrides: Sequence[str] = (), config_dirs: Sequence[Path] = ()
) -> StudyDefinition:
    """Compose ``experiment=<name>`` and check its ``study:`` block.

    Raises:
        StudyConfigError: For an unknown study, a config that is no study or a bad study block.
    """
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf

    from emoexp.studies.definition import study_names

    try:
        cfg = compose([f"experiment={name}", *overrides], config_dirs)
    except MissingConfigException as error:
        raise StudyConfigError(
            f"no study {name!r}: conf/experiment/{name}.yaml does not exist. "
            f"Studies: {', '.join(study_names(config_dirs)) or 'none'}."
        ) from error
    study = cfg.get("study")
    return parse_study(name, OmegaConf.to_container(study, resolve=True) if study is not None else None)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def unit_config(context: StudyContext, system: SystemSpec, seed: int, init_from: str | None) -> Any:
    """The composed training config of one unit, without the ``study`` block, tagged with the study."""
    from omegaconf import open_dict

    name = context.definition.name
    overrides = [
        f"experiment={name}",
        *system.overrides,
        *context.overrides,
        f"seed={seed}",
        f"tracking.uri={context.tracking_uri}",
        f"tracking.experiment={name}",
        f"paths.output_dir={context.output_dir / 'outputs' / _slug(system.name) / f's{seed}'}",
        "resume=true",
        "resume_restart=true",
    ]
    if init_from:
        overrides.append(f"init_from={init_from}")
    cfg = compose(overrides, context.config_dirs)
    from emoexp.engine.resume import config_fingerprint

    with open_dict(cfg):
        cfg.pop("study", None)
        cfg.tracking.tags[STUDY_TAG] = name
        cfg.tracking.tags[SYSTEM_TAG] = system.name
        # The unit's identity, fixed before the engine resolves anything (protocol=auto, ...).
        cfg.tracking.tags[UNIT_TAG] = config_fingerprint(cfg)
    return cfg


def _finished(client: Any, experiment: str, tag: str, value: str) -> str | None:
    """The latest FINISHED top-level run of ``experiment`` tagged ``tag=value``, if any."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{tag}` = '{value}' AND attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    runs = [r for r in runs if "fold" not in r.data.tags]
    return runs[0].info.run_id if runs else None


def _ensemble_key(system: SystemSpec, members: Sequence[str]) -> str:
    text = f"{system.name}|{system.method}|{','.join(members)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _train_unit(context: StudyContext, client: Any, cfg: Any, key: str) -> str:
    """Train one unit's config and tag its run with the batch; returns the run id."""
    from emoexp.engine.recorder import Recorder
    from emoexp.train import train

    train(cfg)
    run_id = _finished(client, context.definition.name, UNIT_TAG, key)
    if run_id is None:
        raise RuntimeError(f"no FINISHED run tagged {UNIT_TAG}={key} after training")
    Recorder(context.tracking_uri).set_tags(run_id, {BATCH_TAG: context.batch})
    return run_id


def _build_ensemble(
    context: StudyContext, system: SystemSpec, seed: int, members: list[str], key: str
) -> str:
    """Ensemble the members' runs of one seed, tagged as the study's unit; returns its run id."""
    from emoexp import ensemble
    from emoexp.engine.recorder import Recorder

    result = ensemble.run(
        ensemble.EnsembleOptions(
            runs=members,
            method=system.method or "soft",
            name=f"{_slug(system.name)}-s{seed}",
            log_experiment=context.definition.name,
            tracking_uri=context.tracking_uri,
        )
    )
    tags = {
        STUDY_TAG: context.definition.name,
        SYSTEM_TAG: system.name,
        UNIT_TAG: key,
        BATCH_TAG: context.batch,
    }
    Recorder(context.tracking_uri).set_tags(result["run_id"], tags)
    return str(result["run_id"])


def _locate(
    context: StudyContext, client: Any, system: SystemSpec, seed: int, done: dict[str, str]
) -> tuple[str | None, Callable[[], str]]:
    """The unit's FINISHED run in the store (or ``None``) and the call that makes it."""
    if system.is_ensemble:
        members = [done[m] for m in system.members]
        key = _ensemble_key(system, members)
        existing = _finished(client, context.definition.name, UNIT_TAG, key)
        return existing, functools.partial(_build_ensemble, context, system, seed, members, key)
    cfg = unit_config(context, system, seed, done.get(system.init_from) if system.init_from else None)
    key = str(cfg.tracking.tags[UNIT_TAG])
    existing = _finished(client, context.definition.name, UNIT_TAG, key)
    return existing, functools.partial(_train_unit, context, client, cfg, key)


def _unit(
    context: StudyContext, client: Any, system: SystemSpec, seed: int, done: dict[str, str], train: bool
) -> UnitOutcome:
    """Find (or, when ``train``, make) the run of one unit; ``done`` maps systems to this seed's runs."""
    missing = [other for other in system.depends_on if other not in done]
    if missing:
        return UnitOutcome(system.name, seed, None, "missing", f"needs {', '.join(missing)} of seed {seed}")
    run_id, make = _locate(context, client, system, seed, done)
    if run_id is not None:
        return UnitOutcome(system.name, seed, run_id, "existing")
    if not train:
        return UnitOutcome(system.name, seed, None, "missing", "not trained yet")
    started = time.monotonic()
    try:
        run_id = make()
    except Exception as error:  # one failing unit (a FAILED run in the store) spares the others
        log.error("study %s: %s seed %s failed: %s", context.definition.name, system.name, seed, error)
        return UnitOutcome(system.name, seed, None, "failed", f"{type(error).__name__}: {error}")
    elapsed = time.monotonic() - started
    print(f"[study {context.definition.name}] {system.name} seed {seed}: {elapsed:.0f} s", flush=True)
    return UnitOutcome(system.name, seed, run_id, "trained")


def check_systems(context: StudyContext, names: Sequence[str]) -> None:
    """Compose and check every trained system's config once, before anything is trained.

    Raises:
        StudyConfigError: Naming the system whose overrides do not compose or do not fit together.
    """
    from emoexp.config import validate

    seed = context.definition.seeds[0]
    for system in context.definition.ordered():
        if system.name not in names or system.is_ensemble:
            continue
        try:
            validate(unit_config(context, system, seed, "0" * 32 if system.init_from else None))
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StudyConfigError(
                f"study.systems.{system.name}.overrides {list(system.overrides)} (with overrides="
                f"{' '.join(context.overrides)!r}): {first}"
            ) from error


def run_units(context: StudyContext, systems: Sequence[str] = (), train: bool = True) -> list[UnitOutcome]:
    """Every unit of the study (seeds outer, so an interrupted study leaves whole seeds behind).

    Args:
        context: The study and where it runs.
        systems: Only these systems (and what they depend on); default all.
        train: False: only find the units' runs (``report_only``).

    Returns:
        One outcome per unit, in seed then system order.
    """
    from emoexp.comparison.runs import client_for
    from emoexp.tracking.store import ensure_experiment

    definition = context.definition
    unknown = [s for s in systems if s not in definition.systems]
    if unknown:
        raise StudyConfigError(
            f"systems={','.join(unknown)}: no such system; systems: {list(definition.systems)}."
        )
    wanted = _with_dependencies(definition, systems or list(definition.systems))
    check_systems(context, sorted(wanted))
    client = client_for(context.tracking_uri)
    if train:
        ensure_experiment(context.tracking_uri, definition.name)
    outcomes = []
    for seed in definition.seeds:
        done: dict[str, str] = {}
        for system in definition.ordered():
            if system.name not in wanted:
                continue
            outcome = _unit(context, client, system, seed, done, train)
            if outcome.run_id:
                done[system.name] = outcome.run_id
            outcomes.append(outcome)
    return outcomes


def _with_dependencies(definition: StudyDefinition, names: Sequence[str]) -> set[str]:
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(definition.systems[name].depends_on)
    return wanted
