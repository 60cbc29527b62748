"""Every adapter data config composes, binds to its adapter, and fails loudly without data.root."""

from __future__ import annotations

import importlib
import inspect

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from emoexp.config import CONF_DIR, group_options

ADAPTER_CONFIGS = [n for n in group_options("data") if not n.startswith("embedded")]


def test_every_adapter_has_a_config():
    expected = {
        "ravdess",
        "cremad",
        "emodb",
        "iemocap",
        "fer2013",
        "image_folder",
        "text_table",
        "hf_dataset",
    }
    assert expected <= set(ADAPTER_CONFIGS)


@pytest.mark.parametrize("name", ADAPTER_CONFIGS)
def test_adapter_config_composes_and_binds(compose, tmp_path, name):
    node = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
    modality = node.modalities[0]
    cfg = compose([f"data={name}", f"modality={modality}", f"data.root={tmp_path}"], debug=False)
    corpus = OmegaConf.to_container(cfg.data.corpus, resolve=True)
    assert corpus["root"] == str(tmp_path) and corpus["on_error"] == "raise"
    module, _, attr = corpus.pop("_target_").rpartition(".")
    inspect.signature(getattr(importlib.import_module(module), attr)).bind(**corpus)
    unset = compose([f"data={name}", f"modality={modality}"], debug=False)
    with pytest.raises(InterpolationToMissingValueError, match=r"Missing mandatory value: data\.root"):
        OmegaConf.to_container(unset, resolve=True)
