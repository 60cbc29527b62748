"""Metric collections checked against scikit-learn, scipy and textbook formulas."""

from __future__ import annotations

import os
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.stats import pearsonr
from sklearn import metrics as skm

from emoexp.evaluation.metrics import (
    MultilabelSamplesJaccard,
    RegressionMetrics,
    classification_metrics,
    concordance_correlation_coefficient,
    multilabel_metrics,
)

NUM_CLASSES = 7


def _update_in_batches(collection, preds: torch.Tensor, target: torch.Tensor, batch: int = 37):
    for start in range(0, len(preds), batch):
        collection.update(preds[start : start + batch], target[start : start + batch])
    return {k: float(v) for k, v in collection.compute().items()}


def _classification_case(seed: int, never_predict_absent: bool):
    """Imbalanced targets over classes 0..5; class 6 never occurs as a target."""
    rng = np.random.default_rng(seed)
    n = 300
    class_probs = np.array([0.45, 0.25, 0.12, 0.08, 0.06, 0.04])
    target = rng.choice(6, size=n, p=class_probs)
    # Logits that favour the true class, so scores are neither trivial nor ~chance.
    logits = rng.normal(size=(n, NUM_CLASSES))
    logits[np.arange(n), target] += 1.5
    if never_predict_absent:
        logits[:, 6] = -1e4
    return torch.tensor(logits, dtype=torch.float32), torch.tensor(target)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("never_predict_absent", [False, True])
def test_classification_metrics_match_sklearn(seed: int, never_predict_absent: bool) -> None:
    logits, target = _classification_case(seed, never_predict_absent)
    result = _update_in_batches(classification_metrics(NUM_CLASSES), logits, target)

    y_true, y_pred = target.numpy(), logits.argmax(1).numpy()
    assert never_predict_absent or 6 in y_pred, "the case should predict the absent class"
    kwargs = {"zero_division": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    expected = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "uar": balanced,
        "precision_macro": skm.precision_score(y_true, y_pred, average="macro", **kwargs),
        "precision_weighted": skm.precision_score(y_true, y_pred, average="weighted", **kwargs),
        "recall_weighted": skm.recall_score(y_true, y_pred, average="weighted", **kwargs),
        "f1_macro": skm.f1_score(y_true, y_pred, average="macro", **kwargs),
        "f1_weighted": skm.f1_score(y_true, y_pred, average="weighted", **kwargs),
    }
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key


def test_uar_ignores_classes_absent_from_targets() -> None:
    # Class 2 is predicted once but never a target: macro recall would average in a 0.
    target = torch.tensor([0, 0, 1, 1])
    preds = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1]), 3).float()
    result = classification_metrics(3)(preds, target)
    assert float(result["uar"]) == pytest.approx((0.5 + 1.0) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        balanced = skm.balanced_accuracy_score([0, 0, 1, 1], [0, 2, 1, 1])
    assert float(result["uar"]) == pytest.approx(balanced)


def test_classification_metrics_prefix_and_probabilities() -> None:
    logits, target = _classification_case(3, never_predict_absent=False)
    from_logits = classification_metrics(NUM_CLASSES, prefix="val/")(logits, target)
    from_probs = classification_metrics(NUM_CLASSES, prefix="val/")(logits.softmax(1), target)
    assert set(from_logits) == {
        "val/accuracy",
        "val/uar",
        "val/precision_macro",
        "val/precision_weighted",
        "val/recall_weighted",
        "val/f1_macro",
        "val/f1_weighted",
    }
    for key in from_logits:
        assert float(from_logits[key]) == pytest.approx(float(from_probs[key]))


def test_every_metric_has_a_step_value_for_lightning() -> None:
    # Lightning logs `metric._forward_cache` for on_step logging of Metric objects.
    logits, target = _classification_case(0, never_predict_absent=False)
    collections = [
        (classification_metrics(NUM_CLASSES), logits, target),
        (RegressionMetrics(), torch.randn(20, 2), torch.randn(20, 2)),
        (multilabel_metrics(4), torch.rand(20, 4), torch.randint(0, 2, (20, 4))),
    ]
    for collection, preds, tgt in collections:
        collection(preds, tgt)
        for name, metric in collection.items():
            assert metric._forward_cache is not None, name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, labels = 150, 6
    target = (rng.random((n, labels)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.0]).astype(int)
    probs = np.clip(0.6 * target + 0.5 * rng.random((n, labels)), 0, 1)
    result = _update_in_batches(
        multilabel_metrics(labels), torch.tensor(probs, dtype=torch.float32), torch.tensor(target)
    )
    predicted = (probs > 0.5).astype(int)
    expected = {
        "f1_micro": skm.f1_score(target, predicted, average="micro", zero_division=0),
        "f1_macro": skm.f1_score(target, predicted, average="macro", zero_division=0),
        "jaccard_samples": skm.jaccard_score(target, predicted, average="samples", zero_division=0),
        "jaccard_macro": skm.jaccard_score(target, predicted, average="macro", zero_division=0),
    }
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_samples_jaccard_empty_rows(zero_division: float) -> None:
    target = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0]])
    probs = np.array([[0.1, 0.2, 0.3], [0.9, 0.2, 0.8], [0.2, 0.1, 0.1]])
    metric = MultilabelSamplesJaccard(zero_division=zero_division)
    value = float(metric(torch.tensor(probs), torch.tensor(target)))
    expected = skm.jaccard_score(
        target, (probs > 0.5).astype(int), average="samples", zero_division=zero_division
    )
    assert value == pytest.approx(expected)
    assert value == pytest.approx((zero_division + 1 / 3 + 0) / 3)


