"""RAVDESS, CREMA-D, Emo-DB and IEMOCAP adapters on tiny corpora in their official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR
from emoexp.data import schema
from emoexp.data.adapters import (
    CorpusError,
    load_cremad,
    load_emodb,
    load_iemocap,
    load_ravdess,
    skipped_report,
)

# --------------------------------------------------------------------------------------- RAVDESS


def test_ravdess_maps_codes_speakers_and_gender(make_ravdess):
    root = make_ravdess(actors=[1, 2], emotions=range(1, 9))
    manifest = load_ravdess(str(root))
    assert len(manifest) == 2 * 8 * 2
    assert set(manifest[schema.EMOTION]) == {
        "neutral",
        "calm",
        "happiness",
        "sadness",
        "anger",
        "fear",
        "disgust",
        "surprise",
    }
    row = manifest.set_index(schema.ID).loc["03-01-05-01-02-01-02"]
    assert row[schema.EMOTION] == "anger" and row[schema.SPEAKER] == "Actor_02"
    assert row["group_gender"] == "female" and row["group_intensity"] == "normal"
    assert row["group_statement"] == "02"  # reported by the leakage guard, never enforced
    genders = manifest.groupby(schema.SPEAKER)["group_gender"].first().to_dict()
    assert genders == {"Actor_01": "male", "Actor_02": "female"}
    assert manifest[schema.AUDIO].map(lambda p: Path(p).is_file()).all()
    assert manifest[[schema.VALENCE, schema.AROUSAL, schema.OFFICIAL_SPLIT]].isna().all().all()
    assert set(manifest[schema.CORPUS]) == {"ravdess"}
    assert skipped_report(manifest).empty


def test_ravdess_song_files_only_on_request(make_ravdess, files):
    root = make_ravdess(actors=[1], emotions=[1])
    files.wav(root / "Actor_01" / "03-02-03-02-01-01-01.wav")
    assert len(load_ravdess(root)) == 2
    with_song = load_ravdess(root, include_song=True)
    assert len(with_song) == 3
    song = with_song[with_song["group_vocal_channel"] == "song"].iloc[0]
    assert song[schema.EMOTION] == "happiness" and song["group_intensity"] == "strong"


def test_ravdess_missing_root_names_it(tmp_path):
    with pytest.raises(CorpusError, match=r"data.root=.*nowhere does not exist.*Actor_01"):
        load_ravdess(tmp_path / "nowhere")


def test_ravdess_root_without_wavs_says_what_is_expected(tmp_path):
    with pytest.raises(CorpusError, match=r"no usable sample.*Actor_01"):
        load_ravdess(tmp_path)


BAD_RAVDESS = [
    ("Actor_01/hello.wav", "wav", "does not follow the RAVDESS code"),
    ("Actor_01/03-01-09-01-01-01-01.wav", "wav", "emotion code 09"),
    ("Actor_01/01-01-01-01-01-01-01.wav", "wav", "modality code 01"),
    ("Actor_01/03-01-01-01-01-01-02.wav", "wav", "contradicts its folder Actor_01"),
    ("Actor_01/03-01-02-01-01-02-01.wav", "corrupt", "cannot be decoded as audio"),
    ("Actor_01/03-01-03-01-01-02-01.wav", "empty_wav", "no audio frames"),
    ("Actor_01/03-01-04-01-01-02-01.wav", "zero_bytes", "empty file"),
]


def _write_bad(files, path: Path, kind: str) -> None:
    if kind == "zero_bytes":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    else:
        getattr(files, kind)(path)


@pytest.mark.parametrize(("name", "kind", "problem"), BAD_RAVDESS)
def test_ravdess_bad_file_raises_naming_it_or_is_skipped_and_listed(make_ravdess, files, name, kind, problem):
    root = make_ravdess(actors=[1], emotions=[1])
    bad = root / name
    _write_bad(files, bad, kind)
    with pytest.raises(CorpusError) as error:
        load_ravdess(root)
    message = str(error.value)
    assert str(bad) in message and problem in message and "on_error=skip" in message
    manifest = load_ravdess(root, on_error="skip")
    assert len(manifest) == 2
    report = skipped_report(manifest)
    assert report["file"].tolist() == [str(bad)]
    assert problem in report["problem"].iloc[0]


# --------------------------------------------------------------------------------------- CREMA-D


def _make_cremad(root: Path, files, demographics: bool = True) -> Path:
    for actor in (1001, 1002):
        for emotion, level in (("ANG", "HI"), ("NEU", "XX"), ("SAD", "LO"), ("HAP", "MD")):
            files.wav(root / "AudioWAV" / f"{actor}_DFA_{emotion}_{level}.wav")
    if demographics:
        (root / "VideoDemographics.csv").write_text(
            "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
            "1002,21,Female,African American,Not Hispanic\n"
        )
    return root


def test_cremad_maps_labels_levels_and_demographic_groups(tmp_path, files):
    root = _make_cremad(tmp_path / "CREMA-D", files)
    manifest = load_cremad(root)
    assert len(manifest) == 8
    row = manifest.set_index(schema.ID).loc["1002_DFA_SAD_LO"]
    assert row[schema.EMOTION] == "sadness" and row[schema.SPEAKER] == "1002" and row["group_level"] == "low"
    assert row["group_sentence"] == "DFA"
    assert row["group_gender"] == "female" and row["group_age"] == "20-29"
    assert row["group_race"] == "african american" and row["group_ethnicity"] == "not hispanic"
    assert set(manifest[schema.EMOTION]) == {"anger", "neutral", "sadness", "happiness"}
    assert manifest.loc[manifest[schema.SPEAKER] == "1001", "group_gender"].eq("male").all()
    # data.root may also be the AudioWAV folder itself: the demographics are found next to it.
    assert load_cremad(root / "AudioWAV")["group_gender"].notna().all()


def test_cremad_without_demographics_has_no_groups_but_loads(tmp_path, files):
    manifest = load_cremad(_make_cremad(tmp_path / "c", files, demographics=False))
    assert len(manifest) == 8 and "group_gender" not in manifest.columns


@pytest.mark.parametrize(
    ("name", "kind", "problem"),
    [
        ("1001_DFA_XYZ_XX.wav", "wav", "emotion code XYZ"),
        ("1001_DFA_ANG.wav", "wav", "does not follow the CREMA-D code"),
        ("0999_DFA_ANG_XX.wav", "wav", "actor 0999"),
        ("1001_IEO_ANG_XX.wav", "corrupt", "cannot be decoded as audio"),
        ("1001_IEO_NEU_XX.wav", "empty_wav", "no audio frames"),
    ],
)
def test_cremad_bad_files(tmp_path, files, name, kind, problem):
    root = _make_cremad(tmp_path / "c", files)
    bad = root / "AudioWAV" / name
    getattr(files, kind)(bad)
    with pytest.raises(CorpusError, match=problem) as error:
        load_cremad(root)
    assert str(bad) in str(error.value)
    manifest = load_cremad(root, on_error="skip")
    assert len(manifest) == 8 and skipped_report(manifest)["file"].tolist() == [str(bad)]


def test_cremad_malformed_demographics_is_an_error(tmp_path, files):
    root = _make_cremad(tmp_path / "c", files)
    (root / "VideoDemographics.csv").write_text("Actor,Age\n1001,51\n")
    with pytest.raises(CorpusError, match=r"VideoDemographics.csv.*lacks column\(s\) \['ActorID', 'Sex'\]"):
        load_cremad(root)


# ---------------------------------------------------------------------------------------- Emo-DB


def test_emodb_maps_letters_and_documented_gender(tmp_path, files):
    root = tmp_path / "emodb"
    for name in ("03a01Fa", "03a01Wb", "08b10Tc", "16a02Lb", "09a05Ea", "10b01Aa", "13a04Na"):
        files.wav(root / "wav" / f"{name}.wav")
    manifest = load_emodb(root).set_index(schema.ID)
    assert manifest[schema.EMOTION].to_dict() == {
        "03a01Fa": "happiness",
        "03a01Wb": "anger",
        "08b10Tc": "sadness",
        "16a02Lb": "boredom",
        "09a05Ea": "disgust",
        "10b01Aa": "fear",
        "13a04Na": "neutral",
    }
    assert manifest["group_gender"].to_dict() == {
        "03a01Fa": "male",
        "03a01Wb": "male",
        "08b10Tc": "female",
        "16a02Lb": "female",
        "09a05Ea": "female",
        "10b01Aa": "male",
        "13a04Na": "female",
    }
    assert manifest.loc["16a02Lb", schema.SPEAKER] == "16"
    assert manifest.loc["16a02Lb", "group_sentence"] == "a02"
    assert len(load_emodb(root / "wav")) == 7


@pytest.mark.parametrize(
    ("name", "kind", "problem"),
    [
        ("99a01Fa.wav", "wav", "speaker 99 is not an Emo-DB speaker"),
        ("03a01Xa.wav", "wav", "emotion letter X"),
        ("03a01F.wav", "wav", "does not follow the Emo-DB code"),
        ("03a02Fa.wav", "corrupt", "cannot be decoded as audio"),
    ],
)
def test_emodb_bad_files(tmp_path, files, name, kind, problem):
    root = tmp_path / "emodb"
    files.wav(root / "wav" / "03a01Fa.wav")
    bad = getattr(files, kind)(root / "wav" / name)
    with pytest.raises(CorpusError, match=problem) as error:
        load_emodb(root)
    assert str(bad) in str(error.value)
    manifest = load_emodb(root, on_error="skip")
    assert manifest[schema.ID].tolist() == ["03a01Fa"] and len(skipped_report(manifest)) == 1


# --------------------------------------------------------------------------------------- IEMOCAP

EVALUATION_1 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
C-E4:\tNeutral; Frustration;\t()
C-F1:\tNeutral;\t(curious)
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[4.0000, 4.5000, 3.0000]
C-E1:\tExcited;\t()
C-E2:\tHappiness;\t()
C-E3:\tExcited;\t()

[14.8872 - 18.0175]\tSes01F_impro01_F001\txxx\t[1.0000, 5.0000, 2.0000]
C-E1:\tAnger;\t()
C-E2:\tSadness;\t()
"""

