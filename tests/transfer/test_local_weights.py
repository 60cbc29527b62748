"""Local pretrained weights reproduce the source model; bad checkpoints fail with errors naming the path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from emoexp.models.cnn import TimmClassifier
from emoexp.models.pretrained import MissingCheckpointError, PretrainedWeightsError
from emoexp.models.speech import SpeechEncoderClassifier
from emoexp.models.transformer import TextTransformer
from emoexp.tasks.transfer import backbone_layers, head_parameter_names


def _tokens(vocab: int = 30522) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, vocab, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_transformers_dir_reproduces_the_source_encoder(tiny_bert_dir):
    from transformers import AutoModel

    source = AutoModel.from_pretrained(tiny_bert_dir, local_files_only=True).eval()
    net = TextTransformer(num_outputs=7, vocab_size=30522, pretrained=str(tiny_bert_dir)).eval()
    inputs = _tokens()
    with torch.no_grad():
        expected = source(**inputs).last_hidden_state
        assert torch.allclose(net.encoder(**inputs).last_hidden_state, expected, atol=1e-6)
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (expected * mask).sum(1) / mask.sum(1)
        assert torch.allclose(net.backbone_features(**inputs), pooled, atol=1e-6)
        # cached backbone features give the same outputs as the full forward pass
        assert torch.allclose(
            net(backbone_features=net.backbone_features(**inputs)), net(**inputs), atol=1e-6
        )
    layers = backbone_layers(net)
    assert len(layers) == 1 + 2  # embeddings (+ pooler) stem, then the two blocks
    assert head_parameter_names(net) == ["head.weight", "head.bias"]


def test_minilm_package_checkpoint_loads_offline():
    from emoexp.resolvers import minilm_path

    net = TextTransformer(num_outputs=7, vocab_size=1, pretrained=minilm_path()).eval()
    assert net.encoder.config.hidden_size == 384 and len(backbone_layers(net)) == 1 + 6
    with torch.no_grad():
        assert net(**_tokens()).shape == (3, 7)


def test_wav2vec2_dir_reproduces_the_source_and_pools_layers(tiny_wav2vec2_dir):
    from transformers import AutoModel

    source = AutoModel.from_pretrained(tiny_wav2vec2_dir, local_files_only=True).eval()
    net = SpeechEncoderClassifier(
        num_outputs=7, pretrained=str(tiny_wav2vec2_dir), layer_pooling="weighted"
    ).eval()
    waveform = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(waveform, output_hidden_states=True).hidden_states
        got = net.encoder(waveform, output_hidden_states=True).hidden_states
        assert len(got) == 3 and all(
            torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected, strict=True)
        )
        features = net.backbone_features(waveform=waveform, lengths=torch.tensor([8000, 8000]))
        assert features.shape == (2, 3, 32)
        assert torch.allclose(features[:, -1], expected[-1].mean(dim=1), atol=1e-5)
        # zero layer weights: the uniform average of the layers
        assert torch.allclose(net.pool(features), torch.stack(expected).mean(dim=(0, 2)), atol=1e-5)
        assert torch.allclose(net(backbone_features=features), net(waveform=waveform), atol=1e-5)
    # the layer weights are head: they train even when the encoder is frozen
    assert "layer_weights" in head_parameter_names(net)
    last = SpeechEncoderClassifier(
        num_outputs=7, pretrained=str(tiny_wav2vec2_dir), layer_pooling="last"
    ).eval()
    with torch.no_grad():
        assert last.backbone_features(waveform=waveform).shape == (2, 32)


def test_padding_does_not_change_pooled_speech_features(tiny_wav2vec2_dir):
    net = SpeechEncoderClassifier(num_outputs=7, pretrained=str(tiny_wav2vec2_dir)).eval()
    short = torch.randn(1, 6400, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(short, (0, 3200))
    with torch.no_grad():
        alone = net.backbone_features(waveform=short, lengths=torch.tensor([6400]))
        in_batch = net.backbone_features(waveform=padded, lengths=torch.tensor([6400]))
    assert torch.allclose(alone, in_batch, atol=1e-4)


def _timm_source(in_chans: int = 1, num_classes: int = 7, name: str = "resnet18"):
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=num_classes).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_state_dict_reproduces_the_source_outputs(tmp_path, suffix):
    source = _timm_source()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    net = TimmClassifier(num_outputs=7, name="resnet18", in_chans=1, pretrained_path=str(path)).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(net(x=x), source(x), atol=1e-5)
    assert net.load_report["skipped"] == []
    # stem parameters, then residual blocks, bottom-up; the classifier is the head
    assert len(backbone_layers(net)) == 2 + 8
    assert head_parameter_names(net) == ["backbone.fc.weight", "backbone.fc.bias"]


def test_timm_channel_and_class_mismatches_adapt_the_stem_and_skip_the_head(tmp_path):
    source = _timm_source(in_chans=3, num_classes=1000)
    path = tmp_path / "imagenet-like.pth"
    torch.save(source.state_dict(), path)
    net = TimmClassifier(num_outputs=7, name="resnet18", in_chans=1, pretrained_path=str(path)).eval()
    assert net.load_report["skipped"] == ["fc.bias", "fc.weight"]
    assert torch.allclose(net.backbone.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    gray = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(gray.repeat(1, 3, 1, 1)), pre_logits=True)
        assert torch.allclose(net.embed(gray), expected, atol=1e-4)


def test_an_emoexp_checkpoint_is_a_valid_timm_weights_file(tmp_path):
    source = _timm_source()
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"net.backbone.{k}": v for k, v in source.state_dict().items()}}, path)
    net = TimmClassifier(num_outputs=7, name="resnet18", in_chans=1, pretrained_path=str(path)).eval()
    x = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(net(x=x), source(x), atol=1e-5)


# --- bad input: every error names the path ------------------------------------------------------


def test_missing_checkpoint_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingCheckpointError, match=re.escape(str(missing))):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        SpeechEncoderClassifier(num_outputs=7, pretrained=str(missing))
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        TimmClassifier(num_outputs=7, pretrained_path=str(missing / "w.pth"))


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_checkpoint_directories(tmp_path, tiny_bert_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingCheckpointError, match=re.escape(f"{empty} has no config.json")):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(empty))

    bad_config = _copy(tiny_bert_dir, tmp_path / "bad-config")
    (bad_config / "config.json").write_text("{not json")
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"cannot read {bad_config}/config.json")):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(bad_config))

    no_weights = _copy(tiny_bert_dir, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(MissingCheckpointError, match=re.escape(f"{no_weights} has no weights file")):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(no_weights))

    truncated = _copy(tiny_bert_dir, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"cannot load the weights in {truncated}")):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(truncated))


def test_architecture_mismatches(tmp_path, tiny_bert_dir, tiny_wav2vec2_dir):
    with pytest.raises(
        PretrainedWeightsError, match=re.escape(f"{tiny_wav2vec2_dir} holds a 'wav2vec2' model")
    ):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(tiny_wav2vec2_dir))
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{tiny_bert_dir} holds a 'bert' model")):
        SpeechEncoderClassifier(num_outputs=7, pretrained=str(tiny_bert_dir))

    resized = _copy(tiny_bert_dir, tmp_path / "resized")
    config = json.loads((resized / "config.json").read_text())
    config["intermediate_size"] = 48
    (resized / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsError, match=re.escape(str(resized))):
        TextTransformer(num_outputs=7, vocab_size=10, pretrained=str(resized))

    resnet34 = tmp_path / "resnet34.pth"
    torch.save(_timm_source(name="resnet34").state_dict(), resnet34)
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{resnet34} do not fit")) as error:
        TimmClassifier(num_outputs=7, name="resnet18", pretrained_path=str(resnet34))
    assert "unexpected: layer1.2" in str(error.value)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"cannot read weights file {garbage}")):
        TimmClassifier(num_outputs=7, pretrained_path=str(garbage))
