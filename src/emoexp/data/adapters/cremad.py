"""CREMA-D (Cao et al. 2014): 91 actors, 12 sentences, 6 emotions at up to 4 intensity levels.

Layout as distributed (the CREMA-D repository)::

    root/AudioWAV/1001_DFA_ANG_XX.wav ...      (or root itself holding the WAV files)
    root/VideoDemographics.csv                 (optional: ActorID,Age,Sex,Race,Ethnicity)

File names are ``ActorID_Sentence_Emotion_Level``: actor 1001-1091, a three-letter sentence
code, emotion ANG/DIS/FEA/HAP/NEU/SAD and level LO/MD/HI/XX (XX: unspecified).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import (
    FILE_FIX,
    CorpusError,
    OnError,
    Problems,
    audio_problem,
    files_under,
    require_root,
)
from emoexp.labels.emotions import canonical_emotion

log = logging.getLogger(__name__)

CORPUS = "cremad"
EMOTIONS: dict[str, str] = {
    code: canonical_emotion(code) for code in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
}
"""Emotion codes of the file names -> canonical names (the codes are in the synonym table)."""
LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES: tuple[str, ...] = (
    "IEO",
    "TIE",
    "IOM",
    "IWW",
    "TAI",
    "MTI",
    "IWL",
    "ITH",
    "DFA",
    "ITS",
    "TSI",
    "WSI",
)
DEMOGRAPHICS = "VideoDemographics.csv"
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_NAMING = "CREMA-D names are ActorID_Sentence_Emotion_Level.wav, e.g. 1001_DFA_ANG_XX.wav"
_LAYOUT = "the CREMA-D folder holding AudioWAV/1001_DFA_ANG_XX.wav ... (and optionally VideoDemographics.csv)"


def _parse(stem: str) -> tuple[dict[str, str] | None, str | None]:
    match = _NAME.match(stem)
    if not match:
        return None, f"file name does not follow the CREMA-D code ({_NAMING})"
    actor, sentence, emotion, level = match.groups()
    checks = [
        (1001 <= int(actor) <= 1091, f"actor {actor} is not 1001-1091"),
        (sentence in SENTENCES, f"sentence code {sentence} is not one of {list(SENTENCES)}"),
        (emotion in EMOTIONS, f"emotion code {emotion} is not one of {list(EMOTIONS)}"),
        (level in LEVELS, f"level code {level} is not one of {list(LEVELS)}"),
    ]
    for ok, problem in checks:
        if not ok:
            return None, f"{problem} ({_NAMING})"
    return {"actor": actor, "sentence": sentence, "emotion": emotion, "level": level}, None


def _age_band(age: object) -> str | None:
    try:
        decade = int(float(age)) // 10 * 10
    except (TypeError, ValueError):
        return None
    return f"{decade}-{decade + 9}"


def read_demographics(path: Path, problems: Problems) -> dict[str, dict[str, str | None]]:
    """Read ``VideoDemographics.csv`` as ``{actor: {group_gender, group_age, group_race, group_ethnicity}}``.

    Ages are banded by decade (``20-29``) so that per-group reports have groups of usable size.
    """
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        problems(path, f"cannot be read as CSV ({error})", "Restore the file from the CREMA-D repository")
        return {}
    missing = {"ActorID", "Sex"} - set(frame.columns)
    if missing:
        problems(
            path,
            f"lacks column(s) {sorted(missing)} (has {list(frame.columns)})",
            "Expected the CREMA-D header ActorID,Age,Sex,Race,Ethnicity",
        )
        return {}
    groups = {}
    for _, row in frame.iterrows():
        text = {c: (str(row[c]).strip().lower() if pd.notna(row.get(c)) else None) for c in frame.columns}
        groups[str(row["ActorID"]).strip()] = {
            "group_gender": text.get("Sex"),
            "group_age": _age_band(row.get("Age")),
            "group_race": text.get("Race"),
            "group_ethnicity": text.get("Ethnicity"),
        }
    return groups


def load_cremad(
    root: str | Path,
    demographics: str | Path | None = None,
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Load the CREMA-D audio files as a manifest.

    Args:
        root: The CREMA-D folder (holding ``AudioWAV/``), or the ``AudioWAV`` folder itself.
        demographics: Path of ``VideoDemographics.csv``; by default it is looked up in ``root``
            and its parent, and the group columns are left out when it is absent.
        on_error: ``"raise"`` on the first bad file, or ``"skip"`` and list it.

    Returns:
        A manifest with ``speaker`` = ActorID, ``group_level`` (the intended intensity) and, with
        the demographics file, ``group_gender``, ``group_age`` (decade band), ``group_race``,
        ``group_ethnicity``. CREMA-D has no official split; its perceptual ratings are not read.

    Raises:
        CorpusError: On a missing root or demographics file, or (``on_error="raise"``) a bad file.
    """
    base = require_root(root, CORPUS, _LAYOUT)
    problems = Problems(CORPUS, on_error, _LAYOUT)
    audio_dir = base / "AudioWAV" if (base / "AudioWAV").is_dir() else base
    if demographics is not None:
        table = Path(demographics).expanduser()
        if not table.is_file():
            raise CorpusError(f"{CORPUS}: data.corpus.demographics={demographics} does not exist.")
    else:
        candidates = [base / DEMOGRAPHICS, base.parent / DEMOGRAPHICS]
        table = next((c for c in candidates if c.is_file()), None)
        if table is None:
            log.info("%s: no %s found; no gender/age/race groups.", CORPUS, DEMOGRAPHICS)
    groups = read_demographics(table, problems) if table is not None else {}
    rows = []
    for path in files_under(audio_dir, (".wav",)):
        fields, problem = _parse(path.stem)
        if fields is None:
            problems(path, problem, "Restore the original file name, or move the file out of data.root")
            continue
        bad_audio = audio_problem(path)
        if bad_audio:
            problems(path, bad_audio, FILE_FIX)
            continue
        row = {
            schema.ID: path.stem,
            schema.CORPUS: CORPUS,
            schema.AUDIO: str(path),
            schema.EMOTION: EMOTIONS[fields["emotion"]],
            schema.SPEAKER: fields["actor"],
            "group_level": LEVELS[fields["level"]],
            # the sentence spoken: reported by the leakage guard when it spans splits
            "group_sentence": fields["sentence"],
        }
        if groups:
            row.update(groups.get(fields["actor"], {}))
        rows.append(row)
    return problems.finish(rows, root)
