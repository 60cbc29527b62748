"""Crowd annotations -> labels: majority vote, Dawid-Skene, soft labels and agreement.

Corpora such as IEMOCAP, MSP-Podcast or CREMA-D give several annotator labels per sample
(the manifest's ``annotations`` column, a list per row). Every function here accepts the
annotations in either of two shapes:

* a sequence of per-item label lists (the manifest column); the annotator of a label is its
  position in the list, unless ``annotators`` gives a parallel list of annotator ids per item
  (e.g. the manifest's optional ``annotators`` column); ``None``/NaN entries are skipped, so
  items may have different numbers of annotators;
* a long-format frame with columns ``item``, ``annotator``, ``label`` (one row per label,
  :func:`long_annotations` builds it from the list shape).

The aggregators at the bottom (:class:`CorpusLabels`, :class:`MajorityVote`,
:class:`DawidSkene`) are the targets of the ``aggregation`` config group: they recompute the
manifest's ``emotion`` column from its annotations before the label scheme prepares samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from emoexp.data import schema

log = logging.getLogger(__name__)

ITEM, ANNOTATOR, LABEL = "item", "annotator", "label"
# Optional manifest column: per row, the ids of the annotators behind ``annotations``.
ANNOTATORS = "annotators"

TieBreak = Literal["first", "prior", "random", "none"]
Annotations = pd.DataFrame | Sequence[Any] | pd.Series


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return list(value)
    return []


def long_annotations(
    annotations: Sequence[Any] | pd.Series, annotators: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Turn per-item label lists into a long frame with columns ``item``, ``annotator``, ``label``.

    Args:
        annotations: One entry per item: a list of labels, or a missing value (no labels).
        annotators: Optional, one entry per item: the annotator ids of that item's labels, in
            the same order. Without it an annotator is identified by its position in the list.

    Returns:
        One row per given label; ``item`` is the item's position in ``annotations``. An item
        without any label appears once with a missing label and annotator.

    Raises:
        ValueError: If an item's annotator ids and labels differ in number.
    """
    items, raters, labels = [], [], []
    annotations = list(annotations)
    ids = list(annotators) if annotators is not None else [None] * len(annotations)
    if len(ids) != len(annotations):
        raise ValueError(f"annotators has {len(ids)} entries for {len(annotations)} items.")
    for item, (votes, who) in enumerate(zip(annotations, ids, strict=True)):
        votes = _as_list(votes)
        who = _as_list(who) if who is not None and not _is_missing(who) else list(range(len(votes)))
        if len(who) != len(votes):
            raise ValueError(f"item {item}: {len(votes)} labels but {len(who)} annotator ids.")
        given = [(rater, label) for rater, label in zip(who, votes, strict=True) if not _is_missing(label)]
        # An item without labels still gets a row (missing label) so that the item count is kept.
        for rater, label in given or [(None, None)]:
            items.append(item)
            raters.append(rater)
            labels.append(label)
    return pd.DataFrame({ITEM: items, ANNOTATOR: raters, LABEL: labels}, dtype=object).astype(
        {ITEM: np.int64}
    )


def manifest_annotations(manifest: pd.DataFrame) -> pd.DataFrame:
    """Long-format annotations of a manifest (``item`` = row position; ids from ``annotators`` if present)."""
    if schema.ANNOTATIONS not in manifest.columns:
        return long_annotations([])
    annotators = manifest[ANNOTATORS] if ANNOTATORS in manifest.columns else None
    return long_annotations(manifest[schema.ANNOTATIONS], annotators)


def has_annotations(manifest: pd.DataFrame) -> bool:
    """Whether any sample of a manifest carries annotator labels."""
    return schema.ANNOTATIONS in manifest.columns and any(
        len(_as_list(v)) > 0 for v in manifest[schema.ANNOTATIONS]
    )


def infer_classes(annotations: Annotations) -> tuple[str, ...]:
    """The sorted set of labels that occur in the annotations."""
    return tuple(sorted({str(v) for v in _to_long(annotations)[0][LABEL]}))


