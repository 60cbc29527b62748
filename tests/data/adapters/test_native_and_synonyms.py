"""Emotion synonyms read by every adapter and scheme, and ``label_scheme=native`` on every corpus.

Corpora are real files in each corpus's layout (``conftest.py``); the configs are the shipped
ones, composed with Hydra, so ``conf/label_scheme/native.yaml`` reads ``data.native_classes``
exactly as a run does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR, instantiate
from emoexp.data import schema
from emoexp.data.adapters import (
    CorpusError,
    cremad,
    emodb,
    fer2013,
    iemocap,
    load_hf_dataset,
    load_iemocap,
    load_image_folder,
    load_text_table,
    ravdess,
)
from emoexp.labels.emotions import CIRCUMPLEX, EKMAN7, SYNONYMS, canonical_emotion
from emoexp.labels.schemes import CategoricalScheme

SYNONYM_LABELS = ["joy", "angry", "sad", "scared", "disgusted", "surprised", "neutral", "Happy ", "FEARFUL"]


def _write_synonym_csv(path: Path) -> Path:
    texts = [f"sentence number {i}" for i in range(len(SYNONYM_LABELS))]
    pd.DataFrame({"text": texts, "label": SYNONYM_LABELS}).to_csv(path, index=False)
    return path


def _prepared(cfg) -> tuple[pd.DataFrame, CategoricalScheme]:
    """The corpus of a composed config, prepared by its label scheme (as the run's samples step does)."""
    manifest = schema.validate_manifest(instantiate(cfg.data.corpus), cfg.data.name)
    scheme = instantiate(cfg.label_scheme)
    return scheme.prepare(manifest), scheme


def test_synonym_table_covers_every_canonical_emotion():
    assert set(SYNONYMS.values()) == set(CIRCUMPLEX)
    assert {canonical_emotion(x) for x in ("joy", "Happy", " happiness ")} == {"happiness"}
    assert (
        canonical_emotion("fearful") == canonical_emotion("scared") == canonical_emotion("afraid") == "fear"
    )
    # Related but distinct emotions stay what they are: mapping them is a config decision.
    assert canonical_emotion("love") == "love" and canonical_emotion("no_agreement") == "no_agreement"


def test_csv_with_synonym_labels_prepares_into_ekman7(compose, tmp_path):
    path = _write_synonym_csv(tmp_path / "posts.csv")
    cfg = compose(["data=text_table", f"data.root={path}", "modality=text", "label_scheme=ekman7"])
    prepared, scheme = _prepared(cfg)
    assert prepared[schema.EMOTION].tolist() == [
        "happiness",
        "anger",
        "sadness",
        "fear",
        "disgust",
        "surprise",
        "neutral",
        "happiness",
        "fear",
    ]
    assert set(prepared[schema.EMOTION]) <= set(scheme.class_names) == set(EKMAN7)
    assert scheme.targets(prepared)["label"].tolist() == [
        scheme.class_names.index(e) for e in prepared[schema.EMOTION]
    ]


def test_scheme_reads_synonyms_in_labels_mapping_and_classes():
    scheme = CategoricalScheme(
        name="spelled", classes=["neutral", "joy", "sad"], mapping={"Excited": "happy", "calm": "neutral"}
    )
    assert scheme.mapping == {"Excited": "joy", "calm": "neutral"}
    manifest = pd.DataFrame(
        {
            schema.ID: list("abcdef"),
            schema.EMOTION: ["happiness", "Sadness", "excited", "calmness", "neutral", "joy"],
            schema.CORPUS: "x",
            schema.ANNOTATIONS: None,
        }
    )
    assert scheme.prepare(manifest)[schema.EMOTION].tolist() == [
        "joy",
        "sad",
        "joy",
        "neutral",
        "neutral",
        "joy",
    ]


def test_text_adapters_accept_synonyms(tmp_path):
    manifest = load_text_table(_write_synonym_csv(tmp_path / "posts.csv"), mapping={"love": "joy"})
    assert set(manifest[schema.EMOTION]) == set(EKMAN7)
    jsonl = tmp_path / "love.jsonl"
    jsonl.write_text('{"text": "adore it", "label": "love"}\n{"text": "meh", "label": "Neutral"}\n')
    assert load_text_table(jsonl, mapping={"love": "joy"})[schema.EMOTION].tolist() == [
        "happiness",
        "neutral",
    ]
    with pytest.raises(CorpusError, match=r"love.*or a synonym of one"):
        load_text_table(jsonl)


def test_hf_dataset_accepts_synonyms(tmp_path):
    import datasets

    labels = ["joy", "angry", "sad", "surprised"]
    datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(4)], "label": labels}).save_to_disk(
        str(tmp_path / "saved")
    )
    manifest = load_hf_dataset(tmp_path / "saved")
    assert manifest[schema.EMOTION].tolist() == ["happiness", "anger", "sadness", "surprise"]


