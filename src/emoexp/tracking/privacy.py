"""Pseudonymised records: ``tracking.privacy=pseudonymise`` (docs/protocols.md#privacy).

With ``pseudonymise``, nothing recorded (MLflow params, tags, artifacts, the served model's
config, study attributes) holds a speaker/subject id, a sample id, a raw text or a file path:

* speaker and sample ids become salted hashes (``spk-…``, ``id-…``) in the samples themselves,
  before any split, report or card sees them, so every artifact carries the same pseudonyms and
  two runs with the same salt still pair their predictions sample by sample;
* path-like config values (``data.root``, ``paths.*``, ``tracking.uri``, checkpoint folders)
  become ``path-…`` pseudonyms, and the same folders are replaced inside free text (tracebacks,
  YAML) wherever they occur;
* tables drop raw inputs (the text, audio and image columns) and pseudonymise path-like cells.

The salt comes from ``tracking.privacy_salt`` or ``$EMOEXP_PRIVACY_SALT``, else from a random salt
created once in the cache folder; it is never recorded. Without a salt file nobody, the user
included, can map a pseudonym back, which is the point; keep the file to keep pseudonyms stable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from emoexp.config import ConfigError

NONE, PSEUDONYMISE = "none", "pseudonymise"
MODES = (NONE, PSEUDONYMISE)
SALT_ENV = "EMOEXP_PRIVACY_SALT"
SALT_FILE = "privacy_salt"
INDEX_FILE = "privacy_paths.json"
RAW_INPUT_COLUMNS = ("text", "audio", "image")
SECRET_KEYS = ("privacy_salt",)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def looks_like_path(value: str) -> bool:
    """Whether a string names a file, folder or store: absolute, home- or dot-relative, or a URI."""
    value = value.strip()
    return bool(
        value.startswith(("/", "~", "./", "../")) or _URI.match(value) or re.match(r"^[A-Za-z]:\\", value)
    )


class Pseudonymiser:
    """Salted, stable pseudonyms for ids and paths, and the scrubbing of what a run records.

    Args:
        salt: Secret bytes mixed into every hash.
        sensitive: Paths whose every occurrence in free text is replaced (their parents too
            when they name a file), e.g. the data root and the output folder.
        index: A local file (never recorded) mapping path pseudonyms back to paths, so that
            ``resume=true`` finds a pseudonymised run's output folder on this machine.
    """

    def __init__(self, salt: bytes, sensitive: Iterable[str] = (), index: Path | None = None):
        self.salt = salt
        self.index = index
        self._replacements: dict[str, str] = {}
        for value in [str(Path.home()), os.getcwd(), *sensitive]:
            self.register(value)

    def token(self, value: Any, kind: str) -> str:
        """``<kind>-<12 hex>``: the same value and salt give the same token."""
        digest = hashlib.blake2b(str(value).encode(), key=self.salt[:64], digest_size=6).hexdigest()
        return f"{kind}-{digest}"

    def register(self, value: str) -> None:
        """Replace ``value`` (a path or URI) and, for a file, its folder wherever free text holds them."""
        value = str(value).strip()
        if not looks_like_path(value) or len(value) < 2:
            return
        path = _URI.sub("", value)
        for candidate in {value, path, str(Path(path).parent) if Path(path).suffix else path}:
            if len(candidate) > 1 and candidate not in ("/", "."):
                self._replacements[candidate] = self.token(candidate, "path")

    def redact(self, text: str) -> str:
        """``text`` with every registered path replaced by its pseudonym (longest first)."""
        for value in sorted(self._replacements, key=len, reverse=True):
            text = text.replace(value, self._replacements[value])
        return text

    def value(self, value: Any) -> Any:
        """A recorded value: a path becomes its pseudonym, other strings lose registered paths."""
        if not isinstance(value, str):
            return value
        if looks_like_path(value):
            token = self.token(_URI.sub("", value.strip()), "path")
            self._remember(token, value.strip())
            return token
        return self.redact(value)

    def _remember(self, token: str, path: str) -> None:
        if self.index is None or self.reveal(token) == path:
            return
        known = json.loads(self.index.read_text()) if self.index.exists() else {}
        known[token] = path
        self.index.parent.mkdir(parents=True, exist_ok=True)
        self.index.write_text(json.dumps(known, indent=1))

    def reveal(self, token: str) -> str | None:
        """The local path behind a path pseudonym of this machine's index (``None`` if unknown)."""
        if self.index is None or not self.index.exists():
            return None
        return json.loads(self.index.read_text()).get(token)

    def scrub(self, obj: Any) -> Any:
        """A nested config/JSON object with secret keys dropped and every string passed to :meth:`value`."""
        if isinstance(obj, Mapping):
            return {k: self.scrub(v) for k, v in obj.items() if str(k).rpartition(".")[2] not in SECRET_KEYS}
        if isinstance(obj, list | tuple):
            return [self.scrub(v) for v in obj]
        return self.value(obj)

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A table to record: raw input columns dropped, string cells passed to :meth:`value`."""
        frame = frame.drop(columns=[c for c in RAW_INPUT_COLUMNS if c in frame.columns])
        out = frame.copy()
        for column in out.select_dtypes(include=["object", "string"]).columns:
            out[column] = out[column].map(self.value)
        return out

    def samples(self, manifest: pd.DataFrame, id_columns: Iterable[str]) -> pd.DataFrame:
        """The samples with their id columns (speaker, sample id) replaced by pseudonyms."""
        out = manifest.copy()
        for column in id_columns:
            if column in out.columns:
                kind = "spk" if column == "speaker" else "id"
                out[column] = out[column].map(lambda v, k=kind: v if pd.isna(v) else self.token(v, k))
        return out


def load_salt(configured: str | None, cache_dir: str | Path | None) -> bytes:
    """The salt: configured, else ``$EMOEXP_PRIVACY_SALT``, else one created once under ``cache_dir``."""
    if configured:
        return str(configured).encode()
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV].encode()
    folder = Path(cache_dir or Path.home() / ".cache" / "emoexp").expanduser()
    path = folder / SALT_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def pseudonymiser_for(
    tracking: Mapping[str, Any], resolved_config: Mapping[str, Any]
) -> Pseudonymiser | None:
    """The run's pseudonymiser for ``tracking.privacy=pseudonymise``; ``None`` for ``none``.

    Raises:
        ConfigError: For an unknown ``tracking.privacy``.
    """
    mode = tracking.get("privacy") or NONE
    if mode not in MODES:
        raise ConfigError(f"tracking.privacy={mode!r} is unknown; choose one of {list(MODES)}.")
    if mode == NONE:
        return None
    cache_dir = (resolved_config.get("paths") or {}).get("cache_dir")
    salt = load_salt(tracking.get("privacy_salt"), cache_dir)
    folder = Path(cache_dir or Path.home() / ".cache" / "emoexp").expanduser()
    sensitive = [v for v in _strings(resolved_config) if looks_like_path(v)]
    return Pseudonymiser(salt, sensitive, index=folder / INDEX_FILE)


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, Mapping):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _strings(value)
    elif isinstance(obj, str):
        yield obj
