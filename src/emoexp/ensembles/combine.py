"""Combining member predictions: soft/weighted/majority voting, stacking, averaging regressors.

Every combiner works on member outputs aligned row by row (see
:func:`emoexp.ensembles.members.align`), one *block* at a time (the holdout split, or one
fold of a cross-validation): anything learnt (voting weights, the stacking meta-learner) is
learnt from the block's validation rows only, and only applied to its test rows
(docs/design.md#3-the-test-split-is-locked). :class:`ValidationOnlyFit` enforces this at the single
place where a meta-learner is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emoexp.comparison.scoring import classification_score, regression_score

VAL, TEST = "val", "test"
METHODS = ("soft", "weighted", "majority", "stacking")


class EnsembleError(ValueError):
    """Members cannot be combined (different samples, schemes, or an invalid method)."""


class TestLeakError(EnsembleError):
    """A meta-learner was about to be fitted on non-validation rows."""


@dataclass
class ValidationOnlyFit:
    """Fits meta-learners on validation rows, refusing anything else.

    Attributes:
        fitted_rows: Every row index (into the aligned arrays) a meta-learner was fitted on.
    """

    fitted_rows: list[np.ndarray] = field(default_factory=list)

    def fit(
        self, estimator: Any, features: np.ndarray, targets: np.ndarray, rows: np.ndarray, split: np.ndarray
    ) -> Any:
        """Fit ``estimator`` on ``features[rows]``; raise :class:`TestLeakError` unless all are val rows."""
        if len(rows) == 0 or not np.all(split[rows] == VAL):
            raise TestLeakError(
                f"refusing to fit a meta-learner on non-validation rows (splits {sorted(set(split[rows]))}): "
                "stacking may only learn from validation predictions."
            )
        self.fitted_rows.append(np.asarray(rows))
        return estimator.fit(features[rows], targets[rows])


@dataclass
class Combined:
    """The ensemble's outputs for all aligned rows.

    Attributes:
        probs: ``[N, C]`` class probabilities (categorical schemes) or ``None``.
        dims: ``[N, D]`` valence/arousal predictions (dimensional schemes) or ``None``.
        weights: Member weights per block (voting), for the record.
        details: Method-specific facts (stacking coefficients) for ``ensemble.json``.
    """

    probs: np.ndarray | None
    dims: np.ndarray | None
    weights: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _val_weights(scores: np.ndarray) -> np.ndarray:
    """Normalised non-negative weights from validation scores (uniform if none is positive)."""
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0).clip(min=0.0)
    return scores / scores.sum() if scores.sum() > 0 else np.full(len(scores), 1.0 / len(scores))


def _stack_features(probs: np.ndarray) -> np.ndarray:
    """Meta-features: every member's log-probabilities side by side, ``[N, M * C]``."""
    return np.log(np.clip(probs, 1e-7, 1.0)).transpose(1, 0, 2).reshape(probs.shape[1], -1)


def _cross_val_predict(
    make: Any,
    features: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    split: np.ndarray,
    guard: ValidationOnlyFit,
    n_classes: int | None,
) -> np.ndarray:
    """Out-of-fold predictions for the validation rows (each from a model not fitted on it)."""
    from sklearn.model_selection import KFold

    n_splits = min(5, len(rows))
    out = np.zeros((len(rows), n_classes) if n_classes else (len(rows),))
    for fit_part, predict_part in KFold(n_splits, shuffle=True, random_state=0).split(rows):
        model = guard.fit(make(), features, targets, rows[fit_part], split)
        out[predict_part] = _predict(model, features[rows[predict_part]], n_classes)
    return out


def _predict(model: Any, features: np.ndarray, n_classes: int | None) -> np.ndarray:
    if n_classes is None:
        return model.predict(features)
    probs = np.zeros((len(features), n_classes))
    probs[:, model.classes_] = model.predict_proba(features)  # classes absent from validation stay at 0
    return probs


