"""The ``study:`` block of ``conf/experiment/<name>.yaml``: what a study trains and what it asks.

A study is an ordinary Hydra experiment overlay (``# @package _global_``): its body is the
configuration every system shares (data, protocol, budget), so ``python train.py
experiment=<name>`` still composes and trains that shared setup. The ``study:`` block adds the
systems (name -> ``train.py`` overrides), the seeds, the question and the report settings;
:func:`parse_study` checks it and names the key of any mistake.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
STUDY_KEYS = (
    "question",
    "seeds",
    "systems",
    "pairs",
    "metric",
    "report_metrics",
    "alpha",
    "correction",
    "tracking_uri",
)
SYSTEM_KEYS = ("description", "overrides", "init_from", "ensemble")
ENSEMBLE_KEYS = ("members", "method")
ENSEMBLE_METHODS = ("soft", "weighted", "majority", "stacking")


class StudyConfigError(ValueError):
    """A study definition that cannot be run; the message names the key (``study.systems.x.overrides``)."""


@dataclass(frozen=True)
class SystemSpec:
    """One system of a study.

    Attributes:
        name: Its name in the report (tag ``study.system``).
        description: What it is, one line for the report.
        overrides: ``train.py`` overrides on top of the study's shared config.
        init_from: Another system whose run of the same seed initialises this one (``init_from=``).
        members: For a late-fusion system: the systems whose runs of the same seed it ensembles.
        method: The ensemble method (``soft``, ``weighted``, ``majority``, ``stacking``).
    """

    name: str
    description: str = ""
    overrides: tuple[str, ...] = ()
    init_from: str | None = None
    members: tuple[str, ...] = ()
    method: str | None = None

    @property
    def is_ensemble(self) -> bool:
        """Whether the system is built from other systems' predictions instead of trained."""
        return bool(self.members)

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Systems whose runs must exist before this one's."""
        return self.members + ((self.init_from,) if self.init_from else ())


@dataclass(frozen=True)
class StudyDefinition:
    """A checked ``study:`` block.

    Attributes:
        name: The experiment config's name (``conf/experiment/<name>.yaml``).
        question: What the study answers (the report's first paragraph).
        seeds: Seeds of every system (a seed sets the split and the initialisation).
        systems: The systems, in definition order.
        pairs: Pairs of systems the significance rule tests (default: every pair).
        metric: Headline metric (``None``: the test counterpart of the monitor, e.g. ``test/uar``).
        report_metrics: More logged metrics averaged per system in the report.
        alpha: Significance level of the rule.
        correction: Multiple-comparison correction over the tested pairs.
        tracking_uri: The study's MLflow store (``None``: ``<output folder>/mlflow.db``).
    """

    name: str
    question: str
    seeds: tuple[int, ...]
    systems: dict[str, SystemSpec]
    pairs: tuple[tuple[str, str], ...]
    metric: str | None = None
    report_metrics: tuple[str, ...] = ()
    alpha: float = 0.05
    correction: str = "holm"
    tracking_uri: str | None = None

    def ordered(self) -> list[SystemSpec]:
        """The systems with every dependency (``init_from``, ensemble members) before its users."""
        done: dict[str, SystemSpec] = {}

        def visit(system: SystemSpec) -> None:
            for other in system.depends_on:
                if other not in done:
                    visit(self.systems[other])
            done.setdefault(system.name, system)

        for system in self.systems.values():
            visit(system)
        return list(done.values())


def _unknown(keys: Sequence[str], allowed: Sequence[str], where: str) -> None:
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" did you mean {where}.{close[0]}?" if close else f" known keys: {', '.join(allowed)}."
            raise StudyConfigError(f"{where}.{key}: unknown key;{hint}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(v, str) for v in value)
    ):
        raise StudyConfigError(f"{where}: expected a list of strings, got {value!r}.")
    return tuple(value)


def _seeds(value: Any) -> tuple[int, ...]:
    if value is None:
        return DEFAULT_SEEDS
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise StudyConfigError(f"study.seeds: expected a non-empty list of integers, got {value!r}.")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value) or len(set(value)) < len(value):
        raise StudyConfigError(f"study.seeds: expected distinct integers, got {list(value)!r}.")
    return tuple(value)


