"""Search spaces in Hydra's sweep grammar -> Optuna distributions, checked before any trial runs.

The grammar is the one ``hydra.sweeper.params`` uses for ``python train.py -m``, parsed by Hydra's
own override parser and mapped to distributions the way hydra-optuna-sweeper maps them:

========================================  ===========================================
``interval(0.0, 0.5)``                    ``FloatDistribution(0.0, 0.5)``
``tag(log, interval(1e-4, 1e-2))``        ``FloatDistribution(1e-4, 1e-2, log=True)``
``int(interval(1, 3))``                   ``IntDistribution(1, 3)`` (both ends included)
``range(16, 129, 16)``                    ``IntDistribution(16, 128, step=16)`` (Python's stop)
``choice(16, 32, null)``                  ``CategoricalDistribution([16, 32, "null"])``
``64`` (no sweep)                         a fixed override applied to every trial
========================================  ===========================================

A ``range`` keeps Python's exclusive stop here (Hydra's meaning); hydra-optuna-sweeper includes
the stop, so the shipped search spaces use ``int(interval(...))``, which both read alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emoexp.config import CONF_DIR, ConfigError, group_options

_MISSING = object()


class SearchSpaceError(ConfigError):
    """A search space that cannot be sampled; the message names the file, the key and the fix."""


@dataclass
class SearchSpace:
    """Distributions to sample per trial and fixed overrides applied to every trial.

    Attributes:
        distributions: Optuna distribution per config key (``optimizer.lr``) or group (``optimizer``).
        fixed: Override values (as override strings) for keys that are not sweeps.
        expressions: The sweep expression of every key as written (for the study's record).
        source: Where the space was defined, for error messages.
    """

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    expressions: dict[str, str] = field(default_factory=dict)
    source: str = "the search space"

    def without(self, keys: Sequence[str]) -> SearchSpace:
        """The space with ``keys`` removed (fixed on the command line instead)."""
        drop = set(keys)
        return SearchSpace(
            {k: v for k, v in self.distributions.items() if k not in drop},
            {k: v for k, v in self.fixed.items() if k not in drop},
            {k: v for k, v in self.expressions.items() if k not in drop},
            self.source,
        )


def _error(source: str, key: str, problem: str, fix: str) -> SearchSpaceError:
    return SearchSpaceError(f"{source}: hydra.sweeper.params[{key!r}] {problem}. {fix}")


def _distribution(override: Any, source: str) -> Any:
    """One parsed override -> an Optuna distribution, or its fixed value string."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key = override.get_key_element()
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        if not choices:
            raise _error(source, key, "is an empty choice()", "List at least one value: choice(a, b).")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        if value.shuffle:
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        start, stop, step = value.start, value.stop, value.step
        if any(isinstance(x, float) for x in (start, stop, step)):
            raise _error(
                source,
                key,
                f"is a float range({start}, {stop}, {step})",
                "Use interval(low, high) for floats or choice(...) for a few values.",
            )
        values = list(range(int(start), int(stop), int(step)))
        if not values:
            raise _error(
                source,
                key,
                f"is an empty range({start}, {stop}, {step}) (the stop is exclusive)",
                "Make stop larger than start (or step negative), e.g. range(16, 129, 16).",
            )
        return IntDistribution(min(values), max(values), step=abs(int(step)))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        log = "log" in value.tags
        if not low < high:
            raise _error(
                source,
                key,
                f"is an empty interval({low}, {high})",
                "Give interval(low, high) with low < high.",
            )
        if log and low <= 0:
            raise _error(
                source,
                key,
                f"is a log-scaled interval starting at {low}",
                "A tag(log, interval(low, high)) needs low > 0.",
            )
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise _error(
        source, key, f"uses an unsupported sweep {value!r}", "Use interval, int(interval), range or choice."
    )


def parse_search_space(params: Mapping[str, Any] | None, source: str = "the search space") -> SearchSpace:
    """Parse ``hydra.sweeper.params`` (``{key: "interval(...)", ...}``) into a :class:`SearchSpace`.

    Args:
        params: The sweep expressions per config key or config group.
        source: The file that defined them (named in errors).

    Raises:
        SearchSpaceError: For unparsable expressions and empty or invalid ranges.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    space = SearchSpace(source=source)
    if not params:
        raise SearchSpaceError(f"{source}: hydra.sweeper.params is empty; add the parameters to search.")
    parser = OverridesParser.create()
    for key, expression in params.items():
        if expression is None:
            raise _error(
                source, str(key), "has no value", "Give a sweep such as choice(a, b) or interval(lo, hi)."
            )
        text = str(expression).strip()
        try:
            override = parser.parse_override(f"{key}={text}")
        except HydraException as error:
            raise _error(
                source, str(key), f"= {text!r} does not parse ({error})", "Use Hydra's sweep grammar."
            ) from error
        result = _distribution(override, source)
        space.expressions[str(key)] = text
        if isinstance(result, str):
            space.fixed[str(key)] = result
        else:
            space.distributions[str(key)] = result
    return space


def _flat_keys(cfg: DictConfig) -> list[str]:
    keys: list[str] = []

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not prefix and k == "hydra":
                    continue
                visit(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            keys.append(prefix)

    visit(OmegaConf.to_container(cfg, resolve=False), "")
    return keys


def check_against_config(space: SearchSpace, cfg: DictConfig, conf_dir: Any = CONF_DIR) -> None:
    """Raise if a searched key is neither in the composed config nor a config group with those options.

    A key prefixed with ``+`` adds a new key and is not checked.
    """
    for key in [*space.distributions, *space.fixed]:
        if key.startswith("+"):
            continue
        if (conf_dir / key).is_dir():
            options = group_options(key, conf_dir)
            distribution = space.distributions.get(key)
            values = [space.fixed[key]] if key in space.fixed else list(getattr(distribution, "choices", []))
            unknown = [v for v in values if str(v) not in options and v not in ("null", None)]
            if unknown:
                raise _error(
                    space.source,
                    key,
                    f"chooses unknown {key} option(s) {unknown}",
                    f"Options of {key}: {options}.",
                )
            continue
        if OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is _MISSING:
            close = difflib.get_close_matches(key, _flat_keys(cfg), n=3)
            hint = f"Did you mean {close}?" if close else "Check the key against `python train.py --cfg job`."
            model = cfg.get("model", {}).get("name", "?")
            raise _error(
                space.source,
                key,
                f"is not in the composed config (modality={cfg.get('modality')}, model={model})",
                f"{hint} Prefix it with '+' only to add a new key.",
            )


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Sample every distribution of ``space`` through ``trial``'s public suggest API.

    Returns:
        The sampled value per search-space key (``+``-prefixed keys keep their prefix).
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    params: dict[str, Any] = {}
    for key, dist in space.distributions.items():
        name = key.lstrip("+")  # "+a.b" adds a key to the config; Optuna calls the parameter "a.b"
        if isinstance(dist, FloatDistribution):
            params[key] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, IntDistribution):
            params[key] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, CategoricalDistribution):
            params[key] = trial.suggest_categorical(name, list(dist.choices))
        else:  # pragma: no cover - parse_search_space only builds the three kinds above
            raise TypeError(f"unsupported distribution {dist!r} for {key}")
    return params


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # full precision: 1e-05, 0.0003162...
    return str(value)


def to_overrides(params: Mapping[str, Any], fixed: Mapping[str, str] | None = None) -> list[str]:
    """``{"optimizer.lr": 0.001}`` -> ``["optimizer.lr=0.001"]``, the fixed overrides first."""
    return [f"{key}={value}" for key, value in (fixed or {}).items()] + [
        f"{key}={_override_value(value)}" for key, value in params.items()
    ]
