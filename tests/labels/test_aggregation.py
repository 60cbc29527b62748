"""Annotation aggregation and agreement against constructed cases and published examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from statsmodels.stats import inter_rater

from emoexp.labels import aggregation as ag

CLASSES = ("anger", "happiness", "neutral", "sadness")


def test_long_annotations_skips_missing_keeps_items_and_uses_annotator_ids():
    frame = ag.long_annotations([["a", None, "b"], None, ["c"]], annotators=[["x", "y", "z"], None, ["y"]])
    assert frame.to_dict("list") == {
        "item": [0, 0, 1, 2],
        "annotator": ["x", "z", None, "y"],
        "label": ["a", "b", None, "c"],
    }
    with pytest.raises(ValueError, match="2 labels but 1 annotator ids"):
        ag.long_annotations([["a", "b"]], annotators=[["x"]])


def test_majority_vote_on_constructed_cases():
    annotations = [
        ["anger", "anger", "sadness"],  # clear majority
        ["sadness", "neutral"],  # tie: sadness vs neutral
        [],  # nothing to vote on
        np.array(["happiness"]),  # a single annotator (arrays, as read back from parquet)
        ["neutral", "neutral", "sadness", "sadness", "anger"],  # tie of two classes
    ]
    first = ag.majority_vote(annotations, CLASSES, tie_break="first")
    assert list(first) == ["anger", "neutral", None, "happiness", "neutral"]
    # Over all labels sadness (4) is more frequent than neutral (3): the prior tie-break picks it.
    assert list(ag.majority_vote(annotations, CLASSES, tie_break="prior")) == [
        "anger",
        "sadness",
        None,
        "happiness",
        "sadness",
    ]
    assert list(ag.majority_vote(annotations, CLASSES, tie_break="none")) == [
        "anger",
        None,
        None,
        "happiness",
        None,
    ]
    drawn = {
        tuple(ag.majority_vote(annotations, CLASSES, tie_break="random", seed=s)[[1, 4]]) for s in range(30)
    }
    assert (
        drawn <= {(a, b) for a in ("sadness", "neutral") for b in ("sadness", "neutral")} and len(drawn) > 1
    )
    with pytest.raises(ValueError, match=r"\['joy'\] are not among the classes"):
        ag.majority_vote([["joy"]], CLASSES)
    with pytest.raises(ValueError, match="tie_break"):
        ag.majority_vote(annotations, CLASSES, tie_break="coin")


def test_long_format_input_gives_the_same_answers_as_lists():
    annotations = [["anger", "anger", "sadness"], ["sadness", "neutral", "neutral"], ["happiness"]]
    long = ag.long_annotations(annotations)
    assert list(ag.majority_vote(long, CLASSES)) == list(ag.majority_vote(annotations, CLASSES))
    named = long.assign(item=long["item"].map({0: "u1", 1: "u2", 2: "u3"}))
    np.testing.assert_allclose(ag.soft_labels(named, CLASSES), ag.soft_labels(annotations, CLASSES))


def test_soft_labels_are_distributions():
    annotations = [["anger", "anger", "sadness"], None, ["neutral"], ["happiness", "sadness"]]
    soft = ag.soft_labels(annotations, CLASSES)
    assert soft.shape == (4, 4)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)
    np.testing.assert_allclose(soft[0], [2 / 3, 0, 0, 1 / 3])
    np.testing.assert_allclose(soft[1], 0.25)  # no annotations: uniform


def _synthetic_crowd(n_items: int = 600, seed: int = 0):
    """3 reliable annotators (65% correct, errors uniform), 2 adversarial ones that always answer
    the next class, and 20% of all labels missing: majority vote is misled, Dawid-Skene is not."""
    rng = np.random.default_rng(seed)
    n_classes = len(CLASSES)
    truth = rng.integers(0, n_classes, n_items)
    reliable = np.full((n_classes, n_classes), 0.35 / (n_classes - 1))
    np.fill_diagonal(reliable, 0.65)
    adversarial = np.roll(np.eye(n_classes), 1, axis=1)
    confusions = {"r1": reliable, "r2": reliable, "r3": reliable, "adv1": adversarial, "adv2": adversarial}
    annotations, annotators = [], []
    for true_class in truth:
        labels, who = [], []
        for name, confusion in confusions.items():
            if rng.random() < 0.2:
                continue
            labels.append(CLASSES[rng.choice(n_classes, p=confusion[true_class])])
            who.append(name)
        annotations.append(labels)
        annotators.append(who)
    return np.asarray(CLASSES, dtype=object)[truth], annotations, annotators, confusions


def test_dawid_skene_recovers_annotator_confusions_and_beats_majority_vote():
    truth, annotations, annotators, confusions = _synthetic_crowd()
    long = ag.long_annotations(annotations, annotators)
    assert long.groupby("item").size().nunique() > 1  # varying numbers of annotators per item
    posteriors, estimated, priors = ag.dawid_skene(long, CLASSES)
    assert posteriors.shape == (len(truth), len(CLASSES))
    np.testing.assert_allclose(posteriors.sum(axis=1), 1.0)
    assert set(estimated) == set(confusions)
    for name, confusion in confusions.items():
        # What the annotator actually did on these items (true class -> given label frequencies).
        given = long[long["annotator"] == name]
        empirical = pd.crosstab(
            pd.Categorical(truth[given["item"].to_numpy()], CLASSES),
            pd.Categorical(given["label"], CLASSES),
            normalize="index",
            dropna=False,
        ).to_numpy()
        np.testing.assert_allclose(estimated[name], empirical, atol=0.02, err_msg=name)
        np.testing.assert_allclose(estimated[name], confusion, atol=0.15, err_msg=name)
    np.testing.assert_allclose(priors, np.bincount(pd.factorize(truth, sort=True)[0]) / len(truth), atol=0.02)
    ds_accuracy = (np.asarray(CLASSES, dtype=object)[posteriors.argmax(axis=1)] == truth).mean()
    mv_accuracy = (ag.majority_vote(long, CLASSES, tie_break="random") == truth).mean()
    assert ds_accuracy > 0.97
    assert ds_accuracy > mv_accuracy + 0.3


def test_dawid_skene_gives_unannotated_items_the_priors():
    annotations = [["anger", "anger"], ["sadness", "sadness"], ["anger", "anger"], None]
    posteriors, _, priors = ag.dawid_skene(annotations, CLASSES)
    np.testing.assert_allclose(posteriors[3], priors)
    assert posteriors[0].argmax() == 0 and posteriors[1].argmax() == 3
    with pytest.raises(ValueError, match="max_iter"):
        ag.dawid_skene(annotations, CLASSES, max_iter=0)


def test_fleiss_kappa_matches_the_wikipedia_example():
    # Fleiss' kappa article (Wikipedia): 10 subjects, 14 raters, 5 categories -> kappa = 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    classes = ["1", "2", "3", "4", "5"]
    annotations = [[c for c, n in zip(classes, row, strict=True) for _ in range(n)] for row in table]
    assert ag.fleiss_kappa(annotations, classes) == pytest.approx(0.210, abs=5e-4)
    assert ag.fleiss_kappa(annotations) == pytest.approx(inter_rater.fleiss_kappa(table))
    assert ag.fleiss_kappa([["a", "a"], ["b", "b"], ["a", "a"]]) == pytest.approx(1.0)


def test_fleiss_kappa_leaves_out_items_with_another_number_of_ratings():
    rectangular = [["a", "a", "b"], ["b", "b", "b"], ["a", "b", "a"]]
    assert ag.fleiss_kappa([*rectangular, ["a", "b"], ["a"]]) == pytest.approx(ag.fleiss_kappa(rectangular))
    assert np.isnan(ag.fleiss_kappa([["a"], ["b"]]))


def _units(coders: dict[str, list]) -> tuple[list[list], list[list[str]]]:
    n_units = len(next(iter(coders.values())))
    return [[coders[c][u] for c in coders] for u in range(n_units)], [list(coders)] * n_units


def test_krippendorff_alpha_matches_published_examples():
    nan = None
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
    # 12 units, missing values; nominal alpha = 0.743.
    units, coders = _units(
        {
            "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            "C": [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        }
    )
    assert ag.krippendorff_alpha(ag.long_annotations(units, coders)) == pytest.approx(0.743, abs=5e-4)
    # The example in the `krippendorff` package's test suite (Wikipedia's data): nominal 0.691.
    units, coders = _units(
        {
            "1": [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
            "2": [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
            "3": [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
        }
    )
    assert ag.krippendorff_alpha(ag.long_annotations(units, coders)) == pytest.approx(0.691358, abs=1e-6)
    assert ag.krippendorff_alpha([["a", "a"], ["b", "b", "b"]]) == pytest.approx(1.0)
    assert np.isnan(ag.krippendorff_alpha([["a"], ["b"]]))  # nothing pairable


def test_agreement_of_a_manifest():
    manifest = pd.DataFrame({"annotations": [["a", "a", "b"], ["b", "b", "b"], ["a", "b", "a"], np.nan]})
    values = ag.agreement(manifest)
    assert set(values) == {"fleiss_kappa", "krippendorff_alpha"}
    assert -1 <= values["fleiss_kappa"] <= 1 and -1 <= values["krippendorff_alpha"] <= 1
    assert ag.agreement(pd.DataFrame({"annotations": [np.nan, np.nan]})) == {}


def _manifest() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["s0", "s1", "s2", "s3"],
            "corpus": "toy",
            "emotion": ["anger", "anger", "neutral", "sadness"],
            "annotations": [
                ["sadness", "sadness", "anger"],
                ["anger", "anger"],
                np.nan,
                ["neutral", "sadness"],
            ],
        }
    )


def test_aggregators_recompute_emotion_and_keep_unannotated_labels():
    manifest = _manifest()
    assert ag.CorpusLabels()(manifest) is manifest
    majority = ag.MajorityVote(tie_break="none")(manifest)
    assert list(majority["emotion"]) == ["sadness", "anger", "neutral", "sadness"]
    assert list(manifest["emotion"]) == ["anger", "anger", "neutral", "sadness"]  # input untouched
    aggregator = ag.DawidSkene()
    dawid_skene = aggregator(manifest)
    assert list(dawid_skene["emotion"][:3]) == ["sadness", "anger", "neutral"]
    assert aggregator.result is not None and aggregator.result.posteriors.shape[0] == 4
    with pytest.raises(ValueError, match=r"aggregation=majority .* does not provide .*use aggregation=none"):
        ag.MajorityVote()(manifest.assign(annotations=np.nan))


@pytest.mark.parametrize("choice", ["none", "majority", "dawid_skene"])
def test_aggregation_configs_compose_and_instantiate(compose, choice):
    from hydra.utils import instantiate

    cfg = compose([f"aggregation={choice}"])
    aggregator = instantiate(OmegaConf.to_container(cfg.aggregation, resolve=True))
    assert isinstance(aggregator, ag.Aggregation) and aggregator.name == choice
    out = aggregator(_manifest())
    assert out["emotion"].notna().all()
