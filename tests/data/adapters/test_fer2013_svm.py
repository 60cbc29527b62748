"""``data=fer2013 model=svm``: the default face features use landmarks only where samples have them."""

from __future__ import annotations

import numpy as np
import pytest

from emoexp.config import instantiate
from emoexp.data import schema
from emoexp.features.handcrafted.visual import LANDMARKS_COLUMN, FaceFeatures, LandmarkError

HOG_LBP = (
    900 + 160
)  # HOG (9 orientations, 5x5 blocks of 2x2 cells) + LBP (4x4 cells x 10 bins) of 48x48 faces


def _fer_features(compose, root, *overrides: str):
    cfg = compose(["data=fer2013", f"data.root={root}", "modality=visual", "model=svm", *overrides])
    manifest = schema.validate_manifest(instantiate(cfg.data.corpus), cfg.data.name)
    return manifest, instantiate(cfg.model.features.visual)


def test_svm_default_features_on_fer2013_need_no_landmarks(compose, make_fer2013, tmp_path):
    manifest, features = _fer_features(compose, make_fer2013(per_class=2))
    assert features.landmarks == "auto"
    matrix, _ = features.extract(manifest, tmp_path / "features")
    assert matrix.shape == (len(manifest), HOG_LBP) and np.isfinite(matrix).all()
    assert not features.uses_landmarks(manifest)


def test_landmarks_true_still_demands_them(compose, make_fer2013):
    manifest, features = _fer_features(
        compose, make_fer2013(per_class=1), "model.features.visual.landmarks=true"
    )
    with pytest.raises(LandmarkError, match="landmarks=false"):
        features.extract(manifest, use_cache=False)


def test_auto_uses_landmarks_where_every_sample_has_them_and_keeps_the_choice(compose, make_fer2013):
    manifest, features = _fer_features(compose, make_fer2013(per_class=1))
    # Two eye points (0, 1) and a mouth point, as a corpus with its own landmark layout has.
    manifest[LANDMARKS_COLUMN] = [[10.0, 20.0, 30.0, 20.0, 20.0 + i % 3, 35.0] for i in range(len(manifest))]
    features = FaceFeatures(landmarks=features.landmarks, left_eye=[0], right_eye=[1])
    matrix, _ = features.extract(manifest, use_cache=False)
    assert matrix.shape == (len(manifest), HOG_LBP + 6 + 3)
    # The layout is fixed by the first manifest: a later one without landmarks is an error, not
    # a silently narrower matrix the fitted model cannot read.
    with pytest.raises(LandmarkError, match="flat list"):
        features.extract(manifest.assign(**{LANDMARKS_COLUMN: None}), use_cache=False)