def _to_long(annotations: Annotations) -> tuple[pd.DataFrame, int]:
    """Labelled rows of a long frame with item positions 0..n-1, and n (unlabelled items included)."""
    if isinstance(annotations, pd.DataFrame):
        missing = {ITEM, ANNOTATOR, LABEL} - set(annotations.columns)
        if missing:
            raise ValueError(
                f"long-format annotations need columns {[ITEM, ANNOTATOR, LABEL]}; missing {sorted(missing)}."
            )
        frame = annotations[[ITEM, ANNOTATOR, LABEL]]
        if pd.api.types.is_integer_dtype(frame[ITEM]):
            n_items = int(frame[ITEM].max()) + 1 if len(frame) else 0
        else:
            codes, uniques = pd.factorize(frame[ITEM], sort=False)
            frame, n_items = frame.assign(**{ITEM: codes}), len(uniques)
    else:
        annotations = list(annotations)
        frame, n_items = long_annotations(annotations), len(annotations)
    # Rows with a missing label only declare an item; they carry no vote.
    return frame.loc[~frame[LABEL].map(_is_missing)].reset_index(drop=True), n_items


@dataclass(frozen=True)
class _Encoded:
    items: np.ndarray
    annotators: np.ndarray
    labels: np.ndarray
    n_items: int
    classes: tuple[str, ...]
    annotator_ids: tuple[Any, ...]

    def counts(self) -> np.ndarray:
        """Votes per item and class, ``[n_items, n_classes]``."""
        counts = np.zeros((self.n_items, len(self.classes)), dtype=np.float64)
        np.add.at(counts, (self.items, self.labels), 1.0)
        return counts


def _encode(annotations: Annotations, classes: Sequence[str] | None) -> _Encoded:
    frame, n_items = _to_long(annotations)
    classes = tuple(classes) if classes is not None else infer_classes(frame)
    index = {c: i for i, c in enumerate(classes)}
    labels = frame[LABEL].map(lambda v: index.get(v, index.get(str(v), -1))).to_numpy(dtype=np.int64)
    if (labels < 0).any():
        unknown = sorted({str(v) for v, code in zip(frame[LABEL], labels, strict=True) if code < 0})
        raise ValueError(f"annotation labels {unknown} are not among the classes {list(classes)}.")
    # Order of first appearance: ids may mix positions (ints) with names, which do not sort.
    rater_codes, rater_ids = pd.factorize(frame[ANNOTATOR], sort=False)
    return _Encoded(
        items=frame[ITEM].to_numpy(dtype=np.int64),
        annotators=rater_codes.astype(np.int64),
        labels=labels,
        n_items=n_items,
        classes=classes,
        annotator_ids=tuple(rater_ids.tolist()),
    )


def vote_counts(annotations: Annotations, classes: Sequence[str]) -> np.ndarray:
    """Number of annotators who chose each class, per item: ``[n_items, n_classes]``."""
    return _encode(annotations, classes).counts()


def soft_labels(annotations: Annotations, classes: Sequence[str]) -> np.ndarray:
    """Each item's distribution of annotator labels, ``[n_items, n_classes]``; rows sum to 1.

    Items without any annotation get the uniform distribution (they carry no information).
    """
    counts = vote_counts(annotations, classes)
    totals = counts.sum(axis=1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / counts.shape[1])
    return np.divide(counts, totals, out=uniform, where=totals > 0)


