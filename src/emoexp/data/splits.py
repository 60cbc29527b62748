"""Evaluation protocols: how a manifest is split into train / validation / test.

A protocol yields one or more :class:`Fold`; each fold assigns every sample to
``train``, ``val`` or ``test``. Validation data always comes from the training side, so
early stopping and model selection never see the test samples (docs/design.md#3-the-test-split-is-locked).
Speaker-independent protocols assert that no speaker is in two parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupShuffleSplit,
    StratifiedGroupKFold,
    train_test_split,
)

from emoexp.data import schema

TRAIN, VAL, TEST = "train", "val", "test"


class SplitError(ValueError):
    """A protocol cannot be applied to a corpus (too few samples, speakers or a leak)."""


@dataclass(frozen=True)
class Fold:
    """One train/val/test assignment.

    Attributes:
        name: ``"holdout"`` or ``"fold0"``, ``"fold1"``, ...
        assignment: ``"train"``/``"val"``/``"test"`` per manifest row.
    """

    name: str
    assignment: np.ndarray

    def mask(self, part: str) -> np.ndarray:
        """Boolean mask of the rows in ``part``."""
        return self.assignment == part

    def fingerprint(self, manifest: pd.DataFrame) -> str:
        """Hash of the split manifest: every (sample id, part) pair."""
        return schema.fingerprint(
            f"{i}\t{p}" for i, p in zip(manifest[schema.ID], self.assignment, strict=True)
        )


def assert_group_disjoint(manifest: pd.DataFrame, fold: Fold, group: str = schema.SPEAKER) -> None:
    """Raise :class:`SplitError` if any ``group`` value occurs in two parts of a fold."""
    parts = {p: set(manifest.loc[fold.mask(p), group]) for p in (TRAIN, VAL, TEST)}
    for a, b in ((TRAIN, VAL), (TRAIN, TEST), (VAL, TEST)):
        shared = parts[a] & parts[b]
        if shared:
            raise SplitError(f"{fold.name}: {group}(s) {sorted(shared)[:5]} are in both {a} and {b}.")


def _check_parts(fold: Fold) -> Fold:
    for part in (TRAIN, VAL, TEST):
        if not fold.mask(part).any():
            raise SplitError(
                f"{fold.name}: the {part} split is empty; use a larger corpus or other split sizes."
            )
    return fold


class Protocol:
    """Base class: ``folds(manifest, stratify, seed)`` yields the folds of a corpus."""

    name = "protocol"
    speaker_independent = False
    # Several folds, each trained and tested (a cross-validation); one fold otherwise.
    cross_validates = False

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:
        """Yield the folds of ``manifest``."""
        raise NotImplementedError


class StratifiedHoldout(Protocol):
    """One random train/val/test split, stratified by class where the scheme has classes.

    Args:
        val_size: Fraction of all samples for validation.
        test_size: Fraction of all samples for test.
        name: Protocol name (tags, run names).
    """

    name = "holdout"

    def __init__(self, val_size: float = 0.15, test_size: float = 0.15, name: str = "holdout"):
        self.name = name
        if not (0 < val_size < 1 and 0 < test_size < 1 and val_size + test_size < 1):
            raise SplitError("protocol.val_size and protocol.test_size must be in (0, 1) and sum below 1.")
        self.val_size = val_size
        self.test_size = test_size

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        index = np.arange(len(manifest))
        try:
            rest, test = train_test_split(
                index, test_size=self.test_size, random_state=seed, stratify=stratify
            )
            train, val = train_test_split(
                rest,
                test_size=self.val_size / (1 - self.test_size),
                random_state=seed,
                stratify=None if stratify is None else stratify[rest],
            )
        except ValueError as error:
            raise SplitError(f"cannot make a stratified holdout split: {error}") from error
        assignment = np.empty(len(manifest), dtype=object)
        assignment[train], assignment[val], assignment[test] = TRAIN, VAL, TEST
        yield _check_parts(Fold("holdout", assignment.astype(str)))


class SpeakerHoldout(Protocol):
    """One speaker/subject-independent train/val/test split.

    Speakers are assigned whole to one part; with class labels, the assignment is chosen
    (``StratifiedGroupKFold``) so each part keeps the class balance as far as possible.

    Args:
        val_size: Approximate fraction of speakers for validation.
        test_size: Approximate fraction of speakers for test.
        group: Column holding the speaker/subject id.
        name: Protocol name (tags, run names).
    """

    name = "speaker_holdout"
    speaker_independent = True

    def __init__(
        self,
        val_size: float = 0.15,
        test_size: float = 0.15,
        group: str = schema.SPEAKER,
        name: str = "speaker_holdout",
    ):
        self.name = name
        if not (0 < val_size < 1 and 0 < test_size < 1 and val_size + test_size < 1):
            raise SplitError("protocol.val_size and protocol.test_size must be in (0, 1) and sum below 1.")
        self.val_size = val_size
        self.test_size = test_size
        self.group = group

    def minimum_groups(self) -> int:
        """The fewest speakers this split's sizes can be cut from (test first, then validation)."""
        test_splits = max(2, round(1 / self.test_size))
        val_splits = max(2, round(1 / (self.val_size / (1 - self.test_size))))
        # The test part takes about 1/test_splits of the speakers; the rest must hold val_splits.
        return max(test_splits, int(np.ceil(val_splits * test_splits / (test_splits - 1))))

    def _split(self, groups: np.ndarray, stratify: np.ndarray | None, size: float, seed: int):
        n_groups = len(np.unique(groups))
        n_splits = max(2, round(1 / size))
        if n_groups < n_splits:
            raise SplitError(
                f"{n_groups} {self.group}s are too few for a {size:.0%} speaker-independent split; "
                "use protocol=holdout or a corpus with more speakers."
            )
        if stratify is None:
            splitter = GroupShuffleSplit(n_splits=1, test_size=1 / n_splits, random_state=seed)
            return next(splitter.split(groups, groups=groups))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = list(splitter.split(groups, stratify, groups=groups))
        # StratifiedGroupKFold's shuffle only breaks ties between speakers of equal class balance:
        # speakers whose balances differ (most real corpora) get the same folds for every seed.
        # The seed therefore also picks which fold is held out.
        return splits[int(np.random.default_rng(seed).integers(len(splits)))]

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        groups = manifest[self.group].to_numpy()
        rest, test = self._split(groups, stratify, self.test_size, seed)
        _, inner_val = self._split(
            groups[rest],
            None if stratify is None else stratify[rest],
            self.val_size / (1 - self.test_size),
            seed,
        )
        assignment = np.full(len(manifest), TRAIN, dtype=object)
        assignment[test] = TEST
        assignment[rest[inner_val]] = VAL
        fold = _check_parts(Fold("speaker_holdout", assignment.astype(str)))
        assert_group_disjoint(manifest, fold, self.group)
        yield fold


