"""Multi-label emotion classification: any number of labels per sample (e.g. GoEmotions).

The scheme decides together (docs/design.md#1-the-label-scheme-decides-together):
a sigmoid head with one output per label,
binary cross-entropy on the logits, the multi-label metrics of
:func:`emoexp.evaluation.metrics.multilabel_metrics` (monitor ``val/f1_macro``), and the
decision rule. Training and validation use one fixed ``threshold``; after training, one
threshold per label is tuned on the *validation* predictions (maximising that label's F1)
and applied to the test metrics and the predictions frame, so the test split stays locked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.labels.emotions import canonical_emotion, normalise_label
from emoexp.labels.reporting import PER_LABEL_F1, SchemeReport
from emoexp.labels.schemes import (
    ALL_PARTS,
    LabelScheme,
    LabelSchemeError,
    Unmapped,
    empty_classes,
    no_sample_message,
)

if TYPE_CHECKING:
    import torch

    from emoexp.data.splits import Fold

SEPARATOR = "|"
"""Joins label names in the ``target_labels`` / ``predicted_labels`` columns of predictions."""


def sample_labels(manifest: pd.DataFrame) -> list[list[str]]:
    """Native labels per sample: the ``labels`` list where given, else ``[emotion]`` (or ``[]``)."""
    lists = manifest[schema.LABELS] if schema.LABELS in manifest.columns else [None] * len(manifest)
    out = []
    for labels, emotion in zip(lists, manifest[schema.EMOTION], strict=True):
        if isinstance(labels, list | tuple | np.ndarray):
            out.append([str(label) for label in labels])
        else:
            out.append([] if pd.isna(emotion) else [str(emotion)])
    return out


def best_thresholds(probs: np.ndarray, targets: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-label thresholds maximising F1 (a label is predicted when its probability is above it).

    For each label every distinct cut between sorted probabilities is tried; ties in F1 go to
    the cut closest to ``default``. A label without positive samples keeps ``default``.

    Args:
        probs: ``[N, L]`` probabilities.
        targets: ``[N, L]`` binary targets.
        default: The threshold of labels that cannot be tuned.

    Returns:
        ``[L]`` thresholds.
    """
    thresholds = np.full(probs.shape[1], default, dtype=np.float64)
    for j in range(probs.shape[1]):
        positives = targets[:, j].sum()
        if positives == 0:
            continue
        order = np.argsort(-probs[:, j], kind="stable")
        p, y = probs[order, j], targets[order, j]
        true_positives = np.cumsum(y)
        k = np.arange(1, len(p) + 1)
        f1 = 2 * true_positives / (k + positives)
        # Predicting the top k is only possible where the k-th and (k+1)-th probabilities differ.
        below = np.append(p[1:], min(p[-1] - 1e-6, p[-1] / 2))
        valid = p > below
        cuts = (p + below) / 2
        f1, cuts = f1[valid], cuts[valid]
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        thresholds[j] = cuts[best[np.argmin(np.abs(cuts[best] - default))]]
    return thresholds


