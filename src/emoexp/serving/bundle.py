"""A trained model as a folder: network weights, featurizer state, config. Saved with every run.

Layout (``MODEL_FILES``)::

    net.safetensors         the network's state dict (best checkpoint)
    featurizer.json         the featurizer's learnt state (vocabulary, normalisation, ...) with
    featurizer.safetensors  its tensors stored separately (safe to load: no unpickling)
    config.yaml             the run's resolved config (model, modality, label scheme)
    meta.json               modality, input columns, net kwargs, outputs, scheme state, run id

Prediction rebuilds the featurizer and the network from ``config.yaml``, restores their state
from these files, and so applies exactly the run's own preprocessing to new inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from emoexp import modalities
from emoexp.config import instantiate

FORMAT_VERSION = 1
_TENSOR = "__tensor__"


def _split_tensors(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested state by references, collecting them in ``tensors``."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(state, np.ndarray):
        return _split_tensors(torch.from_numpy(state), prefix, tensors)
    if isinstance(state, dict):
        return {
            str(k): _split_tensors(v, f"{prefix}.{k}" if prefix else str(k), tensors)
            for k, v in state.items()
        }
    if isinstance(state, list | tuple):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(state)]
    if isinstance(state, np.generic):
        return state.item()
    return state


def _join_tensors(state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(state, dict):
        if set(state) == {_TENSOR}:
            return tensors[state[_TENSOR]]
        return {k: _join_tensors(v, tensors) for k, v in state.items()}
    if isinstance(state, list):
        return [_join_tensors(v, tensors) for v in state]
    return state


def input_columns(modality: str) -> list[str]:
    """Manifest columns a model of ``modality`` reads (``text``, ``audio``, ``image``)."""
    return list(modalities.input_columns(modality))


def scheme_state(scheme: Any) -> dict[str, Any]:
    """What decoding needs beyond the scheme's config: classes, dims, multi-label labels/thresholds."""
    return scheme.state()


def save_bundle(
    folder: str | Path,
    cfg: DictConfig,
    scheme: Any,
    featurizer: Any,
    net: torch.nn.Module,
    run_id: str = "",
) -> Path:
    """Write the model folder (see the module docstring).

    Args:
        folder: Target folder (created).
        cfg: The run's config.
        scheme: The run's label scheme (after any tuning on validation).
        featurizer: The fitted featurizer.
        net: The network holding the weights to serve (the best checkpoint's).
        run_id: The MLflow run, for the record.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / "net.safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    (folder / "featurizer.json").write_text(
        json.dumps(_split_tensors(featurizer.state_dict(), "", tensors), indent=1)
    )
    save_file(tensors, str(folder / "featurizer.safetensors"))
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    keep = {k: resolved[k] for k in ("modality", "model", "label_scheme", "data", "seed") if k in resolved}
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(keep)))
    meta = {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "modality": cfg.modality,
        "input_columns": input_columns(cfg.modality),
        "num_outputs": int(scheme.num_outputs),
        "net_kwargs": featurizer.net_kwargs(),
        "scheme": scheme_state(scheme),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return folder


def load_bundle(folder: str | Path) -> tuple[dict[str, Any], DictConfig, Any, Any, torch.nn.Module]:
    """Rebuild ``(meta, config, scheme, featurizer, net)`` from a folder written by :func:`save_bundle`.

    Raises:
        FileNotFoundError: If the folder is not a model folder.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [
        n
        for n in ("net.safetensors", "featurizer.json", "config.yaml", "meta.json")
        if not (folder / n).exists()
    ]
    if missing:
        raise FileNotFoundError(f"{folder} is not an emoexp model folder (missing {missing}).")
    meta = json.loads((folder / "meta.json").read_text())
    cfg = OmegaConf.load(folder / "config.yaml")
    scheme = instantiate(cfg.label_scheme)
    scheme.restore_state(meta["scheme"])
    featurizer = instantiate(cfg.model.features[meta["modality"]])
    tensors = (
        load_file(str(folder / "featurizer.safetensors"))
        if (folder / "featurizer.safetensors").exists()
        else {}
    )
    featurizer.load_state_dict(_join_tensors(json.loads((folder / "featurizer.json").read_text()), tensors))
    net_cfg = cfg.model.net
    if net_cfg.get("pretrained_path"):
        # Starting weights are irrelevant (overwritten below) and may not exist where we predict.
        net_cfg = OmegaConf.merge(net_cfg, {"pretrained_path": None})
    net = instantiate(net_cfg, num_outputs=meta["num_outputs"], **meta["net_kwargs"])
    net.load_state_dict(load_file(str(folder / "net.safetensors")))
    net.eval()
    return meta, cfg, scheme, featurizer, net