def combine_probs(
    method: str,
    probs: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    blocks: np.ndarray,
    guard: ValidationOnlyFit | None = None,
    validation_metric: str = "uar",
) -> Combined:
    """Combine member class probabilities ``[M, N, C]``.

    Args:
        method: ``soft`` (mean probabilities), ``weighted`` (weights proportional to each
            member's validation ``validation_metric``), ``majority`` (hard votes; ties go to the
            higher mean probability; the output "probabilities" are the vote shares), or
            ``stacking`` (multinomial logistic regression on the members' log-probabilities, fit
            on the validation rows; validation outputs are out-of-fold).
        probs: Member probabilities.
        labels: ``[N]`` true class index (only validation rows are ever used to learn).
        split: ``[N]`` ``"val"``/``"test"``.
        blocks: ``[N]`` block id (fold name, or one value for a holdout split).
        guard: Records and checks meta-learner fits (a fresh one by default).
        validation_metric: Metric for ``weighted``.

    Returns:
        The combined probabilities.
    """
    from sklearn.linear_model import LogisticRegression

    guard = guard or ValidationOnlyFit()
    n_members, n, k = probs.shape
    out = np.zeros((n, k))
    combined = Combined(out, None)
    for block in np.unique(blocks):
        rows = np.flatnonzero(blocks == block)
        val = rows[split[rows] == VAL]
        if method == "soft":
            out[rows] = probs[:, rows].mean(axis=0)
        elif method == "weighted":
            if len(val) == 0:
                raise EnsembleError(f"block {block!r} has no validation rows to weight members by.")
            scores = [
                classification_score(validation_metric, labels[val], probs[m, val].argmax(axis=1), k)
                for m in range(n_members)
            ]
            weights = _val_weights(np.array(scores))
            combined.weights[str(block)] = weights.tolist()
            out[rows] = np.tensordot(weights, probs[:, rows], axes=1)
        elif method == "majority":
            votes = np.zeros((len(rows), k))
            for m in range(n_members):
                votes[np.arange(len(rows)), probs[m, rows].argmax(axis=1)] += 1
            share = votes / n_members
            # Ties between vote counts go to the class with the higher mean probability.
            tie_break = probs[:, rows].mean(axis=0) * 1e-6
            winner = (share + tie_break).argmax(axis=1)
            out[rows] = share
            # Keep argmax(probs) == the tie-broken winner (the frame's prediction is the argmax).
            out[rows, winner] += 1e-9
            out[rows] /= out[rows].sum(axis=1, keepdims=True)
        elif method == "stacking":
            if len(np.unique(labels[val])) < 2:
                raise EnsembleError(
                    f"stacking needs validation rows of at least 2 classes in block {block!r}."
                )
            features = _stack_features(probs)

            def make() -> LogisticRegression:
                return LogisticRegression(max_iter=2000, C=1.0)

            test = rows[split[rows] == TEST]
            model = guard.fit(make(), features, labels, val, split)
            out[test] = _predict(model, features[test], k)
            out[val] = _cross_val_predict(make, features, labels, val, split, guard, k)
            combined.details[f"coefficients_{block}"] = np.round(model.coef_, 5).tolist()
        else:
            raise EnsembleError(f"unknown ensemble method {method!r}; choose one of {list(METHODS)}.")
    return combined


def combine_dims(
    method: str,
    dims: np.ndarray,
    truth: np.ndarray,
    split: np.ndarray,
    blocks: np.ndarray,
    names: tuple[str, ...],
    guard: ValidationOnlyFit | None = None,
) -> Combined:
    """Combine member valence/arousal predictions ``[M, N, D]``.

    ``soft`` averages; ``weighted`` weights members by their validation CCC (mean over
    dimensions, negative scores count as 0); ``majority`` takes the median (the robust
    "vote" of regressors); ``stacking`` fits one ridge regression per dimension on the
    members' predictions of the validation rows (validation outputs out-of-fold), clipped to
    [-1, 1].
    """
    from sklearn.linear_model import Ridge

    guard = guard or ValidationOnlyFit()
    n_members, n, d = dims.shape
    out = np.zeros((n, d))
    combined = Combined(None, out)
    for block in np.unique(blocks):
        rows = np.flatnonzero(blocks == block)
        val = rows[split[rows] == VAL]
        if method == "soft":
            out[rows] = dims[:, rows].mean(axis=0)
        elif method == "majority":
            out[rows] = np.median(dims[:, rows], axis=0)
        elif method == "weighted":
            scores = [regression_score("ccc", truth[val], dims[m, val], names) for m in range(n_members)]
            weights = _val_weights(np.array(scores))
            combined.weights[str(block)] = weights.tolist()
            out[rows] = np.tensordot(weights, dims[:, rows], axes=1)
        elif method == "stacking":
            test = rows[split[rows] == TEST]
            for j in range(d):
                features = dims[:, :, j].T
                model = guard.fit(Ridge(alpha=1.0), features, truth[:, j], val, split)
                out[test, j] = model.predict(features[test])
                out[val, j] = _cross_val_predict(
                    lambda: Ridge(alpha=1.0), features, truth[:, j], val, split, guard, None
                )
                combined.details[f"coefficients_{block}_{names[j]}"] = np.round(model.coef_, 5).tolist()
            out[rows] = out[rows].clip(-1.0, 1.0)
        else:
            raise EnsembleError(f"unknown ensemble method {method!r}; choose one of {list(METHODS)}.")
    return combined
