"""One command-line convention for every emoexp command: ``key=value`` arguments, one help format.

``train.py`` and ``python -m emoexp.tune`` compose a Hydra config; the compare, ensemble and
predict commands take the same argument style (``python -m emoexp.predict run_id=abc
input=clip.wav``) without composing one: they read runs, they do not define them. For those,
each option is a dataclass field whose ``metadata["help"]`` is shown by ``--help``; validation
lives in the dataclass's ``__post_init__`` so that messages name the option to change.

All of them print the same help (:func:`format_help`: a usage line, the description, each
option as ``name=default  (type)`` with its help) and the same errors: one line
``<prog>: error: <message>`` on stderr, exit status 2, no traceback; an unknown key is named
with its closest matches (:func:`unknown_option`, :func:`check_overrides` for Hydra commands).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class UsageError(ValueError):
    """A command-line argument is unknown, malformed or invalid; the message says how to fix it."""


def _convert(name: str, raw: str, annotation: Any) -> Any:
    """Convert ``raw`` to the field's annotated type (str, int, float, bool, list[str], optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if raw.lower() in ("null", "none", ""):
            return None
        return _convert(name, raw, options[0])
    if origin in (list, tuple) or annotation in (list, tuple):
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return list(items) if origin is list or annotation is list else tuple(items)
    if annotation is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise UsageError(f"{name}={raw!r}: expected true or false.")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError as error:
            raise UsageError(f"{name}={raw!r}: expected a number ({annotation.__name__}).") from error
    return raw


@dataclasses.dataclass(frozen=True)
class Option:
    """One line of ``--help``: ``name=default  (type)`` and its help text."""

    name: str
    type: str
    default: str
    help: str = ""


HELP_FLAGS = ("-h", "--help")


def wants_help(argv: Sequence[str]) -> bool:
    """Whether the arguments ask for ``--help`` (``-h``, ``--help``, or a bare ``help``)."""
    return any(a in (*HELP_FLAGS, "help") for a in argv)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return f"{_type_name(options[0])} or null"
    if origin in (list, tuple) or annotation in (list, tuple):
        return "list, comma-separated"
    return getattr(annotation, "__name__", str(annotation))


def show_value(value: Any) -> str:
    """A default as it would be typed on the command line (``null``, ``true``, ``a,b``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def dataclass_options(cls: type) -> list[Option]:
    """The :class:`Option` of every field of an options dataclass."""
    hints = typing.get_type_hints(cls)
    options = []
    for field in dataclasses.fields(cls):
        kind = _type_name(hints[field.name])
        if field.default is not dataclasses.MISSING:
            default = show_value(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = show_value(field.default_factory())
        else:
            default, kind = "...", f"{kind}, required"
        options.append(Option(field.name, kind, default, field.metadata.get("help", "")))
    return options


def format_help(
    prog: str,
    description: str,
    sections: Sequence[tuple[str, Sequence[Option]]],
    arguments: str = "key=value ...",
    epilog: str = "",
) -> str:
    """The ``--help`` text every emoexp command prints: usage, description, options, epilog."""
    lines = [f"usage: {prog} {arguments}", "", description.strip()]
    for title, options in sections:
        lines += ["", f"{title}:"]
        for option in options:
            lines.append(f"  {option.name}={option.default}  ({option.type})")
            if option.help:
                lines.append(f"      {option.help}")
    if epilog:
        lines += ["", epilog.strip()]
    return "\n".join(lines)


def usage(cls: type, prog: str, description: str) -> str:
    """The ``--help`` text of an options dataclass: the description and every option."""
    return format_help(prog, description, [("options", dataclass_options(cls))])


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    """`` did you mean 'x'?`` for the closest candidates (difflib), or an empty string."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)
    if not matches:
        return ""
    return " did you mean " + " or ".join(repr(m) for m in matches) + "?"


def unknown_option(key: str, known: typing.Iterable[str], prog: str) -> UsageError:
    """The error for an unknown ``key=``: names it, suggests close matches, points at ``--help``."""
    known = sorted(set(known))
    hint = did_you_mean(key, known)
    if hint:
        return UsageError(f"unknown option {key!r};{hint} (`{prog} --help` lists the options)")
    return UsageError(f"unknown option {key!r}; options: {', '.join(known)} (see `{prog} --help`)")