EVALUATION_2 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[1.0000 - 2.0000]\tSes02M_script01_1_M000\tang\t[1.5000, 4.0000, 4.0000]
C-E1:\tAnger;\t()

[2.0000 - 3.0000]\tSes02M_script01_1_F000\tsad\t[2.0000, 1.5000, 2.0000]
C-E1:\tSadness;\t()
"""


def _make_iemocap(root: Path, files) -> Path:
    for session, dialog, text, utterances in (
        (1, "Ses01F_impro01", EVALUATION_1, ["F000", "M000", "F001"]),
        (2, "Ses02M_script01_1", EVALUATION_2, ["M000", "F000"]),
    ):
        dialog_dir = root / f"Session{session}" / "dialog"
        (dialog_dir / "EmoEvaluation").mkdir(parents=True)
        (dialog_dir / "EmoEvaluation" / f"{dialog}.txt").write_text(text)
        (dialog_dir / "transcriptions").mkdir()
        (dialog_dir / "transcriptions" / f"{dialog}.txt").write_text(
            "\n".join(f"{dialog}_{u} [001.0000-002.0000]: Words of {u}." for u in utterances)
            + "\nM: breathing\n"
        )
        for utterance in utterances:
            files.wav(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{dialog}_{utterance}.wav")
    return root


def test_iemocap_labels_dimensions_annotations_speakers_and_groups(tmp_path, files):
    manifest = load_iemocap(_make_iemocap(tmp_path / "IEMOCAP_full_release", files)).set_index(schema.ID)
    assert len(manifest) == 5
    assert manifest[schema.EMOTION].to_dict() == {
        "Ses01F_impro01_F000": "neutral",
        "Ses01F_impro01_M000": "excitement",
        "Ses01F_impro01_F001": "no_agreement",
        "Ses02M_script01_1_M000": "anger",
        "Ses02M_script01_1_F000": "sadness",
    }
    # 1-5 scale -> [-1, 1]: 3 -> 0, 1 -> -1, 5 -> 1
    assert manifest.loc["Ses01F_impro01_F000", [schema.VALENCE, schema.AROUSAL]].tolist() == [-0.25, -0.25]
    assert manifest.loc["Ses01F_impro01_M000", [schema.VALENCE, schema.AROUSAL]].tolist() == [0.5, 0.75]
    assert manifest.loc["Ses01F_impro01_F001", [schema.VALENCE, schema.AROUSAL]].tolist() == [-1.0, 1.0]
    assert manifest.loc["Ses01F_impro01_F000", schema.ANNOTATIONS] == [
        "neutral",
        "neutral",
        "neutral",
        "frustration",
    ]
    assert manifest.loc["Ses01F_impro01_F000", "annotators"] == [
        "Session1/E2",
        "Session1/E3",
        "Session1/E4",
        "Session1/E4",
    ]
    assert manifest.loc["Ses01F_impro01_M000", schema.ANNOTATIONS] == [
        "excitement",
        "happiness",
        "excitement",
    ]
    assert manifest[schema.SPEAKER].to_dict() == {
        "Ses01F_impro01_F000": "Ses01F",
        "Ses01F_impro01_M000": "Ses01M",
        "Ses01F_impro01_F001": "Ses01F",
        "Ses02M_script01_1_M000": "Ses02M",
        "Ses02M_script01_1_F000": "Ses02F",
    }
    assert manifest.loc["Ses02M_script01_1_F000", "group_gender"] == "female"
    assert manifest.loc["Ses02M_script01_1_F000", "group_session"] == "Session2"
    assert manifest.loc["Ses02M_script01_1_F000", "group_condition"] == "scripted"
    assert manifest.loc["Ses01F_impro01_M000", "group_condition"] == "improvised"
    assert manifest.loc["Ses02M_script01_1_F000", "group_script"] == "script01_1"
    assert manifest.loc["Ses01F_impro01_M000", "group_script"] == "impro01"
    assert manifest.loc["Ses01F_impro01_M000", schema.TEXT] == "Words of M000."
    assert Path(manifest.loc["Ses02M_script01_1_M000", schema.AUDIO]).parts[-4:] == (
        "sentences",
        "wav",
        "Ses02M_script01_1",
        "Ses02M_script01_1_M000.wav",
    )
    assert len(load_iemocap(tmp_path / "IEMOCAP_full_release", sessions=[2])) == 2


def test_iemocap4_scheme_merges_excitement_and_drops_the_rest(tmp_path, files):
    manifest = load_iemocap(_make_iemocap(tmp_path / "iemocap", files))
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "label_scheme" / "iemocap4.yaml"))
    scheme = instantiate(node)
    prepared = scheme.prepare(manifest).set_index(schema.ID)
    assert prepared[schema.EMOTION].to_dict() == {
        "Ses01F_impro01_F000": "neutral",
        "Ses01F_impro01_M000": "happiness",
        "Ses02M_script01_1_M000": "anger",
        "Ses02M_script01_1_F000": "sadness",
    }
    assert list(scheme.classes) == ["neutral", "anger", "happiness", "sadness"]


def test_iemocap_bad_inputs(tmp_path, files):
    root = _make_iemocap(tmp_path / "iemocap", files)
    missing_wav = root / "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav"
    missing_wav.unlink()
    with pytest.raises(CorpusError, match="is missing") as error:
        load_iemocap(root)
    assert str(missing_wav) in str(error.value)
    evaluation = root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    evaluation.write_text(
        EVALUATION_1.replace("\texc\t", "\tabc\t").replace("C-E2:\tNeutral;", "C-E2:\tBliss;")
    )
    manifest = load_iemocap(root, on_error="skip")
    report = skipped_report(manifest)
    # The utterance with the unknown code and the missing WAV are skipped; of the bad annotator
    # line only that vote is left out.
    assert sorted(manifest[schema.ID]) == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_F001",
        "Ses02M_script01_1_M000",
    ]
    assert manifest.set_index(schema.ID).loc["Ses01F_impro01_F000", schema.ANNOTATIONS] == [
        "neutral",
        "neutral",
        "frustration",
    ]
    assert len(report) == 3
    problems = " ".join(report["problem"])
    assert "label 'abc' is not an IEMOCAP code" in problems
    assert "outside" in problems and "Bliss" in problems
    assert f"{evaluation} line 10 (file line)" in report["file"].tolist()
    with pytest.raises(CorpusError, match=r"Ses01F_impro01.txt line 4 \(file line\): annotator line"):
        load_iemocap(root)


def test_iemocap_non_utf8_evaluation_line(tmp_path, files):
    root = _make_iemocap(tmp_path / "iemocap", files)
    evaluation = root / "Session2/dialog/EmoEvaluation/Ses02M_script01_1.txt"
    evaluation.write_bytes(EVALUATION_2.encode() + b"C-E2:\t\xff\xfeAnger;\t()\n")
    with pytest.raises(CorpusError, match=r"Ses02M_script01_1.txt line 8 \(file line\): is not valid utf-8"):
        load_iemocap(root)
    manifest = load_iemocap(root, on_error="skip")
    assert len(manifest) == 5 and len(skipped_report(manifest)) == 1
    # A line after an undecodable one is reported under its own line number in the file.
    evaluation.write_bytes(EVALUATION_2.replace("\tsad\t", "\txyz\t").encode().replace(b"Anger", b"\xffnger"))
    assert b"xyz" in evaluation.read_bytes().split(b"\n")[6 - 1]
    report = skipped_report(load_iemocap(root, on_error="skip"))
    assert report["file"].tolist() == [f"{evaluation} line 4 (file line)", f"{evaluation} line 6 (file line)"]


def test_iemocap_without_sessions_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="Session1"):
        load_iemocap(tmp_path)


def test_manifests_validate_and_keep_their_skipped_list(make_ravdess, files):
    root = make_ravdess(actors=[1], emotions=[1, 2])
    files.corrupt(root / "Actor_01" / "03-01-03-01-01-01-01.wav")
    manifest = load_ravdess(root, on_error="skip")
    again = schema.validate_manifest(manifest, "ravdess")
    assert len(skipped_report(again)) == 1
    assert isinstance(again, pd.DataFrame) and np.array_equal(again[schema.ID], manifest[schema.ID])


def test_a_corpus_extracted_twice_reports_the_duplicates(make_ravdess, files):
    root = make_ravdess(actors=[1], emotions=[1])
    copy = files.wav(root / "again" / "Actor_01" / "03-01-01-01-01-01-01.wav")
    with pytest.raises(CorpusError, match="duplicates sample id '03-01-01-01-01-01-01'") as error:
        load_ravdess(root)
    assert str(copy) in str(error.value)
    manifest = load_ravdess(root, on_error="skip")
    assert len(manifest) == 2 and skipped_report(manifest)["file"].tolist() == [str(copy)]


def test_ravdess_statements_span_splits_and_are_reported_not_enforced(make_ravdess, tmp_path):
    from emoexp.data.leakage import guard_leakage
    from emoexp.data.splits import SpeakerHoldout

    manifest = load_ravdess(make_ravdess(actors=range(1, 9), emotions=[1, 3, 5]))
    fold = next(SpeakerHoldout(0.2, 0.2).folds(manifest, None, seed=0))
    result = guard_leakage(manifest, [fold], "fail", cache_dir=tmp_path / "guard")  # fail: not for groups
    overlap = result.report[result.report["kind"] == "group_overlap"]
    assert (
        set(overlap["modality"]) == {"group_statement"}
        and result.summary["group_overlap/group_statement"] == 2
    )
    assert (result.folds[0].assignment == fold.assignment).all()
