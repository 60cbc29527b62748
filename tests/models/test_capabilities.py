"""Networks declare their capabilities (backbone, backbone cache, fused modalities) in one interface."""

from __future__ import annotations

import functools
import importlib

import pytest
import torch
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR, ConfigError, group_options
from emoexp.models.capabilities import ModelCapabilities, capabilities
from emoexp.models.cnn import SmallCNN
from emoexp.models.fusion import AttentionFusion, EarlyFusion
from emoexp.models.sequence import LSTMClassifier
from emoexp.models.transformer import TextTransformer
from emoexp.tasks.transfer import TransferStrategy, backbone_layers, head_parameter_names

ENCODERS = {
    "audio": functools.partial(LSTMClassifier, hidden_size=8, num_layers=1),
    "visual": functools.partial(SmallCNN, channels=[4, 8]),
}
KWARGS = {"audio": {"input_size": 5}, "visual": {"in_chans": 1}}


def _net_classes() -> dict[str, type]:
    """The network class of every neural model config (scikit-learn models have no net)."""
    classes = {}
    for name in group_options("model"):
        node = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
        if node.get("net") is not None:
            module, _, attr = node.net._target_.rpartition(".")
            classes[name] = getattr(importlib.import_module(module), attr)
    return classes


def test_every_configured_network_declares_its_capabilities():
    classes = _net_classes()
    assert {"lstm", "cnn", "early_fusion", "attention_fusion"} <= set(classes)
    for name, cls in classes.items():
        assert issubclass(cls, ModelCapabilities), f"model={name}: {cls.__name__}"
        assert issubclass(cls, torch.nn.Module)


def test_unimodal_networks_expose_their_backbone_bottom_up():
    lstm = LSTMClassifier(3, vocab_size=20, embedding_dim=4, hidden_size=4, num_layers=1)
    assert lstm.backbone_layers() == [lstm.embedding, lstm.lstm]
    assert lstm.fused_modalities() == () and not lstm.supports_backbone_cache
    with pytest.raises(NotImplementedError, match="cannot cache"):
        lstm.backbone_features(input_ids=torch.ones(1, 3, dtype=torch.long))
    cnn = SmallCNN(3, channels=[4, 8, 16])
    assert len(cnn.backbone_layers()) == 3
    assert head_parameter_names(cnn) == ["head.weight", "head.bias"]


def test_backbone_cache_networks_accept_their_own_backbone_features():
    net = TextTransformer(3, vocab_size=30, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16)
    net.eval()
    inputs = {"input_ids": torch.randint(1, 30, (2, 5)), "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    assert net.supports_backbone_cache
    features = net.backbone_features(**inputs)
    assert torch.allclose(net(backbone_features=features), net(**inputs), atol=1e-6)
    frozen = TransferStrategy(name="frozen", freeze_backbone=True, cache_features=True)
    assert frozen.caches_features(net)
    assert not frozen.caches_features(LSTMClassifier(3, input_size=4, hidden_size=4, num_layers=1))
    assert not TransferStrategy(name="frozen", freeze_backbone=True).caches_features(net)


@pytest.mark.parametrize("cls", [EarlyFusion, AttentionFusion])
def test_fusion_networks_declare_the_modalities_they_fuse(cls):
    net = cls(3, ENCODERS, KWARGS, fusion_dim=8)
    assert net.fused_modalities() == ("audio", "visual")
    assert net.backbone_layers() == [] and not net.supports_backbone_cache
    with pytest.raises(ConfigError, match="has no backbone_layers"):
        backbone_layers(net)
    head = head_parameter_names(net)
    assert head and all(name.startswith("head.") for name in head)


def test_a_plain_module_has_no_capabilities():
    plain = torch.nn.Linear(2, 2)
    declared = capabilities(plain)
    assert declared.backbone_layers() == [] and declared.fused_modalities() == ()
    assert not declared.supports_backbone_cache
    assert capabilities(SmallCNN(3)) is not declared