def parse(cls: type[T], argv: Sequence[str], prog: str, description: str) -> T:
    """Parse ``key=value`` arguments into ``cls`` (a dataclass).

    Args:
        cls: The options dataclass.
        argv: Arguments (without the program name).
        prog: Program name for messages.
        description: Shown by ``--help``.

    Returns:
        The options.

    Raises:
        UsageError: On an unknown key, a malformed argument or a bad value.
        SystemExit: After printing ``--help``.
    """
    if wants_help(argv):
        print(usage(cls, prog, description))
        raise SystemExit(0)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for argument in argv:
        key, sep, raw = argument.partition("=")
        key = key.strip().lstrip("+").replace("-", "_")
        if not sep:
            raise UsageError(f"argument {argument!r} is not key=value; `{prog} --help` lists the options.")
        if key not in known:
            raise unknown_option(key, known, prog)
        values[key] = _convert(key, raw, hints[key])
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in values
    ]
    if missing:
        raise UsageError(
            f"missing required option(s) {', '.join(missing)}; e.g. {missing[0]}=... "
            f"(`{prog} --help` lists the options)."
        )
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from error


# ---- Hydra commands (train.py, emoexp.tune): the same help and error format over a composed config.

# Hydra flags followed by a value, flags that change nothing about what is composed, and flags
# after which the command line is left to Hydra alone (another config, a sweep, shell completion).
_HYDRA_VALUE_FLAGS = frozenset({"--cfg", "-c", "--package", "-p"})
_HYDRA_PLAIN_FLAGS = frozenset({"--resolve", "--run", "-r"})


def hydra_overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides of a Hydra command line, or ``None`` if a flag leaves checking them to Hydra."""
    overrides: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument in _HYDRA_VALUE_FLAGS:
            next(arguments, None)
        elif argument in _HYDRA_PLAIN_FLAGS:
            continue
        elif argument.startswith("-"):
            return None
        else:
            overrides.append(argument)
    return overrides


def _compose(config_name: str, overrides: Sequence[str], conf_dir: Any) -> Any:
    from hydra import compose, initialize_config_dir  # deferred: compare/ensemble/predict never compose

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def config_groups(conf_dir: Any) -> dict[str, list[str]]:
    """Every config group under ``conf_dir`` (``model``, ``hydra/launcher``, ...) and its options."""
    from pathlib import Path

    root = Path(conf_dir)
    groups = {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        name = folder.relative_to(root).as_posix()
        if options and name != "hydra":
            groups[name] = options
    return groups


_MISSING = object()


def _key_suggestion(key: str, cfg: Any, groups: typing.Iterable[str]) -> str:
    """`` did you mean 'a.b'?`` for the first segment of ``key`` missing from ``cfg``."""
    from omegaconf import DictConfig, OmegaConf

    segments = key.split(".")
    node = cfg
    for i, segment in enumerate(segments):
        if isinstance(node, DictConfig) and segment in node:
            try:
                node = node[segment]
            except Exception:  # an unresolvable interpolation: no suggestion below it
                return ""
            continue
        if not isinstance(node, DictConfig):
            return ""
        candidates = [str(k) for k in node] + (list(groups) if i == 0 else [])
        matches = difflib.get_close_matches(segment, sorted(set(candidates)), n=3, cutoff=0.6)
        full = [".".join([*segments[:i], m, *segments[i + 1 :]]) for m in matches]
        # Prefer suggestions whose remaining segments exist too (tunr.role -> tuner.role, not pruner.role).
        full = [f for f in full if OmegaConf.select(cfg, f, default=_MISSING) is not _MISSING] or full
        return " did you mean " + " or ".join(repr(f) for f in full) + "?" if full else ""
    return ""


def check_overrides(
    config_name: str, argv: Sequence[str], prog: str, conf_dir: Any = None
) -> UsageError | None:
    """Compose ``config_name`` with the command line's overrides; the error Hydra would raise, made clear.

    An unknown key is named with its closest existing keys (``tuner.n_worker`` -> did you mean
    ``tuner.n_workers``?), an unknown group option with the group's closest options. Returns
    ``None`` when the overrides compose (or when a flag leaves them to Hydra).
    """
    overrides = hydra_overrides(argv)
    if not overrides:
        return None
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    from emoexp.config import CONF_DIR

    if GlobalHydra.instance().is_initialized():  # inside another Hydra app: it reports its own errors
        return None
    conf_dir = conf_dir or CONF_DIR
    try:
        _compose(config_name, overrides, conf_dir)
        return None
    except MissingConfigException as error:
        return _missing_option_error(error)
    except OverrideParseException as error:
        return _parse_error(error, overrides)
    except HydraException as error:
        return _unknown_key_error(error, config_name, overrides, conf_dir, prog)
    except Exception:  # not a composition error: let Hydra report it the way it does
        return None


def _missing_option_error(error: Any) -> UsageError:
    """``group=option`` naming no option of the group: the closest options."""
    group, _, name = (error.missing_cfg_file or "").rpartition("/")
    options = list(error.options or [])
    if not group or not options:
        return UsageError(str(error).split("\n\n")[0].strip())
    return UsageError(
        f"{group}={name}: no such option in group {group!r};{did_you_mean(name, options)} "
        f"options: {', '.join(options)}."
    )


def _parse_error(error: Exception, overrides: Sequence[str]) -> UsageError:
    """The first override Hydra's grammar cannot parse, and how to write it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as bad:
            if "=" not in override:
                return UsageError(f"{override!r} is not key=value or group=option.")
            first = str(bad).splitlines()[0]
            return UsageError(f"cannot parse {override!r} ({first}); write key=value or group=option.")
    return UsageError(f"cannot parse the overrides: {str(error).splitlines()[0]}")


