"""The leakage guard finds transformed (not copied) duplicates across splits, and only those.

See docs/leakage.md. Planted near-duplicates are real files: audio with noise, a time shift and
a gain change; images re-encoded as JPEG, brightened and cropped; texts with typos and casing;
and a FER2013-style pixel duplicate under another id.
"""

from __future__ import annotations

import io
import random
import string
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from omegaconf import OmegaConf
from PIL import Image, ImageEnhance

from emoexp.data import schema
from emoexp.data.embedded import load_embedded
from emoexp.data.leakage import LeakageError, guard_leakage
from emoexp.data.splits import TEST, TRAIN, VAL, Fold, StratifiedHoldout

TEXTS = [
    "I finally got the job offer I had been waiting for all year.",
    "The train was cancelled again and nobody told us anything.",
    "My grandmother passed away peacefully in her sleep last night.",
    "Someone left a dead rat on the doorstep of the office.",
    "The lights went out and a voice whispered my name in the dark.",
    "We just found out that the exam has been moved to tomorrow morning.",
    "Honestly the weather is fine and I have nothing planned today.",
    "They surprised me with a cake and all my old friends at the party.",
]
# The planted copies: (source row, split of the copy, id, modality).
PLANTED = {
    "p-audio": "audio",
    "p-image-jpeg": "visual",
    "p-image-crop": "visual",
    "p-pixels": "visual",
    "p-text": "text",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("leakage-embedded")
    return load_embedded(("audio", "visual"), n_samples=70, n_speakers=6, seed=0, cache_dir=root)


def _noisy_shifted_quiet(source: str, target: Path) -> None:
    """20 dB SNR white noise, 50 ms later, half the gain."""
    signal, rate = sf.read(source, dtype="float64")
    rng = np.random.default_rng(0)
    noise = rng.normal(size=len(signal))
    noise *= np.sqrt(np.mean(signal**2) / np.mean(noise**2) / 10 ** (20 / 10))
    shifted = np.concatenate([np.zeros(int(0.05 * rate)), signal + noise])
    sf.write(target, 0.5 * shifted, rate)


def _jpeg_brighter(source: str, target: Path) -> None:
    buffer = io.BytesIO()
    Image.open(source).convert("L").save(buffer, "JPEG", quality=90)
    ImageEnhance.Brightness(Image.open(buffer)).enhance(1.2).save(target)


def _cropped(source: str, target: Path) -> None:
    image = Image.open(source)
    image.crop((2, 2, image.width, image.height)).save(target)


def _same_pixels(source: str, target: Path) -> None:
    # Another encoding of the same pixels (FER2013 has such copies under other ids).
    Image.open(source).convert("RGB").save(target, compress_level=9)


def _typos(text: str) -> str:
    return text.upper().replace("WAITING", "WAITNG").replace("JOB", "JBO")


def _planted(small: pd.DataFrame, folder: Path) -> tuple[pd.DataFrame, Fold, dict[str, str]]:
    """The small corpus with distinct texts, plus transformed copies of train samples in test."""
    base = small.copy()
    rng = random.Random(1)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(400)]
    base[schema.TEXT] = [" ".join(rng.choices(vocabulary, k=9)) for _ in range(len(base))]
    base.loc[: len(TEXTS) - 1, schema.TEXT] = TEXTS
    parts = np.array([TRAIN] * 50 + [VAL] * 10 + [TEST] * (len(base) - 60), dtype=object)
    sources = {"p-audio": 0, "p-image-jpeg": 1, "p-image-crop": 2, "p-pixels": 3, "p-text": 0}
    makers = {
        "p-audio": (schema.AUDIO, _noisy_shifted_quiet, ".wav"),
        "p-image-jpeg": (schema.IMAGE, _jpeg_brighter, ".png"),
        "p-image-crop": (schema.IMAGE, _cropped, ".png"),
        "p-pixels": (schema.IMAGE, _same_pixels, ".png"),
    }
    rows = []
    for name, (column, make, suffix) in makers.items():
        target = folder / f"{name}{suffix}"
        make(base.loc[sources[name], column], target)
        rows.append({schema.ID: name, schema.SPEAKER: "spk99", schema.CORPUS: "planted", column: str(target)})
    rows.append(
        {
            schema.ID: "p-text",
            schema.SPEAKER: "spk99",
            schema.CORPUS: "planted",
            schema.TEXT: _typos(TEXTS[0]),
        }
    )
    manifest = pd.concat([base, pd.DataFrame(rows)], ignore_index=True)
    assignment = np.concatenate([parts, [TEST] * len(rows)]).astype(str)
    pairs = {name: str(base.loc[sources[name], schema.ID]) for name in PLANTED}
    return manifest, Fold("holdout", assignment), pairs


