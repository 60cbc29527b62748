"""Canonical emotion vocabulary, its common spellings, and its place on the valence/arousal circumplex.

Every corpus adapter maps its native labels onto these canonical names (or keeps a
native name that is listed in ``CIRCUMPLEX``), so that label schemes can be applied
to any corpus. :data:`SYNONYMS` is the one table of other spellings (``joy``, ``happy``,
``angry``, ``sad``, ``scared``, ...); adapters and label schemes read every label through
:func:`canonical_emotion`, so a corpus labelled ``joy`` and a scheme with a ``happiness``
class meet.
"""

from __future__ import annotations

EKMAN6: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
"""Ekman's six basic emotions, in a fixed (alphabetical) class order."""

EKMAN7: tuple[str, ...] = ("neutral", *EKMAN6)
"""The six basic emotions plus neutral, the most common categorical scheme."""

# Valence (unpleasant -1 .. +1 pleasant) and arousal (calm -1 .. +1 excited) of each
# emotion, placed after Russell's circumplex (Russell 1980; Posner et al. 2005) and the
# category centroids reported for dimensional corpora such as IEMOCAP and MSP-Podcast.
# They are prototypes: used to derive dimensional targets where a corpus has none, and
# by the embedded generators as the centre of each category's cloud.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "anger": (-0.6, 0.75),
    "disgust": (-0.7, 0.3),
    "fear": (-0.65, 0.65),
    "happiness": (0.8, 0.45),
    "sadness": (-0.7, -0.45),
    "surprise": (0.2, 0.8),
    "calm": (0.45, -0.6),
    "contempt": (-0.5, 0.15),
    "excitement": (0.65, 0.85),
    "frustration": (-0.5, 0.45),
    "boredom": (-0.35, -0.7),
}


def circumplex(emotion: str) -> tuple[float, float]:
    """Return the prototype ``(valence, arousal)`` of a canonical emotion.

    Args:
        emotion: A canonical emotion name (see ``CIRCUMPLEX``).

    Raises:
        KeyError: If the emotion has no circumplex position; the message lists the known ones.
    """
    try:
        return CIRCUMPLEX[emotion]
    except KeyError:
        raise KeyError(
            f"emotion {emotion!r} has no valence/arousal prototype; known: {sorted(CIRCUMPLEX)}. "
            "Map it to a canonical emotion in the corpus adapter or add it to CIRCUMPLEX."
        ) from None


SYNONYMS: dict[str, str] = {
    **{name: "neutral" for name in ("neutral", "neutral state", "neu", "no emotion")},
    **{name: "anger" for name in ("anger", "angry", "ang")},
    **{name: "disgust" for name in ("disgust", "disgusted", "dis")},
    **{name: "fear" for name in ("fear", "fearful", "scared", "afraid", "fea")},
    **{name: "happiness" for name in ("happiness", "happy", "joy", "joyful", "hap")},
    **{name: "sadness" for name in ("sadness", "sad")},
    **{name: "surprise" for name in ("surprise", "surprised", "sur")},
    **{name: "calm" for name in ("calm", "calmness")},
    **{name: "contempt" for name in ("contempt", "contemptuous")},
    **{name: "excitement" for name in ("excitement", "excited", "exc")},
    **{name: "frustration" for name in ("frustration", "frustrated", "fru")},
    **{name: "boredom" for name in ("boredom", "bored")},
}
"""Normalised spelling (see :func:`normalise_label`) -> canonical emotion (a key of ``CIRCUMPLEX``).

Only true synonyms and the usual corpus abbreviations (IEMOCAP's and CREMA-D's three-letter
codes): a related but distinct emotion (``love``, ``annoyance``) is a mapping decision of the
corpus config or the label scheme, not a spelling."""


def normalise_label(label: str) -> str:
    """Lower-case a label, strip it and collapse inner blanks, ``_`` and ``-`` to one space."""
    return " ".join(str(label).replace("_", " ").replace("-", " ").lower().split())


def canonical_emotion(label: str) -> str:
    """The canonical name of a label spelling (``Joy`` -> ``happiness``), else the label unchanged.

    A label that is no spelling of a canonical emotion (``love``, ``no_agreement``) comes back
    as given, so callers can tell it apart: ``canonical_emotion(x) in CIRCUMPLEX``.
    """
    return SYNONYMS.get(normalise_label(label), label)