def _textbook_ccc(x: np.ndarray, y: np.ndarray, ddof: int = 0) -> float:
    covariance = np.cov(x, y, ddof=ddof)
    return 2 * covariance[0, 1] / (covariance[0, 0] + covariance[1, 1] + (x.mean() - y.mean()) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ccc_matches_textbook_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=200)
    y = 0.7 * x + rng.normal(scale=0.5, size=200) + 0.3
    assert concordance_correlation_coefficient(x, y) == pytest.approx(_textbook_ccc(x, y))
    assert concordance_correlation_coefficient(x, y, ddof=1) == pytest.approx(_textbook_ccc(x, y, ddof=1))
    # CCC is symmetric and never exceeds |Pearson r|.
    assert concordance_correlation_coefficient(y, x) == pytest.approx(
        concordance_correlation_coefficient(x, y)
    )
    assert abs(concordance_correlation_coefficient(x, y)) <= abs(pearsonr(x, y).statistic)


def test_ccc_known_cases() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    y = y - y.mean()
    assert concordance_correlation_coefficient(y, y) == pytest.approx(1.0)
    shifted = concordance_correlation_coefficient(y, y + 0.5)
    assert shifted < 1.0
    assert shifted == pytest.approx(2 * y.var() / (2 * y.var() + 0.25))
    assert concordance_correlation_coefficient(y, -y) == pytest.approx(-1.0)
    assert concordance_correlation_coefficient(y, 2 * y) < 0.9  # r = 1, but no agreement
    assert np.isnan(concordance_correlation_coefficient([1.0], [1.0]))
    assert np.isnan(concordance_correlation_coefficient([2.0, 2.0], [2.0, 2.0]))
    with pytest.raises(ValueError, match="differ in length"):
        concordance_correlation_coefficient([1.0, 2.0], [1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_metrics_match_numpy_and_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dims = ("valence", "arousal", "dominance")
    target = rng.uniform(-1, 1, size=(250, 3))
    preds = 0.6 * target + rng.normal(scale=0.3, size=target.shape) + [0.1, -0.2, 0.0]
    collection = RegressionMetrics(dims=dims, prefix="test/")
    result = _update_in_batches(collection, torch.tensor(preds, dtype=torch.float32), torch.tensor(target))

    expected_keys = {f"test/{d}_{m}" for d in dims for m in ("ccc", "pearson", "mae")}
    assert result.keys() == expected_keys | {"test/ccc", "test/mae"}
    cccs = []
    for column, dim in enumerate(dims):
        t, p = target[:, column], preds[:, column]
        # torchmetrics uses unbiased moments: exact against ddof=1, O(1/N) against Lin's.
        ccc = concordance_correlation_coefficient(t, p, ddof=1)
        assert result[f"test/{dim}_ccc"] == pytest.approx(ccc, abs=1e-5)
        assert result[f"test/{dim}_ccc"] == pytest.approx(
            concordance_correlation_coefficient(t, p), abs=5 / len(t)
        )
        assert result[f"test/{dim}_pearson"] == pytest.approx(pearsonr(t, p).statistic, abs=1e-5)
        assert result[f"test/{dim}_mae"] == pytest.approx(skm.mean_absolute_error(t, p), abs=1e-5)
        cccs.append(ccc)
    assert result["test/ccc"] == pytest.approx(np.mean(cccs), abs=1e-5)
    assert result["test/mae"] == pytest.approx(skm.mean_absolute_error(target, preds), abs=1e-5)

    collection.reset()
    collection.update(torch.tensor(target), torch.tensor(target))
    assert float(collection.compute()["test/ccc"]) == pytest.approx(1.0)


def test_regression_dimensions_keep_separate_state() -> None:
    # Equal columns in the first batch must not make the dimensions share state afterwards.
    collection = RegressionMetrics()
    same = torch.linspace(-1, 1, 10).unsqueeze(1).repeat(1, 2)
    collection.update(same, same)
    later_target = torch.stack([torch.linspace(-1, 1, 10), torch.linspace(1, -1, 10)], dim=1)
    collection.update(same, later_target)
    result = collection.compute()
    assert float(result["valence_ccc"]) == pytest.approx(1.0)
    assert float(result["arousal_ccc"]) < 0.5


def test_regression_metrics_accept_non_contiguous_inputs() -> None:
    values = torch.randn(40, 2)
    strided = RegressionMetrics()(values[::2], values[::2] + 0.5)
    contiguous = RegressionMetrics()(values[::2].clone(), values[::2].clone() + 0.5)
    assert not values[::2].is_contiguous()
    for key, value in contiguous.items():
        assert float(strided[key]) == pytest.approx(float(value)), key
    assert float(strided["mae"]) == pytest.approx(0.5)


def test_regression_metrics_reject_empty_dims() -> None:
    with pytest.raises(ValueError, match="at least one dimension"):
        RegressionMetrics(dims=())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        logits, target = _classification_case(0, never_predict_absent=False)
        rng = np.random.default_rng(0)
        va_target = torch.tensor(rng.uniform(-1, 1, size=(300, 2)), dtype=torch.float32)
        va_preds = va_target + 0.3 * torch.tensor(rng.normal(size=(300, 2)), dtype=torch.float32)
        shard = slice(rank, None, world_size)
        classification = classification_metrics(NUM_CLASSES)
        regression = RegressionMetrics()
        multilabel = multilabel_metrics(NUM_CLASSES)
        classification.update(logits[shard], target[shard])
        regression.update(va_preds[shard], va_target[shard])
        multilabel.update(logits[shard].sigmoid(), (logits[shard] > 0.5).int())
        computed = {
            **classification.compute(),
            **regression.compute(),
            **multilabel.compute(),
        }
        queue.put((rank, {k: float(v) for k, v in computed.items()}))
    finally:
        dist.destroy_process_group()


def test_metrics_synchronise_across_ddp_processes() -> None:
    world_size = 2
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.start_processes(
        _ddp_worker,
        args=(world_size, _free_port(), queue),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
    results = dict(queue.get() for _ in range(world_size))

    logits, target = _classification_case(0, never_predict_absent=False)
    rng = np.random.default_rng(0)
    va_target = torch.tensor(rng.uniform(-1, 1, size=(300, 2)), dtype=torch.float32)
    va_preds = va_target + 0.3 * torch.tensor(rng.normal(size=(300, 2)), dtype=torch.float32)
    single = {
        **classification_metrics(NUM_CLASSES)(logits, target),
        **RegressionMetrics()(va_preds, va_target),
        **multilabel_metrics(NUM_CLASSES)(logits.sigmoid(), (logits > 0.5).int()),
    }
    for rank in range(world_size):
        for key, value in single.items():
            assert results[rank][key] == pytest.approx(float(value), abs=1e-5), (rank, key)