class SpeakerIndependentWhereKnown(Protocol):
    """The default protocol: speaker-independent where the corpus has speakers, else random.

    A corpus "has speakers" when its speaker/subject column groups samples (fewer distinct ids
    than samples; adapters without speakers give every sample its own id) into enough groups
    for the speaker-independent split's sizes. :meth:`resolve` names the protocol chosen, so
    a run records the concrete one (its card, tags and run name), never ``auto``.

    Args:
        group: Column holding the speaker/subject id.
        speaker_independent: ``val_size``/``test_size`` of the speaker-independent split.
        random: ``val_size``/``test_size`` of the stratified random split.
        name: Protocol name before resolution.
    """

    name = "auto"

    def __init__(
        self,
        group: str = schema.SPEAKER,
        speaker_independent: dict | None = None,
        random: dict | None = None,
        name: str = "auto",
    ):
        self.name = name
        self.group = group
        self.independent_sizes = dict(speaker_independent or {"val_size": 0.17, "test_size": 0.17})
        self.random_sizes = dict(random or {"val_size": 0.15, "test_size": 0.15})

    def resolve(self, manifest: pd.DataFrame) -> tuple[dict, str]:
        """The concrete protocol's config for ``manifest`` and the reason it was chosen.

        Returns:
            ``({"_target_": ..., "name": ..., <sizes>}, reason)``.
        """
        independent = SpeakerHoldout(**self.independent_sizes, group=self.group)
        ids = manifest[self.group] if self.group in manifest.columns else pd.Series(dtype=str)
        n_groups = int(ids.nunique())
        needed = independent.minimum_groups()
        if 0 < n_groups < len(manifest) and n_groups >= needed:
            chosen = {"_target_": f"{__name__}.SpeakerHoldout", "name": "speaker_holdout"}
            chosen.update(self.independent_sizes, group=self.group)
            return chosen, f"speaker-independent: {n_groups} {self.group}s, none in two splits"
        chosen = {"_target_": f"{__name__}.StratifiedHoldout", "name": "holdout", **self.random_sizes}
        if n_groups in (0, len(manifest)):
            return chosen, f"a random stratified split: the corpus has no {self.group} ids"
        return chosen, (
            f"a random stratified split: {n_groups} {self.group}s are fewer than the {needed} a "
            f"speaker-independent split needs (protocol=speaker_kfold or loso may fit)"
        )

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        chosen, _ = self.resolve(manifest)
        kind = SpeakerHoldout if chosen["name"] == "speaker_holdout" else StratifiedHoldout
        protocol = kind(**{key: value for key, value in chosen.items() if key != "_target_"})
        yield from protocol.folds(manifest, stratify, seed)


