"""CSV / TSV / JSONL and local Hugging Face dataset adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR
from emoexp.data import schema
from emoexp.data.adapters import CorpusError, load_hf_dataset, load_text_table, skipped_report

GOEMOTIONS = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "goemotions_tsv.yaml"))["corpus"][
    "label_names"
]


def _corpus_node(name: str, root: Path) -> dict:
    """The ``corpus`` node of a shipped data config, with ``data.root`` filled in."""
    data = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
    data.root = str(root)
    return OmegaConf.to_container(OmegaConf.create({"data": data}), resolve=True)["data"]["corpus"]


def _write_csv(path: Path) -> Path:
    pd.DataFrame(
        {
            "utterance": [
                "I love this",
                "so angry now",
                "meh",
                "what a surprise",
                "I am scared",
                "this is sad",
            ],
            "emo": ["joy", "anger", "neutral", "surprise", "fear", "sadness"],
            "author": ["a", "b", "a", "c", "b", "c"],
            "part": ["train", "train", "dev", "test", "train", "test"],
            "dialect": ["us", "uk", "us", "us", "uk", "uk"],
        }
    ).to_csv(path, index=False)
    return path


def test_csv_columns_mapping_speakers_splits_and_groups(tmp_path):
    path = _write_csv(tmp_path / "corpus.csv")
    manifest = load_text_table(
        path,
        text_column="utterance",
        label_column="emo",
        speaker_column="author",
        split_column="part",
        group_columns=["dialect"],
        mapping={"joy": "happiness"},
    )
    assert len(manifest) == 6
    assert manifest[schema.EMOTION].tolist() == [
        "happiness",
        "anger",
        "neutral",
        "surprise",
        "fear",
        "sadness",
    ]
    assert manifest[schema.SPEAKER].tolist() == ["a", "b", "a", "c", "b", "c"]
    assert manifest[schema.OFFICIAL_SPLIT].tolist() == ["train", "train", "val", "test", "train", "test"]
    assert manifest["group_dialect"].tolist() == ["us", "uk", "us", "us", "uk", "uk"]
    assert manifest[schema.ID].tolist() == [f"text_table-{i}" for i in range(6)]
    assert manifest[schema.LABELS].isna().all()


def test_folder_of_split_files_and_integer_labels(tmp_path):
    root = tmp_path / "emotion"
    root.mkdir()
    names = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    for split, rows in (("train", [("i feel down", 0), ("so happy", 1)]), ("val", [("adore you", 2)])):
        (root / f"{split}.txt").write_text("".join(f"{t};{y}\n" for t, y in rows))
    (root / "test.txt").write_text("furious;3\nterrified;4\n")
    manifest = load_text_table(
        root,
        label_names=names,
        mapping={"joy": "happiness", "love": "happiness"},
        read_kwargs={"sep": ";", "header": None, "names": ["text", "label"]},
    )
    assert manifest[schema.EMOTION].tolist() == ["anger", "fear", "sadness", "happiness", "happiness"]
    assert manifest[schema.OFFICIAL_SPLIT].tolist() == ["test", "test", "train", "train", "val"]
    assert manifest[schema.ID].tolist() == ["test-0", "test-1", "train-0", "train-1", "val-0"]


def test_jsonl_multilabel_keeps_native_labels_and_derives_emotion(tmp_path):
    path = tmp_path / "go.jsonl"
    records = [
        {"text": "thanks, love it", "labels": ["gratitude", "love"]},
        {"text": "ugh and yay", "labels": ["annoyance", "joy"]},
        {"text": "ok", "labels": ["neutral"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    node = _corpus_node("goemotions", path)
    manifest = load_text_table(
        path, label_column="labels", multilabel=True, label_names=GOEMOTIONS, mapping=node["mapping"]
    )
    assert manifest[schema.LABELS].tolist() == [["gratitude", "love"], ["annoyance", "joy"], ["neutral"]]
    assert manifest[schema.EMOTION].tolist()[0] == "happiness" and pd.isna(manifest[schema.EMOTION][1])
    assert manifest[schema.EMOTION][2] == "neutral"


def test_goemotions_tsv_config_reads_the_repository_layout(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.tsv").write_text('My favourite "food"\t27\teebbqej\nThank you!!\t15,18\ted00q6i\n')
    (root / "dev.tsv").write_text("WHY the hell\t2,3\teezlygj\n")
    (root / "test.tsv").write_text("So sad\t25\tabc\n")
    manifest = instantiate(_corpus_node("goemotions_tsv", root))
    by_id = manifest.set_index(schema.ID)
    assert by_id.loc["ed00q6i", schema.LABELS] == ["gratitude", "love"]
    assert by_id.loc["eezlygj", schema.LABELS] == ["anger", "annoyance"]
    assert by_id.loc["eebbqej", schema.TEXT] == 'My favourite "food"'
    assert by_id[schema.EMOTION].to_dict() == {
        "eezlygj": "anger",
        "abc": "sadness",
        "eebbqej": "neutral",
        "ed00q6i": "happiness",
    }
    assert by_id[schema.OFFICIAL_SPLIT].to_dict() == {
        "eezlygj": "val",
        "abc": "test",
        "eebbqej": "train",
        "ed00q6i": "train",
    }


BAD_ROWS = [
    (
        "csv",
        b"text,label\nfine,anger\n,anger\n",
        "line 3 (file line, header counted): has an empty or missing text",
    ),
    (
        "csv",
        b"text,label\nfine,anger\n   ,anger\n",
        "line 3 (file line, header counted): has an empty or missing text",
    ),
    ("csv", b"text,label\nfine,anger\nnot fine,grumpy\n", "label(s) ['grumpy'] are outside"),
    ("csv", b"text,label\nfine,anger\ncaf\xe9,anger\n", "line 3 (file line): is not valid utf-8"),
    (
        "jsonl",
        b'{"text": "fine", "label": "anger"}\n{"text": "x", "label": "mood"}\n',
        "line 2 (file line): label(s) ['mood']",
    ),
    (
        "jsonl",
        b'{"text": "fine", "label": "anger"}\n{"text": "x", "label": \n',
        "line 2 (file line): is not valid JSON",
    ),
    (
        "jsonl",
        b'{"text": "fine", "label": "anger"}\n{"text": "\xff", "label": "fear"}\n',
        "line 2 (file line): is not valid utf-8",
    ),
    (
        "jsonl",
        b'{"text": "fine", "label": "anger"}\n{"text": "", "label": "fear"}\n',
        "line 2 (file line): has an empty",
    ),
]


@pytest.mark.parametrize(("suffix", "content", "problem"), BAD_ROWS)
def test_text_bad_rows_raise_naming_the_file_or_are_skipped(tmp_path, suffix, content, problem):
    path = tmp_path / f"corpus.{suffix}"
    path.write_bytes(content)
    with pytest.raises(CorpusError) as error:
        load_text_table(path)
    assert f"{path} " in str(error.value) and problem in str(error.value)
    manifest = load_text_table(path, on_error="skip")
    assert manifest[schema.TEXT].tolist() == ["fine"]
    report = skipped_report(manifest)
    assert len(report) == 1 and report["file"].iloc[0].startswith(str(path))


def _line(path: Path, number: int) -> bytes:
    """Line ``number`` (1-based) of the file on disk, as an editor numbers it."""
    return path.read_bytes().split(b"\n")[number - 1]


def test_csv_skips_report_file_lines_after_an_undecodable_line(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_bytes(
        b"text,label\n"  # 1
        b"fine,anger\n"  # 2
        b"caf\xe9 au lait,happiness\n"  # 3: not UTF-8
        b'"two\nlines",fear\n'  # 4-5: one quoted record
        b"\n"  # 6: blank
        b",sadness\n"  # 7: empty text
        b"hmm,grumpy\n"  # 8: unknown label
        b"a,b,c\n"  # 9: too many fields
        b"last,surprise\n"  # 10
    )
    manifest = load_text_table(path, on_error="skip")
    assert manifest[schema.TEXT].tolist() == ["fine", "two\nlines", "last"]
    report = skipped_report(manifest)
    header = "(file line, header counted)"
    problems = dict(zip(report["file"], report["problem"], strict=True))
    assert len(problems) == len(report) == 4
    assert problems[f"{path} line 3 (file line)"].startswith("is not valid utf-8")
    assert problems[f"{path} line 7 {header}"].startswith("has an empty or missing text")
    assert problems[f"{path} line 8 {header}"].startswith("label(s) ['grumpy']")
    assert problems[f"{path} line 9 {header}"].startswith("has 3 fields, more than there are columns")
    # The numbers point at the offending lines of the file itself.
    assert b"\xe9" in _line(path, 3) and _line(path, 7) == b",sadness" and b"grumpy" in _line(path, 8)
    # on_error=raise names the same line as the first problem.
    with pytest.raises(CorpusError, match=r"corpus\.csv line 3 \(file line\): is not valid utf-8"):
        load_text_table(path)
    path.write_bytes(path.read_bytes().replace(b"caf\xe9", b"cafe").replace(b",sadness", b"ok,sadness"))
    # (pandas' own parser error calls this line 8: it counts the quoted two-line record once)
    with pytest.raises(CorpusError, match=r"corpus\.csv line 9 \(file line, header counted\): has more"):
        load_text_table(path)
    path.write_bytes(path.read_bytes().replace(b"a,b,c", b"abc"))
    with pytest.raises(CorpusError, match=r"corpus\.csv line 8 \(file line, header counted\): label"):
        load_text_table(path)


def test_headerless_tsv_and_jsonl_report_file_lines(tmp_path):
    tsv = tmp_path / "corpus.tsv"
    tsv.write_bytes(b"fine\tanger\n\xff\tjoy\nok\tfear\n\tsadness\n")
    options = {"header": None, "names": ["text", "label"], "quoting": 3}
    report = skipped_report(load_text_table(tsv, read_kwargs=options, on_error="skip"))
    assert report["file"].tolist() == [f"{tsv} line 2 (file line)", f"{tsv} line 4 (file line)"]
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_bytes(
        b'{"text": "a", "label": "happiness"}\n{"text": "\xff"}\n\n{"text": "b", "label": "mood"}\n'
    )
    report = skipped_report(load_text_table(jsonl, on_error="skip"))
    assert report["file"].tolist() == [f"{jsonl} line 2 (file line)", f"{jsonl} line 4 (file line)"]
    assert b"mood" in _line(jsonl, 4)


def test_csv_rows_are_named_by_position_when_read_kwargs_hide_the_lines(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text("# exported 2024\ntext,label\nfine,anger\n,joy\n")
    report = skipped_report(load_text_table(path, read_kwargs={"skiprows": 1}, on_error="skip"))
    assert report["file"].tolist() == [
        f"{path} data row 2 (counted after the header; file line unknown with these data.corpus.read_kwargs)"
    ]


def test_text_configuration_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_text_table(tmp_path / "absent.csv")
    path = _write_csv(tmp_path / "c.csv")
    with pytest.raises(CorpusError, match=r"no column\(s\) \['text', 'label'\].*utterance"):
        load_text_table(path)
    columns = {"text_column": "utterance", "label_column": "emo", "mapping": {"joy": "happiness"}}
    held_out = tmp_path / "held_out.csv"
    held_out.write_text("utterance,emo,part\nyay,joy,train\nugh,anger,heldout\n")
    with pytest.raises(
        CorpusError, match=r"line 3 \(file line, header counted\): split 'heldout' is not one of"
    ):
        load_text_table(held_out, split_column="part", **columns)
    mapped = load_text_table(held_out, split_column="part", split_names={"heldout": "test"}, **columns)
    assert mapped[schema.OFFICIAL_SPLIT].tolist() == ["train", "test"]
    assert len(load_text_table(held_out, split_column="part", split_names={"heldout": None}, **columns)) == 1
    with pytest.raises(CorpusError, match="must map onto train, val, test or null"):
        load_text_table(held_out, split_column="part", split_names={"heldout": "exam"}, **columns)
    # Declared names are read through the synonym table (joy -> happiness); a name that is no
    # spelling of an emotion needs a mapping.
    loved = tmp_path / "loved.csv"
    loved.write_text("utterance,emo\nyay,joy\nadore,love\n")
    with pytest.raises(CorpusError, match="label 'love' has no canonical emotion"):
        load_text_table(loved, text_column="utterance", label_column="emo", label_names=["joy", "love"])
    assert load_text_table(
        loved,
        text_column="utterance",
        label_column="emo",
        label_names=["joy", "love"],
        mapping={"love": None},
    )[schema.EMOTION].tolist() == ["happiness"]
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.md").write_text("x")
    with pytest.raises(CorpusError, match="without split files"):
        load_text_table(tmp_path / "folder")


# ------------------------------------------------------------------------------ HF datasets


def _save_emotion(path: Path) -> Path:
    import datasets

    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["sadness", "joy", "love", "anger", "fear", "surprise"]),
        }
    )
    parts = {
        "train": {"text": ["down today", "great day", "adore it"], "label": [0, 1, 2]},
        "validation": {"text": ["furious"], "label": [3]},
        "test": {"text": ["scary", "wow"], "label": [4, 5]},
    }
    datasets.DatasetDict(
        {k: datasets.Dataset.from_dict(v, features=features) for k, v in parts.items()}
    ).save_to_disk(str(path))
    return path


def test_hf_saved_dataset_dict_with_classlabels(tmp_path):
    root = _save_emotion(tmp_path / "emotion")
    manifest = instantiate(_corpus_node("dair_emotion", root))
    assert manifest[schema.EMOTION].tolist() == [
        "sadness",
        "happiness",
        "happiness",
        "anger",
        "fear",
        "surprise",
    ]
    assert manifest[schema.OFFICIAL_SPLIT].tolist() == ["train", "train", "train", "val", "test", "test"]
    assert manifest[schema.ID].tolist()[:2] == ["train-0", "train-1"]
    only_test = load_hf_dataset(root, splits=["test"], mapping={"joy": "happiness", "love": "happiness"})
    assert only_test[schema.EMOTION].tolist() == ["fear", "surprise"]
    # joy is a synonym of happiness; love is no spelling of an emotion and needs a mapping.
    with pytest.raises(CorpusError, match="label 'love' has no canonical emotion"):
        load_hf_dataset(root)
    assert load_hf_dataset(root, mapping={"love": None})[schema.EMOTION].tolist()[:2] == [
        "sadness",
        "happiness",
    ]


def test_hf_goemotions_sequence_classlabel_is_multilabel(tmp_path, make_goemotions):
    root = make_goemotions(tmp_path / "go", n=8)
    manifest = instantiate(_corpus_node("goemotions", root)).set_index(schema.ID)
    assert len(manifest) == 24
    assert manifest.loc["e1", schema.LABELS] == ["anger", "annoyance"]
    assert manifest.loc["e1", schema.EMOTION] == "anger"
    assert manifest.loc["e3", schema.LABELS] == ["sadness", "disappointment"]
    assert manifest.loc["e6", schema.EMOTION] == "happiness"
    assert manifest.loc["e1000", schema.OFFICIAL_SPLIT] == "val"
    assert (manifest[schema.SPEAKER] == manifest.index).all()


def test_hf_bad_rows_and_errors(tmp_path):
    import datasets

    root = tmp_path / "plain"
    datasets.Dataset.from_dict(
        {"text": ["fine", "", "ok"], "label": ["anger", "fear", "grumpy"]}
    ).save_to_disk(str(root))
    with pytest.raises(CorpusError, match=r"plain row 1: has an empty or missing text"):
        load_hf_dataset(root)
    manifest = load_hf_dataset(root, on_error="skip")
    assert manifest[schema.TEXT].tolist() == ["fine"] and len(skipped_report(manifest)) == 2
    assert pd.isna(manifest[schema.OFFICIAL_SPLIT]).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="cannot load a Hugging Face dataset"):
        load_hf_dataset(tmp_path / "empty")
    dd = _save_emotion(tmp_path / "emotion")
    with pytest.raises(CorpusError, match=r"no column\(s\) \['sentence'\]"):
        load_hf_dataset(dd, text_column="sentence")
    unsupervised = tmp_path / "unsupervised"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["fine"], "label": ["anger"]}),
            "unsupervised": datasets.Dataset.from_dict({"text": ["what"], "label": [None]}),
        }
    ).save_to_disk(str(unsupervised))
    with pytest.raises(CorpusError, match="split 'unsupervised' has no official_split"):
        load_hf_dataset(unsupervised)
    assert len(load_hf_dataset(unsupervised, split_names={"unsupervised": None})) == 1
    assert len(load_hf_dataset(unsupervised, splits=["train"])) == 1