@pytest.fixture
def planted(small: pd.DataFrame, tmp_path: Path) -> tuple[pd.DataFrame, Fold, dict[str, str]]:
    return _planted(small, tmp_path)


def _flagged(report: pd.DataFrame) -> pd.DataFrame:
    return report[report["kind"] != "group_overlap"]


def test_planted_duplicates_are_found_and_nothing_else(planted, tmp_path: Path) -> None:
    manifest, fold, sources = planted
    start = time.perf_counter()
    result = guard_leakage(manifest, [fold], "warn", cache_dir=tmp_path / "cache")
    print(f"planted corpus of {len(manifest)}: {time.perf_counter() - start:.2f} s")
    flagged = _flagged(result.report)
    found = {(r.id_a, r.id_b, r.modality) for r in flagged.itertuples()}
    for name, modality in PLANTED.items():
        assert (sources[name], name, modality) in found, (name, flagged)
    assert set(flagged["id_b"]) == set(PLANTED), flagged
    assert set(flagged["split_a"]) == {TRAIN} and set(flagged["split_b"]) == {TEST}
    pixels = flagged[flagged["id_b"] == "p-pixels"].iloc[0]
    assert (pixels["kind"], pixels["detail"]) == ("exact_duplicate", "same pixels")
    assert result.summary["near_duplicates"] == 4 and result.summary["exact_duplicates"] == 1
    assert result.folds[0] is fold
    # The fingerprints are cached: a second run reads them back.
    assert list((tmp_path / "cache" / "leakage").glob("*.pkl"))
    again = guard_leakage(manifest, [fold], "warn", cache_dir=tmp_path / "cache")
    pd.testing.assert_frame_equal(again.report, result.report)


