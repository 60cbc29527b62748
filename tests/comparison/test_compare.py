"""``python -m emoexp.compare`` on runs in a real MLflow store: selection, statistics, report, logging."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score

from emoexp import cliargs, compare
from emoexp.comparison import runs as run_selection
from emoexp.comparison.scoring import classification_score


def test_numpy_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, 300)
    pred = np.where(rng.random(300) < 0.5, true, rng.integers(0, 7, 300))  # class 6 predicted, never true
    assert classification_score("uar", true, pred, 7) == pytest.approx(balanced_accuracy_score(true, pred))
    assert classification_score("f1_macro", true, pred, 7) == pytest.approx(
        f1_score(true, pred, average="macro", zero_division=0)
    )
    assert classification_score("f1_weighted", true, pred, 7) == pytest.approx(
        f1_score(true, pred, average="weighted")
    )
    assert classification_score("precision_macro", true, pred, 7) == pytest.approx(
        precision_score(true, pred, average="macro", zero_division=0)
    )
    assert classification_score("accuracy", true, pred, 7) == pytest.approx(np.mean(true == pred))


def test_select_runs_filters_by_tags_and_skips_unfinished_and_comparison_runs(log_run, tracking_uri):
    lstm = log_run(model="lstm", seed=0)
    cnn = log_run(model="cnn", seed=0)
    log_run(model="lstm", seed=1, label_scheme="ekman6")
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("emoexp-audio").experiment_id
    running = client.create_run(experiment, tags={"model": "lstm", "label_scheme": "ekman7"}).info.run_id
    client.set_terminated(log_run(model="x", **{"emoexp.kind": "comparison"}), "FINISHED")
    selected = run_selection.select_runs(client, ["emoexp-audio"], "label_scheme=ekman7")
    assert {r.run_id for r in selected} == {lstm, cnn}
    assert running not in {r.run_id for r in selected}
    only = run_selection.select_runs(client, [], "model=lstm,cnn label_scheme!=ekman6 model!=cnn")
    assert [r.run_id for r in only] == [lstm]
    with pytest.raises(run_selection.RunSelectionError, match="does not exist"):
        run_selection.select_runs(client, ["nope"])
    with pytest.raises(run_selection.RunSelectionError, match="tag=value"):
        run_selection.parse_filters("modality")


def test_compare_report_statistics_and_comparison_run(log_run, tracking_uri, tmp_path):
    for seed in range(3):
        log_run(model="strong", seed=seed, skill=0.85)
        log_run(model="weak", seed=seed, skill=0.35)
        log_run(model="weak_too", seed=seed, skill=0.35)
    out = tmp_path / "report"
    result = compare.main(
        [
            f"tracking_uri={tracking_uri}",
            "name=test-cmp",
            "experiment=emoexp-audio",
            "filter=label_scheme=ekman7",
            f"output_dir={out}",
            "n_resamples=300",
        ]
    )
    comparison = result["comparison"]
    board = comparison.leaderboard
    assert comparison.metric == "test/uar"
    assert board["system"].iloc[0] == "strong" and (board["units"] == 3).all()
    assert (board["ci_low"] <= board["mean"]).all() and (board["mean"] <= board["ci_high"]).all()
    pairs = comparison.pairwise.set_index(["A", "B"])
    strong_weak = pairs.loc[("strong", "weak")]
    assert strong_weak["units"] == 3 and strong_weak["samples"] == 3 * 105
    assert strong_weak["delta"] > 0.3 and strong_weak["ci_low"] > 0
    assert strong_weak["p_bootstrap_holm"] < 0.05 and strong_weak["p_mcnemar_holm"] < 0.05
    assert strong_weak["p_wilcoxon"] == pytest.approx(0.25)  # 3 pairs, all positive: exact p = 2/8
    assert bool(strong_weak["significant"])
    weak_pair = (
        pairs.loc[("weak", "weak_too")]
        if ("weak", "weak_too") in pairs.index
        else pairs.loc[("weak_too", "weak")]
    )
    assert not bool(weak_pair["significant"])
    assert comparison.ranks is not None and comparison.ranks["block_kind"].startswith("units")
    assert comparison.ranks["mean_ranks"].index[0] == "strong"

    markdown = (out / "report.md").read_text()
    for section in (
        "Leaderboard",
        "Is the difference real?",
        "Friedman",
        "Confusion matrices",
        "Per-class F1",
        "Per-group metrics",
        "Calibration",
    ):
        assert section in markdown, section
    for figure in (
        "metric_bars",
        "confusion_matrices",
        "per_class_f1",
        "per_group",
        "reliability",
        "critical_difference",
    ):
        assert (out / "report_files" / f"{figure}.png").stat().st_size > 1000
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert (out / "report_files" / "tables" / "pairwise.csv").exists()

    client = mlflow.MlflowClient(tracking_uri)
    logged = client.get_run(result["run_id"])
    assert logged.data.tags["emoexp.kind"] == "comparison" and logged.info.status == "FINISHED"
    assert len(logged.data.tags["comparison.runs"].split(",")) == 9
    assert logged.data.metrics["strong/test/uar"] == pytest.approx(board["mean"].iloc[0])
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "report")}
    assert {"report/report.md", "report/report.html", "report/report_files"} <= artifacts
    # The comparison run is never picked up as a system by a later comparison.
    again = run_selection.select_runs(client, ["emoexp-audio", "emoexp-comparisons"])
    assert len(again) == 9


def test_compare_single_runs_pairs_them_and_bootstraps_the_interval(log_run, tracking_uri, tmp_path):
    log_run(model="a", seed=1, skill=0.7)
    log_run(model="b", seed=2, skill=0.7)
    result = compare.run(
        compare.CompareOptions(
            tracking_uri=tracking_uri, output_dir=str(tmp_path), log=False, n_resamples=200
        )
    )
    comparison = result["comparison"]
    assert (comparison.leaderboard["ci"] == "bootstrap (samples)").all()
    row = comparison.pairwise.iloc[0]
    assert row["pairing"] == "single runs" and row["samples"] == 105 and np.isnan(row["p_wilcoxon"])
    assert comparison.ranks is None and result["run_id"] is None


def test_bad_selections_give_clear_errors(log_run, tracking_uri, tmp_path, capsys):
    log_run(model="a", seed=0)
    log_run(model="b", seed=0, label_scheme="ekman6")
    base = [f"tracking_uri={tracking_uri}", f"output_dir={tmp_path}", "log=false"]
    assert cliargs.run_cli(compare.main, base) == 2
    assert "different label schemes" in capsys.readouterr().err
    assert cliargs.run_cli(compare.main, [*base, "filter=model=zzz"]) == 2
    assert "no finished run matches" in capsys.readouterr().err
    assert cliargs.run_cli(compare.main, [*base, "grup_by=model"]) == 2
    assert "unknown option 'grup_by'" in capsys.readouterr().err
    assert cliargs.run_cli(compare.main, [*base, "filter=label_scheme=ekman7", "metric=test/ccc"]) == 2
    assert "valence/arousal" in capsys.readouterr().err


def test_cross_validated_runs_compare_fold_by_fold(log_cv_run, tracking_uri, tmp_path):
    strong = log_cv_run(model="strong", skill=0.85, folds=6)
    log_cv_run(model="weak", skill=0.3, folds=6)
    client = mlflow.MlflowClient(tracking_uri)
    selected = run_selection.select_runs(client, ["emoexp-audio"])
    assert len(selected) == 2 and all(len(r.children) == 6 for r in selected)
    result = compare.run(
        compare.CompareOptions(
            tracking_uri=tracking_uri, output_dir=str(tmp_path), log=False, n_resamples=300
        )
    )
    comparison = result["comparison"]
    assert (comparison.leaderboard["units"] == 6).all()
    row = comparison.pairwise.iloc[0]
    assert row["A"] == "strong" and row["units"] == 6 and row["samples"] == 6 * 40
    # Six folds, all in favour of the strong system: the exact two-sided Wilcoxon p is 2 / 2**6.
    assert row["p_wilcoxon"] == pytest.approx(2 / 64)
    system = next(s for s in comparison.systems if s.name == "strong")
    children = {c.run_id for c in run_selection.get_run(client, strong).children}
    assert {u.run_id for u in system.units.values()} == children
