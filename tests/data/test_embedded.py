"""The embedded corpus: deterministic, valid, cached, and honest.

See docs/design.md#6-embedded-data-is-learnable-and-honest.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from emoexp.data.embedded import load_embedded, sample_latents
from emoexp.data.embedded.audio import render_audio, synthesize
from emoexp.data.embedded.text import render_text
from emoexp.data.embedded.visual import render_face
from emoexp.data.schema import available_modalities, validate_manifest
from emoexp.labels.emotions import EKMAN7

ALL = ("audio", "visual", "text")
SMALL = 70  # 10 samples per class


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded-cache")


@pytest.fixture(scope="module")
def small(corpus_root: Path) -> pd.DataFrame:
    return load_embedded(ALL, n_samples=SMALL, n_speakers=6, seed=0, cache_dir=corpus_root)


def _without_paths(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest.drop(columns=["audio", "image"])


# --- latents -----------------------------------------------------------------------------


def test_latents_are_deterministic_per_seed():
    first = sample_latents(140, 12, seed=3)
    pd.testing.assert_frame_equal(first, sample_latents(140, 12, seed=3))
    other = sample_latents(140, 12, seed=4)
    assert not first["emotion"].equals(other["emotion"])


def test_latents_are_balanced_and_in_range():
    latents = sample_latents(840, 12, seed=0)
    assert latents["id"].is_unique
    assert set(latents["emotion"].value_counts()) == {120}
    assert set(latents["speaker"].value_counts()) == {70}
    assert set(pd.crosstab(latents["emotion"], latents["speaker"]).to_numpy().ravel()) == {10}
    genders = latents.drop_duplicates("speaker")["group_gender"].value_counts()
    assert genders["female"] == genders["male"] == 6
    assert latents["intensity"].between(0, 1).all()
    assert latents[["valence", "arousal"]].abs().le(1).all().all()
    # Valence follows the circumplex: happiness pleasant, sadness unpleasant.
    means = latents.groupby("emotion")[["valence", "arousal"]].mean()
    assert means.loc["happiness", "valence"] > 0.3 > -0.3 > means.loc["sadness", "valence"]
    assert means.loc["anger", "arousal"] > means.loc["neutral", "arousal"] > means.loc["sadness", "arousal"]


def test_small_corpora_stay_balanced():
    latents = sample_latents(SMALL, 12, seed=0)
    assert set(latents["emotion"].value_counts()) == {10}
    counts = latents["speaker"].value_counts()
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("accuracy", [0.6, 0.7, 0.9])
def test_annotator_agreement_is_about_the_given_accuracy(accuracy: float):
    latents = sample_latents(1400, 12, seed=1, n_annotators=5, annotator_accuracy=accuracy)
    assert latents["annotations"].map(len).eq(5).all()
    agree = np.mean(
        [a == e for labels, e in zip(latents["annotations"], latents["emotion"], strict=True) for a in labels]
    )
    assert agree == pytest.approx(accuracy, abs=0.05)


def test_annotator_errors_are_plausible():
    latents = sample_latents(2800, 12, seed=2, annotator_accuracy=0.6)
    wrong: dict[str, Counter] = {e: Counter() for e in EKMAN7}
    for labels, emotion in zip(latents["annotations"], latents["emotion"], strict=True):
        wrong[emotion].update(label for label in labels if label != emotion)
    assert wrong["fear"].most_common(1)[0][0] == "surprise"
    assert wrong["surprise"].most_common(1)[0][0] == "fear"
    assert wrong["anger"].most_common(1)[0][0] == "disgust"
    assert wrong["sadness"].most_common(1)[0][0] == "neutral"
    # Weak expressions are harder to label.
    agree = pd.Series(
        [
            np.mean([a == e for a in labels])
            for labels, e in zip(latents["annotations"], latents["emotion"], strict=True)
        ]
    )
    assert agree[latents["intensity"] < 0.35].mean() < agree[latents["intensity"] > 0.75].mean() - 0.1


# --- the manifest ------------------------------------------------------------------------


def test_manifest_follows_the_schema(small: pd.DataFrame):
    pd.testing.assert_frame_equal(small, validate_manifest(small, "embedded"))
    assert (small["corpus"] == "embedded_multimodal").all()
    assert available_modalities(small) == ["text", "audio", "visual"]
    assert small["annotations"].map(len).eq(5).all()
    assert small["group_gender"].isin({"female", "male"}).all()
    for modality in ALL:
        assert small[f"displayed_{modality}"].equals(small["emotion"])
    for column in ("audio", "image"):
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in small[column])


def test_single_modality_corpus_names_and_inputs(corpus_root: Path):
    text = load_embedded(("text",), n_samples=SMALL, n_speakers=6, cache_dir=corpus_root)
    assert (text["corpus"] == "embedded_text").all()
    assert available_modalities(text) == ["text"]
    assert text["audio"].isna().all() and text["image"].isna().all()


def test_wavs_are_readable_speech_length_and_not_silent(small: pd.DataFrame):
    for path in small["audio"]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.9 <= info.duration <= 2.1
        wave, _ = sf.read(path)
        assert np.sqrt(np.mean(wave**2)) > 0.003  # about -50 dBFS
        assert np.abs(wave).max() < 1.0


def test_faces_are_small_grayscale_pngs(small: pd.DataFrame):
    for path in small["image"]:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.mode == "L"
            assert image.size == (48, 48)
            assert np.asarray(image).std() > 10


def test_texts_are_sentences(small: pd.DataFrame):
    texts = small["text"]
    assert texts.map(lambda t: isinstance(t, str) and len(t.split()) >= 1).all()
    assert texts.nunique() > 0.8 * len(texts)


def test_sample_rate_and_image_size_are_parameters(tmp_path: Path):
    manifest = load_embedded(
        ("audio", "visual"), n_samples=14, n_speakers=2, sample_rate=8000, image_size=32, cache_dir=tmp_path
    )
    assert sf.info(manifest["audio"][0]).samplerate == 8000
    with Image.open(manifest["image"][0]) as image:
        assert image.size == (32, 32)


# --- determinism and the cache -----------------------------------------------------------


def test_same_seed_gives_identical_corpus_and_files(small: pd.DataFrame, tmp_path: Path):
    again = load_embedded(ALL, n_samples=SMALL, n_speakers=6, seed=0, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(_without_paths(small), _without_paths(again))
    for column in ("audio", "image"):
        for a, b in zip(small[column], again[column], strict=True):
            assert Path(a).read_bytes() == Path(b).read_bytes()


def test_another_seed_gives_another_corpus(small: pd.DataFrame, tmp_path: Path):
    other = load_embedded(ALL, n_samples=SMALL, n_speakers=6, seed=1, cache_dir=tmp_path)
    assert not other["text"].equals(small["text"])
    assert Path(other["audio"][0]).read_bytes() != Path(small["audio"][0]).read_bytes()
    assert Path(other["image"][0]).read_bytes() != Path(small["image"][0]).read_bytes()


def test_cache_hit_is_fast_identical_and_rewrites_nothing(small: pd.DataFrame, corpus_root: Path):
    files = [Path(p) for p in (*small["audio"], *small["image"])]
    folder = files[0].parent.parent
    stamps = {f: f.stat().st_mtime_ns for f in [*files, folder / "manifest.parquet"]}
    start = time.perf_counter()
    again = load_embedded(ALL, n_samples=SMALL, n_speakers=6, seed=0, cache_dir=corpus_root)
    assert time.perf_counter() - start < 1.0
    pd.testing.assert_frame_equal(small, again)
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps
    # Nothing half-built is left next to the corpus.
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_cache_dir_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("EMOEXP_CACHE_DIR", str(tmp_path))
    manifest = load_embedded(("text",), n_samples=14, n_speakers=2)
    assert manifest["text"].notna().all()
    assert any((tmp_path / "embedded").iterdir())


def test_unknown_modality_is_rejected_with_the_valid_ones(tmp_path: Path):
    with pytest.raises(ValueError, match=r"audio.*visual.*text"):
        load_embedded(("video",), cache_dir=tmp_path)


# --- disagreement between modalities -----------------------------------------------------


def test_disagreement_masks_one_modality_per_chosen_sample(tmp_path: Path):
    manifest = load_embedded(
        ("visual", "text"), n_samples=SMALL, n_speakers=6, disagreement=0.3, cache_dir=tmp_path
    )
    differs = pd.DataFrame({m: manifest[f"displayed_{m}"] != manifest["emotion"] for m in ("visual", "text")})
    assert differs.any(axis=1).sum() == round(0.3 * SMALL)
    assert differs.sum(axis=1).max() == 1
    assert differs["visual"].any() and differs["text"].any()


def test_disagreement_needs_several_modalities(tmp_path: Path):
    with pytest.warns(UserWarning, match="several modalities"):
        manifest = load_embedded(("text",), n_samples=14, n_speakers=2, disagreement=0.5, cache_dir=tmp_path)
    assert manifest["displayed_text"].equals(manifest["emotion"])


# --- the signals go the way the literature says ------------------------------------------


def _f0(wave: np.ndarray, sample_rate: int) -> float:
    """Median F0 (Hz) by centre-clipped autocorrelation of the low-passed loud frames."""
    kernel = np.hanning(sample_rate // 800 + 2)
    low = np.convolve(wave, kernel / kernel.sum(), mode="same")
    frame, shortest, longest = int(0.04 * sample_rate), sample_rate // 500, sample_rate // 60
    loud = np.sqrt(np.mean(low**2))
    estimates = []
    for start in range(0, len(low) - frame, frame // 2):
        x = low[start : start + frame]
        if np.sqrt(np.mean(x**2)) < 0.5 * loud:
            continue
        clip = 0.3 * np.abs(x).max()
        x = np.where(np.abs(x) > clip, x - np.sign(x) * clip, 0.0)
        correlation = np.correlate(x, x, "full")[frame - 1 :]
        lag = shortest + int(np.argmax(correlation[shortest:longest]))
        if correlation[lag] > 0.4 * correlation[0]:
            estimates.append(sample_rate / lag)
    return float(np.median(estimates))


def test_acoustic_correlates_follow_the_literature(tmp_path: Path):
    rows = [
        {
            "id": f"{emotion}-{speaker}-{take}",
            "emotion": emotion,
            "intensity": 0.8,
            "speaker": f"spk{speaker:02d}",
            "group_gender": "female" if speaker % 2 == 0 else "male",
        }
        for speaker in range(6)
        for take in range(2)
        for emotion in ("anger", "sadness", "neutral")
    ]
    latents = pd.DataFrame(rows)
    paths = render_audio(latents, tmp_path / "audio")
    waves = [sf.read(p)[0] for p in paths]
    latents["f0"] = [_f0(w, 16000) for w in waves]
    latents["rms_db"] = [20 * np.log10(np.sqrt(np.mean(w**2))) for w in waves]
    latents["duration"] = [len(w) / 16000 for w in waves]
    means = latents.groupby("emotion")[["f0", "rms_db", "duration"]].mean()
    assert means.loc["anger", "f0"] > means.loc["neutral", "f0"] > means.loc["sadness", "f0"]
    assert means.loc["anger", "rms_db"] > means.loc["neutral", "rms_db"] + 3
    assert means.loc["neutral", "rms_db"] > means.loc["sadness", "rms_db"] + 3
    assert means.loc["sadness", "duration"] > means.loc["anger", "duration"]  # slower speech
    neutral = latents[latents["emotion"] == "neutral"].groupby("group_gender")["f0"].mean()
    assert neutral["female"] > 1.4 * neutral["male"]


def test_audio_is_deterministic_per_key_and_varies_across_keys():
    first = synthesize("anger", 0.7, "spk00", "male", 16000, 0, "a")
    assert np.array_equal(first, synthesize("anger", 0.7, "spk00", "male", 16000, 0, "a"))
    assert not np.array_equal(first[:1000], synthesize("anger", 0.7, "spk00", "male", 16000, 0, "b")[:1000])


def test_faces_differ_by_emotion_in_the_mouth_region():
    # Same subject and image key: same pose, light and noise, only the expression differs.
    mouth, forehead = (slice(30, 42), slice(12, 36)), (slice(2, 10), slice(12, 36))
    mouth_diff, forehead_diff = [], []
    for subject in range(6):
        happy, sad = (
            render_face(e, 0.8, f"spk{subject:02d}", None, 48, 0, f"key{subject}").astype(float)
            for e in ("happiness", "sadness")
        )
        mouth_diff.append(np.abs(happy[mouth] - sad[mouth]).mean())
        forehead_diff.append(np.abs(happy[forehead] - sad[forehead]).mean())
    assert np.mean(mouth_diff) > 8
    assert np.mean(mouth_diff) > 4 * np.mean(forehead_diff)


def test_text_features_separate_the_classes():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    latents = sample_latents(280, 12, seed=0)
    texts = render_text(latents, seed=0)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    accuracy = cross_val_score(model, texts, latents["emotion"].to_numpy(str), cv=folds).mean()
    assert 0.35 < accuracy < 0.95  # far above 1/7, far from perfect


def test_texts_use_negation_intensifiers_and_shared_words():
    latents = sample_latents(840, 12, seed=0)
    texts = pd.Series(render_text(latents, seed=0)).str.lower()
    emotion = latents["emotion"]
    assert texts[emotion == "neutral"].str.contains(r"\bnot\b|n't").mean() > 0.05
    strong = latents["intensity"] > 0.85
    boosted = texts.str.contains(r"\b(?:extremely|incredibly|absolutely|totally|utterly|really|so)\b")
    assert boosted[strong].mean() > boosted[latents["intensity"] < 0.3].mean()
    assert texts[emotion == "fear"].str.contains("shocked|startled|stunned").any()
    assert texts[emotion == "surprise"].str.contains("shocked|startled|stunned").any()


# --- learnability on the default size ----------------------------------------------------


@pytest.mark.slow
def test_audio_is_learnable_and_speaker_independent_is_harder(tmp_path: Path):
    import torch
    import torchaudio
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    manifest = load_embedded(("audio",), cache_dir=tmp_path)
    mfcc = torchaudio.transforms.MFCC(
        16000, n_mfcc=40, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 64}
    )
    features = []
    for path in manifest["audio"]:
        coefficients = mfcc(torch.from_numpy(sf.read(path, dtype="float32")[0])).numpy()
        features.append(np.concatenate([coefficients.mean(1), coefficients.std(1)]))
    x, y = np.array(features), manifest["emotion"].to_numpy(str)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    random_split = cross_val_score(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    by_speaker = cross_val_score(model, x, y, cv=GroupKFold(4), groups=manifest["speaker"].to_numpy(str))
    assert random_split.mean() > 0.5
    assert 0.2 < by_speaker.mean() < random_split.mean() - 0.1