def _metric_name(label: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", label)


@dataclass
class MultiLabelScheme(LabelScheme):
    """Multi-label classification over a fixed (or inferred) list of labels.

    Args:
        name: Scheme name.
        labels: Output labels in head order; ``None`` infers them (sorted) from the corpus.
        mapping: Native label -> scheme label (``None`` drops that label), e.g. the GoEmotions ->
            Ekman grouping. A sample whose labels are all dropped is left out.
        unmapped: A label neither in ``labels`` nor in ``mapping``: ``"error"`` or ``"drop"``.
        threshold: Decision threshold during training and validation (and of untuned labels).
        tune_thresholds: Tune one threshold per label on the validation predictions after training.
        pos_weight: Per-label weight of positives in the loss (e.g. negatives/positives), or ``None``.
        monitor: Monitored validation metric, e.g. ``val/f1_macro``.
        mode: Its direction.
    """

    labels: Sequence[str] | None = None
    mapping: Mapping[str, str | None] = field(default_factory=dict)
    unmapped: Unmapped = "error"
    threshold: float = 0.5
    tune_thresholds: bool = True
    pos_weight: Sequence[float] | None = None
    monitor: str = "val/f1_macro"
    mode: Literal["max", "min"] = "max"
    tuned_thresholds: np.ndarray | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.kind = "multilabel"
        self.mapping = dict(self.mapping or {})
        if self.labels is not None:
            self.labels = tuple(self.labels)
            if len(self.labels) < 2:
                raise LabelSchemeError(f"scheme {self.name!r} needs at least 2 labels.")
            bad = {v for v in self.mapping.values() if v is not None} - set(self.labels)
            if bad:
                raise LabelSchemeError(
                    f"scheme {self.name!r} maps onto {sorted(bad)}, which are not among its labels "
                    f"{list(self.labels)}."
                )
        if self.unmapped not in ("error", "drop"):
            raise LabelSchemeError(f"label_scheme.unmapped must be 'error' or 'drop', got {self.unmapped!r}.")
        if not 0.0 < self.threshold < 1.0:
            raise LabelSchemeError(f"label_scheme.threshold must be in (0, 1), got {self.threshold}.")
        self.check_monitor()

    def _labels(self) -> tuple[str, ...]:
        if self.labels is None:
            raise LabelSchemeError(
                f"scheme {self.name!r} has no labels yet: call prepare() on the corpus first."
            )
        return tuple(self.labels)

    @property
    def num_outputs(self) -> int:  # noqa: D102
        return len(self._labels())

    @property
    def metric_names(self) -> tuple[str, ...]:  # noqa: D102
        return ("loss", "f1_micro", "f1_macro", "jaccard_samples", "jaccard_macro")

    def map_label(self, label: str) -> str | None:
        """Map one native label onto the scheme (``None``: dropped; ``"<unmapped>"``: unknown).

        Order: ``mapping`` (exact, then normalised key), a label (exact, then a synonym of it,
        see ``labels.emotions``). Labels inferred from the corpus keep the corpus's spelling.
        """
        if label in self.mapping:
            return self.mapping[label]
        by_key = {normalise_label(k): v for k, v in self.mapping.items()}
        if normalise_label(label) in by_key:
            return by_key[normalise_label(label)]
        if self.labels is None or label in self.labels:
            return label
        canonical = canonical_emotion(label)
        return next((x for x in self.labels if canonical_emotion(x) == canonical), "<unmapped>")

    def check_folds(
        self, manifest: pd.DataFrame, folds: Iterable[Fold], parts: Sequence[str] = ALL_PARTS
    ) -> None:
        """Raise if a label has no positive sample in the training split of a fold.

        Validation and test may lack a rare label (its F1 is then undefined, not wrong); a
        label never seen in training is learnt from nothing.

        Args:
            manifest: The prepared samples (after :meth:`prepare`), in the folds' row order.
            folds: The protocol's folds.
            parts: Ignored beyond ``train`` (kept for the base signature).

        Raises:
            LabelSchemeError: Naming each fold and label with no positive training sample.
        """
        lists = list(manifest[schema.LABELS])
        corpus = {label for labels in lists for label in labels}

        def present(mask: np.ndarray) -> set[str]:
            return {label for labels, m in zip(lists, mask, strict=True) if m for label in labels}

        empty = empty_classes(present, self._labels(), folds, ("train",))
        if empty:
            raise LabelSchemeError(no_sample_message(self, empty, corpus))

    def prepare(self, manifest: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        native = sample_labels(manifest)
        # Map each distinct label once: the corpus may have ~10^5 samples and a few dozen labels.
        lookup = {label: self.map_label(label) for label in {x for labels in native for x in labels}}
        mapped = [[lookup[label] for label in labels] for labels in native]
        unknown = sorted(
            {
                n
                for labels, m in zip(native, mapped, strict=True)
                for n, x in zip(labels, m, strict=True)
                if x == "<unmapped>"
            }
        )
        if unknown and self.unmapped == "error":
            raise LabelSchemeError(
                f"labels {unknown} are outside scheme {self.name!r} (labels {list(self._labels())}). "
                "Map them with label_scheme.mapping (e.g. '++label_scheme.mapping.calm=neutral') or drop "
                "them with label_scheme.unmapped=drop."
            )
        kept = [list(dict.fromkeys(x for x in m if x not in (None, "<unmapped>"))) for m in mapped]
        if self.labels is None:
            self.labels = tuple(sorted({x for labels in kept for x in labels}))
            if len(self.labels) < 2:
                raise LabelSchemeError(f"scheme {self.name!r} found fewer than 2 labels in the corpus.")
        keep = np.array([bool(labels) for labels in kept])
        if not keep.any():
            raise LabelSchemeError(f"no sample of the corpus has a label in scheme {self.name!r}.")
        out = manifest.iloc[np.flatnonzero(keep)].copy()
        out[schema.LABELS] = [labels for labels, k in zip(kept, keep, strict=True) if k]
        return out.reset_index(drop=True)

    def targets(self, manifest: pd.DataFrame) -> dict[str, np.ndarray]:  # noqa: D102
        index = {label: i for i, label in enumerate(self._labels())}
        multi_hot = np.zeros((len(manifest), len(index)), dtype=np.float32)
        for row, labels in enumerate(manifest[schema.LABELS]):
            multi_hot[row, [index[label] for label in labels]] = 1.0
        return {"labels": multi_hot}

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        import torch
        import torch.nn.functional as F  # noqa: N812

        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.as_tensor(self.pos_weight, dtype=outputs.dtype, device=outputs.device)
        return F.binary_cross_entropy_with_logits(
            outputs, targets["labels"].to(outputs.dtype), pos_weight=pos_weight
        )

    def metrics(self, prefix: str) -> list[Any]:  # noqa: D102
        from emoexp.evaluation.metrics import multilabel_metrics

        return [multilabel_metrics(self.num_outputs, prefix=prefix, threshold=self.threshold)]

    def thresholds(self) -> np.ndarray:
        """The decision threshold of every label (tuned ones once :meth:`tune_on_validation` ran)."""
        if self.tuned_thresholds is not None:
            return self.tuned_thresholds
        return np.full(self.num_outputs, self.threshold)

    def update_metrics(self, metrics, outputs, targets) -> None:  # noqa: D102
        import torch

        # Only the test stage uses the tuned thresholds: validation (the monitor) keeps the fixed
        # one, so tuning on validation never feeds back into early stopping or model selection.
        collection = metrics[0]
        thresholds = (
            self.thresholds() if collection.prefix == "test/" else np.full(self.num_outputs, self.threshold)
        )
        cut = torch.as_tensor(thresholds, dtype=outputs.dtype, device=outputs.device)
        decisions = (outputs.sigmoid() > cut).to(outputs.dtype)
        collection.update(decisions, targets["labels"].long())

    def decode(self, outputs: torch.Tensor) -> dict[str, np.ndarray]:  # noqa: D102
        return {"probs": outputs.float().sigmoid().cpu().numpy()}

    def activate(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return {"probs": outputs.float().sigmoid()}

    @property
    def tunes_on_validation(self) -> bool:  # noqa: D102
        return self.tune_thresholds

    def tune_on_validation(self, outputs: torch.Tensor, samples: pd.DataFrame) -> dict[str, float]:
        """Tune per-label thresholds on validation outputs; return what to log.

        Called after training and before the test evaluation.

        Args:
            outputs: Head outputs (logits) of the validation samples.
            samples: Those samples (prepared manifest rows), in the same order.

        Returns:
            ``val/f1_macro_tuned`` (optimistic: measured on the data it was tuned on) and
            ``threshold/<label>`` per label; empty when tuning is off.
        """
        from sklearn.metrics import f1_score

        self.tuned_thresholds = None
        if not self.tune_thresholds:
            return {}
        probs = self.decode(outputs)["probs"]
        targets = self.targets(samples)["labels"].astype(int)
        self.tuned_thresholds = best_thresholds(probs, targets, self.threshold)
        tuned_f1 = f1_score(targets, probs > self.tuned_thresholds, average="macro", zero_division=0)
        logged = {
            f"threshold/{_metric_name(label)}": float(t)
            for label, t in zip(self._labels(), self.tuned_thresholds, strict=True)
        }
        return {"val/f1_macro_tuned": float(tuned_f1), **logged}

    def predictions_frame(self, decoded: dict[str, np.ndarray], samples: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        probs = decoded["probs"]
        labels = np.asarray(self._labels())
        predicted = probs > self.thresholds()
        frame = pd.DataFrame(
            {
                "target_labels": [SEPARATOR.join(x) for x in samples[schema.LABELS]],
                "predicted_labels": [SEPARATOR.join(labels[row]) for row in predicted],
            }
        )
        for i, name in enumerate(labels):
            frame[f"prob_{name}"] = probs[:, i]
        return frame

    def state(self) -> dict[str, Any]:
        """Name, labels (possibly inferred from the corpus) and the decision threshold of every label."""
        return {
            **super().state(),
            "labels": list(self._labels()),
            "thresholds": [float(t) for t in self.thresholds()],
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:  # noqa: D102
        if "labels" in state:
            self.labels = tuple(state["labels"])
        if "thresholds" in state:
            self.tuned_thresholds = np.asarray(state["thresholds"], dtype=float)

    def served_predictions(self, decoded: dict[str, np.ndarray]) -> pd.DataFrame:
        """``prediction`` (the labels above their thresholds, joined by ``|``) and ``prob_<label>``."""
        probs = decoded["probs"]
        labels = np.asarray(self._labels())
        frame = pd.DataFrame(
            {"prediction": [SEPARATOR.join(labels[row]) for row in probs > self.thresholds()]}
        )
        for i, name in enumerate(labels):
            frame[f"prob_{name}"] = probs[:, i]
        return frame

    def test_report(self, test: pd.DataFrame) -> SchemeReport:
        """The frames of :meth:`report_frames` under ``reports/`` and a per-label F1 chart (no metrics)."""
        from emoexp.evaluation.plots import per_label_f1_figure

        frames = self.report_frames(test)
        return SchemeReport(
            frames={f"reports/{name}": frame for name, frame in frames.items()},
            figures={PER_LABEL_F1: per_label_f1_figure(frames["multilabel_report.csv"])},
        )

    def _multi_hot(self, joined: pd.Series) -> np.ndarray:
        index = {label: i for i, label in enumerate(self._labels())}
        out = np.zeros((len(joined), len(index)), dtype=int)
        for row, text in enumerate(joined.fillna("")):
            out[row, [index[x] for x in str(text).split(SEPARATOR) if x in index]] = 1
        return out

    def report_frames(self, predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Per-label and per-group reports of a predictions frame (filter the split first).

        Returns:
            ``multilabel_report.csv``: per label precision, recall, F1 and support (the thresholds
            behind the predictions are logged as ``threshold/<label>`` metrics of each fold);
            ``per_group_metrics.csv`` (when the frame has ``group_*`` columns): per group value
            ``n``, ``f1_macro``, ``f1_micro``, ``jaccard_samples``.
        """
        from sklearn.metrics import f1_score, jaccard_score, precision_recall_fscore_support

        truth = self._multi_hot(predictions["target_labels"])
        predicted = self._multi_hot(predictions["predicted_labels"])
        precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
        frames = {
            "multilabel_report.csv": pd.DataFrame(
                {
                    "label": self._labels(),
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    "support": support,
                }
            )
        }
        groups = [c for c in predictions.columns if c.startswith(schema.GROUP_PREFIX)]
        rows = []
        for column in groups:
            for value, part in predictions.groupby(column, sort=True, dropna=True):
                positions = predictions.index.get_indexer(part.index)
                t, p = truth[positions], predicted[positions]
                rows.append(
                    {
                        "group_column": column,
                        "group": value,
                        "n": len(part),
                        "f1_macro": f1_score(t, p, average="macro", zero_division=0),
                        "f1_micro": f1_score(t, p, average="micro", zero_division=0),
                        "jaccard_samples": jaccard_score(t, p, average="samples", zero_division=0),
                    }
                )
        if rows:
            frames["per_group_metrics.csv"] = pd.DataFrame(rows)
        return frames