def test_cached_audio_matches_are_those_of_the_files_and_settings(planted, tmp_path: Path) -> None:
    """The landmark matches are read back for unchanged files and settings, and only then."""
    manifest, fold, _ = planted
    cache = tmp_path / "cache"
    uncached = guard_leakage(manifest, [fold], "warn").report
    pd.testing.assert_frame_equal(guard_leakage(manifest, [fold], "warn", cache_dir=cache).report, uncached)
    [matches] = (cache / "leakage").glob("audio-near-*.pkl")
    pd.testing.assert_frame_equal(guard_leakage(manifest, [fold], "warn", cache_dir=cache).report, uncached)
    # Other settings match anew (here: no share is enough, so the planted audio copy is not flagged).
    strict = guard_leakage(manifest, [fold], "warn", cache_dir=cache, audio={"min_share": 1.01}).report
    assert "p-audio" not in set(_flagged(strict)["id_b"])
    assert len(list((cache / "leakage").glob("audio-near-*.pkl"))) == 2
    # A file that changes (its size and modification time) is fingerprinted and matched anew.
    copy = Path(manifest.loc[manifest[schema.ID] == "p-audio", schema.AUDIO].item())
    signal, rate = sf.read(copy)
    sf.write(copy, np.concatenate([signal, np.zeros(rate // 10)]), rate)
    changed = guard_leakage(manifest, [fold], "warn", cache_dir=cache).report
    assert "p-audio" in set(_flagged(changed)["id_b"])
    assert len(list((cache / "leakage").glob("audio-near-*.pkl"))) == 3
    assert matches.exists()


def test_drop_removes_the_copies_from_test_and_keeps_train(planted) -> None:
    manifest, fold, _ = planted
    result = guard_leakage(manifest, [fold], "drop")
    kept = result.folds[0]
    planted_rows = manifest[schema.ID].isin(list(PLANTED)).to_numpy()
    assert not kept.mask(TEST)[planted_rows].any() and not kept.mask(VAL)[planted_rows].any()
    assert (kept.mask(TRAIN) == fold.mask(TRAIN)).all()
    assert (kept.mask(TEST) == (fold.mask(TEST) & ~planted_rows)).all()
    assert result.summary["dropped"] == len(PLANTED)


def test_fail_names_the_pairs_and_the_fix(planted) -> None:
    manifest, fold, _ = planted
    with pytest.raises(LeakageError, match=r"near duplicate.*p-(audio|image|text).*leakage=drop"):
        guard_leakage(manifest, [fold], "fail")
    assert guard_leakage(manifest, [fold], "off").report.empty


def test_group_overlap_is_reported_not_enforced(planted) -> None:
    manifest, fold, _ = planted
    clean = manifest[~manifest[schema.ID].isin(list(PLANTED))].reset_index(drop=True)
    clean_fold = Fold("holdout", fold.assignment[: len(clean)])
    # Two sentences only (as RAVDESS): every split shares them and nothing can separate them.
    clean["group_sentence"] = np.where(np.arange(len(clean)) % 2, "kids", "dogs")
    result = guard_leakage(clean, [clean_fold], "fail")
    overlap = result.report[result.report["modality"] == "group_sentence"]
    assert set(overlap["id_a"]) == {"kids", "dogs"}
    assert overlap["detail"].str.contains("cannot be separated").all()
    assert result.summary["group_overlap/group_sentence"] == 2
    assert result.summary["group_overlap/speaker"] > 0


@pytest.mark.parametrize("modality", ["audio", "visual", "text"])
def test_embedded_corpora_have_no_false_positive(modality: str, cache_dir: Path) -> None:
    corpus = load_embedded((modality,), cache_dir=cache_dir)
    folds = list(StratifiedHoldout().folds(corpus, corpus[schema.EMOTION].to_numpy(), 0))
    start = time.perf_counter()
    result = guard_leakage(corpus, folds, "warn", cache_dir=cache_dir)
    print(f"embedded {modality}: {time.perf_counter() - start:.2f} s, {result.summary}")
    # No embedded corpus carries duplicates across splits (generator version 5 rewrites repeated texts).
    assert _flagged(result.report).empty, _flagged(result.report)


def test_twenty_thousand_texts_are_indexed_not_compared_pairwise() -> None:
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(3000)]
    texts = [" ".join(rng.choices(words, k=rng.randint(4, 12))) for _ in range(20_000)]
    # One typo (a letter doubled) and title case.
    copies = [(t[:2] + t[1] + t[2:]).title() for t in texts[:10]]
    manifest = pd.DataFrame(
        {
            schema.ID: [f"t{i}" for i in range(len(texts) + len(copies))],
            schema.SPEAKER: "s",
            schema.CORPUS: "random",
            schema.TEXT: texts + copies,
        }
    )
    assignment = np.array([TRAIN] * 14_000 + [VAL] * 3_000 + [TEST] * 3_000 + [TEST] * len(copies))
    start = time.perf_counter()
    result = guard_leakage(manifest, [Fold("holdout", assignment)], "warn")
    print(f"{len(manifest)} texts: {time.perf_counter() - start:.2f} s")
    flagged = _flagged(result.report)
    assert {f"t{20_000 + i}" for i in range(10)} <= set(flagged["id_b"])


def _compose_leakage(compose, mode: str):
    """``leakage=<mode>`` once conf/train.yaml lists the group, ``+leakage=<mode>`` before."""
    listed = "leakage" in (Path(__file__).parents[2] / "conf" / "train.yaml").read_text()
    return compose([f"{'' if listed else '+'}leakage={mode}"])


def test_config_group_passes_to_the_guard(compose, planted) -> None:
    manifest, fold, _ = planted
    for mode in ("off", "warn", "drop", "fail"):
        cfg = _compose_leakage(compose, mode)
        settings = OmegaConf.to_container(cfg.leakage, resolve=True)
        assert settings["mode"] == mode
        if mode != "fail":
            guard_leakage(manifest, [fold], **settings)
    with pytest.raises(ValueError, match="unknown setting"):
        guard_leakage(manifest, [fold], "warn", text={"max_distanse": 0.1})
