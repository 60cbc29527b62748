"""Emo-DB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005): 10 actors, 7 emotions.

Layout as distributed (``download.zip``)::

    root/wav/03a01Fa.wav ...      (or root itself holding the WAV files)

File names are speaker (2 digits), text code (letter + 2 digits), emotion letter (German
initials: W Wut/anger, L Langeweile/boredom, E Ekel/disgust, A Angst/fear, F Freude/happiness,
T Trauer/sadness, N neutral) and a version letter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import FILE_FIX, OnError, Problems, audio_problem, files_under, require_root
from emoexp.labels.emotions import canonical_emotion

CORPUS = "emodb"
NATIVE_NAMES: dict[str, str] = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
"""Emotion letters -> the English names of the Emo-DB documentation (Wut, Langeweile, ...)."""
EMOTIONS: dict[str, str] = {code: canonical_emotion(name) for code, name in NATIVE_NAMES.items()}
"""Emotion letters -> canonical names; 7 classes, ``boredom`` kept."""
SPEAKER_GENDER: dict[str, str] = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
"""Speaker gender as given in the Emo-DB documentation."""

_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")
_NAMING = "Emo-DB names are <speaker><text><emotion><version>.wav, e.g. 03a01Fa.wav"
_LAYOUT = "the Emo-DB folder holding wav/03a01Fa.wav ..."


def _parse(stem: str) -> tuple[dict[str, str] | None, str | None]:
    match = _NAME.match(stem)
    if not match:
        return None, f"file name does not follow the Emo-DB code ({_NAMING})"
    speaker, text, emotion, _ = match.groups()
    if speaker not in SPEAKER_GENDER:
        return None, f"speaker {speaker} is not an Emo-DB speaker ({sorted(SPEAKER_GENDER)})"
    if emotion not in EMOTIONS:
        return None, f"emotion letter {emotion} is not one of {list(EMOTIONS)} ({_NAMING})"
    return {"speaker": speaker, "text": text, "emotion": emotion}, None


def load_emodb(root: str | Path, on_error: OnError = "raise") -> pd.DataFrame:
    """Load the Emo-DB audio files as a manifest.

    Args:
        root: The Emo-DB folder (holding ``wav/``), or the ``wav`` folder itself.
        on_error: ``"raise"`` on the first bad file, or ``"skip"`` and list it.

    Returns:
        A manifest with ``speaker`` = the two-digit speaker code, ``group_gender`` and the
        emotion mapped to canonical names (``boredom`` stays ``boredom``). Emo-DB has no
        official split and no dimensional ratings.

    Raises:
        CorpusError: On a missing root, or (with ``on_error="raise"``) a bad file.
    """
    base = require_root(root, CORPUS, _LAYOUT)
    problems = Problems(CORPUS, on_error, _LAYOUT)
    audio_dir = base / "wav" if (base / "wav").is_dir() else base
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
        rows.append(
            {
                schema.ID: path.stem,
                schema.CORPUS: CORPUS,
                schema.AUDIO: str(path),
                schema.EMOTION: EMOTIONS[fields["emotion"]],
                schema.SPEAKER: fields["speaker"],
                "group_gender": SPEAKER_GENDER[fields["speaker"]],
                # the text spoken (a01...b10): reported by the leakage guard when it spans splits
                "group_sentence": fields["text"],
            }
        )
    return problems.finish(rows, root)
