"""``key=value`` command-line arguments (Hydra-style) parsed into a dataclass of options.

The compare, ensemble and predict commands take the same argument style as ``train.py``
(``python -m emoexp.predict run_id=abc input=clip.wav``) without composing a Hydra config:
they read runs, they do not define them. Each option is a dataclass field whose
``metadata["help"]`` is shown by ``--help``; validation lives in the dataclass's
``__post_init__`` so that messages name the option to change.
"""

from __future__ import annotations

import dataclasses
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


def usage(cls: type, prog: str, description: str) -> str:
    """The ``--help`` text: the description and every option with its default and help."""
    lines = [f"usage: {prog} key=value ...", "", description.strip(), "", "options:"]
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = "(required)"
        lines.append(f"  {field.name}={default}")
        lines.append(f"      {field.metadata.get('help', '')}")
    return "\n".join(lines)


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
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage(cls, prog, description))
        raise SystemExit(0)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for argument in argv:
        key, sep, raw = argument.partition("=")
        key = key.strip().lstrip("+").replace("-", "_")
        if not sep:
            raise UsageError(f"{prog}: argument {argument!r} is not key=value; options: {sorted(known)}.")
        if key not in known:
            raise UsageError(f"{prog}: unknown option {key!r}; options: {sorted(known)} (see --help).")
        values[key] = _convert(key, raw, hints[key])
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in values
    ]
    if missing:
        raise UsageError(f"{prog}: missing required option(s) {missing}; e.g. {missing[0]}=... (see --help).")
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{prog}: {error}") from error


def run_cli(main: typing.Callable[[Sequence[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; expected errors print one clear line and exit with status 2.

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
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
