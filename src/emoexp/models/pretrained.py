"""Pretrained weights from local paths: HF checkpoint directories and weight files, with clear errors.

Nothing here downloads (docs/design.md#5-offline-by-default). Every failure names the path and what to change:
a missing directory, a directory that is not a checkpoint, weights that cannot be read, or
weights that do not fit the architecture that uses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class PretrainedWeightsError(ValueError):
    """Pretrained weights cannot be used: corrupt, unreadable, or for another architecture."""


class MissingCheckpointError(PretrainedWeightsError, FileNotFoundError):
    """A pretrained checkpoint directory or weights file does not exist."""


def is_speech_config(config: Any) -> bool:
    """Whether a transformers config describes a wav2vec2/HuBERT-style speech encoder (it has a conv stem)."""
    return hasattr(config, "conv_dim")


def load_hf_encoder(path: str | Path, modality: str) -> nn.Module:
    """Load a transformers encoder (``AutoModel``) from a local checkpoint directory.

    Args:
        path: Directory written by ``save_pretrained`` (``config.json`` plus weights).
        modality: ``text`` (BERT-family) or ``audio`` (wav2vec2/HuBERT-style); a checkpoint
            of the other kind is rejected.

    Raises:
        MissingCheckpointError: The directory or its weights file does not exist.
        PretrainedWeightsError: The config or weights are unreadable, belong to another kind of
            model, or do not fit the config (missing or mis-shaped tensors).
    """
    from transformers import AutoConfig, AutoModel

    path = Path(path)
    fix = "emoexp loads weights from local directories only (a `save_pretrained` output)"
    if not path.is_dir():
        raise MissingCheckpointError(f"pretrained checkpoint directory not found: {path} ({fix}).")
    if not (path / "config.json").is_file():
        raise MissingCheckpointError(f"{path} has no config.json: not a transformers checkpoint ({fix}).")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as error:  # transformers raises OSError, ValueError or JSON errors for bad configs
        raise PretrainedWeightsError(f"cannot read {path / 'config.json'}: {_describe(error)}") from error
    speech = is_speech_config(config)
    if speech != (modality == "audio"):
        wanted = "a wav2vec2/HuBERT-style speech encoder" if not speech else "a BERT-family text encoder"
        raise PretrainedWeightsError(
            f"{path} holds a {config.model_type!r} model, but a {modality} model needs {wanted}; "
            "point model.net.pretrained at a checkpoint of that kind."
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise MissingCheckpointError(f"{path} has no weights file (one of {list(WEIGHT_FILES)}).")
    try:
        model, info = AutoModel.from_pretrained(path, local_files_only=True, output_loading_info=True)
    except Exception as error:  # corrupt safetensors, shape mismatches, truncated files
        raise PretrainedWeightsError(f"cannot load the weights in {path}: {_describe(error)}") from error
    problems = {k: sorted(info.get(k) or ()) for k in ("missing_keys", "mismatched_keys")}
    if any(problems.values()):
        raise PretrainedWeightsError(
            f"the weights in {path} do not fit its config.json ({config.model_type}): "
            + "; ".join(f"{k}: {_preview(v)}" for k, v in problems.items() if v)
        )
    return model


class DirectParameters(nn.Module):
    """Parameters a module owns directly (not through a submodule), e.g. wav2vec2's mask embedding."""

    def __init__(self, params: dict[str, nn.Parameter]):
        super().__init__()
        for name, param in params.items():
            self.register_parameter(name.replace(".", "_"), param)


def hf_layer_groups(model: nn.Module) -> list[nn.Module]:
    """Split a transformers encoder into ``[stem, layer_0, ..., layer_n-1]``, bottom-up.

    The layer stack is the encoder's ``ModuleList`` of blocks (``encoder.layer`` in BERT,
    ``encoder.layers`` in wav2vec2/HuBERT); the stem is every other parameter (embeddings,
    convolutional feature encoder, positional convolution, pooler). The returned modules only
    reference the encoder's own submodules, so freezing them freezes the encoder.
    """
    stack = None
    for dotted in ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer"):
        node: Any = model
        for part in dotted.split("."):
            node = getattr(node, part, None)
        if isinstance(node, nn.ModuleList) and len(node) > 0:
            stack = node
            break
    if stack is None:
        lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
        if not lists:
            raise PretrainedWeightsError(f"{type(model).__name__} has no layer stack (nn.ModuleList).")
        stack = max(lists, key=len)
    in_stack = {id(p) for p in stack.parameters()}
    stem: list[nn.Module] = []

    def collect(module: nn.Module, prefix: str) -> None:
        direct = {f"{prefix}{n}": p for n, p in module.named_parameters(recurse=False)}
        if direct:
            stem.append(DirectParameters(direct))
        for name, child in module.named_children():
            if child is stack:
                continue
            params = list(child.parameters())
            if not params:
                continue
            if not any(id(p) in in_stack for p in params):
                stem.append(child)
            else:
                collect(child, f"{prefix}{name}.")

    collect(model, "")
    return [nn.ModuleList(stem), *stack]


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a ``torch.save`` file (``weights_only=True``).

    A Lightning checkpoint (``{"state_dict": ...}``) is unwrapped. Raises
    :class:`MissingCheckpointError` or :class:`PretrainedWeightsError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(f"weights file not found: {path} (emoexp never downloads weights).")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or truncated files raise many different types
        raise PretrainedWeightsError(f"cannot read weights file {path}: {_describe(error)}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return state


def load_matching(
    module: nn.Module, state: dict[str, torch.Tensor], source: str, skippable: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Load ``state`` into ``module``, tolerating only differences in the ``skippable`` keys (the head).

    Args:
        module: The network to load into.
        state: Tensors by parameter/buffer name.
        source: Where the state came from (named in errors).
        skippable: Keys that may be missing from ``state`` or differ in shape; they keep their
            fresh initialisation (a head sized for another label scheme).

    Returns:
        ``{"skipped": [...], "loaded": [...]}``.

    Raises:
        PretrainedWeightsError: Naming ``source`` and the keys, when any other key is missing,
            unexpected or differs in shape (another architecture).
    """
    own = module.state_dict()
    skippable = set(skippable)
    missing = [k for k in own if k not in state and k not in skippable]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape and k not in skippable
    ]
    if missing or unexpected or mismatched:
        found = (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        details = [f"{label}: {_preview(keys)}" for label, keys in found if keys]
        raise PretrainedWeightsError(
            f"the weights in {source} do not fit {type(module).__name__} (another architecture?): "
            + "; ".join(details)
        )
    usable = {k: v for k, v in state.items() if v.shape == own[k].shape}
    skipped = sorted(set(own) - set(usable))
    module.load_state_dict({**own, **usable})
    return {"skipped": skipped, "loaded": sorted(usable)}


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _preview(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown
