"""``python -m emoexp.compare`` puts the robustness curves of several systems side by side."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from emoexp.comparison.report import Report
from emoexp.comparison.robustness import add_robustness, robustness_curves


def _system(name: str, units: dict[str, dict[str, float]]) -> SimpleNamespace:
    return SimpleNamespace(name=name, units={k: SimpleNamespace(metrics=m) for k, m in units.items()})


def test_curves_average_units_order_levels_by_severity_and_render() -> None:
    lstm = _system(
        "lstm",
        {
            "seed=1": {"test/uar": 0.6, "robust/clean/none/uar": 0.6, "robust/noise/snr_0db/uar": 0.2},
            "seed=2": {
                "robust/clean/none/uar": 0.5,
                "robust/noise/snr_0db/uar": 0.3,
                "robust/noise/snr_30db/uar": 0.5,
            },
        },
    )
    svm = _system(
        "svm", {"seed=1": {"robust/noise/snr_30db/uar": 0.7, "robust/noise/snr_30db/accuracy": 0.1}}
    )
    curves = robustness_curves([lstm, svm], "test/uar")
    noise = curves[curves["family"] == "noise"]
    assert list(dict.fromkeys(noise["level"])) == ["snr_30db", "snr_0db"]  # severity, not alphabet
    row = curves[(curves["system"] == "lstm") & (curves["level"] == "snr_0db")].iloc[0]
    assert row["value"] == 0.25 and row["units"] == 2
    assert set(curves["system"]) == {"lstm", "svm"} and "accuracy" not in curves.columns

    report = Report("t")
    add_robustness(report, SimpleNamespace(systems=[lstm, svm], metric="test/uar"))
    assert "robustness_curves" in report.figures and isinstance(report.tables["robustness"], pd.DataFrame)
    empty = Report("t")
    add_robustness(
        empty, SimpleNamespace(systems=[_system("x", {"s": {"test/uar": 1.0}})], metric="test/uar")
    )
    assert not empty.blocks
