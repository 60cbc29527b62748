"""Tune a search space: ``python -m emoexp.tune hparams_search=audio_lstm`` (docs/tuning.md).

A thin Hydra entry point over :func:`emoexp.tuning.tune`; the config is ``conf/tune.yaml``
(``train.yaml`` plus the tuner's settings and a ``pruner`` choice).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from emoexp.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="tune")
def main(cfg: DictConfig) -> float | None:
    """Run the study's ``tuner.role``; return the best value of the primary objective."""
    from hydra.core.hydra_config import HydraConfig

    from emoexp.tuning import tune

    summary = tune(cfg, list(HydraConfig.get().overrides.task))
    best = (summary or {}).get("best") or []
    return float(best[0]["values"][0]) if best else None


if __name__ == "__main__":
    main()
