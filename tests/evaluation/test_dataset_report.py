"""Dataset report: class x split and class x group counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emoexp.data.splits import Fold
from emoexp.evaluation.dataset_report import class_by_group, class_by_split, dataset_report, dataset_reports
from emoexp.labels.schemes import CategoricalScheme


def _data() -> tuple[pd.DataFrame, Fold]:
    manifest = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(6)],
            "emotion": ["anger", "anger", "sadness", "anger", "sadness", "anger"],
            "group_gender": ["female", "male", "female", "male", "female", None],
            "group_age": ["young", "young", "old", "old", "old", "old"],
        }
    )
    return manifest, Fold("holdout", np.array(["train", "train", "train", "val", "test", "train"]))


def test_class_by_split_counts_every_class_and_totals():
    manifest, fold = _data()
    table = class_by_split(manifest, fold, ["anger", "neutral", "sadness"]).set_index("class")
    assert list(table.columns) == ["train", "val", "test", "total"]
    assert table.loc["anger"].tolist() == [3, 1, 0, 4]
    assert table.loc["neutral"].tolist() == [0, 0, 0, 0]
    assert table.loc["sadness"].tolist() == [1, 0, 1, 2]
    assert table.loc["total"].tolist() == [4, 1, 1, 6]


def test_class_by_group_has_a_column_per_attribute_value():
    manifest, _ = _data()
    table = class_by_group(manifest, ["anger", "sadness"]).set_index("class")
    assert table.loc["anger", "group_gender=male"] == 2
    assert table.loc["anger", "group_gender=nan"] == 1
    assert table.loc["sadness", "group_age=old"] == 2
    assert table.loc["total", "group_gender=female"] == 3
    for column in ("group_gender", "group_age"):
        assert table.filter(like=f"{column}=").loc["total"].sum() == len(manifest)


def test_dataset_report_joins_splits_shares_weights_and_groups():
    manifest, fold = _data()
    scheme = CategoricalScheme(name="toy", classes=["anger", "sadness"], class_weights="balanced")
    scheme = scheme.resolve_class_weights(manifest[fold.mask("train")])
    reports = dataset_reports(manifest, fold, scheme)
    assert set(reports) == {"dataset_report.csv", "class_by_split.csv"}
    report = reports["dataset_report.csv"].set_index("class")
    assert report.loc["anger", "train_share"] == 0.75
    np.testing.assert_allclose(report.loc[["anger", "sadness"], "loss_weight"], [4 / 6, 4 / 2])
    assert report.loc["total", "total"] == 6 and report.loc["anger", "group_age=young"] == 2
    # Without an emotion column (dimensional-only corpora) everything is one row.
    bare = dataset_report(manifest.drop(columns="emotion"), fold).set_index("class")
    assert bare.loc["(unlabelled)", "total"] == 6
