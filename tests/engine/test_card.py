"""The protocol card on real runs: its fields, its sizes, a hash shared by seeds only (docs/protocols.md)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from emoexp.engine.card import (
    CARD_ARTIFACT,
    CARD_VERSION,
    GROUPING_TAG,
    HASH_TAG,
    KIND_TAG,
    VERSION_TAG,
    card_differences,
    protocol_card,
    protocol_hash,
)
from emoexp.engine.preflight import prepare_run
from emoexp.train import train

SVM = ["model=svm"]


def _trained_card(compose, tracking_uri: str, *overrides: str) -> tuple[dict, mlflow.entities.Run]:
    """Train one run and read back its card and its MLflow record."""
    train(compose([*SVM, *overrides]))
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"])
    run = next(r for r in runs if "fold" not in r.data.tags)  # the newest top-level run
    card = json.loads(Path(client.download_artifacts(run.info.run_id, CARD_ARTIFACT)).read_text())
    return card, run


def _check_sizes(card: dict, samples: int) -> None:
    """Every fold's split sizes add up to the samples, and its class sizes to its split sizes."""
    for fold in card["instance"]["folds"]:
        assert sum(fold["sizes"].values()) == samples
        for part, size in fold["sizes"].items():
            assert sum(fold["class_sizes"][part].values()) == size


def test_card_of_a_holdout_run_has_its_fields_and_a_hash_shared_by_seeds(compose, tracking_uri):
    first, run = _trained_card(compose, tracking_uri, "protocol=holdout", "seed=1")
    second, _ = _trained_card(compose, tracking_uri, "protocol=holdout", "seed=2")
    speakers, _ = _trained_card(compose, tracking_uri, "protocol=speaker_holdout", "seed=1")

    assert first["card_version"] == CARD_VERSION
    assert set(first["definition"]) == {"corpus", "labels", "split"}
    assert first["definition"]["corpus"]["name"] == "embedded_audio"
    labels = first["definition"]["labels"]
    assert labels["classes"][:2] == ["neutral", "anger"] and labels["mapping"]["calm"] == "neutral"
    assert labels["derived_targets"] == []
    split = first["definition"]["split"]
    assert (split["kind"], split["target"]) == ("holdout", "emoexp.data.splits.StratifiedHoldout")
    assert split["grouping"] is None and split["speaker_independent_asserted"] is False
    assert split["folds"] == 1 and split["parameters"] == {"test_size": 0.15, "val_size": 0.15}
    samples = int(run.data.metrics["data/samples"])
    assert first["corpus"]["samples"] == samples == 84
    _check_sizes(first, samples)
    [fold] = first["instance"]["folds"]
    assert fold["fingerprint"] == run.data.tags["data_fingerprint"]
    assert fold["speakers_shared"] > 0  # a random split puts speakers on both sides
    assert run.data.tags[HASH_TAG] == first["protocol_hash"] == protocol_hash(first["definition"])
    assert (run.data.tags[KIND_TAG], run.data.tags[GROUPING_TAG]) == ("holdout", "none")
    assert run.data.tags[VERSION_TAG] == str(CARD_VERSION)

    # Seeds of one protocol compare: same hash, another split instance.
    assert second["protocol_hash"] == first["protocol_hash"]
    assert second["instance"]["folds"][0]["fingerprint"] != fold["fingerprint"]
    assert (first["instance"]["seed"], second["instance"]["seed"]) == (1, 2)
    # Another split kind is another protocol.
    assert speakers["protocol_hash"] != first["protocol_hash"]
    assert speakers["definition"]["split"]["grouping"] == "speaker"
    assert speakers["definition"]["split"]["speaker_independent_asserted"] is True
    assert speakers["instance"]["folds"][0]["speakers_shared"] == 0
    changed = {name for name, _, _ in card_differences(first, speakers)}
    assert {"split.kind", "split.grouping", "split.speaker_independent_asserted"} <= changed


def test_another_label_set_is_another_protocol(compose):
    ekman7 = protocol_card(prepare_run(compose([*SVM, "protocol=holdout"])))
    ekman6 = protocol_card(prepare_run(compose([*SVM, "protocol=holdout", "label_scheme=ekman6"])))
    assert ekman6["protocol_hash"] != ekman7["protocol_hash"]
    changed = {name for name, _, _ in card_differences(ekman7, ekman6)}
    assert {"labels.classes", "labels.mapping"} <= changed
    assert "split.kind" not in changed
    # A multi-task scheme keeps its mapping in its categorical part; the card still shows it.
    both = protocol_card(prepare_run(compose(["model=cnn", "protocol=holdout", "label_scheme=both"])))
    assert both["definition"]["labels"]["mapping"] == ekman7["definition"]["labels"]["mapping"]
    assert both["definition"]["labels"]["dimensions"] == ["valence", "arousal"]
    assert both["protocol_hash"] != ekman7["protocol_hash"]


def test_targets_derived_from_the_category_are_on_the_card(compose, tmp_path):
    rows = ["text,label"] + [
        f"sample {i} says {e},{e}" for i in range(10) for e in ("anger", "joy", "sadness")
    ]
    table = tmp_path / "texts.csv"
    table.write_text("\n".join(rows) + "\n")
    corpus = ["data=text_table", f"data.root={table}", "modality=text", "model=svm", "protocol=holdout"]
    derived = protocol_card(prepare_run(compose([*corpus, "label_scheme=valence_arousal"])))
    assert derived["definition"]["labels"]["derived_targets"] == ["arousal", "valence"]
    assert derived["definition"]["labels"]["dimensions"] == ["valence", "arousal"]
    categories = protocol_card(prepare_run(compose([*corpus, "label_scheme=native"])))
    assert categories["definition"]["labels"]["derived_targets"] == []


def test_cross_validation_card_lists_every_fold_and_folds_carry_the_hash(compose, tracking_uri):
    card, run = _trained_card(compose, tracking_uri, "protocol=speaker_kfold")
    split = card["definition"]["split"]
    assert split["folds"] == 4 == len(card["instance"]["folds"]) and split["grouping"] == "speaker"
    _check_sizes(card, card["corpus"]["samples"])
    assert all(fold["speakers_shared"] == 0 for fold in card["instance"]["folds"])
    client = mlflow.MlflowClient(tracking_uri)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert len(children) == 4
    assert {c.data.tags[HASH_TAG] for c in children} == {card["protocol_hash"]}
    fingerprints = {c.data.tags["fold"]: c.data.tags["data_fingerprint"] for c in children}
    assert fingerprints == {f["name"]: f["fingerprint"] for f in card["instance"]["folds"]}


@pytest.mark.parametrize("field", ["corpus", "labels", "split"])
def test_the_hash_covers_each_definition_section(field):
    definition = {"corpus": {"name": "a"}, "labels": {"classes": ["x"]}, "split": {"kind": "holdout"}}
    changed = {**definition, field: {**definition[field], "extra": 1}}
    assert protocol_hash(changed) != protocol_hash(definition)
    assert protocol_hash(dict(reversed(definition.items()))) == protocol_hash(definition)