def majority_vote(
    annotations: Annotations,
    classes: Sequence[str],
    tie_break: TieBreak = "prior",
    seed: int = 0,
) -> np.ndarray:
    """The most frequent annotator label of each item.

    Args:
        annotations: Per-item label lists or a long frame (see the module docstring).
        classes: Class names; their order is the ``"first"`` tie-break order.
        tie_break: Among classes tied for most votes, choose ``"first"`` (class order),
            ``"prior"`` (the class most frequent over all annotations, then class order),
            ``"random"`` (seeded), or ``"none"`` (leave the item unresolved).
        seed: Seed of the ``"random"`` tie-break.

    Returns:
        An object array of class names, ``None`` for items without annotations (and for
        ties under ``tie_break="none"``).
    """
    if tie_break not in ("first", "prior", "random", "none"):
        raise ValueError(f"tie_break must be 'first', 'prior', 'random' or 'none', got {tie_break!r}.")
    counts = vote_counts(annotations, classes)
    names = np.asarray(classes, dtype=object)
    out = np.full(len(counts), None, dtype=object)
    if not len(counts):
        return out
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & (top > 0)
    n_tied = tied.sum(axis=1)
    single = n_tied == 1
    out[single] = names[tied[single].argmax(axis=1)]
    ties = np.flatnonzero(n_tied > 1)
    if tie_break == "first":
        out[ties] = names[tied[ties].argmax(axis=1)]
    elif tie_break == "prior":
        # Larger overall share wins; the tiny class-order term settles equal shares.
        score = counts.sum(axis=0) - np.arange(len(classes)) * 1e-9
        out[ties] = names[np.where(tied[ties], score, -np.inf).argmax(axis=1)]
    elif tie_break == "random":
        rng = np.random.default_rng(seed)
        out[ties] = [names[rng.choice(np.flatnonzero(tied[i]))] for i in ties]
    return out


class DawidSkeneResult(NamedTuple):
    """What :func:`dawid_skene` estimates.

    Attributes:
        posteriors: ``[n_items, n_classes]`` posterior probability of each true class.
        confusions: Annotator id -> ``[n_classes, n_classes]`` matrix whose row ``j`` is the
            distribution of that annotator's labels when the true class is ``j``.
        priors: ``[n_classes]`` estimated class prevalence.
    """

    posteriors: np.ndarray
    confusions: dict[Any, np.ndarray]
    priors: np.ndarray