def test_image_folder_accepts_synonym_folder_names(make_image_folder):
    root = make_image_folder(
        ("Happy", "angry", "scared", "Disgusted", "SAD", "surprised", "neutral"), per_class=1
    )
    manifest = load_image_folder(root)
    assert set(manifest[schema.EMOTION]) == set(EKMAN7)
    assert load_image_folder(root, mapping={"Happy": "joy", "scared": None})[schema.EMOTION].nunique() == 6


def test_iemocap_annotator_votes_accept_synonyms(make_iemocap):
    root = make_iemocap(sessions=(1,), codes=("hap", "ang"))
    evaluation = next(root.rglob("EmoEvaluation/*.txt"))
    evaluation.write_text(
        evaluation.read_text().replace("Happiness;", "Happy; Joy;").replace("Anger;", "Angry;")
    )
    votes = load_iemocap(root, with_text=False).set_index(schema.EMOTION)[schema.ANNOTATIONS]
    assert votes["happiness"] == ["happiness", "happiness"] and votes["anger"] == ["anger"]


# ------------------------------------------------------------------------------- native schemes

# Corpus config -> (modality, the classes its adapter gives), read from the adapters themselves.
FIXED = {
    "ravdess": ("audio", list(ravdess.EMOTIONS.values())),
    "cremad": ("audio", list(cremad.EMOTIONS.values())),
    "emodb": ("audio", list(emodb.EMOTIONS.values())),
    "iemocap": ("audio", [e for e in iemocap.EMOTIONS.values() if e != "no_agreement"]),
    "fer2013": ("visual", list(fer2013.EMOTIONS)),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_native_classes_of_each_config_are_its_adapters(name):
    declared = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml").native_classes
    assert list(declared) == FIXED[name][1]


def test_every_data_config_declares_native_classes():
    for path in sorted((CONF_DIR / "data").glob("*.yaml")):
        node = OmegaConf.load(path)
        assert "native_classes" in node, path.name
        declared = node.native_classes
        assert declared is None or set(declared) <= set(CIRCUMPLEX) | {"other"}, path.name


def _native(compose, name: str, root: Path, modality: str, *extra: str):
    return compose(
        [f"data={name}", f"data.root={root}", f"modality={modality}", "label_scheme=native", *extra]
    )


@pytest.mark.parametrize("name", sorted(FIXED))
def test_native_scheme_on_each_corpus_keeps_its_own_classes(
    compose, name, make_ravdess, make_cremad, make_emodb, make_iemocap, make_fer2013
):
    makers = {
        "ravdess": make_ravdess,
        "cremad": make_cremad,
        "emodb": make_emodb,
        "iemocap": make_iemocap,
        "fer2013": make_fer2013,
    }
    modality, classes = FIXED[name]
    prepared, scheme = _prepared(_native(compose, name, makers[name](), modality))
    assert list(scheme.class_names) == classes and scheme.num_outputs == len(classes)
    assert set(prepared[schema.EMOTION]) == set(classes)
    assert scheme.monitor == "val/uar" and "uar" in scheme.metric_names
    if name == "ravdess":
        assert len(classes) == 8 and (prepared[schema.EMOTION] == "calm").sum() == 8
    if name == "iemocap":
        assert "no_agreement" not in set(prepared[schema.EMOTION])  # left out by data.native_mapping


def test_native_scheme_on_text_tables_takes_the_labels_present(compose, tmp_path):
    path = _write_synonym_csv(tmp_path / "posts.csv")
    prepared, scheme = _prepared(_native(compose, "text_table", path, "text"))
    assert list(scheme.class_names) == sorted(EKMAN7)
    assert set(prepared[schema.EMOTION]) == set(EKMAN7)
    # A served model restores the classes it took from the corpus.
    fresh = instantiate(_native(compose, "text_table", path, "text").label_scheme)
    fresh.restore_state(scheme.state())
    assert fresh.class_names == scheme.class_names


def test_native_scheme_on_hf_dataset_and_image_folder(compose, tmp_path, make_image_folder):
    import datasets

    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["joy", "love", "sad"]}).save_to_disk(
        str(tmp_path / "saved")
    )
    cfg = _native(compose, "hf_dataset", tmp_path / "saved", "text", "+data.corpus.mapping.love=happiness")
    assert list(_prepared(cfg)[1].class_names) == ["happiness", "sadness"]
    root = make_image_folder(("happy", "calm", "contempt"), per_class=1)
    assert list(_prepared(_native(compose, "image_folder", root, "visual"))[1].class_names) == [
        "calm",
        "contempt",
        "happiness",
    ]


def test_native_scheme_on_the_embedded_corpus(compose):
    cfg = compose(["data=embedded_text", "modality=text", "label_scheme=native"])
    prepared, scheme = _prepared(cfg)
    assert list(scheme.class_names) == list(EKMAN7) and set(prepared[schema.EMOTION]) == set(EKMAN7)
