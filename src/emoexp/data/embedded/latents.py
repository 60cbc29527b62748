"""Latent variables of an embedded corpus: who says what, felt how strongly, labelled how.

Every embedded modality is rendered from the same latent frame, so the audio, face and
text of a sample share their emotion, intensity and speaker identity. The annotator labels
simulate a small pool of crowd workers with individual accuracies whose mistakes are
*plausible* (towards neighbouring emotions, and towards neutral when the expression is
weak), which is what makes label aggregation and soft labels worth studying on this data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from emoexp.labels.emotions import EKMAN7, circumplex

# Mean of the intensity distribution below; annotator accuracy is centred on it so that the
# average agreement with the latent label stays close to ``annotator_accuracy``.
_INTENSITY_A, _INTENSITY_B = 2.0, 1.6
INTENSITY_MEAN = _INTENSITY_A / (_INTENSITY_A + _INTENSITY_B)

# Confusions that perception studies report beyond what circumplex distance predicts
# (Banse & Scherer 1996; Lucey et al. 2010; Busso et al. 2008): anger/disgust share
# negative-valence tense expressions, fear/surprise share raised brows, wide eyes and high
# pitch, sadness/neutral share low arousal, happiness/surprise share positive high arousal.
_CONFUSION_BONUS: dict[frozenset[str], float] = {
    frozenset({"anger", "disgust"}): 4.0,
    frozenset({"anger", "frustration"}): 4.0,
    frozenset({"disgust", "contempt"}): 4.0,
    frozenset({"fear", "surprise"}): 5.0,
    frozenset({"sadness", "neutral"}): 4.0,
    frozenset({"happiness", "surprise"}): 2.0,
    frozenset({"neutral", "calm"}): 3.0,
    frozenset({"sadness", "boredom"}): 3.0,
    # Close on the circumplex but rarely confused by raters: damp the distance-based weight.
    frozenset({"anger", "fear"}): 0.35,
}
_NEUTRAL = "neutral"
_CIRCUMPLEX_SCALE = 0.5
_VA_NOISE = 0.12
_ANNOTATOR_SPREAD = 0.07
_INTENSITY_SLOPE = 2.5


def confusion_weights(classes: Sequence[str]) -> np.ndarray:
    """Return how likely a rater who errs takes each class for each other class.

    Args:
        classes: Class names with circumplex prototypes.

    Returns:
        A ``(len(classes), len(classes))`` row-stochastic matrix with a zero diagonal: row
        ``i`` is the distribution of wrong labels given true class ``i`` (before the
        intensity-dependent pull towards neutral).
    """
    points = np.array([circumplex(c) for c in classes])
    distance = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    weights = np.exp(-distance / _CIRCUMPLEX_SCALE)
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            weights[i, j] *= _CONFUSION_BONUS.get(frozenset({a, b}), 1.0)
    np.fill_diagonal(weights, 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def _balanced_design(
    n_samples: int, n_classes: int, n_speakers: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Assign classes and speakers so that both are balanced and crossed.

    Sample ``i`` gets class ``i mod n_classes``, and the samples of each class go round
    the speakers, so class counts differ by at most one and every speaker says every class
    about equally often. Each class starts its round at a different speaker, spread evenly,
    so that the remainders do not pile up on the first speakers. The rows are then shuffled.
    """
    index = np.arange(n_samples)
    class_index = index % n_classes
    start = np.round(class_index * n_speakers / n_classes).astype(int)
    speaker_index = (index // n_classes + start) % n_speakers
    order = rng.permutation(n_samples)
    return class_index[order], speaker_index[order]


def _annotate(
    class_index: np.ndarray,
    intensity: np.ndarray,
    classes: Sequence[str],
    n_annotators: int,
    annotator_accuracy: float,
    rng: np.random.Generator,
) -> list[list[str]]:
    """Simulate ``n_annotators`` raters labelling every sample."""
    n_samples, n_classes = len(class_index), len(classes)
    # Individual accuracies spread around the requested one, centred so that the pool as a
    # whole has exactly that accuracy (with 5 raters an uncentred draw is often 0.05 off).
    spread = rng.standard_normal(n_annotators)
    spread = spread - spread.mean() if n_annotators > 1 else 0.0 * spread
    accuracy = np.clip(annotator_accuracy + _ANNOTATOR_SPREAD * spread, 0.05, 0.99)
    # Weak expressions are harder: each rater's log-odds of being right rise with intensity,
    # around a per-rater offset solved so that the rater's mean accuracy is as drawn.
    slope = _INTENSITY_SLOPE * (intensity[:, None] - INTENSITY_MEAN)
    low, high = np.full(n_annotators, -10.0), np.full(n_annotators, 10.0)
    for _ in range(40):  # bisection, vectorised over raters
        offset = (low + high) / 2
        too_good = (1.0 / (1.0 + np.exp(-(offset + slope)))).mean(axis=0) > accuracy
        high, low = np.where(too_good, offset, high), np.where(too_good, low, offset)
    logit = (low + high) / 2 + slope
    correct = rng.random((n_samples, n_annotators)) < 1.0 / (1.0 + np.exp(-logit))

    confusion = confusion_weights(classes)[class_index]
    if _NEUTRAL in classes:
        neutral = classes.index(_NEUTRAL)
        pull = 1.0 + 4.0 * (1.0 - intensity)
        confusion[:, neutral] *= np.where(class_index == neutral, 1.0, pull)
        confusion /= confusion.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(confusion, axis=1)
    draws = rng.random((n_samples, n_annotators))
    wrong = (draws[:, :, None] > cumulative[:, None, :]).sum(axis=-1)
    labels = np.where(correct, class_index[:, None], np.minimum(wrong, n_classes - 1))
    names = np.asarray(classes, dtype=object)
    return [list(names[row]) for row in labels]


def sample_latents(
    n_samples: int,
    n_speakers: int,
    seed: int,
    classes: Sequence[str] = EKMAN7,
    n_annotators: int = 5,
    annotator_accuracy: float = 0.7,
    corpus: str = "embedded",
) -> pd.DataFrame:
    """Draw the latent frame of an embedded corpus.

    Classes are balanced, every speaker expresses every class about equally often, and
    genders alternate over speakers so they are balanced too.

    Args:
        n_samples: Number of samples (rows).
        n_speakers: Number of speakers/subjects; at least 2 so speaker splits are possible.
        seed: Random seed; the same seed gives an identical frame.
        classes: Emotion classes, each with a circumplex prototype.
        n_annotators: Simulated raters per sample.
        annotator_accuracy: Mean probability that a rater gives the latent label; each rater
            has an individual accuracy around it and is less accurate on weak expressions.
        corpus: Value of the ``corpus`` column.

    Returns:
        A frame with columns ``id``, ``emotion``, ``intensity`` (0..1, low is harder),
        ``valence``, ``arousal``, ``speaker``, ``group_gender``, ``annotations`` (list of
        ``n_annotators`` labels) and ``corpus``.

    Raises:
        ValueError: On non-positive sizes, fewer than two speakers, or an accuracy outside (0, 1).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}.")
    if n_speakers < 2:
        raise ValueError(f"n_speakers must be at least 2 for speaker splits, got {n_speakers}.")
    if not 0.0 < annotator_accuracy < 1.0:
        raise ValueError(f"annotator_accuracy must be in (0, 1), got {annotator_accuracy}.")
    if n_annotators < 0:
        raise ValueError(f"n_annotators must be non-negative, got {n_annotators}.")
    classes = list(classes)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7E]))

    class_index, speaker_index = _balanced_design(n_samples, len(classes), n_speakers, rng)
    intensity = np.clip(rng.beta(_INTENSITY_A, _INTENSITY_B, n_samples), 0.05, 1.0)
    prototypes = np.array([circumplex(c) for c in classes])[class_index]
    # Weak expressions sit closer to the origin of the circumplex, but never collapse onto it.
    scale = (0.3 + 0.7 * intensity)[:, None]
    va = np.clip(prototypes * scale + _VA_NOISE * rng.standard_normal((n_samples, 2)), -1, 1)
    annotations = _annotate(class_index, intensity, classes, n_annotators, annotator_accuracy, rng)
    width = max(2, len(str(n_speakers - 1)))
    genders = np.array(["female", "male"])
    return pd.DataFrame(
        {
            "id": [f"emb-{i:05d}" for i in range(n_samples)],
            "emotion": np.asarray(classes, dtype=object)[class_index],
            "intensity": intensity,
            "valence": va[:, 0],
            "arousal": va[:, 1],
            "speaker": [f"spk{s:0{width}d}" for s in speaker_index],
            "group_gender": genders[speaker_index % 2],
            "annotations": annotations,
            "corpus": corpus,
        }
    )
