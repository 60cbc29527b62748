"""IEMOCAP (Busso et al. 2008): 5 sessions of dyadic conversations, 10 actors (one F, one M per session).

Layout as distributed (``IEMOCAP_full_release``)::

    root/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt     consensus + per-annotator labels
    root/Session1/dialog/transcriptions/Ses01F_impro01.txt    (optional) utterance transcripts
    root/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav

An evaluation file holds one block per utterance::

    [6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]
    C-E2:	Neutral;	()
    C-E3:	Neutral; Frustration;	()
    A-E3:	val 3; act 2; dom  2;	()

The bracketed triple is the mean valence, activation and dominance on a 1-5 scale.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import (
    FILE_FIX,
    OnError,
    Problems,
    audio_problem,
    file_line,
    gender_word,
    read_text,
    require_root,
)
from emoexp.labels.emotions import canonical_emotion

CORPUS = "iemocap"
EMOTIONS: dict[str, str] = {
    **{
        code: canonical_emotion(code)
        for code in ("neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis")
    },
    "oth": "other",
    "xxx": "no_agreement",
}
"""Native consensus codes -> emotion names. ``other`` and ``no_agreement`` (``xxx``: the
annotators did not agree) have no canonical emotion; label schemes drop them (``iemocap4``)."""

ANNOTATOR_LABELS: dict[str, str] = {
    "neutral": "neutral",
    "neutral state": "neutral",
    "happiness": "happiness",
    "excited": "excitement",
    "sadness": "sadness",
    "anger": "anger",
    "frustration": "frustration",
    "surprise": "surprise",
    "fear": "fear",
    "disgust": "disgust",
    "other": "other",
}
"""Category names used on the per-annotator ``C-E*`` lines (other spellings of these emotions,
such as ``Happy`` or ``Angry``, are read through the synonym table)."""
_ANNOTATOR_SYNONYMS: dict[str, str] = {label: label for label in ANNOTATOR_LABELS.values()}
ANNOTATORS = "annotators"
"""Optional manifest column (see ``labels.aggregation``): the evaluator behind each annotation.
Evaluator ids are qualified by session (``Session1/E2``): the release does not say whether
``E2`` is the same person in every session."""

_TURN = re.compile(
    r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]\s*$"
)
_EVALUATOR = re.compile(r"^C-(E\d+):\s*(.*?)\s*(\(.*\))?\s*$")
_UTTERANCE = re.compile(r"^Ses(\d{2})[FM]_.+_([FM])\d+$")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[\d.]+-[\d.]+\]:\s?(.*)$")
_LAYOUT = "the IEMOCAP_full_release folder holding Session1 ... Session5"
_FIX_LINE = "Restore the evaluation file from the IEMOCAP release"


def scale_rating(value: float) -> float:
    """Map an IEMOCAP rating on the 1-5 scale onto [-1, 1] (3 -> 0)."""
    return min(1.0, max(-1.0, (value - 3.0) / 2.0))


def _annotations(line: str) -> tuple[str, list[str]] | None:
    """Evaluator id and canonical labels of one ``C-E*`` line (an evaluator may give several).

    Returns ``None`` if the line is malformed or names a category outside ``ANNOTATOR_LABELS``.
    """
    match = _EVALUATOR.match(line)
    names = [n.strip().lower() for n in match.group(2).split(";") if n.strip()] if match else []
    labels = [ANNOTATOR_LABELS.get(n) or _ANNOTATOR_SYNONYMS.get(canonical_emotion(n)) for n in names]
    if not labels or None in labels:
        return None
    return match.group(1), labels


def _turn(line: str) -> tuple[dict | None, str | None]:
    """Parse an utterance line; return ``(turn, None)`` or ``(None, problem)``."""
    match = _TURN.match(line)
    if not match:
        return None, f"malformed utterance line {line!r}"
    _, _, utterance, code, valence, activation, _ = match.groups()
    if code not in EMOTIONS:
        return None, f"label {code!r} is not an IEMOCAP code ({sorted(EMOTIONS)})"
    if not _UTTERANCE.match(utterance):
        return None, f"utterance id {utterance!r} does not follow Ses0NX_<dialog>_<F|M>NNN"
    turn = {"utterance": utterance, "code": code, "valence": float(valence), "activation": float(activation)}
    return {**turn, "votes": [], "evaluators": []}, None


def parse_evaluation(path: Path, problems: Problems) -> list[dict]:
    """Parse one ``EmoEvaluation/*.txt`` file into utterance dicts (id, label, valence, activation, votes).

    The annotator lines of a skipped utterance are skipped with it.
    """
    turns: list[dict] = []
    current: dict | None = None
    # split("\n"), not splitlines(): line numbers must be the file's (see base.file_line).
    for number, line in enumerate(read_text(path, problems).split("\n"), start=1):
        line = line.strip()
        where = file_line(path, number)
        if line.startswith("["):
            current, problem = _turn(line)
            if current is None:
                problems(where, problem, _FIX_LINE)
                continue
            turns.append(current)
        elif line.startswith("C-E") and current is not None:
            parsed = _annotations(line)
            if parsed is None:
                problems(
                    where,
                    f"annotator line {line!r} has a category outside {sorted(ANNOTATOR_LABELS)}",
                    _FIX_LINE,
                )
                continue
            evaluator, votes = parsed
            current["votes"].extend(votes)
            current["evaluators"].extend([evaluator] * len(votes))
    return turns


def read_transcripts(path: Path, problems: Problems) -> dict[str, str]:
    """Utterance id -> transcript from one ``transcriptions/*.txt`` file (other lines are ignored)."""
    texts = {}
    for line in read_text(path, problems).splitlines():
        match = _TRANSCRIPT.match(line.strip())
        if match:
            texts[match.group(1)] = match.group(2).strip()
    return texts


def load_iemocap(
    root: str | Path,
    sessions: list[int] | None = None,
    with_text: bool = True,
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Load the IEMOCAP utterances (audio, and transcripts where present) as a manifest.

    Args:
        root: The ``IEMOCAP_full_release`` folder holding ``Session1`` ... ``Session5``.
        sessions: Sessions to load (default: every ``Session*`` folder found).
        with_text: Fill ``text`` from ``dialog/transcriptions`` where a transcript exists.
        on_error: ``"raise"`` on the first bad file or line, or ``"skip"`` and list it.

    Returns:
        A manifest with the consensus label mapped to emotion names (``EMOTIONS``),
        ``valence``/``arousal`` (the consensus valence and activation mapped from 1-5 to
        [-1, 1]), ``annotations`` (one canonical label per evaluator vote, from the ``C-E*``
        lines; an evaluator may vote for several) with ``annotators`` (who cast each),
        ``speaker`` = session + gender of the utterance's speaker (``Ses01F``),
        ``group_session`` (``Session1``), ``group_gender`` and ``group_condition``
        (improvised/scripted). IEMOCAP has no official split: use leave-one-session-out
        (``protocol=loso protocol.group=group_session``).

    Raises:
        CorpusError: On a missing root or no session, or (``on_error="raise"``) a bad file or line.
    """
    base = require_root(root, CORPUS, _LAYOUT)
    problems = Problems(CORPUS, on_error, _LAYOUT)
    session_dirs = sorted(p for p in base.glob("Session*") if p.is_dir())
    if sessions is not None:
        session_dirs = [p for p in session_dirs if p.name in {f"Session{s}" for s in sessions}]
    rows = []
    for session_dir in session_dirs:
        evaluations = sorted(
            p for p in (session_dir / "dialog" / "EmoEvaluation").glob("*.txt") if not p.name.startswith(".")
        )
        for evaluation in evaluations:
            transcript = session_dir / "dialog" / "transcriptions" / evaluation.name
            texts = read_transcripts(transcript, problems) if with_text and transcript.is_file() else {}
            for turn in parse_evaluation(evaluation, problems):
                utterance = turn["utterance"]
                dialog = utterance.rsplit("_", 1)[0]
                wav = session_dir / "sentences" / "wav" / dialog / f"{utterance}.wav"
                bad_audio = "is missing" if not wav.is_file() else audio_problem(wav)
                if bad_audio:
                    problems(wav, f"{bad_audio} (utterance listed in {evaluation.name})", FILE_FIX)
                    continue
                session, gender = _UTTERANCE.match(utterance).groups()
                rows.append(
                    {
                        schema.ID: utterance,
                        schema.CORPUS: CORPUS,
                        schema.AUDIO: str(wav),
                        schema.TEXT: texts.get(utterance) or None,
                        schema.EMOTION: EMOTIONS[turn["code"]],
                        schema.VALENCE: scale_rating(turn["valence"]),
                        schema.AROUSAL: scale_rating(turn["activation"]),
                        schema.ANNOTATIONS: turn["votes"] or None,
                        ANNOTATORS: [f"{session_dir.name}/{e}" for e in turn["evaluators"]] or None,
                        schema.SPEAKER: f"Ses{session}{gender}",
                        "group_session": session_dir.name,
                        "group_gender": gender_word(gender),
                        "group_condition": "improvised" if "_impro" in dialog else "scripted",
                        # the script or improvisation topic, shared by the sessions' pairs
                        "group_script": dialog.split("_", 1)[1],
                    }
                )
    return problems.finish(rows, root)
