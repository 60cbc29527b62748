"""RAVDESS (Livingstone & Russo 2018): 24 actors, speech and song, 8 emotions.

Layout as distributed (``Audio_Speech_Actors_01-24.zip``, optionally ``Audio_Song_Actors_01-24.zip``)::

    root/Actor_01/03-01-01-01-01-01-01.wav ... root/Actor_24/03-01-08-02-02-02-24.wav

File names are seven two-digit codes: modality (03 audio-only), vocal channel (01 speech,
02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised), intensity (01 normal, 02 strong), statement (01, 02), repetition (01, 02),
actor (01-24; odd actors are male, even actors female).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import FILE_FIX, OnError, Problems, audio_problem, files_under, require_root
from emoexp.labels.emotions import canonical_emotion

CORPUS = "ravdess"
NATIVE_NAMES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
"""Emotion codes -> RAVDESS's own names, as its documentation spells them."""
EMOTIONS: dict[str, str] = {code: canonical_emotion(name) for code, name in NATIVE_NAMES.items()}
"""Emotion codes -> canonical names (through the synonym table); 8 classes, ``calm`` kept."""
INTENSITIES: dict[str, str] = {"01": "normal", "02": "strong"}
CHANNELS: dict[str, str] = {"01": "speech", "02": "song"}
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_FOLDER = re.compile(r"^Actor_(\d{2})$")
_NAMING = "RAVDESS names are MM-VV-EE-II-SS-RR-AA.wav, e.g. 03-01-05-01-02-01-12.wav"
_LAYOUT = "the folder holding Actor_01 ... Actor_24 with files such as Actor_12/03-01-05-01-02-01-12.wav"
_RENAME = "Restore the original file name, or move the file out of data.root"


def _parse(path: Path) -> tuple[dict[str, str] | None, str | None]:
    """Decode a RAVDESS file name; return ``(fields, None)`` or ``(None, problem)``."""
    match = _NAME.match(path.stem)
    if not match:
        return None, f"file name does not follow the RAVDESS code ({_NAMING})"
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = [
        (modality == "03", f"modality code {modality} is not 03 (audio-only)"),
        (channel in CHANNELS, f"vocal channel code {channel} is not 01 (speech) or 02 (song)"),
        (emotion in EMOTIONS, f"emotion code {emotion} is not a RAVDESS emotion (01-08)"),
        (intensity in INTENSITIES, f"intensity code {intensity} is not 01 (normal) or 02 (strong)"),
        (statement in ("01", "02"), f"statement code {statement} is not 01 or 02"),
        (repetition in ("01", "02"), f"repetition code {repetition} is not 01 or 02"),
        (1 <= int(actor) <= 24, f"actor code {actor} is not 01-24"),
    ]
    for ok, problem in checks:
        if not ok:
            return None, f"{problem} ({_NAMING})"
    folder = _ACTOR_FOLDER.match(path.parent.name)
    if folder and folder.group(1) != actor:
        return None, f"actor code {actor} in the name contradicts its folder {path.parent.name}"
    fields = {"channel": channel, "emotion": emotion, "intensity": intensity, "actor": actor}
    return {**fields, "statement": statement}, None


def load_ravdess(root: str | Path, include_song: bool = False, on_error: OnError = "raise") -> pd.DataFrame:
    """Load the RAVDESS audio files as a manifest.

    Args:
        root: The extracted corpus: a folder holding ``Actor_01`` ... ``Actor_24`` (searched
            recursively, so the speech and song archives may be extracted side by side).
        include_song: Also load the sung files (vocal channel 02); by default speech only.
        on_error: ``"raise"`` on the first bad file, or ``"skip"`` and list it.

    Returns:
        A manifest with ``speaker`` = ``Actor_XX``, ``group_gender`` (odd actors male),
        ``group_intensity`` (normal/strong), ``group_vocal_channel`` and the emotion mapped to
        canonical names (``calm`` stays ``calm``; label schemes decide where it goes). RAVDESS has
        no official split and no dimensional ratings.

    Raises:
        CorpusError: On a missing root, no WAV file, or (with ``on_error="raise"``) a bad file.
    """
    base = require_root(root, CORPUS, _LAYOUT)
    problems = Problems(CORPUS, on_error, _LAYOUT)
    rows = []
    for path in files_under(base, (".wav",)):
        fields, problem = _parse(path)
        if fields is None:
            problems(path, problem, _RENAME)
            continue
        if CHANNELS[fields["channel"]] == "song" and not include_song:
            continue
        bad_audio = audio_problem(path)
        if bad_audio:
            problems(path, bad_audio, FILE_FIX)
            continue
        actor = fields["actor"]
        rows.append(
            {
                schema.ID: path.stem,
                schema.CORPUS: CORPUS,
                schema.AUDIO: str(path),
                schema.EMOTION: EMOTIONS[fields["emotion"]],
                schema.SPEAKER: f"Actor_{actor}",
                "group_gender": "male" if int(actor) % 2 else "female",
                "group_intensity": INTENSITIES[fields["intensity"]],
                "group_vocal_channel": CHANNELS[fields["channel"]],
                # the statement spoken (01 "Kids are talking...", 02 "Dogs are sitting..."): two
                # statements cannot be kept apart, so the leakage guard reports, not enforces, it
                "group_statement": fields["statement"],
            }
        )
    return problems.finish(rows, root)