class OfficialSplit(Protocol):
    """The corpus's own split from its ``official_split`` column (train/val/test)."""

    name = "official"

    def __init__(self, name: str = "official"):
        self.name = name

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        parts = manifest[schema.OFFICIAL_SPLIT]
        if parts.isna().any() or not set(parts.unique()) <= {TRAIN, VAL, TEST}:
            raise SplitError(
                "protocol=official needs an official_split of train/val/test for every sample; "
                f"this corpus has {sorted(map(str, parts.unique()))}. Use protocol=holdout."
            )
        yield _check_parts(Fold("official", parts.to_numpy().astype(str)))


def _validation_from_training(
    manifest: pd.DataFrame,
    train: np.ndarray,
    stratify: np.ndarray | None,
    val_size: float,
    seed: int,
    group: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation part out of a fold's training rows (never out of its test rows)."""
    if group is None:
        labels = None if stratify is None else stratify[train]
        try:
            inner_train, inner_val = train_test_split(
                train, test_size=val_size, random_state=seed, stratify=labels
            )
        except ValueError:
            inner_train, inner_val = train_test_split(train, test_size=val_size, random_state=seed)
        return inner_train, inner_val
    groups = manifest[group].to_numpy()[train]
    n_splits = max(2, round(1 / val_size))
    if len(np.unique(groups)) < 2:
        raise SplitError(
            f"a fold's training side has fewer than 2 {group}s: no speaker-independent validation."
        )
    n_splits = min(n_splits, len(np.unique(groups)))
    if stratify is None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=1 / n_splits, random_state=seed)
        fit, val = next(splitter.split(train, groups=groups))
    else:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = list(splitter.split(train, stratify[train], groups=groups))
        # As in SpeakerHoldout: the seed picks the fold, the shuffle alone rarely changes it.
        fit, val = splits[int(np.random.default_rng(seed).integers(len(splits)))]
    return train[fit], train[val]


