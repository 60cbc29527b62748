"""A class with no sample in a split is an error, and derived targets are known, on real corpus files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR, instantiate
from emoexp.data import schema
from emoexp.data.adapters import load_iemocap, load_ravdess
from emoexp.data.splits import TEST, TRAIN, VAL, Fold
from emoexp.labels.multilabel import MultiLabelScheme
from emoexp.labels.schemes import DERIVED_ATTR, CategoricalScheme, LabelSchemeError

RAVDESS8 = ["neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise"]


def _scheme(name: str, **overrides):
    node = OmegaConf.load(CONF_DIR / "label_scheme" / f"{name}.yaml")
    return instantiate(OmegaConf.merge(node, overrides))


def _by_speaker(manifest: pd.DataFrame, parts: dict[str, str]) -> Fold:
    """A fold assigning each speaker's samples to one part (speaker-independent, as protocols do)."""
    return Fold("fold0", manifest[schema.SPEAKER].map(parts).to_numpy(dtype=object))


def test_hydra_merged_mapping_that_starves_a_class_is_refused(compose):
    cfg = compose(["data=ravdess", f"label_scheme.classes=[{','.join(RAVDESS8)}]", "label_scheme.mapping={}"])
    with pytest.raises(
        LabelSchemeError, match=r"still maps calm -> neutral.*label_scheme=native.*mapping\.calm=calm"
    ):
        instantiate(cfg.label_scheme)


def test_class_missing_from_the_corpus_names_the_class_split_and_fix(make_ravdess):
    manifest = load_ravdess(make_ravdess(actors=range(1, 5), emotions=[1, 3, 4, 5, 6, 7, 8]))  # no calm
    scheme = CategoricalScheme(name="ravdess8", classes=RAVDESS8)
    prepared = scheme.prepare(manifest)
    fold = _by_speaker(prepared, {"Actor_01": TRAIN, "Actor_02": TRAIN, "Actor_03": VAL, "Actor_04": TEST})
    with pytest.raises(LabelSchemeError) as error:
        scheme.check_folds(prepared, [fold])
    message = str(error.value)
    assert "['calm']" in message and "fold0 train: ['calm']" in message and "fold0 test: ['calm']" in message
    assert "no sample of the corpus is labelled 'calm'" in message and "label_scheme=native" in message


def test_class_missing_from_one_split_names_that_split(make_ravdess):
    manifest = load_ravdess(make_ravdess(actors=range(1, 4)))
    manifest = manifest[~((manifest[schema.SPEAKER] == "Actor_03") & (manifest[schema.EMOTION] == "fear"))]
    scheme = _scheme("native", classes=RAVDESS8, mapping={})
    prepared = scheme.prepare(manifest.reset_index(drop=True))
    fold = _by_speaker(prepared, {"Actor_01": TRAIN, "Actor_02": VAL, "Actor_03": TEST})
    with pytest.raises(
        LabelSchemeError, match=r"fold0 test: \['fear'\].*'fear' has samples, but none in that split"
    ):
        scheme.check_folds(prepared, [fold])
    scheme.check_folds(prepared, [fold], parts=(TRAIN, VAL))  # train and val have every class
    no_val = Fold("holdout", np.where(fold.mask(VAL), TRAIN, fold.assignment))
    with pytest.raises(LabelSchemeError, match=r"holdout test: \['fear'\]"):
        scheme.check_folds(prepared, [no_val])


def test_every_class_present_passes_and_dimensional_schemes_have_nothing_to_check(make_ravdess):
    manifest = load_ravdess(make_ravdess(actors=range(1, 4)))
    fold = _by_speaker(manifest, {"Actor_01": TRAIN, "Actor_02": VAL, "Actor_03": TEST})
    for name in ("ekman7", "valence_arousal", "both"):
        scheme = _scheme(name)
        scheme.check_folds(scheme.prepare(manifest), [fold])
    ekman6 = _scheme("ekman6")
    prepared = ekman6.prepare(manifest)  # neutral and calm left out, by the mapping
    ekman6.check_folds(
        prepared, [_by_speaker(prepared, {"Actor_01": TRAIN, "Actor_02": VAL, "Actor_03": TEST})]
    )


def test_multilabel_label_without_a_positive_in_train(tmp_path):
    labels = [["anger"], ["joy", "anger"], ["fear"], ["joy"], ["fear", "anger"], ["joy"]]
    manifest = pd.DataFrame({schema.ID: list("abcdef"), schema.LABELS: labels, schema.EMOTION: None})
    scheme = MultiLabelScheme(name="multilabel")
    prepared = scheme.prepare(manifest)
    fold = Fold("holdout", np.array([TRAIN, TRAIN, TEST, TRAIN, VAL, TEST], dtype=object))
    with pytest.raises(LabelSchemeError, match=r"holdout train: \['fear'\]"):
        scheme.check_folds(prepared, [fold])
    # Validation or test without a rare label is allowed: only training must see every label.
    scheme.check_folds(prepared, [Fold("f", np.array([TRAIN, TRAIN, TRAIN, TEST, TRAIN, VAL], dtype=object))])


def test_derived_targets_on_a_corpus_without_ratings(make_ravdess):
    manifest = load_ravdess(make_ravdess(actors=range(1, 3)))
    scheme = _scheme("valence_arousal")
    prepared = scheme.prepare(manifest)
    assert scheme.derived_targets(prepared) == ["valence", "arousal"]
    assert prepared.attrs[DERIVED_ATTR] == {"valence": len(prepared), "arousal": len(prepared)}
    # Subsetting (data.max_samples) keeps the record; a frame that lost it is still recognised.
    assert scheme.derived_targets(prepared.iloc[:5].reset_index(drop=True)) == ["valence", "arousal"]
    assert scheme.derived_targets(pd.DataFrame(prepared.to_dict("list"))) == ["valence", "arousal"]
    both = _scheme("both")
    assert both.derived_targets(both.prepare(manifest)) == ["valence", "arousal"]
    assert _scheme("ekman7").derived_targets(_scheme("ekman7").prepare(manifest)) == []
    with pytest.raises(LabelSchemeError, match="no sample has"):
        _scheme("valence_arousal", derive_from_category=False).prepare(manifest)


def test_annotated_ratings_are_not_derived(make_iemocap):
    manifest = load_iemocap(make_iemocap(sessions=(1, 2)), with_text=False)
    scheme = _scheme("valence_arousal")
    prepared = scheme.prepare(manifest)
    assert scheme.derived_targets(prepared) == []
    assert scheme.derived_targets(pd.DataFrame(prepared.to_dict("list"))) == []
    partly = manifest.copy()
    partly.loc[0, schema.AROUSAL] = np.nan
    assert scheme.derived_targets(scheme.prepare(partly)) == ["arousal"]


def test_check_folds_reads_folds_of_a_real_protocol(compose, make_ravdess):
    cfg = compose(["data=ravdess", f"data.root={make_ravdess(actors=range(1, 7))}", "label_scheme=native"])
    manifest = instantiate(cfg.data.corpus)
    scheme = instantiate(cfg.label_scheme)
    prepared = scheme.prepare(manifest)
    protocol = instantiate(cfg.protocol)
    folds = list(protocol.folds(prepared, scheme.stratify_labels(prepared), cfg.seed))
    scheme.check_folds(prepared, folds)
    assert Path(cfg.data.root).is_dir()
