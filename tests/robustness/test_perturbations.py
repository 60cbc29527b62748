"""Every perturbation family: seeded (same seed, same output), changes the input, keeps its kind.

Audio keeps length, channels, sample rate (through the WAV round trip) and dtype; images keep
size, mode and uint8 pixels; texts stay strings. Group gaps are checked against scikit-learn's
metrics and on groups whose gap is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from emoexp.evaluation import group_gaps as gaps
from emoexp.evaluation.perturbations import AUDIO, FAMILIES, TEXT, VISUAL, sample_rng
from emoexp.robust.inputs import perturb_manifest

RATE = 16000
TEXT_INPUT = (
    "honestly, i can't believe you did this again! why would anyone do that? it's unacceptable; "
    "we talked about it yesterday, and you promised... i'm furious, really furious, and so tired of it."
)


def _conditions(modality: str) -> list[tuple[str, str]]:
    return [(f.name, lv.name) for f in FAMILIES.values() if f.modality == modality for lv in f.levels]


def _waveform(channels: int = 1) -> np.ndarray:
    t = np.arange(RATE) / RATE
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    harmonics = 0.1 * np.sin(2 * np.pi * 1250 * t) + 0.05 * np.sin(2 * np.pi * 3900 * t)
    mono = (voiced + harmonics + 0.01 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)


def _image(mode: str) -> Image.Image:
    y, x = np.mgrid[0:48, 0:48]
    face = (128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.uint8)
    face[30:34, 14:34] = 30  # a mouth: an edge for blur and JPEG to soften
    image = Image.fromarray(face, mode="L")
    return (
        image
        if mode == "L"
        else Image.merge("RGB", (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image))
    )


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("family", "level"), _conditions(AUDIO))
def test_audio_is_seeded_changed_and_keeps_its_shape(family: str, level: str, channels: int) -> None:
    perturbation, clean = FAMILIES[family], _waveform(channels)
    value = perturbation.level(level).value
    first = perturbation.apply(clean, RATE, value, sample_rng(0, family, level, "s1"))
    again = perturbation.apply(clean, RATE, value, sample_rng(0, family, level, "s1"))
    assert first.shape == clean.shape and first.dtype == clean.dtype
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, clean, atol=1e-4)
    assert np.isfinite(first).all()


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize(("family", "level"), _conditions(VISUAL))
def test_images_are_seeded_changed_and_keep_size_and_mode(family: str, level: str, mode: str) -> None:
    perturbation, clean = FAMILIES[family], _image(mode)
    value = perturbation.level(level).value
    first = perturbation.apply(clean, value, sample_rng(0, family, level, "s1"))
    again = perturbation.apply(clean, value, sample_rng(0, family, level, "s1"))
    assert (first.size, first.mode) == (clean.size, clean.mode)
    pixels = np.asarray(first)
    assert pixels.dtype == np.uint8 and pixels.shape == np.asarray(clean).shape
    np.testing.assert_array_equal(pixels, np.asarray(again))
    assert np.abs(pixels.astype(int) - np.asarray(clean).astype(int)).max() > 0


@pytest.mark.parametrize(("family", "level"), _conditions(TEXT))
def test_texts_are_seeded_and_changed(family: str, level: str) -> None:
    perturbation = FAMILIES[family]
    value = perturbation.level(level).value
    first = perturbation.apply(TEXT_INPUT, value, sample_rng(0, family, level, "s1"))
    assert first == perturbation.apply(TEXT_INPUT, value, sample_rng(0, family, level, "s1"))
    assert isinstance(first, str) and first.strip() and first != TEXT_INPUT


def test_randomness_depends_on_sample_and_seed_only() -> None:
    noise = FAMILIES["noise"]
    clean = _waveform()
    a = noise.apply(clean, RATE, 10, sample_rng(0, "noise", "snr_10db", "s1"))
    b = noise.apply(clean, RATE, 10, sample_rng(0, "noise", "snr_10db", "s2"))
    c = noise.apply(clean, RATE, 10, sample_rng(1, "noise", "snr_10db", "s1"))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    measured = 10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean((a - clean).astype(float) ** 2))
    assert measured == pytest.approx(10, abs=0.2)


def test_perturbed_files_keep_sample_rate_and_length(tmp_path: Path) -> None:
    sources = []
    for i, rate in enumerate((16000, 22050)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, _waveform()[: rate // 2], rate, "PCM_16")
        sources.append(str(path))
    image = tmp_path / "face.png"
    _image("L").save(image)
    manifest = pd.DataFrame(
        {"id": ["a", "b"], "audio": sources, "image": [str(image), str(tmp_path / "gone.png")]}
    )
    for family, level in (("phone", "g711"), ("reverb", "rt60_0.6s")):
        out = perturb_manifest(
            manifest, FAMILIES[family], FAMILIES[family].level(level), 0, tmp_path / family
        )
        for source, target in zip(manifest["audio"], out["audio"], strict=True):
            before, after = sf.info(source), sf.info(target)
            assert (after.samplerate, after.frames, after.channels) == (
                before.samplerate,
                before.frames,
                before.channels,
            )
    out = perturb_manifest(manifest, FAMILIES["jpeg"], FAMILIES["jpeg"].level("q10"), 0, tmp_path / "jpeg")
    assert Image.open(out["image"][0]).size == (48, 48)
    assert out["image"][1] == str(tmp_path / "gone.png")  # unreadable: left for the featurizer to report


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_group_gap_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"target": rng.choice(list("abcd"), 200), "prediction": rng.choice(list("abcde"), 200)}
    )
    for name, reference in (
        ("uar", balanced_accuracy_score),
        ("accuracy", accuracy_score),
        ("f1_macro", lambda t, p: f1_score(t, p, average="macro", zero_division=0)),
    ):
        score, true, pred = gaps.frame_metric(frame, name)
        assert score(true, pred) == pytest.approx(reference(frame["target"], frame["prediction"]))


def test_group_gaps_flag_only_intervals_that_exclude_zero() -> None:
    rng = np.random.default_rng(0)
    n = 160
    target = rng.choice(list("abc"), n)
    gender = np.where(np.arange(n) % 2 == 0, "female", "male")
    biased = np.where(gender == "female", target, rng.choice(list("abc"), n))
    fair = np.where(rng.random(n) < 0.7, target, rng.choice(list("abc"), n))
    frame = pd.DataFrame({"target": target, "biased": biased, "fair": fair, "group_gender": gender})
    unfair = gaps.group_gaps(frame.rename(columns={"biased": "prediction"}), ["group_gender"], "uar", 500)
    female = unfair.set_index("group").loc["female"]
    assert female["gap"] > 0.4 and female["ci_low"] > 0 and bool(female["excludes_zero"])
    even = gaps.group_gaps(frame.rename(columns={"fair": "prediction"}), ["group_gender"], "uar", 500)
    assert not even["excludes_zero"].any()
    assert even.equals(
        gaps.group_gaps(frame.rename(columns={"fair": "prediction"}), ["group_gender"], "uar", 500)
    )