def dawid_skene(
    annotations: Annotations,
    classes: Sequence[str],
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 0.01,
) -> DawidSkeneResult:
    """Estimate true labels and per-annotator confusion matrices by EM (Dawid & Skene, 1979).

    Each annotator ``a`` is modelled by a confusion matrix ``pi_a[j, l] = P(label l | true j)``
    and items by class priors ``p_j``. EM alternates the posteriors of the true classes
    (E-step) and the maximum-a-posteriori ``pi`` and ``p`` (M-step), starting from the items'
    vote distributions, which resolves the label-switching ambiguity in favour of
    annotators who are better than chance on average. Annotators may label any subset of
    items; items without any label get the class priors as posteriors.

    Args:
        annotations: Per-item label lists or a long frame (see the module docstring).
        classes: Class names (column order of the results).
        max_iter: Maximum number of EM iterations.
        tol: Stop when the log-likelihood improves by less than ``tol`` relative to its size.
        smoothing: Dirichlet pseudo-count added to every confusion cell and prior, so that
            an unseen (annotator, class, label) combination is unlikely, not impossible.

    Returns:
        Posteriors, annotator confusion matrices (keyed by annotator id) and class priors.

    Raises:
        ValueError: If ``max_iter`` < 1 or a label is not among ``classes``.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    encoded = _encode(annotations, classes)
    n_classes, n_raters = len(encoded.classes), len(encoded.annotator_ids)
    counts = encoded.counts()
    annotated = counts.sum(axis=1) > 0
    totals = counts.sum(axis=1, keepdims=True)
    posteriors = np.divide(counts, totals, out=np.full_like(counts, 1.0 / n_classes), where=totals > 0)
    priors = np.full(n_classes, 1.0 / n_classes)
    confusions = np.full((n_raters, n_classes, n_classes), 1.0 / n_classes)
    previous, iterations = -np.inf, 0
    while iterations < max_iter:
        iterations += 1
        priors = (posteriors[annotated].sum(axis=0) + smoothing) / (annotated.sum() + n_classes * smoothing)
        for true_class in range(n_classes):
            cell = encoded.annotators * n_classes + encoded.labels
            confusions[:, true_class, :] = np.bincount(
                cell, weights=posteriors[encoded.items, true_class], minlength=n_raters * n_classes
            ).reshape(n_raters, n_classes)
        confusions += smoothing
        confusions /= confusions.sum(axis=2, keepdims=True)

        log_post = np.tile(np.log(priors), (encoded.n_items, 1))
        # log pi_a[:, l] for every observed (item, annotator a, label l): [n_labels, n_classes]
        np.add.at(log_post, encoded.items, np.log(confusions)[encoded.annotators, :, encoded.labels])
        norm = np.logaddexp.reduce(log_post, axis=1)
        posteriors = np.exp(log_post - norm[:, None])
        likelihood = float(norm[annotated].sum())
        if abs(likelihood - previous) <= tol * max(1.0, abs(likelihood)):
            break
        previous = likelihood
    log.debug("Dawid-Skene: %d iterations, log-likelihood %.4f", iterations, likelihood)
    return DawidSkeneResult(
        posteriors=posteriors,
        confusions={rater: confusions[a] for a, rater in enumerate(encoded.annotator_ids)},
        priors=priors,
    )


def fleiss_kappa(annotations: Annotations, classes: Sequence[str] | None = None) -> float:
    """Fleiss' kappa (Fleiss, 1971) of nominal annotations, via statsmodels.

    Fleiss' kappa assumes the same number of ratings per item. Items with another number
    of ratings than the most common one are left out (with a warning); Krippendorff's alpha
    (:func:`krippendorff_alpha`) uses every item with at least two ratings.

    Args:
        annotations: Per-item label lists or a long frame (see the module docstring).
        classes: Class names (inferred from the annotations when ``None``).

    Returns:
        Kappa in [-1, 1], NaN when fewer than two items have at least two ratings.
    """
    from statsmodels.stats import inter_rater

    encoded = _encode(annotations, classes)
    counts = encoded.counts()
    per_item = counts.sum(axis=1).astype(int)
    rated = per_item[per_item >= 2]
    if len(rated) < 2:
        return float("nan")
    n_raters = int(np.bincount(rated).argmax())
    keep = per_item == n_raters
    if (~keep & (per_item >= 2)).any():
        log.warning(
            "Fleiss' kappa: %d item(s) with another number of ratings than %d left out.",
            int((~keep & (per_item >= 2)).sum()),
            n_raters,
        )
    # (item, rater slot) matrix of class codes: Fleiss' kappa ignores which rater gave a label.
    frame = pd.DataFrame({ITEM: encoded.items, LABEL: encoded.labels})
    frame = frame[keep[frame[ITEM].to_numpy()]]
    frame["slot"] = frame.groupby(ITEM).cumcount()
    codes = frame.pivot(index=ITEM, columns="slot", values=LABEL).to_numpy(dtype=np.int64)
    table, _ = inter_rater.aggregate_raters(codes, n_cat=len(encoded.classes))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(inter_rater.fleiss_kappa(table, method="fleiss"))


def krippendorff_alpha(annotations: Annotations, classes: Sequence[str] | None = None) -> float:
    """Krippendorff's alpha for nominal data (Krippendorff 2011, "Computing Krippendorff's Alpha").

    Written here because no installed library provides it (statsmodels, scikit-learn and
    scipy do not; the ``krippendorff`` package is not a dependency). It uses the coincidence
    matrix, so items may have any number of ratings; items with fewer than two are not
    pairable and are ignored.

    Args:
        annotations: Per-item label lists or a long frame (see the module docstring).
        classes: Class names (inferred from the annotations when ``None``).

    Returns:
        Alpha (1 = perfect agreement, 0 = chance), NaN when undefined (fewer than two
        pairable values, or a single category in use).
    """
    counts = _encode(annotations, classes).counts()
    per_item = counts.sum(axis=1)
    counts, per_item = counts[per_item >= 2], per_item[per_item >= 2]
    if not len(counts):
        return float("nan")
    # Coincidences within units: o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1).
    weighted = counts / (per_item - 1)[:, None]
    coincidence = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    expected = n * (n - 1) - (n_c * (n_c - 1)).sum()
    if n < 2 or expected <= 0:
        return float("nan")
    observed_disagreement = n - np.trace(coincidence)
    return float(1.0 - (n - 1) * observed_disagreement / expected)


def agreement(manifest: pd.DataFrame) -> dict[str, float]:
    """Inter-annotator agreement of a manifest's annotations (empty when it has none).

    Returns:
        ``{"fleiss_kappa": ..., "krippendorff_alpha": ...}`` over the native labels.
    """
    if not has_annotations(manifest):
        return {}
    frame = manifest_annotations(manifest)
    return {"fleiss_kappa": fleiss_kappa(frame), "krippendorff_alpha": krippendorff_alpha(frame)}


class Aggregation:
    """Base of the ``aggregation`` config choices: a callable from manifest to manifest.

    Subclasses implement :meth:`labels`; calling the aggregation replaces ``emotion`` by the
    aggregated label of every sample that has annotations (the others keep theirs).

    Args:
        name: Name of the choice (logged with the config).
    """

    def __init__(self, name: str):
        self.name = name

    def labels(self, annotations: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:
        """Aggregated class name per item of a long frame (``None``: keep the corpus label)."""
        raise NotImplementedError

    def __call__(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of the manifest with ``emotion`` recomputed from ``annotations``.

        Raises:
            ValueError: If the corpus has no annotator labels.
        """
        if not has_annotations(manifest):
            corpus = manifest[schema.CORPUS].iloc[0] if len(manifest) else "?"
            raise ValueError(
                f"aggregation={self.name} recomputes labels from annotator labels, which corpus "
                f"{corpus!r} does not provide (empty '{schema.ANNOTATIONS}' column); use aggregation=none."
            )
        frame = manifest_annotations(manifest)
        aggregated = self.labels(frame, infer_classes(frame))
        out = manifest.copy()
        known = np.array([label is not None for label in aggregated], dtype=bool)
        before = out[schema.EMOTION].to_numpy(dtype=object)
        after = np.where(known, aggregated, before)
        out[schema.EMOTION] = after
        log.info(
            "aggregation=%s: labels of %d/%d samples recomputed, %d differ from the corpus label.",
            self.name,
            int(known.sum()),
            len(out),
            int((known & (before != after)).sum()),
        )
        return out


