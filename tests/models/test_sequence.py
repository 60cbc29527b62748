"""The recurrent model's frame subsampling and attention pooling."""

from __future__ import annotations

import pytest
import torch

from emoexp.models.sequence import AttentionPooling, FrameSubsampler, LSTMClassifier


def _padded(x: torch.Tensor, lengths: torch.Tensor, value: float) -> torch.Tensor:
    """``x`` with every step past its sequence's length set to ``value``."""
    steps = torch.arange(x.shape[1])[None, :, None]
    return torch.where(steps < lengths[:, None, None], x, torch.full_like(x, value))


def test_the_subsampler_shortens_sequences_and_rounds_lengths_up():
    sub = FrameSubsampler(input_size=5, channels=8, stride=4).eval()
    x, lengths = torch.randn(3, 301, 5), torch.tensor([301, 150, 1])
    out, out_lengths = sub(x, lengths)
    assert out.shape == (3, 76, 8)
    assert out_lengths.tolist() == [76, 38, 1]
    steps = torch.arange(76)[None, :]
    assert torch.all(out[steps >= out_lengths[:, None]] == 0)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("subsample", [1, 3])
def test_outputs_do_not_depend_on_what_pads_a_sequence(pooling, subsample):
    torch.manual_seed(0)
    net = LSTMClassifier(
        4, input_size=6, hidden_size=8, num_layers=2, subsample=subsample, pooling=pooling
    ).eval()
    x, lengths = torch.randn(3, 40, 6), torch.tensor([40, 17, 2])
    with torch.no_grad():
        reference = net(x=_padded(x, lengths, 0.0), lengths=lengths)
        for value in (5.0, -3.0):
            torch.testing.assert_close(net(x=_padded(x, lengths, value), lengths=lengths), reference)


def test_attention_weights_only_valid_steps():
    pool = AttentionPooling(3)
    seq = torch.randn(2, 5, 3)
    mask = (torch.arange(5)[None, :] < torch.tensor([5, 1])[:, None]).unsqueeze(-1)
    pooled = pool(seq, mask)
    torch.testing.assert_close(pooled[1], seq[1, 0])  # one valid step: its features, whatever else


def test_the_export_path_computes_what_packing_does_with_subsampling(monkeypatch):
    torch.manual_seed(0)
    net = LSTMClassifier(3, input_size=5, hidden_size=6, subsample=2, pooling="attention").eval()
    x, lengths = torch.randn(3, 11, 5), torch.tensor([11, 6, 1])
    with torch.no_grad():
        packed = net(x=x, lengths=lengths)
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
        torch.testing.assert_close(net(x=x, lengths=lengths), packed)


def test_token_inputs_ignore_subsampling():
    net = LSTMClassifier(3, vocab_size=20, embedding_dim=4, hidden_size=4, subsample=4)
    assert net.subsampler is None
    assert net(input_ids=torch.randint(1, 20, (2, 7)), lengths=torch.tensor([7, 3])).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"pooling": "max"}, "model.net.pooling='max' is unknown"), ({"subsample": 0}, "model.net.subsample=0")],
)
def test_bad_options_name_their_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTMClassifier(3, input_size=4, **kwargs)


def test_attention_pooling_trains_under_bf16_autocast():
    net = LSTMClassifier(3, input_size=5, hidden_size=6, subsample=2, pooling="attention")
    x, lengths = torch.randn(2, 9, 5), torch.tensor([9, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x=x, lengths=lengths)
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