def _system(name: str, node: Any) -> SystemSpec:
    where = f"study.systems.{name}"
    if isinstance(node, Sequence) and not isinstance(node, str):
        return SystemSpec(name, overrides=_strings(node, where))
    if not isinstance(node, Mapping):
        raise StudyConfigError(f"{where}: expected a list of train.py overrides or a mapping, got {node!r}.")
    _unknown(list(node), SYSTEM_KEYS, where)
    ensemble = node.get("ensemble")
    members: tuple[str, ...] = ()
    method = None
    if ensemble is not None:
        if not isinstance(ensemble, Mapping):
            raise StudyConfigError(f"{where}.ensemble: expected {{members: [...], method: ...}}.")
        _unknown(list(ensemble), ENSEMBLE_KEYS, f"{where}.ensemble")
        members = _strings(ensemble.get("members", []), f"{where}.ensemble.members")
        method = str(ensemble.get("method", "soft"))
        if len(members) < 2:
            raise StudyConfigError(f"{where}.ensemble.members: an ensemble needs at least two systems.")
        if method not in ENSEMBLE_METHODS:
            raise StudyConfigError(
                f"{where}.ensemble.method: {method!r} is not one of {list(ENSEMBLE_METHODS)}."
            )
        if node.get("overrides") or node.get("init_from"):
            raise StudyConfigError(f"{where}: an ensemble is not trained; drop its overrides/init_from.")
    init_from = node.get("init_from")
    return SystemSpec(
        name=name,
        description=str(node.get("description", "")),
        overrides=_strings(node.get("overrides", []), f"{where}.overrides"),
        init_from=str(init_from) if init_from is not None else None,
        members=members,
        method=method,
    )


def _check_references(systems: dict[str, SystemSpec]) -> None:
    for system in systems.values():
        for other in system.depends_on:
            key = "init_from" if other == system.init_from else "ensemble.members"
            if other not in systems:
                raise StudyConfigError(
                    f"study.systems.{system.name}.{key}: no system named {other!r}; systems: {list(systems)}."
                )
            if systems[other].is_ensemble:
                raise StudyConfigError(
                    f"study.systems.{system.name}.{key}: {other!r} is an ensemble; name trained systems."
                )
    for system in systems.values():
        seen, current = {system.name}, system.init_from
        while current is not None:
            if current in seen:
                raise StudyConfigError(
                    f"study.systems.{system.name}.init_from: the init_from chain is a cycle."
                )
            seen.add(current)
            current = systems[current].init_from


def _pairs(value: Any, systems: dict[str, SystemSpec]) -> tuple[tuple[str, str], ...]:
    names = list(systems)
    if value is None:
        return tuple((a, b) for i, a in enumerate(names) for b in names[i + 1 :])
    pairs = []
    for i, pair in enumerate(
        value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    ):
        items = _strings(pair, f"study.pairs[{i}]")
        if len(items) != 2 or items[0] == items[1]:
            raise StudyConfigError(f"study.pairs[{i}]: expected two different systems, got {list(items)!r}.")
        for item in items:
            if item not in systems:
                raise StudyConfigError(f"study.pairs[{i}]: no system named {item!r}; systems: {names}.")
        pairs.append((items[0], items[1]))
    return tuple(pairs)


def parse_study(name: str, node: Any) -> StudyDefinition:
    """Check a ``study:`` block (a plain mapping) and return its definition.

    Raises:
        StudyConfigError: Naming the key that is missing, unknown or wrong, and what it expects.
    """
    if not isinstance(node, Mapping):
        studies = ", ".join(study_names()) or "none"
        raise StudyConfigError(
            f"conf/experiment/{name}.yaml has no study: block; it is a train.py overlay "
            f"(python train.py experiment={name}), not a study. Studies: {studies}."
        )
    _unknown(list(node), STUDY_KEYS, "study")
    raw_systems = node.get("systems")
    if not isinstance(raw_systems, Mapping) or not raw_systems:
        raise StudyConfigError("study.systems: expected a mapping of system name -> train.py overrides.")
    systems = {str(k): _system(str(k), v) for k, v in raw_systems.items()}
    _check_references(systems)
    alpha = node.get("alpha", 0.05)
    if not isinstance(alpha, float) or not 0 < alpha < 1:
        raise StudyConfigError(f"study.alpha: expected a level in (0, 1), got {alpha!r}.")
    question = node.get("question")
    if not isinstance(question, str) or not question.strip():
        raise StudyConfigError("study.question: say what the study answers (one or two sentences).")
    return StudyDefinition(
        name=name,
        question=" ".join(question.split()),
        seeds=_seeds(node.get("seeds")),
        systems=systems,
        pairs=_pairs(node.get("pairs"), systems),
        metric=node.get("metric"),
        report_metrics=_strings(node.get("report_metrics", []), "study.report_metrics"),
        alpha=alpha,
        correction=str(node.get("correction", "holm")),
        tracking_uri=node.get("tracking_uri"),
    )


def study_names(conf_dirs: Sequence[Path] = ()) -> list[str]:
    """Experiment configs with a ``study:`` block, in ``conf/experiment/`` and ``conf_dirs``."""
    import yaml

    from emoexp.config import CONF_DIR

    names = []
    for root in (CONF_DIR, *conf_dirs):
        for path in sorted((Path(root) / "experiment").glob("*.yaml")):
            if "study" in (yaml.safe_load(path.read_text()) or {}):
                names.append(path.stem)
    return sorted(set(names))
