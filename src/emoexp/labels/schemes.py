"""Label schemes: the single place that decides head size, loss, metrics and monitor.

Changing ``label_scheme=`` changes the model head, the loss, the
metrics, the monitored metric and its direction together. Every consumer (task module,
callbacks, tuner, reports) asks the scheme instead of deciding for itself
(docs/design.md#1-the-label-scheme-decides-together).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from emoexp.config import ConfigError
from emoexp.data import schema
from emoexp.labels.emotions import CIRCUMPLEX, canonical_emotion, circumplex, normalise_label
from emoexp.labels.reporting import SchemeReport, single_label_report

if TYPE_CHECKING:
    import torch

    from emoexp.data.splits import Fold

Unmapped = Literal["error", "drop"]
CLASSIFIER, REGRESSOR = "classifier", "regressor"
"""Roles of a scikit-learn estimator, as answered by :meth:`LabelScheme.estimator_role`."""
DERIVED_ATTR = "derived_targets"
"""``manifest.attrs`` key where :meth:`DimensionalScheme.prepare` records the targets it derived."""
ALL_PARTS: tuple[str, ...] = ("train", "val", "test")
"""The parts of a fold (``emoexp.data.splits.TRAIN``, ``VAL``, ``TEST``)."""


class LabelSchemeError(ValueError):
    """A label does not fit the scheme, or the scheme is configured inconsistently."""


@dataclass
class LabelScheme:
    """Base class of label schemes.

    Attributes:
        name: Scheme name, logged as a tag.
        monitor: Validation metric that early stopping, checkpointing and tuning optimise.
        mode: ``"max"`` or ``"min"``: the direction of ``monitor``.
        kind: ``categorical``, ``dimensional``, ``both`` or ``multilabel``, recorded in a served
            model's ``meta.json``. Callers ask the scheme's questions below rather than branch on it.
    """

    name: str
    monitor: str
    mode: Literal["max", "min"]
    kind: str = field(init=False, default="")

    @property
    def class_names(self) -> tuple[str, ...]:
        """Classes of the single-label categorical prediction, in head order (empty when none)."""
        return ()

    @property
    def dimension_names(self) -> tuple[str, ...]:
        """Predicted affect dimensions (``valence``, ``arousal``), in head order (empty when none)."""
        return ()

    @property
    def uses_soft_targets(self) -> bool:
        """Whether the loss trains on annotator label distributions rather than one label."""
        return False

    @property
    def class_loss_weights(self) -> tuple[float, ...] | None:
        """Resolved per-class loss weights in :attr:`class_names` order (``None``: none or unresolved)."""
        return None

    @property
    def tunes_on_validation(self) -> bool:
        """Whether :meth:`tune_on_validation` fits anything (callers can skip predicting validation)."""
        return False

    def tune_on_validation(self, outputs: torch.Tensor, samples: pd.DataFrame) -> dict[str, float]:
        """Fit decision rules on validation outputs after training, before the test evaluation.

        Only validation data shapes these decisions, so the test split stays locked. The base
        scheme has nothing to tune (multi-label schemes tune per-label thresholds).

        Args:
            outputs: Head outputs of the validation samples.
            samples: Those samples (prepared manifest rows), in the same order.

        Returns:
            Metrics to log (empty when nothing was tuned).
        """
        return {}

    def estimator_role(self, model_name: str) -> str:
        """Whether a scikit-learn model serves this scheme with its classifier or its regressor.

        Args:
            model_name: The model config's name, for messages.

        Returns:
            :data:`CLASSIFIER` or :data:`REGRESSOR`.

        Raises:
            ConfigError: If one scikit-learn estimator cannot serve the scheme.
        """
        raise ConfigError(
            f"model={model_name} (scikit-learn) supports categorical schemes (ekman6, ekman7, ...) with "
            f"its classifier and valence_arousal with its regressor, not label_scheme={self.name} "
            f"(kind {self.kind!r}). Use a neural model for it, or one of those schemes."
        )

    def test_report(self, test: pd.DataFrame) -> SchemeReport:
        """Report tables, figures and metrics of the test predictions (a predictions frame, test rows only).

        Categorical predictions get a classification report, a confusion matrix, a reliability
        diagram and ``test/ece``; dimensional ones a regression report, a predicted-vs-true
        scatter per dimension and the circumplex; both get per-group metrics and gaps when the
        frame has ``group_*`` columns.
        """
        return single_label_report(test, self.name, self.class_names, self.dimension_names)

    def state(self) -> dict[str, Any]:
        """What decoding needs beyond the scheme's config, as JSON-ready values (a served model's meta)."""
        state: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.class_names:
            state["classes"] = list(self.class_names)
        if self.dimension_names:
            state["dims"] = list(self.dimension_names)
        return state

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` recorded on a scheme rebuilt from the same config.

        Classes and dimensions come from the config itself; only learnt state (multi-label
        labels inferred from the corpus, tuned thresholds) needs restoring.
        """

    def served_predictions(self, decoded: dict[str, np.ndarray]) -> pd.DataFrame:
        """Predictions of new inputs (no truth): one row per output of :meth:`decode`.

        Returns:
            ``prediction``, ``confidence`` and ``prob_<class>`` for categorical schemes and one
            column per dimension (``valence``, ``arousal``) for dimensional ones.
        """
        n = len(next(iter(decoded.values())))
        frame = pd.DataFrame(index=range(n))
        if self.class_names:
            probs = decoded["probs"]
            frame["prediction"] = np.asarray(self.class_names)[probs.argmax(axis=1)]
            frame["confidence"] = probs.max(axis=1)
            for i, name in enumerate(self.class_names):
                frame[f"prob_{name}"] = probs[:, i]
        for i, dim in enumerate(self.dimension_names):
            frame[dim] = decoded["dims"][:, i]
        return frame

    @property
    def num_outputs(self) -> int:
        """Width of the model head."""
        raise NotImplementedError

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Metric names (without stage prefix) this scheme produces."""
        raise NotImplementedError

    def check_monitor(self) -> None:
        """Raise if ``monitor`` is not a validation metric that this scheme produces."""
        stage, _, metric = self.monitor.partition("/")
        if stage != "val" or metric not in self.metric_names:
            valid = [f"val/{m}" for m in self.metric_names]
            raise LabelSchemeError(
                f"label_scheme.monitor={self.monitor!r} is not produced by scheme {self.name!r}; "
                f"choose one of {valid} (only validation metrics may be monitored: the test "
                "split is locked)."
            )
        if self.mode not in ("max", "min"):
            raise LabelSchemeError(f"label_scheme.mode must be 'max' or 'min', got {self.mode!r}.")

    @property
    def best_metric(self) -> str:
        """Name of the best-so-far validation metric (what tuners optimise)."""
        return f"{self.monitor}_best"

    def prepare(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Return the samples usable under this scheme, with target columns filled."""
        raise NotImplementedError

    def targets(self, manifest: pd.DataFrame) -> dict[str, np.ndarray]:
        """Return the training targets of prepared samples as arrays keyed by target name."""
        raise NotImplementedError

    def stratify_labels(self, manifest: pd.DataFrame) -> np.ndarray | None:
        """Labels to stratify splits on (``None`` when the scheme has no categories)."""
        return None

    def derived_targets(self, manifest: pd.DataFrame) -> list[str]:
        """Target names of the prepared ``manifest`` derived by the scheme rather than annotated.

        Only dimensional targets can be derived (from a category's circumplex prototype); the
        base scheme derives nothing.
        """
        return []

    def check_folds(
        self, manifest: pd.DataFrame, folds: Iterable[Fold], parts: Sequence[str] = ALL_PARTS
    ) -> None:
        """Raise if a class of the scheme has no sample in a split of a fold.

        A class without training samples is trained on nothing and one without test samples is
        scored on nothing, yet both still shape the head and the averaged metrics. The training
        split is always checked; ``val`` and ``test`` where a fold has them. Schemes without
        classes (dimensional) have nothing to check.

        Args:
            manifest: The prepared samples (after :meth:`prepare`), in the folds' row order.
            folds: The protocol's folds (:class:`emoexp.data.splits.Fold`).
            parts: The splits to check (``train`` is checked whenever it is listed).

        Raises:
            LabelSchemeError: Naming each fold, split and class with no sample, and the fix.
        """
        classes = self.class_names
        if not classes:
            return
        labels = manifest[schema.EMOTION].to_numpy(dtype=object)
        empty = empty_classes(lambda mask: set(labels[mask]), classes, folds, parts)
        if empty:
            raise LabelSchemeError(no_sample_message(self, empty, set(labels)))

    def no_sample_hint(self, name: str, in_corpus: bool) -> str:
        """How to fix a class ``name`` with no sample (``in_corpus``: the prepared corpus has some)."""
        if in_corpus:
            return (
                f"{name!r} has samples, but none in that split: use a protocol with larger or "
                "stratified splits, or leave the class out of the scheme"
            )
        return (
            f"no sample of the corpus is labelled {name!r}: leave it out of the scheme, or use "
            "label_scheme=native (the corpus's own classes)"
        )

    def resolve_class_weights(self, train: pd.DataFrame) -> LabelScheme:
        """Return the scheme with data-dependent loss weights computed from the *training* samples.

        Only ``class_weights="balanced"`` depends on the data; every other scheme returns itself.
        """
        return self

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of head outputs against the scheme's targets."""
        raise NotImplementedError

    def metrics(self, prefix: str) -> list[Any]:
        """Fresh torchmetrics collections for one stage, keys prefixed with ``prefix``."""
        raise NotImplementedError

    def update_metrics(
        self, metrics: list[Any], outputs: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> None:
        """Feed a batch of outputs and targets to the collections from :meth:`metrics`."""
        raise NotImplementedError

    def decode(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:
        """Turn head outputs into predictions: ``probs`` [N, C] and/or ``dims`` [N, D]."""
        raise NotImplementedError

    def activate(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """What :meth:`decode` computes, as tensors: traceable, so an exported graph can end with it."""
        raise NotImplementedError

    def predictions_frame(self, decoded: dict[str, np.ndarray], samples: pd.DataFrame) -> pd.DataFrame:
        """Per-sample predictions (truth, prediction, probabilities / dimensions) as a frame."""
        raise NotImplementedError


EmptyClasses = list[tuple[str, str, list[str]]]
"""``(fold name, split, classes with no sample there)`` per fold and split that lacks some."""


def empty_classes(
    present: Callable[[np.ndarray], set[str]],
    classes: Sequence[str],
    folds: Iterable[Fold],
    parts: Sequence[str] = ALL_PARTS,
) -> EmptyClasses:
    """The classes with no sample in each split of each fold.

    Args:
        present: Row mask -> the classes that occur in those rows.
        classes: The scheme's classes.
        folds: The protocol's folds.
        parts: Splits to check; ``val`` and ``test`` only where a fold has rows in them.

    Returns:
        One ``(fold, split, missing classes)`` per split that lacks a class, in fold order.
    """
    out: EmptyClasses = []
    for fold in folds:
        for part in parts:
            mask = fold.mask(part)
            if part != "train" and not mask.any():
                continue  # the protocol has no such split (e.g. no validation)
            seen = present(mask)
            missing = [c for c in classes if c not in seen]
            if missing:
                out.append((fold.name, part, missing))
    return out


def no_sample_message(scheme: LabelScheme, empty: EmptyClasses, corpus_classes: set[str]) -> str:
    """The error of :meth:`LabelScheme.check_folds`: what is empty where, then a fix per class."""
    where = "; ".join(f"{fold} {part}: {missing}" for fold, part, missing in empty[:10])
    more = f" (and {len(empty) - 10} more)" if len(empty) > 10 else ""
    names = list(dict.fromkeys(c for _, _, missing in empty for c in missing))
    hints = "; ".join(scheme.no_sample_hint(name, name in corpus_classes) for name in names)
    return (
        f"label_scheme={scheme.name}: class(es) {names} have no sample in some split, so the run "
        f"would train or score them on nothing ({where}{more}). Fix: {hints}."
    )


@dataclass
class CategoricalScheme(LabelScheme):
    """Single-label classification over a fixed list of emotion classes.

    Labels are matched through the synonym table of ``labels.emotions`` (a ``joy`` sample meets
    a ``happiness`` class), after an exact or normalised (case, blanks) match in ``mapping``.

    Args:
        name: Scheme name.
        classes: Class names in output order; ``None`` takes the labels the prepared corpus
            has (sorted), e.g. the ``native`` scheme of a text table.
        mapping: Native label -> scheme class (``None`` to drop that native label), applied
            before checking membership; e.g. ``{excitement: happiness, calm: neutral}``.
        unmapped: What to do with a label that is neither a class nor in ``mapping``:
            ``"error"`` (default, names the samples) or ``"drop"``.
        monitor: Monitored validation metric, e.g. ``val/uar``.
        mode: Its direction.
        target: ``"hard"`` (the consensus label) or ``"soft"`` (the annotators' label
            distribution, where annotations are known).
        class_weights: Per-class loss weights in class order, ``"balanced"`` (inverse class
            frequency of the training split, resolved per fold by
            :meth:`resolve_class_weights`), or ``None``.
    """

    classes: Sequence[str] | None = ()
    mapping: Mapping[str, str | None] = field(default_factory=dict)
    unmapped: Unmapped = "error"
    monitor: str = "val/uar"
    mode: Literal["max", "min"] = "max"
    target: Literal["hard", "soft"] = "hard"
    class_weights: Sequence[float] | Literal["balanced"] | None = None

    def __post_init__(self) -> None:
        self.kind = "categorical"
        self.mapping = dict(self.mapping or {})
        if self.unmapped not in ("error", "drop"):
            raise LabelSchemeError(f"label_scheme.unmapped must be 'error' or 'drop', got {self.unmapped!r}.")
        if self.target not in ("hard", "soft"):
            raise LabelSchemeError(f"label_scheme.target must be 'hard' or 'soft', got {self.target!r}.")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise LabelSchemeError(
                "label_scheme.class_weights must be a list of weights (one per class), 'balanced' "
                f"or null, got {self.class_weights!r}."
            )
        if self.class_weights is not None and not isinstance(self.class_weights, str):
            self.class_weights = tuple(float(w) for w in self.class_weights)
        if self.classes is not None:
            self._set_classes(self.classes)
        else:
            self.mapping = {k: None if v is None else canonical_emotion(v) for k, v in self.mapping.items()}
        self.check_monitor()

    def _set_classes(self, classes: Iterable[str]) -> None:
        """Fix the classes, resolve ``mapping`` onto them and check both (and the class weights)."""
        self.classes = tuple(classes)
        if len(self.classes) < 2:
            raise LabelSchemeError(
                f"scheme {self.name!r} needs at least 2 classes, got {list(self.classes)}."
            )
        canonical = [canonical_emotion(c) for c in self.classes]
        same = sorted({c for c, k in zip(self.classes, canonical, strict=True) if canonical.count(k) > 1})
        if same:
            raise LabelSchemeError(f"scheme {self.name!r}: classes {same} are spellings of one emotion.")
        bad_targets = sorted(
            {v for v in self.mapping.values() if v is not None and self._class_of(v) is None}
        )
        if bad_targets:
            raise LabelSchemeError(
                f"scheme {self.name!r} maps onto {bad_targets}, which are not among its "
                f"classes {list(self.classes)}."
            )
        self.mapping = {k: None if v is None else self._class_of(v) for k, v in self.mapping.items()}
        self._check_shadowed()
        weights = self.class_weights
        if isinstance(weights, tuple) and (len(weights) != len(self.classes) or min(weights) < 0):
            raise LabelSchemeError(
                f"label_scheme.class_weights needs {len(self.classes)} non-negative weights (one per "
                f"class of {list(self.classes)}), got {list(weights)}."
            )

    def _check_shadowed(self) -> None:
        """Raise for a class that ``mapping`` sends elsewhere: it could never get a sample.

        The usual cause is a Hydra merge: ``label_scheme.mapping={}`` on the command line is
        merged into the config's mapping, so ``calm: neutral`` survives next to a new ``calm`` class.
        """
        for key, value in self.mapping.items():
            name = next((c for c in self.classes if normalise_label(c) == normalise_label(key)), None)
            if name is not None and value != name:
                raise LabelSchemeError(
                    f"label_scheme.mapping still maps {key} -> {value}, so class {name!r} of scheme "
                    f"{self.name!r} would get no sample (Hydra merges label_scheme.mapping={{}} into the "
                    f"old mapping). Use label_scheme=native, or set label_scheme.mapping.{key}={name} "
                    f"(or remove it with ~label_scheme.mapping.{key})."
                )

    def _class_of(self, label: str) -> str | None:
        """The class ``label`` names, exactly or as a synonym (``None`` if none)."""
        if label in self.classes:
            return label
        canonical = canonical_emotion(label)
        return next((c for c in self.classes if canonical_emotion(c) == canonical), None)

    def no_sample_hint(self, name: str, in_corpus: bool) -> str:  # noqa: D102
        routed = [
            k
            for k, v in self.mapping.items()
            if canonical_emotion(k) == canonical_emotion(name) and v != name
        ]
        if routed:
            key = routed[0]
            return (
                f"label_scheme.mapping still maps {key} -> {self.mapping[key]}; use label_scheme=native "
                f"or set label_scheme.mapping.{key}={name}"
            )
        return super().no_sample_hint(name, in_corpus)

    def _known_classes(self) -> tuple[str, ...]:
        if self.classes is None:
            raise LabelSchemeError(
                f"scheme {self.name!r} takes its classes from the corpus: call prepare() on it first."
            )
        return tuple(self.classes)

    @property
    def num_outputs(self) -> int:  # noqa: D102
        return len(self._known_classes())

    @property
    def class_names(self) -> tuple[str, ...]:  # noqa: D102
        return () if self.classes is None else tuple(self.classes)

    @property
    def uses_soft_targets(self) -> bool:  # noqa: D102
        return self.target == "soft"

    @property
    def class_loss_weights(self) -> tuple[float, ...] | None:  # noqa: D102
        # "balanced" is only known once resolve_class_weights has seen a training split.
        if self.class_weights is None or isinstance(self.class_weights, str):
            return None
        return tuple(self.class_weights)

    def estimator_role(self, model_name: str) -> str:  # noqa: D102
        if self.uses_soft_targets:
            raise ConfigError(
                f"model={model_name} (scikit-learn) trains on hard labels; label_scheme.target=soft needs a "
                "neural model (lstm, cnn, transformer, timm). Use label_scheme.target=hard."
            )
        return CLASSIFIER

    @property
    def metric_names(self) -> tuple[str, ...]:  # noqa: D102
        return (
            "loss",
            "accuracy",
            "uar",
            "precision_macro",
            "precision_weighted",
            "recall_weighted",
            "f1_macro",
            "f1_weighted",
        )

    def map_label(self, label: str) -> str | None:
        """Map one native label onto the scheme (``None``: dropped; ``"<unmapped>"``: unknown).

        Order: ``mapping`` (exact, then normalised key), a class (exact, then synonym), then
        ``mapping`` by synonym (a ``calmness`` label follows ``calm: neutral``).
        """
        if label in self.mapping:
            return self.mapping[label]
        normalised = normalise_label(label)
        canonical = canonical_emotion(label)
        by_key = {normalise_label(k): v for k, v in self.mapping.items()}
        if normalised in by_key:
            return by_key[normalised]
        if self.classes is None:
            return canonical
        name = self._class_of(label)
        if name is not None:
            return name
        by_emotion = {canonical_emotion(k): v for k, v in self.mapping.items()}
        return by_emotion.get(canonical, "<unmapped>")

    def prepare(self, manifest: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        if manifest[schema.EMOTION].isna().all():
            raise LabelSchemeError(
                f"scheme {self.name!r} needs categorical labels but the corpus has none; "
                "use label_scheme=valence_arousal."
            )
        # Map each distinct label once: corpora have few labels and up to ~10^5 samples.
        lookup = {e: self.map_label(e) for e in manifest[schema.EMOTION].dropna().unique()}
        mapped = manifest[schema.EMOTION].map(lambda e: None if pd.isna(e) else lookup[e])
        unmapped = mapped == "<unmapped>"
        if unmapped.any() and self.unmapped == "error":
            examples = manifest.loc[unmapped, [schema.ID, schema.EMOTION]].head(5).values.tolist()
            labels = sorted(manifest.loc[unmapped, schema.EMOTION].unique())
            raise LabelSchemeError(
                f"labels {labels} are outside scheme {self.name!r} (classes {list(self.classes)}), "
                f"e.g. samples {examples}. Map them with label_scheme.mapping "
                "(e.g. '+label_scheme.mapping.calm=neutral') or drop them with "
                "label_scheme.unmapped=drop."
            )
        keep = mapped.notna() & ~unmapped
        out = manifest.loc[keep].copy()
        out[schema.EMOTION] = mapped[keep]
        if out.empty:
            raise LabelSchemeError(f"no sample of the corpus has a label in scheme {self.name!r}.")
        if self.classes is None:
            # Classes from the corpus (the native scheme of a text table): the labels it has.
            self._set_classes(sorted(out[schema.EMOTION].unique()))
        if self.target == "soft" and out[schema.ANNOTATIONS].isna().all():
            raise LabelSchemeError(
                f"label_scheme.target=soft needs annotator labels, which corpus "
                f"{out[schema.CORPUS].iloc[0]!r} does not provide; use target=hard."
            )
        return out.reset_index(drop=True)

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Restore classes the scheme took from the corpus (``classes=None``); configured ones stay."""
        if self.classes is None and "classes" in state:
            self._set_classes(state["classes"])

    def targets(self, manifest: pd.DataFrame) -> dict[str, np.ndarray]:  # noqa: D102
        index = {c: i for i, c in enumerate(self.classes)}
        out = {"label": manifest[schema.EMOTION].map(index).to_numpy(dtype=np.int64)}
        if self.target == "soft":
            out["soft"] = self.soft_targets(manifest)
        return out

    def soft_targets(self, manifest: pd.DataFrame) -> np.ndarray:
        """Annotator label distributions per sample (the consensus label where none are known)."""
        index = {c: i for i, c in enumerate(self.classes)}
        soft = np.zeros((len(manifest), len(self.classes)), dtype=np.float32)
        for row, (label, votes) in enumerate(
            zip(manifest[schema.EMOTION], manifest[schema.ANNOTATIONS], strict=True)
        ):
            mapped = [
                self.map_label(v) for v in (votes if isinstance(votes, list | tuple | np.ndarray) else [])
            ]
            mapped = [index[m] for m in mapped if m in index]
            if not mapped:
                mapped = [index[label]]
            np.add.at(soft[row], mapped, 1.0)
            soft[row] /= soft[row].sum()
        return soft

    def stratify_labels(self, manifest: pd.DataFrame) -> np.ndarray | None:  # noqa: D102
        return manifest[schema.EMOTION].to_numpy()

    def resolve_class_weights(self, train: pd.DataFrame) -> CategoricalScheme:
        """Resolve ``class_weights="balanced"`` to ``n_train / (n_present_classes * count_c)``.

        Uses scikit-learn's ``compute_class_weight`` on the training samples' labels only (the
        validation and test splits never shape the loss). A class absent from the training
        split gets the largest weight of the present ones (it can still carry soft-target mass).

        Args:
            train: Prepared training samples of one fold.

        Returns:
            A copy of the scheme with explicit weights, or the scheme itself when its weights
            are not ``"balanced"``.
        """
        if self.class_weights != "balanced":
            return self
        from sklearn.utils.class_weight import compute_class_weight

        labels = train[schema.EMOTION].to_numpy(dtype=object)
        present = [c for c in self.classes if c in set(labels)]
        if not present:
            raise LabelSchemeError("class_weights='balanced' needs labelled training samples.")
        weights = compute_class_weight("balanced", classes=np.asarray(present, dtype=object), y=labels)
        computed = dict(zip(present, weights, strict=True))
        fallback = max(computed.values())
        return replace(self, class_weights=tuple(float(computed.get(c, fallback)) for c in self.classes))

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        import torch
        import torch.nn.functional as F  # noqa: N812

        weight = None
        if self.class_weights == "balanced":
            raise LabelSchemeError(
                "class_weights='balanced' is resolved per fold from the training split: call "
                "scheme.resolve_class_weights(train_samples) before training (the runner does)."
            )
        if self.class_weights is not None:
            weight = torch.as_tensor(self.class_weights, dtype=outputs.dtype, device=outputs.device)
        target = targets["soft"] if "soft" in targets else targets["label"]
        return F.cross_entropy(outputs, target, weight=weight)

    def metrics(self, prefix: str) -> list[Any]:  # noqa: D102
        from emoexp.evaluation.metrics import classification_metrics

        return [classification_metrics(self.num_outputs, prefix=prefix)]

    def update_metrics(self, metrics, outputs, targets) -> None:  # noqa: D102
        metrics[0].update(outputs.softmax(dim=-1), targets["label"])

    def decode(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:  # noqa: D102
        return {"probs": outputs.float().softmax(dim=-1).cpu().numpy()}

    def activate(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return {"probs": outputs.float().softmax(dim=-1)}

    def predictions_frame(self, decoded: dict[str, np.ndarray], samples: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        probs = decoded["probs"]
        frame = pd.DataFrame(
            {
                "target": samples[schema.EMOTION].to_numpy(),
                "prediction": np.asarray(self.classes)[probs.argmax(axis=1)],
            }
        )
        for i, name in enumerate(self.classes):
            frame[f"prob_{name}"] = probs[:, i]
        return frame


@dataclass
class DimensionalScheme(LabelScheme):
    """Regression of valence and arousal (each in [-1, 1]).

    Args:
        name: Scheme name.
        dims: Dimensions to predict, among ``valence`` and ``arousal``.
        derive_from_category: Where a sample has a category but no dimensional rating,
            use the category's circumplex prototype (see ``labels.emotions``).
        objective: Loss, ``"ccc"`` (1 - concordance, the usual choice for affect regression) or ``"mse"``.
        monitor: Monitored validation metric, e.g. ``val/ccc``.
        mode: Its direction.
    """

    dims: Sequence[str] = ("valence", "arousal")
    derive_from_category: bool = True
    objective: Literal["ccc", "mse"] = "ccc"
    monitor: str = "val/ccc"
    mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        self.kind = "dimensional"
        self.dims = tuple(self.dims)
        unknown = set(self.dims) - {schema.VALENCE, schema.AROUSAL}
        if unknown or not self.dims:
            raise LabelSchemeError(
                "label_scheme.dims must be a non-empty subset of ['valence', 'arousal'], "
                f"got {list(self.dims)}."
            )
        if self.objective not in ("ccc", "mse"):
            raise LabelSchemeError(f"label_scheme.objective must be 'ccc' or 'mse', got {self.objective!r}.")
        self.check_monitor()

    @property
    def num_outputs(self) -> int:  # noqa: D102
        return len(self.dims)

    @property
    def dimension_names(self) -> tuple[str, ...]:  # noqa: D102
        return tuple(self.dims)

    def estimator_role(self, model_name: str) -> str:  # noqa: D102
        return REGRESSOR

    @property
    def metric_names(self) -> tuple[str, ...]:  # noqa: D102
        per_dim = [f"{d}_{m}" for d in self.dims for m in ("ccc", "pearson", "mae")]
        return ("loss", "ccc", "mae", *per_dim)

    def prepare(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """The samples with every target dimension, derived from the category where allowed.

        How many values of each dimension were derived rather than annotated is recorded in
        ``attrs["derived_targets"]`` of the returned frame (read by :meth:`derived_targets`).
        """
        out = manifest.copy()
        derived = pd.DataFrame(False, index=out.index, columns=list(self.dims))
        if self.derive_from_category:
            for position, dim in enumerate((schema.VALENCE, schema.AROUSAL)):
                out[dim] = out[dim].astype(float)
                missing = out[dim].isna() & out[schema.EMOTION].notna()
                if missing.any():
                    out.loc[missing, dim] = [
                        circumplex(e)[position] for e in out.loc[missing, schema.EMOTION]
                    ]
                if dim in derived.columns:
                    derived[dim] = missing
        usable = out[list(self.dims)].notna().all(axis=1)
        out = out.loc[usable].reset_index(drop=True)
        if out.empty:
            raise LabelSchemeError(
                f"no sample has {list(self.dims)} ratings (or a category to derive them from)."
            )
        out.attrs[DERIVED_ATTR] = {dim: int(derived.loc[usable, dim].sum()) for dim in self.dims}
        return out

    def derived_targets(self, manifest: pd.DataFrame) -> list[str]:
        """The dimensions of which :meth:`prepare` derived at least one value from the category.

        Read from what :meth:`prepare` recorded in ``manifest.attrs``. Where a later step lost
        the attrs, a dimension counts as derived when every categorised sample sits exactly on
        its category's circumplex prototype (samples of a category without one, such as
        ``other``, were annotated), which annotated ratings practically never do.
        """
        recorded = manifest.attrs.get(DERIVED_ATTR)
        if isinstance(recorded, Mapping):
            return [dim for dim in self.dims if recorded.get(dim, 0) > 0]
        if not self.derive_from_category:
            return []
        labelled = manifest[manifest[schema.EMOTION].isin(CIRCUMPLEX)]
        if labelled.empty:
            return []
        derived = []
        for position, dim in enumerate((schema.VALENCE, schema.AROUSAL)):
            if dim not in self.dims:
                continue
            prototypes = np.array([circumplex(e)[position] for e in labelled[schema.EMOTION]])
            if np.allclose(labelled[dim].to_numpy(dtype=float), prototypes, rtol=0.0, atol=1e-9):
                derived.append(dim)
        return derived

    def targets(self, manifest: pd.DataFrame) -> dict[str, np.ndarray]:  # noqa: D102
        return {"dims": manifest[list(self.dims)].to_numpy(dtype=np.float32)}

    def stratify_labels(self, manifest: pd.DataFrame) -> np.ndarray | None:  # noqa: D102
        if manifest[schema.EMOTION].notna().all():
            return manifest[schema.EMOTION].to_numpy()
        return None

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        import torch.nn.functional as F  # noqa: N812

        predicted, target = outputs.tanh(), targets["dims"].to(outputs.dtype)
        if self.objective == "mse":
            return F.mse_loss(predicted, target)
        # 1 - CCC per dimension (Lin 1989), averaged: optimises the metric the field reports.
        mean_p, mean_t = predicted.mean(0), target.mean(0)
        var_p, var_t = predicted.var(0, unbiased=False), target.var(0, unbiased=False)
        cov = ((predicted - mean_p) * (target - mean_t)).mean(0)
        ccc = 2 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + 1e-8)
        return (1 - ccc).mean()

    def metrics(self, prefix: str) -> list[Any]:  # noqa: D102
        from emoexp.evaluation.metrics import RegressionMetrics

        return [RegressionMetrics(self.dims, prefix=prefix)]

    def update_metrics(self, metrics, outputs, targets) -> None:  # noqa: D102
        metrics[0].update(outputs.tanh(), targets["dims"].to(outputs.dtype))

    def decode(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:  # noqa: D102
        return {"dims": outputs.float().tanh().cpu().numpy()}

    def activate(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return {"dims": outputs.float().tanh()}

    def predictions_frame(self, decoded: dict[str, np.ndarray], samples: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        frame = pd.DataFrame(index=range(len(samples)))
        for i, dim in enumerate(self.dims):
            frame[f"{dim}_true"] = samples[dim].to_numpy(dtype=float)
            frame[f"{dim}_pred"] = decoded["dims"][:, i]
        return frame


@dataclass
class MultiTaskScheme(LabelScheme):
    """Categorical emotion and valence/arousal predicted jointly by one model.

    The head has ``len(classes) + len(dims)`` outputs; the loss is
    ``categorical + dimensional_weight * dimensional``.

    Args:
        name: Scheme name.
        categorical: The categorical part.
        dimensional: The dimensional part.
        dimensional_weight: Weight of the dimensional loss.
        monitor: Monitored validation metric (any metric of either part).
        mode: Its direction.
    """

    categorical: CategoricalScheme | None = None
    dimensional: DimensionalScheme | None = None
    dimensional_weight: float = 1.0
    monitor: str = "val/uar"
    mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        self.kind = "both"
        if self.categorical is None or self.dimensional is None:
            raise LabelSchemeError("scheme 'both' needs a categorical and a dimensional part.")
        self.check_monitor()

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names of the categorical part."""
        return tuple(self.categorical.classes)

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimensions of the dimensional part."""
        return tuple(self.dimensional.dims)

    @property
    def class_names(self) -> tuple[str, ...]:  # noqa: D102
        return self.categorical.class_names

    @property
    def dimension_names(self) -> tuple[str, ...]:  # noqa: D102
        return self.dimensional.dimension_names

    @property
    def uses_soft_targets(self) -> bool:  # noqa: D102
        return self.categorical.uses_soft_targets

    @property
    def class_loss_weights(self) -> tuple[float, ...] | None:  # noqa: D102
        return self.categorical.class_loss_weights

    @property
    def num_outputs(self) -> int:  # noqa: D102
        return self.categorical.num_outputs + self.dimensional.num_outputs

    @property
    def metric_names(self) -> tuple[str, ...]:  # noqa: D102
        dims = tuple(m for m in self.dimensional.metric_names if m != "loss")
        return (*self.categorical.metric_names, *dims)

    def prepare(self, manifest: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        return self.dimensional.prepare(self.categorical.prepare(manifest))

    def derived_targets(self, manifest: pd.DataFrame) -> list[str]:  # noqa: D102
        return self.dimensional.derived_targets(manifest)

    def no_sample_hint(self, name: str, in_corpus: bool) -> str:  # noqa: D102
        return self.categorical.no_sample_hint(name, in_corpus)

    def restore_state(self, state: Mapping[str, Any]) -> None:  # noqa: D102
        self.categorical.restore_state(state)

    def targets(self, manifest: pd.DataFrame) -> dict[str, np.ndarray]:  # noqa: D102
        return {**self.categorical.targets(manifest), **self.dimensional.targets(manifest)}

    def stratify_labels(self, manifest: pd.DataFrame) -> np.ndarray | None:  # noqa: D102
        return self.categorical.stratify_labels(manifest)

    def resolve_class_weights(self, train: pd.DataFrame) -> MultiTaskScheme:  # noqa: D102
        categorical = self.categorical.resolve_class_weights(train)
        return self if categorical is self.categorical else replace(self, categorical=categorical)

    def _split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.categorical.num_outputs
        return outputs[:, :n], outputs[:, n:]

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        logits, dims = self._split(outputs)
        return self.categorical.loss(logits, targets) + self.dimensional_weight * self.dimensional.loss(
            dims, targets
        )

    def metrics(self, prefix: str) -> list[Any]:  # noqa: D102
        return [*self.categorical.metrics(prefix), *self.dimensional.metrics(prefix)]

    def update_metrics(self, metrics, outputs, targets) -> None:  # noqa: D102
        logits, dims = self._split(outputs)
        self.categorical.update_metrics(metrics[:1], logits, targets)
        self.dimensional.update_metrics(metrics[1:], dims, targets)

    def decode(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:  # noqa: D102
        logits, dims = self._split(outputs)
        return {**self.categorical.decode(logits), **self.dimensional.decode(dims)}

    def activate(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        logits, dims = self._split(outputs)
        return {**self.categorical.activate(logits), **self.dimensional.activate(dims)}

    def predictions_frame(self, decoded: dict[str, np.ndarray], samples: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        return pd.concat(
            [
                self.categorical.predictions_frame(decoded, samples),
                self.dimensional.predictions_frame(decoded, samples),
            ],
            axis=1,
        )