class CorpusLabels(Aggregation):
    """Keep the corpus's own consensus label (the ``emotion`` column).

    Args:
        name: Name of the choice.
    """

    def __init__(self, name: str = "none"):
        super().__init__(name)

    def __call__(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Return the manifest unchanged."""
        return manifest


class MajorityVote(Aggregation):
    """Label = the most frequent annotator label (samples without annotations keep theirs).

    Args:
        tie_break: See :func:`majority_vote`; ``"none"`` keeps the corpus label on ties.
        seed: Seed of the ``"random"`` tie-break.
        name: Name of the choice.
    """

    def __init__(self, tie_break: TieBreak = "prior", seed: int = 0, name: str = "majority"):
        super().__init__(name)
        if tie_break not in ("first", "prior", "random", "none"):
            raise ValueError(
                f"aggregation.tie_break must be 'first', 'prior', 'random' or 'none', got {tie_break!r}."
            )
        self.tie_break = tie_break
        self.seed = seed

    def labels(self, annotations: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:  # noqa: D102
        return majority_vote(annotations, classes, self.tie_break, self.seed)


class DawidSkene(Aggregation):
    """Label = the most probable true class under the Dawid-Skene annotator model.

    After a call, :attr:`result` holds the posteriors, annotator confusions and priors.

    Args:
        max_iter: Maximum EM iterations.
        tol: Relative log-likelihood tolerance.
        smoothing: Dirichlet pseudo-count (see :func:`dawid_skene`).
        name: Name of the choice.
    """

    def __init__(
        self, max_iter: int = 100, tol: float = 1e-6, smoothing: float = 0.01, name: str = "dawid_skene"
    ):
        super().__init__(name)
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.result: DawidSkeneResult | None = None

    def labels(self, annotations: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:  # noqa: D102
        self.result = dawid_skene(annotations, classes, self.max_iter, self.tol, self.smoothing)
        out = np.asarray(classes, dtype=object)[self.result.posteriors.argmax(axis=1)]
        out[vote_counts(annotations, classes).sum(axis=1) == 0] = None
        return out