def _unknown_key_error(
    error: Exception, config_name: str, overrides: Sequence[str], conf_dir: Any, prog: str
) -> UsageError:
    """A key the config does not have: its closest existing keys."""
    match = re.search(r"Could not override '([^']+)'", str(error))
    if not match:
        return UsageError(str(error).split("\n\n")[0].strip())
    key = match.group(1)
    rest = [o for o in overrides if o.partition("=")[0].lstrip("+~") != key]
    base = None
    for attempt in (rest, []):
        try:
            base = _compose(config_name, attempt, conf_dir)
            break
        except Exception:  # the other overrides do not compose either: suggest from the defaults
            continue
    hint = _key_suggestion(key, base, config_groups(conf_dir)) if base is not None else ""
    return UsageError(
        f"unknown option {key!r};{hint or ' the config has no such key'} "
        f"(`{prog} --help` lists the options; +{key}=... adds a new key)"
    )


def _raw(container: Any, key: str) -> Any:
    node = container
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value_type(value: Any) -> str:
    if value is None:
        return "optional"
    if isinstance(value, str) and value.startswith("${"):
        return "interpolation"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(value), type(value).__name__
    )


def config_help(
    prog: str,
    description: str,
    config_name: str,
    key_help: typing.Mapping[str, str],
    key_title: str = "options",
    epilog: str = "",
    conf_dir: Any = None,
) -> str:
    """``--help`` of a Hydra command: its config groups (options, default) and the keys of ``key_help``.

    Types and defaults come from the composed config, so the help never disagrees with ``conf/``.
    """
    from omegaconf import OmegaConf

    from emoexp.config import CONF_DIR

    conf_dir = conf_dir or CONF_DIR
    cfg = _compose(config_name, [], conf_dir)
    choices = cfg.hydra.runtime.choices
    groups = []
    for group, options in config_groups(conf_dir).items():
        default = choices.get(group)
        listed = sorted({*options, default} - {None})
        groups.append(Option(group, "group", show_value(default), "one of: " + ", ".join(listed)))
    container = OmegaConf.to_container(cfg, resolve=False)
    keys = []
    for key, text in key_help.items():
        value = _raw(container, key)
        keys.append(Option(key, _value_type(value), show_value(value), text))
    return format_help(
        prog,
        description,
        [("config groups (group=option)", groups), (key_title, keys)],
        arguments="key=value group=option ...",
        epilog=epilog,
    )


def program(main: typing.Callable[..., Any]) -> str:
    """``python -m <module>`` of a command's ``main`` (also when it runs as ``__main__``)."""
    module = sys.modules.get(main.__module__)
    spec = getattr(module, "__spec__", None)
    return f"python -m {spec.name if spec is not None else main.__module__}"


def fail(prog: str, message: object) -> int:
    """Print ``<prog>: error: <message>`` on stderr (one line, no traceback); return exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def run_cli(
    main: typing.Callable[[Sequence[str]], Any], argv: Sequence[str] | None = None, prog: str | None = None
) -> int:
    """Run ``main(argv)``; expected errors print ``<prog>: error: <message>`` and return status 2.

    Set ``EMOEXP_DEBUG=1`` to get the traceback instead.
    """
    import os

    from emoexp.config import ConfigError

    # Per-file download progress bars would drown the output of commands that read many runs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (UsageError, ConfigError, FileNotFoundError, LookupError, ValueError) as error:
        if os.environ.get("EMOEXP_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        return fail(prog or program(main), message)
    return 0
