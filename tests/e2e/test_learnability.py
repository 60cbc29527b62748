"""Slow: on the default-sized embedded data the default models learn, and protocols matter.

These check docs/design.md#6-embedded-data-is-learnable-and-honest through the real
training path: `train(cfg)` with the shipped configs, no debug shortcuts.
"""

from __future__ import annotations

import pytest

from emoexp.train import train

pytestmark = pytest.mark.slow

CHANCE = 1 / 7


@pytest.mark.parametrize("modality", ["audio", "text", "visual"])
def test_default_model_beats_chance_and_majority_baseline(compose, modality):
    metrics = train(compose([f"modality={modality}", "num_threads=2"], debug=False))
    # Classes are balanced, so the majority-class baseline is ~1/7 accuracy and exactly 1/7 UAR.
    assert metrics["test/uar"] > CHANCE + 0.2, metrics
    assert metrics["test/accuracy"] > CHANCE + 0.2, metrics


def test_speaker_independent_split_is_harder_than_random_split(compose):
    random_split = train(compose(["protocol=holdout", "num_threads=2"], debug=False))
    speaker_split = train(compose(["protocol=speaker_holdout", "num_threads=2"], debug=False))
    assert speaker_split["test/uar"] < random_split["test/uar"] - 0.03, (speaker_split, random_split)
