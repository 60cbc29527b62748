"""Studies (``python -m emoexp.study``): definitions, the one significance rule, and a real tiny study.

The end-to-end test trains a tiny study for real (embedded audio, 84 samples, an SVM and a
decision tree, their late-fusion ensemble, 2 seeds) into an MLflow SQLite store in ``tmp_path``,
then runs it again and asserts that nothing is retrained and the table is regenerated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from emoexp.comparison import analysis
from emoexp.comparison.runs import RunSelectionError
from emoexp.comparison.scoring import scorer_for
from emoexp.evaluation.significance import paired_t_test
from emoexp.studies.definition import StudyConfigError, parse_study, study_names

TINY = """# @package _global_
defaults:
  - override /data: embedded_audio
  - override /protocol: holdout
data:
  max_samples: 84
study:
  question: Does an RBF-SVM beat a decision tree on functionals, and does their soft vote beat both?
  seeds: [0, 1]
  systems:
    svm: [model=svm]
    tree:
      description: a depth-limited decision tree
      overrides: [model=decision_tree]
    vote:
      ensemble: {members: [svm, tree], method: soft}
"""


# --------------------------------------------------------------------------------------------
# The rule: paired t over matched units, one correction over the pairs


def test_paired_t_test_matches_scipy() -> None:
    a, b = [0.61, 0.58, 0.66, 0.59, 0.63], [0.52, 0.55, 0.57, 0.50, 0.58]
    result = paired_t_test(a, b)
    reference = stats.ttest_rel(a, b)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.n == 5 and result.mean_difference == pytest.approx(np.mean(np.subtract(a, b)))
    interval = reference.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    assert np.isnan(paired_t_test([0.5], [0.4]).p_value)
    assert paired_t_test([0.5, 0.6], [0.5, 0.6]).p_value == 1.0


def _system(name: str, values: dict[str, float]) -> analysis.System:
    predictions = pd.DataFrame(
        {"id": ["a", "b"], "target": ["joy", "anger"], "prediction": ["joy", "joy"]}
        | {"prob_joy": [0.6, 0.7], "prob_anger": [0.4, 0.3]}
    )
    units = {k: analysis.Unit(k, f"{name}-{k}", {"test/uar": v}, predictions) for k, v in values.items()}
    return analysis.System(name, [], units)


def test_unit_pairwise_tests_pair_matched_units_and_correct_once() -> None:
    seeds = [f"seed={i}" for i in range(5)]
    good = _system("good", dict(zip(seeds, [0.70, 0.72, 0.69, 0.74, 0.71], strict=True)))
    same = _system("same", dict(zip(seeds, [0.69, 0.73, 0.70, 0.73, 0.71], strict=True)))
    poor = _system("poor", dict(zip(seeds[:4], [0.40, 0.45, 0.41, 0.43], strict=True)))
    scorer = scorer_for("test/uar", good.units["seed=0"].predictions)
    frame = analysis.unit_pairwise_tests([good, same, poor], "test/uar", scorer)
    assert list(zip(frame["A"], frame["B"], strict=True)) == [
        ("good", "same"),
        ("good", "poor"),
        ("same", "poor"),
    ]
    assert list(frame["units"]) == [5, 4, 4]  # only the seeds both systems have
    raw = [stats.ttest_rel([0.70, 0.72, 0.69, 0.74, 0.71], [0.69, 0.73, 0.70, 0.73, 0.71]).pvalue]
    raw += [stats.ttest_rel([0.70, 0.72, 0.69, 0.74], [0.40, 0.45, 0.41, 0.43]).pvalue]
    raw += [stats.ttest_rel([0.69, 0.73, 0.70, 0.73], [0.40, 0.45, 0.41, 0.43]).pvalue]
    assert frame["p_holm"].to_numpy() == pytest.approx(multipletests(raw, method="holm")[1])
    assert list(frame["significant"]) == [False, True, True]
    only = analysis.unit_pairwise_tests([good, same, poor], "test/uar", scorer, pairs=[("poor", "good")])
    assert len(only) == 1 and only["delta"].iloc[0] < 0


def test_chance_level() -> None:
    assert analysis.chance_level("test/uar", 7) == pytest.approx(1 / 7)
    assert analysis.chance_level("test/ccc", 7) is None


# --------------------------------------------------------------------------------------------
# Definitions: every shipped study parses; a bad one names its key


def test_every_shipped_study_loads_and_its_units_compose() -> None:
    from emoexp.config import validate
    from emoexp.studies.runner import StudyContext, compose, load_definition, unit_config

    names = study_names()
    shipped = {"fusion_embedded", "classical_vs_deep_audio", "cross_corpus", "protocols_leakage"}
    assert shipped | {"modality_baselines", "transfer_text"} <= set(names), names
    for name in names:
        validate(
            compose([f"experiment={name}"])
        )  # still a train.py overlay: python train.py experiment=<name>
        definition = load_definition(name)
        assert len(definition.seeds) >= 5, f"{name}: a study runs at least 5 seeds"
        context = StudyContext(definition, (), Path("/tmp/study"), "sqlite:////tmp/study/mlflow.db")
        for system in definition.ordered():
            if not system.is_ensemble:
                cfg = unit_config(
                    context, system, definition.seeds[0], "0" * 32 if system.init_from else None
                )
                assert "study" not in cfg and cfg.tracking.tags["study.system"] == system.name
                validate(cfg)


def test_a_train_overlay_is_not_a_study() -> None:
    from emoexp.studies.runner import load_definition

    with pytest.raises(StudyConfigError, match=r"no study: block.*python train\.py experiment=default_v0_1"):
        load_definition("default_v0_1")
    with pytest.raises(StudyConfigError, match=r"no study 'fusion_embeded'.*fusion_embedded"):
        load_definition("fusion_embeded")


def test_help_and_a_bare_name(capsys: pytest.CaptureFixture[str]) -> None:
    from emoexp import cliargs
    from emoexp.study import PROG, main

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {PROG} key=value")
    assert cliargs.run_cli(main, ["nope_study", "report_only=true"], prog=PROG) == 2
    assert "no study 'nope_study'" in capsys.readouterr().err
    assert cliargs.run_cli(main, ["fusion_embedded", "seeds=a"], prog=PROG) == 2
    assert "seeds=a: 'a' is not an integer" in capsys.readouterr().err


GOOD = {"question": "q?", "systems": {"a": ["model=svm"], "b": ["model=lstm"]}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sytems": {}}, r"study\.sytems: unknown key; did you mean study\.systems\?"),
        ({"systems": {}}, r"study\.systems: expected a mapping"),
        ({"seeds": []}, r"study\.seeds: expected a non-empty list"),
        ({"seeds": [0, 0]}, r"study\.seeds: expected distinct integers"),
        ({"question": ""}, r"study\.question"),
        ({"alpha": 5.0}, r"study\.alpha"),
        ({"systems": {"a": "model=svm"}}, r"study\.systems\.a: expected a list of train.py overrides"),
        ({"systems": {"a": {"overide": []}}}, r"study\.systems\.a\.overide: unknown key; did you mean"),
        ({"systems": {"a": {"init_from": "z"}}}, r"study\.systems\.a\.init_from: no system named 'z'"),
        (
            {"systems": {"a": {"init_from": "a"}}},
            r"study\.systems\.a\.init_from: the init_from chain is a cycle",
        ),
        (
            {"systems": {"a": [], "e": {"ensemble": {"members": ["a", "x"]}}}},
            r"study\.systems\.e\.ensemble\.members: no system named 'x'",
        ),
        (
            {"systems": {"a": [], "b": [], "e": {"ensemble": {"members": ["a", "b"], "method": "vote"}}}},
            r"study\.systems\.e\.ensemble\.method: 'vote'",
        ),
        ({"pairs": [["a", "c"]]}, r"study\.pairs\[0\]: no system named 'c'"),
        ({"pairs": [["a", "a"]]}, r"study\.pairs\[0\]: expected two different systems"),
    ],
)
def test_bad_study_blocks_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(StudyConfigError, match=message):
        parse_study("x", {**GOOD, **change})


def test_defaults_and_dependency_order() -> None:
    node = {
        "question": "q?",
        "systems": {
            "b_to_a": {"init_from": "b", "overrides": []},
            "vote": {"ensemble": {"members": ["a", "b"]}},
        }
        | {"a": [], "b": []},
    }
    definition = parse_study("x", node)
    assert definition.seeds == (0, 1, 2, 3, 4) and len(definition.pairs) == 6
    order = [s.name for s in definition.ordered()]
    assert order.index("b") < order.index("b_to_a") and order.index("a") < order.index("vote")


# --------------------------------------------------------------------------------------------
# A real tiny study, twice


@pytest.fixture
def tiny_study(tmp_path: Path, cache_dir: Path) -> dict:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "tiny.yaml").write_text(TINY)
    return {
        "name": "tiny",
        "config_dir": [str(conf)],
        "output_dir": str(tmp_path / "study"),
        "overrides": f"paths.cache_dir={cache_dir} num_threads=1",
    }


def test_overrides_that_do_not_compose_name_the_system_before_training(tiny_study: dict) -> None:
    from emoexp.study import StudyOptions, run

    conf = Path(tiny_study["config_dir"][0]) / "experiment"
    broken = TINY.replace("svm: [model=svm]", "svm: [model=svn]")
    (conf / "broken.yaml").write_text(broken)
    with pytest.raises(StudyConfigError, match=r"study\.systems\.svm\.overrides \['model=svn'\].*svn"):
        run(StudyOptions(**{**tiny_study, "name": "broken"}))
    assert not (Path(tiny_study["output_dir"]) / "outputs").exists()


def test_report_only_before_training_says_nothing_is_there(tiny_study: dict) -> None:
    from emoexp.study import StudyOptions, run

    with pytest.raises(RunSelectionError, match="study tiny: no finished run"):
        run(StudyOptions(**tiny_study, report_only=True))


def test_a_study_trains_each_unit_once_resumes_and_regenerates_its_table(
    tiny_study: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from emoexp import train as train_module
    from emoexp.study import StudyOptions, run

    first = run(StudyOptions(**tiny_study))
    assert [o.status for o in first["outcomes"]] == ["trained"] * 6
    markdown = Path(first["paths"]["markdown"]).read_text()
    assert "**Question.** Does an RBF-SVM beat" in markdown
    assert "paired t-test over those units" in markdown and "Holm-corrected together" in markdown
    assert "Chance level (uniform guessing): 0.143" in markdown
    board = first["results"].leaderboard
    assert list(board["system"]) == ["svm", "tree", "vote"] and set(board["units"]) == {2}
    assert (board["ci_low"] <= board["mean"]).all() and (board["mean"] <= board["ci_high"]).all()
    assert (board["wall_s_per_run"] > 0).all()
    pairs = first["results"].pairwise
    assert len(pairs) == 3 and set(pairs["units"]) == {2} and "p_holm" in pairs
    units = pd.read_csv(first["paths"]["csv"])
    assert len(units) == 6 and set(units["batch"].str.len()) == {15}

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(train_module, "train", refuse)
    Path(first["paths"]["markdown"]).unlink()
    second = run(StudyOptions(**tiny_study))
    assert [o.status for o in second["outcomes"]] == ["existing"] * 6
    assert [o.run_id for o in second["outcomes"]] == [o.run_id for o in first["outcomes"]]
    assert Path(second["paths"]["markdown"]).exists()
    client = mlflow.MlflowClient(f"sqlite:///{Path(tiny_study['output_dir']) / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([experiment.experiment_id], "tags.study = 'tiny'")) == 6
    one_more = run(StudyOptions(**tiny_study, seeds=["0", "1", "2"], systems=["svm"], report_only=True))
    assert [o.status for o in one_more["outcomes"]] == ["existing", "existing", "missing"]
    assert "svm seed 2: missing" in Path(one_more["paths"]["markdown"]).read_text()
