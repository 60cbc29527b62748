"""The bag-of-n-grams MLP: its sparse layer is a dense Linear; padding never counts or learns."""

from __future__ import annotations

import torch
from torch import nn

from emoexp.models.mlp import NgramMLP, SparseLinear


def _sparse(dense: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = int((dense != 0).sum(dim=1).max()) + 2  # wider than needed: trailing padding
    ids = torch.full((dense.shape[0], width), pad)
    weights = torch.zeros(dense.shape[0], width)
    for row in range(dense.shape[0]):
        [columns] = torch.nonzero(dense[row], as_tuple=True)
        ids[row, : len(columns)] = columns
        weights[row, : len(columns)] = dense[row, columns]
    return ids, weights


def test_sparse_linear_computes_the_dense_product():
    torch.manual_seed(0)
    dense = torch.rand(5, 30) * (torch.rand(5, 30) < 0.2)
    layer = SparseLinear(30, 7)
    reference = nn.Linear(30, 7)
    with torch.no_grad():
        reference.weight.copy_(layer.weight.weight[:30].T)
        reference.bias.copy_(layer.bias)
    torch.testing.assert_close(layer(*_sparse(dense, pad=30)), reference(dense))


def test_padding_neither_contributes_nor_learns():
    torch.manual_seed(0)
    layer = SparseLinear(10, 4)
    ids = torch.tensor([[1, 3, 10, 10], [2, 10, 10, 10]])
    weights = torch.tensor([[0.5, 0.5, 0.9, 0.9], [1.0, 0.7, 0.7, 0.7]])  # padding with non-zero weights
    expected = layer(ids[:, :2], torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    out = layer(ids, weights)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert torch.all(layer.weight.weight.grad[10] == 0) and torch.all(layer.weight.weight[10] == 0)


def test_the_mlp_drops_ngrams_only_in_training_and_splits_backbone_from_head():
    torch.manual_seed(0)
    net = NgramMLP(num_outputs=3, num_ngrams=50, hidden_size=16, input_dropout=0.5)
    ids, weights = _sparse(torch.rand(4, 50) * (torch.rand(4, 50) < 0.3), pad=50)
    net.eval()
    assert net(ngram_ids=ids, ngram_weights=weights).shape == (4, 3)
    torch.testing.assert_close(
        net(ngram_ids=ids, ngram_weights=weights), net(ngram_ids=ids, ngram_weights=weights)
    )
    net.train()
    first, second = (net.embed(ngram_ids=ids, ngram_weights=weights) for _ in range(2))
    assert not torch.equal(first, second)
    [backbone] = net.backbone_layers()
    assert backbone is net.hidden and net.head.in_features == 16


def test_the_dense_row_an_exported_graph_takes_gives_the_same_outputs():
    torch.manual_seed(0)
    dense = torch.rand(4, 40) * (torch.rand(4, 40) < 0.25)
    ids, weights = _sparse(dense, pad=40)
    net = NgramMLP(num_outputs=5, num_ngrams=40, hidden_size=8).eval()
    torch.testing.assert_close(net(ngram_tfidf=dense), net(ngram_ids=ids, ngram_weights=weights))
