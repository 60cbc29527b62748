"""Handcrafted extractors on hand-made signals, images and texts give the known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from emoexp.features.handcrafted import functional_names, functionals
from emoexp.features.handcrafted.audio import (
    AudioFunctionals,
    frame_signal,
    pitch_track,
    rms_db,
    spectral_features,
    zero_crossing_rate,
)
from emoexp.features.handcrafted.text import TextFeatures, VectorsFileError, load_vectors, stop_word_list
from emoexp.features.handcrafted.visual import (
    FaceFeatures,
    LandmarkError,
    align_landmarks,
    hog_features,
    lbp_histograms,
)

SR = 16000


def _tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5, phase: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


# --- audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [110.0, 220.0, 440.0])
def test_f0_of_a_pure_tone(freq):
    f0, voiced = pitch_track(_tone(freq), SR)
    assert voiced.mean() > 0.95
    assert abs(np.nanmedian(f0) - freq) < 1.0
    assert np.nanmax(np.abs(f0[voiced] - freq)) < 3.0


def test_noise_and_silence_are_unvoiced():
    noise = np.random.default_rng(0).normal(0.0, 0.1, SR)
    _, voiced = pitch_track(noise, SR)
    assert voiced.mean() < 0.05
    # A tone followed by near-silence: the quiet half is unvoiced (more than 40 dB down).
    signal = np.concatenate([_tone(220.0, 0.5), 1e-4 * _tone(220.0, 0.5)])
    _, voiced = pitch_track(signal, SR)
    assert voiced[:40].all() and not voiced[-40:].any()


def test_rms_of_a_known_sine():
    frames = frame_signal(_tone(1000.0, amplitude=0.5), 400, 160)
    # Interior frames hold 25 whole periods: RMS = A / sqrt(2) exactly.
    expected = 20 * math.log10(0.5 / math.sqrt(2))
    assert np.allclose(rms_db(frames)[3:-3], expected, atol=1e-6)


def test_zero_crossing_rate_of_known_signals():
    alternating = np.tile([1.0, -1.0], 2000)
    assert np.allclose(zero_crossing_rate(frame_signal(alternating, 400, 160))[3:-3], 1.0)
    # A sine of f Hz crosses zero 2f times a second: rate ~ 2f / sr per sample pair.
    rate = zero_crossing_rate(frame_signal(_tone(1000.0), 400, 160))[3:-3].mean()
    assert rate == pytest.approx(2 * 1000 / SR, rel=0.03)


def test_spectral_centroid_and_rolloff_of_a_tone():
    spectral = spectral_features(frame_signal(_tone(1000.0), 400, 160), SR)[3:-3]
    assert np.allclose(spectral[:, 0], 1000.0, atol=5.0)  # 1000 Hz is an exact FFT bin (40 Hz spacing)
    assert np.all(np.abs(spectral[:, 1] - 1000.0) <= 40.0)
    assert np.allclose(spectral[1:, 2], 0.0, atol=1e-6)  # a steady tone has no flux


def test_functionals_of_a_known_series():
    series = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, np.nan], [4.0, 5.0]])
    out = functionals(series, hop_seconds=0.5).reshape(2, -1)
    mean, std, p10, p50, p90, slope = out[0]
    assert (mean, p50) == (2.5, 2.5)
    assert std == pytest.approx(np.std([1, 2, 3, 4]))
    assert (p10, p90) == (pytest.approx(1.3), pytest.approx(3.7))
    assert slope == pytest.approx(2.0)  # +1 per 0.5 s
    assert out[1][0] == 5.0 and out[1][-1] == 0.0  # NaN frames are ignored
    assert functional_names(["a"]) == ["a_mean", "a_std", "a_p10", "a_p50", "a_p90", "a_slope"]


def test_audio_functionals_of_a_tone_file_are_cached(tmp_path):
    import soundfile as sf

    path = tmp_path / "tone.wav"
    sf.write(path, _tone(220.0, seconds=1.5).astype(np.float32), SR)
    manifest = pd.DataFrame({"id": ["a"], "audio": [str(path)]})
    extractor = AudioFunctionals()
    matrix, hit = extractor.extract(manifest, tmp_path / "cache")
    assert not hit and matrix.shape == (1, len(extractor.feature_names()))
    values = dict(zip(extractor.feature_names(), matrix[0], strict=True))
    assert values["f0_hz_mean"] == pytest.approx(220.0, abs=1.0)
    assert values["voiced_ratio"] > 0.95 and values["duration_s"] == pytest.approx(1.5)
    assert values["rms_db_p50"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)
    again, hit = AudioFunctionals().extract(manifest, tmp_path / "cache")
    assert hit and np.array_equal(again, matrix)
    _, hit = AudioFunctionals(n_mfcc=20).extract(manifest, tmp_path / "cache")
    assert not hit  # other parameters, other cache entry


# --- text --------------------------------------------------------------------------------------

CORPUS = [
    "The cat sat happily on the warm mat",
    "I am so angry about the broken promise",
    "What a wonderful and happy surprise",
    "The dog was not happy about the storm",
    "Angry words and a broken heart",
]


def test_tfidf_equals_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    features = TextFeatures(
        "tfidf", ngram_range=(1, 2), stop_words="english", keep_negations=False, sublinear_tf=False
    )
    texts, _ = features.extract(pd.DataFrame({"id": list("abcde"), "text": CORPUS}))
    [(_, ours)] = features.pipeline_steps()
    mine = ours.fit_transform(texts[:4]).toarray()
    reference = TfidfVectorizer(stop_words="english", ngram_range=(1, 2))
    expected = reference.fit_transform(CORPUS[:4]).toarray()
    assert list(ours.get_feature_names_out()) == list(reference.get_feature_names_out())
    assert np.allclose(mine, expected)
    # Texts unseen in fitting (the test split) use the training vocabulary and IDF only.
    assert np.allclose(ours.transform(texts[4:]).toarray(), reference.transform(CORPUS[4:]).toarray())


def test_negations_are_kept_unless_asked():
    assert "not" not in stop_word_list("english") and "the" in stop_word_list("english")
    assert "not" in stop_word_list("english", keep_negations=False)
    features = TextFeatures("bow", ngram_range=(1, 1))
    [(_, vectorizer)] = features.pipeline_steps()
    vectorizer.fit(["the dog was not happy"])
    assert set(vectorizer.get_feature_names_out()) == {"dog", "not", "happy"}


def test_stemming_needs_an_installed_stemmer():
    try:
        import snowballstemmer  # noqa: F401
    except ImportError:
        try:
            import nltk  # noqa: F401
        except ImportError:
            with pytest.raises(ImportError, match="pip install snowballstemmer"):
                TextFeatures(stem=True)
            return
    [(_, vectorizer)] = TextFeatures("bow", ngram_range=(1, 1), stem=True).pipeline_steps()
    vectorizer.fit(["happily happy happiness"])
    assert len(vectorizer.get_feature_names_out()) < 3


def _vectors_file(tmp_path, lines: list[str], name: str = "vectors.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_embedding_average_against_a_tiny_vectors_file(tmp_path):
    path = _vectors_file(tmp_path, ["happy 1.0 0.0 2.0", "sad 0.0 1.0 -2.0", "dog 3.0 3.0 3.0"])
    features = TextFeatures("embeddings", vectors_path=str(path), stop_words="english")
    manifest = pd.DataFrame(
        {"id": ["a", "b", "c"], "text": ["Happy sad!", "The happy dog", "nothing known here"]}
    )
    matrix, _ = features.extract(manifest, tmp_path / "cache")
    assert matrix.shape == (3, 3)
    assert np.allclose(matrix[0], [0.5, 0.5, 0.0])
    assert np.allclose(matrix[1], [2.0, 1.5, 2.5])  # "the" is a stop word
    assert np.allclose(matrix[2], 0.0)  # no known word
    assert features.pipeline_steps() == [] and not features.sparse


def test_word2vec_header_and_words_with_spaces(tmp_path):
    path = _vectors_file(tmp_path, ["2 2", "good 1 2", ". . . 3 4"])
    vectors, dim = load_vectors(path)
    assert dim == 2 and np.allclose(vectors["good"], [1, 2]) and np.allclose(vectors[". . ."], [3, 4])


def test_vectors_file_errors_name_the_problem(tmp_path):
    with pytest.raises(VectorsFileError, match="not found"):
        load_vectors(tmp_path / "missing.txt")
    short = _vectors_file(tmp_path, ["happy 1.0 0.0 2.0", "sad 0.0 1.0", "dog 3 3 3"], "short.txt")
    with pytest.raises(VectorsFileError, match=r"line 2 has 2 values, expected 3"):
        load_vectors(short)
    good = _vectors_file(tmp_path, ["happy 1.0 0.0 2.0"], "good.txt")
    with pytest.raises(VectorsFileError, match=r"line 1 has 3 values, expected 4"):
        load_vectors(good, dim=4)
    with pytest.raises(VectorsFileError, match=r"line 1 declares dimension 3, expected 4"):
        load_vectors(_vectors_file(tmp_path, ["1 3", "a 1 2 3"], "header.txt"), dim=4)
    bad = _vectors_file(tmp_path, ["happy 1.0 0.0 2.0", "sad 0.0 x 1.0"], "bad.txt")
    with pytest.raises(VectorsFileError, match=r"line 2 \(word 'sad'\) has a non-numeric"):
        load_vectors(bad)
    binary = tmp_path / "vectors.bin"
    binary.write_bytes(b"2 3\nhappy \xff\xfe\x00\x01")
    with pytest.raises(VectorsFileError, match="binary word2vec"):
        load_vectors(binary)
    # Through the featurizer, as a run sees it.
    features = TextFeatures("embeddings", vectors_path=str(short))
    with pytest.raises(VectorsFileError, match="line 2"):
        features.extract(pd.DataFrame({"id": ["a"], "text": ["happy sad"]}), use_cache=False)


def test_embeddings_need_a_vectors_path():
    with pytest.raises(ValueError, match="vectors_path"):
        TextFeatures("embeddings")


# --- visual ------------------------------------------------------------------------------------


def test_hog_and_lbp_shapes_and_determinism():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    hog = hog_features(image)
    # 6x6 cells of 8 px, 5x5 blocks of 2x2 cells, 9 orientations.
    assert hog.shape == (5 * 5 * 2 * 2 * 9,)
    assert np.array_equal(hog, hog_features(image.copy()))
    lbp = lbp_histograms(image, points=8, radius=1, grid=4)
    assert lbp.shape == (4 * 4 * 10,)
    assert np.allclose(lbp.reshape(16, 10).sum(axis=1), 1.0)
    assert np.array_equal(lbp, lbp_histograms(image.copy()))


def test_lbp_of_a_flat_image_is_one_pattern_and_hog_is_zero():
    flat = np.full((48, 48), 128, dtype=np.uint8)
    histograms = lbp_histograms(flat).reshape(4, 4, 10)
    # Every neighbour equals the centre: all bits set, the uniform pattern with P ones (bin 8);
    # only the border pixels (whose outside neighbours count as 0) of the outer cells differ.
    assert np.allclose(histograms[1:3, 1:3, 8], 1.0)
    assert np.allclose(histograms.sum(axis=2), 1.0)
    assert np.allclose(hog_features(flat), 0.0)


def test_landmark_alignment_removes_pose():
    points = np.array([[10.0, 20.0], [30.0, 20.0], [20.0, 35.0]])  # eyes and a mouth
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T * scale + shift
    expected = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.75]])
    assert np.allclose(align_landmarks(points, [0], [1]), expected)
    assert np.allclose(align_landmarks(moved, [0], [1]), expected)


def test_embedded_faces_come_with_landmarks_that_follow_the_expression():
    from emoexp.data.embedded.visual import LANDMARKS, render_face, render_face_with_landmarks

    neutral_image, neutral = render_face_with_landmarks("neutral", 0.9, "s1", "female", 48, 0, "x")
    _, surprise = render_face_with_landmarks("surprise", 0.9, "s1", "female", 48, 0, "x")
    assert neutral.shape == (len(LANDMARKS), 2)
    assert np.array_equal(neutral_image, render_face("neutral", 0.9, "s1", "female", 48, 0, "x"))
    inner = neutral[3:]  # brows, eyes, nose, mouth (the face contour may leave the crop)
    assert ((inner > 0) & (inner < 48)).all()
    index = {name: i for i, name in enumerate(LANDMARKS)}

    def opening(points):
        aligned = align_landmarks(points, [9, 10, 11, 12], [13, 14, 15, 16])
        return aligned[index["lip_lower_inner"], 1] - aligned[index["lip_upper_inner"], 1]

    assert opening(surprise) > opening(neutral) + 0.1  # the jaw drops (AU26)
    # The open mouth is drawn dark where the landmarks say it is.
    image, points = render_face_with_landmarks("surprise", 1.0, "s1", "female", 48, 0, "y")
    centre = (points[index["lip_upper_inner"]] + points[index["lip_lower_inner"]]) / 2
    cheek = (points[index["eye_left_bottom"]] + points[index["mouth_left"]]) / 2
    assert image[int(centre[1]), int(centre[0])] < image[int(cheek[1]), int(cheek[0])] - 40


def _faces_manifest(tmp_path, landmarks: list | None):
    from PIL import Image

    rng = np.random.default_rng(1)
    paths = []
    for i in range(2):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48)).astype(np.uint8), mode="L").save(path)
        paths.append(str(path))
    frame = pd.DataFrame({"id": ["a", "b"], "image": paths})
    if landmarks is not None:
        frame["landmarks"] = landmarks
    return frame


def test_face_features_join_appearance_and_geometry(tmp_path):
    square = [0.0, 0.0, 2.0, 0.0, 1.0, 2.0]  # three points: two eyes and a mouth
    manifest = _faces_manifest(tmp_path, [square, square])
    features = FaceFeatures(left_eye=[0], right_eye=[1])
    matrix, hit = features.extract(manifest, tmp_path / "cache")
    assert not hit and matrix.shape == (2, 900 + 160 + 6 + 3)
    assert np.allclose(matrix[0, -9:-3], [-0.5, 0.0, 0.5, 0.0, 0.0, 1.0])
    again, hit = FaceFeatures(left_eye=[0], right_eye=[1]).extract(manifest, tmp_path / "cache")
    assert hit and np.array_equal(again, matrix)


def test_missing_or_bad_landmarks_are_clear_errors(tmp_path):
    with pytest.raises(LandmarkError, match="landmarks=false"):
        FaceFeatures().extract(_faces_manifest(tmp_path, None), use_cache=False)
    assert FaceFeatures(landmarks=False).extract(_faces_manifest(tmp_path, None), use_cache=False)[
        0
    ].shape == (2, 1060)
    with pytest.raises(LandmarkError, match=r"sample 'a'.*flat list"):
        FaceFeatures().extract(_faces_manifest(tmp_path, [[1.0, 2.0, 3.0], [1.0, 2.0]]), use_cache=False)
    with pytest.raises(LandmarkError, match="left_eye/right_eye"):
        FaceFeatures().extract(_faces_manifest(tmp_path, [[0.0, 0.0, 1.0, 1.0]] * 2), use_cache=False)
