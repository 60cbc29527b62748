"""Balanced class weights from the training split, and the weighted / soft-target losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from sklearn.utils.class_weight import compute_class_weight

from emoexp.labels.schemes import CategoricalScheme, DimensionalScheme, LabelSchemeError, MultiTaskScheme

CLASSES = ("anger", "neutral", "sadness")


def _scheme(**kwargs) -> CategoricalScheme:
    return CategoricalScheme(name="toy", classes=CLASSES, **kwargs)


def _samples(labels: list[str], annotations: list | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(len(labels))],
            "corpus": "toy",
            "emotion": labels,
            "annotations": annotations if annotations is not None else [np.nan] * len(labels),
        }
    )


def test_balanced_weights_come_from_the_training_rows_only():
    train = _samples(["anger"] * 6 + ["neutral"] * 3 + ["sadness"] * 1)
    scheme = _scheme(class_weights="balanced").resolve_class_weights(train)
    expected = compute_class_weight("balanced", classes=np.array(CLASSES), y=train["emotion"].to_numpy())
    np.testing.assert_allclose(scheme.class_weights, expected)
    np.testing.assert_allclose(scheme.class_weights, [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])
    # A class missing from the training split gets the largest weight of the present ones.
    partial = _scheme(class_weights="balanced").resolve_class_weights(_samples(["anger"] * 3 + ["sadness"]))
    assert partial.class_weights[1] == max(partial.class_weights) == partial.class_weights[2]


def test_explicit_and_absent_weights_are_left_alone_and_bad_ones_rejected():
    scheme = _scheme(class_weights=[1, 2, 3])
    assert scheme.class_weights == (1.0, 2.0, 3.0)
    assert scheme.resolve_class_weights(_samples(["anger"])) is scheme
    assert _scheme().resolve_class_weights(_samples(["anger"])).class_weights is None
    with pytest.raises(LabelSchemeError, match="3 non-negative weights"):
        _scheme(class_weights=[1, 2])
    with pytest.raises(LabelSchemeError, match="'balanced'"):
        _scheme(class_weights="inverse")
    with pytest.raises(LabelSchemeError, match="resolved per fold"):
        _scheme(class_weights="balanced").loss(torch.zeros(2, 3), {"label": torch.tensor([0, 1])})


def test_the_loss_uses_the_resolved_weights():
    train = _samples(["anger"] * 6 + ["neutral"] * 3 + ["sadness"] * 1)
    scheme = _scheme(class_weights="balanced").resolve_class_weights(train)
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    weights = torch.tensor(scheme.class_weights, dtype=torch.float32)
    loss = scheme.loss(logits, {"label": labels})
    # Weighted mean of per-sample NLL: sum_i w[y_i] * nll_i / sum_i w[y_i].
    nll = -logits.log_softmax(dim=-1)[torch.arange(8), labels]
    manual = (weights[labels] * nll).sum() / weights[labels].sum()
    torch.testing.assert_close(loss, manual)
    assert not torch.isclose(loss, _scheme().loss(logits, {"label": labels}))


def test_multitask_scheme_resolves_its_categorical_weights():
    scheme = MultiTaskScheme(
        name="both",
        categorical=_scheme(class_weights="balanced"),
        dimensional=DimensionalScheme(name="va"),
    )
    resolved = scheme.resolve_class_weights(_samples(["anger", "anger", "neutral", "sadness"]))
    np.testing.assert_allclose(resolved.categorical.class_weights, [4 / 6, 4 / 3, 4 / 3])
    assert scheme.categorical.class_weights == "balanced"  # the configured scheme is not mutated


def test_soft_targets_train_with_probability_cross_entropy():
    samples = _samples(
        ["anger", "sadness", "neutral"],
        [["anger", "anger", "sadness", "neutral"], ["sadness", "sadness"], np.nan],
    )
    scheme = _scheme(target="soft")
    prepared = scheme.prepare(samples)
    targets = scheme.targets(prepared)
    np.testing.assert_allclose(targets["soft"], [[0.5, 0.25, 0.25], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(targets["label"], [0, 2, 1])
    torch.manual_seed(0)
    logits = torch.randn(3, 3)
    batch = {k: torch.tensor(v) for k, v in targets.items()}
    soft = batch["soft"]
    expected = -(soft * logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    torch.testing.assert_close(scheme.loss(logits, batch), expected)
    # With class weights the probability-target CE weights each class term (PyTorch semantics).
    weighted = _scheme(target="soft", class_weights=[1.0, 2.0, 3.0])
    w = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(
        weighted.loss(logits, batch), -(w * soft * logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    )
    torch.testing.assert_close(weighted.loss(logits, batch), F.cross_entropy(logits, soft, weight=w))


def test_soft_targets_need_annotations():
    with pytest.raises(LabelSchemeError, match="target=soft needs annotator labels"):
        _scheme(target="soft").prepare(_samples(["anger", "sadness"]))


def test_soft_targets_reach_the_task_loss_through_the_datamodule():
    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.data.splits import Fold
    from emoexp.features.base import Featurizer
    from emoexp.tasks.emotion import EmotionTask

    class Constant(Featurizer):
        cacheable = False

        def extract(self, manifest):
            return {"x": torch.ones(len(manifest), 2)}

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 3)

        def forward(self, x):
            return self.layer(x)

    samples = _samples(
        ["anger", "sadness"] * 4, [["anger", "sadness", "sadness"], ["sadness", "neutral"]] * 4
    )
    scheme = _scheme(target="soft", class_weights="balanced").resolve_class_weights(samples)
    module = EmotionDataModule(
        samples, Fold("holdout", np.array(["train"] * 8)), Constant(), scheme.targets(samples), batch_size=8
    )
    batch = next(iter(module.train_dataloader()))
    assert set(batch["targets"]) == {"label", "soft"}
    task = EmotionTask(Linear(), scheme, optimizer=torch.optim.SGD)
    loss = task.training_step(batch, 0)
    soft, logits = batch["targets"]["soft"], task(**batch["inputs"])
    weights = torch.tensor(scheme.class_weights)
    torch.testing.assert_close(loss, -(weights * soft * logits.log_softmax(-1)).sum(-1).mean())
