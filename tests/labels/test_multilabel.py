"""MultiLabelScheme: mapping, targets, loss, metrics, threshold tuning and predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import f1_score

from emoexp.config import CONF_DIR
from emoexp.data import schema
from emoexp.labels.multilabel import MultiLabelScheme, best_thresholds
from emoexp.labels.schemes import LabelSchemeError


def _scheme(name: str, **overrides) -> MultiLabelScheme:
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "label_scheme" / f"{name}.yaml"))
    return instantiate({**node, **overrides})


def _manifest(labels: list[list[str] | None], emotions: list[str | None] | None = None) -> pd.DataFrame:
    n = len(labels)
    frame = pd.DataFrame(
        {
            schema.ID: [f"s{i}" for i in range(n)],
            schema.CORPUS: "t",
            schema.TEXT: "x",
            schema.SPEAKER: [f"p{i % 2}" for i in range(n)],
            schema.EMOTION: emotions or [None] * n,
            "group_gender": ["f", "m"] * (n // 2) + ["f"] * (n % 2),
        }
    )
    frame[schema.LABELS] = pd.Series(labels, dtype=object)
    return schema.validate_manifest(frame, "t")


def test_goemotions_grouping_config_matches_the_adapter_mapping():
    scheme = OmegaConf.load(CONF_DIR / "label_scheme" / "goemotions_ekman.yaml")
    for data in ("goemotions", "goemotions_tsv"):
        corpus = OmegaConf.load(CONF_DIR / "data" / f"{data}.yaml").corpus
        assert OmegaConf.to_container(corpus.mapping) == OmegaConf.to_container(scheme.mapping)


def test_prepare_maps_groups_and_targets_are_multi_hot():
    scheme = _scheme("goemotions_ekman")
    prepared = scheme.prepare(
        _manifest([["admiration", "joy"], ["anger", "curiosity"], ["neutral"], ["grief"]])
    )
    assert prepared[schema.LABELS].tolist() == [
        ["happiness"],
        ["anger", "surprise"],
        ["neutral"],
        ["sadness"],
    ]
    targets = scheme.targets(prepared)["labels"]
    assert targets.dtype == np.float32 and targets.shape == (4, 7)
    assert targets.sum(axis=1).tolist() == [1, 2, 1, 1]
    assert targets[1, list(scheme.labels).index("surprise")] == 1
    assert scheme.num_outputs == 7 and scheme.stratify_labels(prepared) is None


def test_unmapped_labels_error_or_drop_and_empty_samples_are_left_out():
    scheme = _scheme("goemotions_ekman")
    manifest = _manifest([["joy"], ["weird"], ["weird", "fear"]])
    with pytest.raises(LabelSchemeError, match=r"labels \['weird'\] are outside.*unmapped=drop"):
        scheme.prepare(manifest)
    prepared = _scheme("goemotions_ekman", unmapped="drop").prepare(manifest)
    assert prepared[schema.LABELS].tolist() == [["happiness"], ["fear"]]
    assert prepared[schema.ID].tolist() == ["s0", "s2"]


def test_generic_scheme_infers_labels_and_falls_back_to_emotion():
    scheme = _scheme("multilabel")
    prepared = scheme.prepare(_manifest([["b", "a"], None, ["c"]], emotions=[None, "a", None]))
    assert scheme.labels == ("a", "b", "c")
    assert prepared[schema.LABELS].tolist() == [["b", "a"], ["a"], ["c"]]


def test_monitor_must_be_a_multilabel_validation_metric():
    with pytest.raises(LabelSchemeError, match="val/f1_macro"):
        MultiLabelScheme(name="m", monitor="val/uar")
    with pytest.raises(LabelSchemeError, match="test split is locked"):
        MultiLabelScheme(name="m", monitor="test/f1_macro")
    with pytest.raises(LabelSchemeError, match="not among its labels"):
        MultiLabelScheme(name="m", labels=["a", "b"], mapping={"x": "c"})


def test_loss_is_bce_with_logits():
    scheme = _scheme("goemotions_ekman", pos_weight=[2.0] * 7)
    logits = torch.randn(5, 7)
    targets = (torch.rand(5, 7) > 0.5).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, pos_weight=torch.full((7,), 2.0)
    )
    assert torch.allclose(scheme.loss(logits, {"labels": targets}), expected)


def test_best_thresholds_maximise_f1_per_label_against_brute_force():
    rng = np.random.default_rng(0)
    probs = rng.random((60, 4))
    targets = (probs + rng.normal(0, 0.3, probs.shape) > 0.6).astype(int)
    targets[:, 3] = 0  # a label without positives keeps the default
    thresholds = best_thresholds(probs, targets, default=0.5)
    assert thresholds[3] == 0.5

    def f1(y: np.ndarray, predicted: np.ndarray) -> float:
        tp = (y & predicted).sum()
        return 2 * tp / (y.sum() + predicted.sum())

    for j in range(3):
        candidates = np.concatenate([[-1.0], np.unique(probs[:, j])])
        best = max(f1(targets[:, j] == 1, probs[:, j] > c) for c in candidates)
        assert f1_score(targets[:, j], probs[:, j] > thresholds[j]) == pytest.approx(best)


def test_tuned_thresholds_apply_to_test_metrics_and_predictions_only():
    scheme = _scheme("multilabel", labels=["a", "b", "c"])
    rng = np.random.default_rng(1)
    labels = [[x for x in "abc" if rng.random() < 0.4] or ["a"] for _ in range(40)]
    prepared = scheme.prepare(_manifest(labels))
    targets = torch.as_tensor(scheme.targets(prepared)["labels"])
    logits = torch.as_tensor(rng.normal(0, 1.5, (40, 3)), dtype=torch.float32) + 1.5 * (targets - 0.5)
    logged = scheme.tune_on_validation(logits, prepared)
    assert set(logged) == {"val/f1_macro_tuned", "threshold/a", "threshold/b", "threshold/c"}
    tuned = scheme.thresholds()
    probs = logits.sigmoid().numpy()
    expected_tuned = f1_score(targets.numpy(), probs > tuned, average="macro", zero_division=0)
    expected_fixed = f1_score(targets.numpy(), probs > 0.5, average="macro", zero_division=0)
    assert logged["val/f1_macro_tuned"] == pytest.approx(expected_tuned)
    for prefix, expected in (("test/", expected_tuned), ("val/", expected_fixed)):
        metrics = scheme.metrics(prefix)
        scheme.update_metrics(metrics, logits, {"labels": targets})
        values = metrics[0].compute()
        assert float(values[f"{prefix}f1_macro"]) == pytest.approx(expected, abs=1e-6)
        assert set(values) == {f"{prefix}{m}" for m in scheme.metric_names if m != "loss"}
    frame = scheme.predictions_frame(scheme.decode(logits), prepared)
    assert list(frame.columns) == ["target_labels", "predicted_labels", "prob_a", "prob_b", "prob_c"]
    assert frame["target_labels"].iloc[0] == "|".join(prepared[schema.LABELS].iloc[0])
    predicted = [set(p.split("|")) - {""} for p in frame["predicted_labels"]]
    assert predicted == [
        {label for label, hit in zip("abc", row, strict=True) if hit} for row in probs > tuned
    ]
    reports = scheme.report_frames(pd.concat([frame, prepared[["group_gender"]]], axis=1))
    per_label = reports["multilabel_report.csv"]
    assert per_label["label"].tolist() == ["a", "b", "c"]
    assert per_label["f1"].mean() == pytest.approx(expected_tuned)
    assert set(reports["per_group_metrics.csv"]["group"]) == {"f", "m"}
    assert scheme.tune_on_validation(logits, prepared) and not _scheme(
        "multilabel", tune_thresholds=False
    ).tune_on_validation(logits, prepared)