def _fold(name: str, n: int, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Fold:
    assignment = np.full(n, "", dtype=object)
    assignment[train], assignment[val], assignment[test] = TRAIN, VAL, TEST
    return _check_parts(Fold(name, assignment.astype(str)))


class KFold(Protocol):
    """Stratified k-fold cross-validation; validation is carved from each fold's training side.

    Args:
        n_splits: Number of folds (each sample is tested exactly once).
        val_size: Fraction of each fold's training side used for validation.
        name: Protocol name.
    """

    cross_validates = True

    def __init__(self, n_splits: int = 5, val_size: float = 0.15, name: str = "kfold"):
        if n_splits < 2:
            raise SplitError("protocol.n_splits must be at least 2.")
        self.n_splits, self.val_size, self.name = n_splits, val_size, name

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        from sklearn.model_selection import KFold as PlainKFold
        from sklearn.model_selection import StratifiedKFold

        index = np.arange(len(manifest))
        if stratify is not None:
            splits = StratifiedKFold(self.n_splits, shuffle=True, random_state=seed).split(index, stratify)
        else:
            splits = PlainKFold(self.n_splits, shuffle=True, random_state=seed).split(index)
        for k, (train, test) in enumerate(splits):
            fit, val = _validation_from_training(manifest, train, stratify, self.val_size, seed, None)
            yield _fold(f"fold{k}", len(manifest), fit, val, test)


class SpeakerKFold(Protocol):
    """Speaker/subject-independent k-fold (``StratifiedGroupKFold``); validation speakers too.

    Args:
        n_splits: Number of folds.
        val_size: Approximate fraction of each fold's training speakers used for validation.
        group: Column holding the speaker/subject id.
        name: Protocol name.
    """

    cross_validates = True

    speaker_independent = True

    def __init__(
        self,
        n_splits: int = 5,
        val_size: float = 0.2,
        group: str = schema.SPEAKER,
        name: str = "speaker_kfold",
    ):
        if n_splits < 2:
            raise SplitError("protocol.n_splits must be at least 2.")
        self.n_splits, self.val_size, self.group, self.name = n_splits, val_size, group, name

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        groups = manifest[self.group].to_numpy()
        if len(np.unique(groups)) < self.n_splits:
            raise SplitError(
                f"{len(np.unique(groups))} {self.group}s are too few for {self.n_splits} "
                "speaker-independent folds; "
                "lower protocol.n_splits."
            )
        index = np.arange(len(manifest))
        if stratify is not None:
            splits = StratifiedGroupKFold(self.n_splits, shuffle=True, random_state=seed).split(
                index, stratify, groups
            )
        else:
            from sklearn.model_selection import GroupKFold

            splits = GroupKFold(self.n_splits).split(index, groups=groups)
        for k, (train, test) in enumerate(splits):
            fit, val = _validation_from_training(manifest, train, stratify, self.val_size, seed, self.group)
            fold = _fold(f"fold{k}", len(manifest), fit, val, test)
            assert_group_disjoint(manifest, fold, self.group)
            yield fold


class LeaveOneGroupOut(Protocol):
    """Leave-one-speaker-out (or -session-out with ``group=session``): one fold per group.

    Args:
        group: Column whose values are left out one at a time (``speaker``, ``group_session``...).
        val_size: Approximate fraction of the remaining groups used for validation.
        name: Protocol name.
    """

    cross_validates = True

    speaker_independent = True

    def __init__(self, group: str = schema.SPEAKER, val_size: float = 0.2, name: str = "loso"):
        self.group, self.val_size, self.name = group, val_size, name

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        if self.group not in manifest.columns:
            raise SplitError(
                f"protocol.group={self.group!r} is not a column of the corpus; "
                f"available: {list(manifest.columns)}."
            )
        groups = manifest[self.group].astype(str).to_numpy()
        values = sorted(np.unique(groups))
        if len(values) < 3:
            raise SplitError(
                f"leave-one-{self.group}-out needs at least 3 {self.group}s, the corpus has {len(values)}."
            )
        for value in values:
            test = np.flatnonzero(groups == value)
            train = np.flatnonzero(groups != value)
            fit, val = _validation_from_training(manifest, train, stratify, self.val_size, seed, self.group)
            fold = _fold(f"{self.group}-{value}", len(manifest), fit, val, test)
            assert_group_disjoint(manifest, fold, self.group)
            yield fold


class LeaveOneOut(Protocol):
    """Leave-one-sample-out, for small sets: one fold per sample (N trainings!).

    Args:
        val_size: Fraction of the remaining samples used for validation.
        name: Protocol name.
    """

    cross_validates = True

    def __init__(self, val_size: float = 0.15, name: str = "loo"):
        self.val_size, self.name = val_size, name

    def folds(self, manifest: pd.DataFrame, stratify: np.ndarray | None, seed: int) -> Iterator[Fold]:  # noqa: D102
        n = len(manifest)
        for i in range(n):
            train = np.delete(np.arange(n), i)
            fit, val = _validation_from_training(manifest, train, stratify, self.val_size, seed, None)
            yield _fold(f"sample{i}", n, fit, val, np.array([i]))
