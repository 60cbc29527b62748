"""Fusion networks: shapes, masking a missing modality, modality dropout, attention weights."""

from __future__ import annotations

import functools

import pytest
import torch

from emoexp.models.cnn import SmallCNN
from emoexp.models.fusion import AttentionFusion, EarlyFusion, embedding_size
from emoexp.models.sequence import LSTMClassifier

ENCODERS = {
    "audio": functools.partial(LSTMClassifier, hidden_size=8, num_layers=1),
    "visual": functools.partial(SmallCNN, channels=[4, 8]),
    "text": functools.partial(LSTMClassifier, embedding_dim=8, hidden_size=8, num_layers=1),
}
KWARGS = {"audio": {"input_size": 5}, "visual": {"in_chans": 1}, "text": {"vocab_size": 20, "max_length": 6}}


def _inputs(batch: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "audio.x": torch.randn(batch, 7, 5),
        "audio.lengths": torch.full((batch,), 7),
        "visual.x": torch.randn(batch, 1, 16, 16),
        "text.input_ids": torch.randint(1, 20, (batch, 6)),
        "text.attention_mask": torch.ones(batch, 6, dtype=torch.long),
        "text.lengths": torch.full((batch,), 6),
    }


@pytest.mark.parametrize("cls", [EarlyFusion, AttentionFusion])
def test_fusion_forward_and_missing_modalities(cls):
    net = cls(3, ENCODERS, KWARGS, fusion_dim=8, modality_dropout=0.5).eval()
    inputs = _inputs()
    assert net(**inputs).shape == (4, 3)
    # The encoders' own heads are dropped (only embed() is used), so no parameter lacks a gradient.
    assert all(isinstance(e.head, torch.nn.Identity) for e in net.encoders.values())
    with net.without("audio"):
        masked = net(**inputs)
        # Without audio the output cannot depend on the audio input, which may even be absent.
        changed = {**inputs, "audio.x": torch.randn(4, 7, 5) * 10}
        assert torch.allclose(masked, net(**changed))
        no_audio = {k: v for k, v in inputs.items() if not k.startswith("audio.")}
        assert torch.allclose(masked, net(**no_audio))
    assert not torch.allclose(masked, net(**inputs))
    assert net.missing == frozenset()
    with pytest.raises(ValueError, match="unknown modalities"), net.without("smell"):
        pass


def test_attention_gives_no_weight_to_an_absent_modality():
    net = AttentionFusion(3, ENCODERS, KWARGS, fusion_dim=8).eval()
    net(**_inputs())
    assert torch.allclose(net.last_weights.sum(dim=1), torch.ones(4))
    with net.without("text"):
        net(**_inputs())
    assert (net.last_weights[:, 2] == 0).all()


def test_modality_dropout_keeps_at_least_one_modality_per_sample():
    net = EarlyFusion(3, ENCODERS, KWARGS, fusion_dim=8, modality_dropout=0.9).train()
    torch.manual_seed(1)
    present = net._presence(2000, torch.device("cpu"))
    assert present.any(dim=1).all()
    assert 0.05 < present.float().mean() < 0.5  # most modalities dropped, never all of a sample's
    net.eval()
    assert net._presence(10, torch.device("cpu")).all()


def test_bad_fusion_configs_are_rejected():
    with pytest.raises(ValueError, match="at least two modalities"):
        EarlyFusion(3, {"audio": ENCODERS["audio"]}, {"audio": KWARGS["audio"]})
    with pytest.raises(ValueError, match="no encoder for them"):
        EarlyFusion(3, {k: ENCODERS[k] for k in ("audio", "visual")}, KWARGS)
    with pytest.raises(ValueError, match="embedding size"):
        embedding_size(torch.nn.Conv1d(1, 1, 1))
