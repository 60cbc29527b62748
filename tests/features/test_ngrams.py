"""Sparse TF-IDF n-gram rows for the neural text default: exact, train-fitted, saved and joined."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from emoexp.features.ngrams import NgramFeatures, padded_rows
from emoexp.features.text import TextError

TRAIN = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d"],
        "text": ["soooo happy today 😂😂", "I'm not happy :(", "(T_T) why", "最高！ #BestDay"],
    }
)
TEST = pd.DataFrame({"id": ["x", "y"], "text": ["happpy unseenword 😂", "?"]})


def _dense(ids: torch.Tensor, weights: torch.Tensor, columns: int) -> np.ndarray:
    out = np.zeros((ids.shape[0], columns + 1))
    np.add.at(out, (np.arange(ids.shape[0])[:, None], ids.numpy()), weights.numpy())
    return out[:, :columns]


def test_padded_rows_hold_exactly_the_sparse_matrix():
    matrix = sp.csr_matrix(np.array([[0.0, 0.5, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0], [0.3, 0.0, 0.0, 0.0]]))
    ids, weights = padded_rows(matrix, pad=4)
    assert ids.shape == weights.shape == (3, 2) and ids.dtype == torch.int64
    assert ids[1].tolist() == [4, 4] and weights[1].tolist() == [0.0, 0.0]  # an empty row: all padding
    np.testing.assert_allclose(_dense(ids, weights, 4), matrix.toarray(), rtol=1e-6)


def test_rows_are_the_tfidf_vectors_of_the_training_vocabulary():
    features = NgramFeatures()
    features.fit(TRAIN, None)
    word, chars = features._parts()
    assert "unseenword" not in word.vocabulary_  # fitted on the training texts only
    assert {"😂", ":(", "(T_T)", "#bestday", "not happy"} <= set(word.vocabulary_)
    assert {"最高", "😂 "} <= set(chars.vocabulary_)
    out = features.extract(TEST)
    assert out["ngram_ids"].shape == out["ngram_weights"].shape
    dense = _dense(out["ngram_ids"], out["ngram_weights"], features.num_ngrams)
    expected = features._vectorizer.transform(TEST["text"]).toarray()
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    # the unseen word and the elongation still share character n-grams with the training texts
    assert np.linalg.norm(dense[0]) == pytest.approx(1.0, abs=1e-5)
    assert features.net_kwargs() == {"num_ngrams": len(word.vocabulary_) + len(chars.vocabulary_)}


def test_saved_state_reproduces_the_rows_through_json():
    fitted = NgramFeatures(analyzer="word+char", char_ngram_range=(1, 3))
    fitted.fit(TRAIN, None)
    state = fitted.state_dict()
    # the model folder stores the vocabularies as JSON and the idf vectors as tensors
    as_json = json.loads(json.dumps({"parts": [{"vocabulary": p["vocabulary"]} for p in state["parts"]]}))
    restored = NgramFeatures(analyzer="word+char", char_ngram_range=(1, 3))
    restored.load_state_dict(
        {"parts": [{**p, "idf": s["idf"]} for p, s in zip(as_json["parts"], state["parts"], strict=True)]}
    )
    for key, value in fitted.extract(TEST).items():
        assert torch.equal(restored.extract(TEST)[key], value)
    with pytest.raises(ValueError, match="analyzer='word' needs 1"):
        NgramFeatures(analyzer="word").load_state_dict(state)


def test_row_groups_of_different_widths_join_with_padding():
    features = NgramFeatures()
    features.fit(TRAIN, None)
    whole = features.extract(TRAIN)
    parts = [features.extract(TRAIN.iloc[[i]]) for i in range(len(TRAIN))]
    assert len({p["ngram_ids"].shape[1] for p in parts}) > 1
    joined = features.join(parts)
    assert joined["ngram_ids"].shape == whole["ngram_ids"].shape
    assert torch.equal(joined["ngram_ids"], whole["ngram_ids"])
    assert torch.equal(joined["ngram_weights"], whole["ngram_weights"])


def test_empty_text_names_the_sample():
    features = NgramFeatures()
    features.fit(TRAIN, None)
    with pytest.raises(TextError, match="'blank'"):
        features.extract(pd.DataFrame({"id": ["blank"], "text": ["   "]}))
