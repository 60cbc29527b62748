"""Canonical emotion vocabulary and its place on the valence/arousal circumplex.

Every corpus adapter maps its native labels onto these canonical names (or keeps a
native name that is listed in ``CIRCUMPLEX``), so that label schemes can be applied
to any corpus.
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
