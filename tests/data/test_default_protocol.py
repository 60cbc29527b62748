"""Speaker-independent by default where the corpus has speakers; the random split one override away."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from emoexp.data.splits import SpeakerHoldout, SpeakerIndependentWhereKnown
from emoexp.engine.card import CARD_ARTIFACT, HASH_TAG, KIND_TAG
from emoexp.engine.preflight import prepare_run
from emoexp.labels.reporting import TEST_INTERVALS
from emoexp.train import train


def _manifest(n: int, speakers: int | None) -> pd.DataFrame:
    ids = [f"u{i}" for i in range(n)]
    return pd.DataFrame(
        {"id": ids, "speaker": ids if speakers is None else [f"s{i % speakers}" for i in range(n)]}
    )


@pytest.mark.parametrize(
    ("speakers", "kind", "reason"),
    [(12, "speaker_holdout", "12 speakers"), (None, "holdout", "no speaker ids"), (3, "holdout", "fewer")],
    ids=["speakers", "no-speakers", "too-few-speakers"],
)
def test_auto_chooses_by_the_speakers_the_corpus_has(speakers, kind, reason):
    chosen, why = SpeakerIndependentWhereKnown().resolve(_manifest(120, speakers))
    assert chosen["name"] == kind and reason in why
    assert chosen["_target_"].endswith("SpeakerHoldout" if kind == "speaker_holdout" else "StratifiedHoldout")


@pytest.mark.parametrize("modality", ["audio", "text", "visual", "multimodal"])
def test_every_embedded_corpus_is_split_by_speaker_by_default(compose, modality):
    cfg = compose([f"modality={modality}", "leakage=off"])
    assert cfg.protocol.name == "auto"
    plan = prepare_run(cfg)
    assert plan.cfg.protocol.name == "speaker_holdout" and "speaker_holdout" in plan.cfg.run_name
    fold = plan.folds[0]
    speakers = {part: set(plan.manifest.loc[fold.mask(part), "speaker"]) for part in ("train", "val", "test")}
    assert not (speakers["train"] & speakers["test"]) and not (speakers["val"] & speakers["test"])
    assert not (speakers["train"] & speakers["val"])


def test_a_corpus_without_speakers_gets_the_random_split(compose, tmp_path):
    rng = np.random.default_rng(0)
    emotions = ["anger", "happiness", "sadness", "neutral"]
    rows = [
        {"text": f"sample {i} feels {emotions[i % 4]} {rng.integers(1000)}", "label": emotions[i % 4]}
        for i in range(80)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "texts.csv", index=False)
    cfg = compose(
        [
            "modality=text",
            "data=text_table",
            f"data.root={tmp_path / 'texts.csv'}",
            "label_scheme=native",
            "leakage=off",
        ]
    )
    plan = prepare_run(cfg)
    assert plan.cfg.protocol.name == "holdout"


def _last_run(tracking_uri: str):
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, order_by=["attributes.start_time DESC"])[0]


def test_a_default_run_records_the_protocol_it_used_and_speaker_resampled_intervals(compose, tracking_uri):
    train(compose(["model=svm"]))
    client, run = _last_run(tracking_uri)
    assert (
        run.data.tags[KIND_TAG] == "speaker_holdout" and run.data.params["protocol.name"] == "speaker_holdout"
    )
    card = json.loads(Path(client.download_artifacts(run.info.run_id, CARD_ARTIFACT)).read_text())
    assert card["definition"]["split"]["speaker_independent_asserted"] is True
    assert card["instance"]["folds"][0]["speakers_shared"] == 0
    metrics = run.data.metrics
    assert metrics["test/uar_ci_low"] <= metrics["test/uar"] <= metrics["test/uar_ci_high"]
    table = pd.read_csv(client.download_artifacts(run.info.run_id, TEST_INTERVALS)).set_index("metric")
    assert table.loc["uar", "resampled"] == "speakers" and table.loc["uar", "n_clusters"] >= 2

    train(compose(["model=svm", "protocol=speaker_holdout"]))
    _, explicit = _last_run(tracking_uri)
    assert explicit.data.tags[HASH_TAG] == run.data.tags[HASH_TAG]

    train(compose(["model=svm", "protocol=holdout"]))
    _, random = _last_run(tracking_uri)
    assert random.data.tags[KIND_TAG] == "holdout" and random.data.tags[HASH_TAG] != run.data.tags[HASH_TAG]


def test_seeds_draw_other_speakers_even_when_every_speaker_has_its_own_class_balance():
    rng = np.random.default_rng(0)
    rows = []
    for speaker in range(12):
        weights = rng.dirichlet(np.ones(4))  # a class balance of its own
        rows += [{"speaker": f"s{speaker}", "label": rng.choice(4, p=weights)} for _ in range(40)]
    manifest = pd.DataFrame(rows)
    protocol = SpeakerHoldout(val_size=0.17, test_size=0.17)
    test_sets = set()
    for seed in range(10):
        fold = next(protocol.folds(manifest, manifest["label"].to_numpy(), seed))
        test_sets.add(frozenset(manifest.loc[fold.mask("test"), "speaker"]))
    assert len(test_sets) >= 3  # one set for every seed before the fix
