"""Planted duplicates (experiments on leakage): real copies under other speakers, found by the guard."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emoexp.data import schema
from emoexp.data.embedded import load_embedded
from emoexp.data.leakage import guard_leakage
from emoexp.data.leakage.plant import COPY_SUFFIX, with_planted_duplicates
from emoexp.data.splits import SpeakerHoldout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    return load_embedded(("audio",), n_samples=84, n_speakers=6, seed=0, cache_dir=root), root


def test_copies_are_real_files_under_other_speakers(corpus):
    clean, root = corpus
    planted = with_planted_duplicates(clean, fraction=0.25, seed=3, cache_dir=root)
    copies = planted[planted[schema.ID].str.endswith(COPY_SUFFIX)]
    assert len(planted) == len(clean) + len(copies) and len(copies) == 21
    originals = clean.set_index(schema.ID).loc[copies[schema.ID].str.removesuffix(COPY_SUFFIX)]
    assert (copies[schema.SPEAKER].to_numpy() != originals[schema.SPEAKER].to_numpy()).all()
    assert (copies["emotion"].to_numpy() == originals["emotion"].to_numpy()).all()
    unchanged = [
        np.array_equal(sf.read(c)[0], sf.read(o)[0])
        for c, o in zip(copies[schema.AUDIO], originals[schema.AUDIO], strict=True)
    ]
    assert 0 < sum(unchanged) < len(unchanged)  # exact copies and near-duplicates
    again = with_planted_duplicates(clean, fraction=0.25, seed=3, cache_dir=root)
    assert again[schema.SPEAKER].tolist() == planted[schema.SPEAKER].tolist()


def test_a_speaker_split_cannot_keep_them_apart_and_the_guard_drops_them(corpus):
    clean, root = corpus
    planted = with_planted_duplicates(clean, fraction=0.5, seed=0, cache_dir=root)
    fold = next(SpeakerHoldout(0.2, 0.2).folds(planted, None, seed=0))
    result = guard_leakage(planted, [fold], "drop", cache_dir=root / "guard")
    assert result.summary["exact_duplicates"] > 0 and result.summary["near_duplicates"] > 0
    assert result.summary["dropped"] > 0
    with pytest.raises(ValueError, match="fraction"):
        with_planted_duplicates(clean, fraction=0.0)
