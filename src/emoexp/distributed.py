"""Multi-process training: which process records the run, and gathering what each rank saw.

emoexp runs DDP the way Lightning recommends (``strategy: ddp``): every rank executes the same
entry point. Lightning re-runs ``python train.py ...`` once per extra device (with the same
Hydra output folder); ``srun`` and ``torchrun`` start all ranks themselves. So ``train(cfg)``
runs on every rank, and only global rank 0 may create, write or finish the MLflow run; the other
ranks compute alongside it (DDP needs them in every collective) and write nothing.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

# The task logs values that torchmetrics has synchronised across ranks already (EmotionTask);
# Lightning cannot know that and recommends sync_dist=True for every epoch-level value under DDP.
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")

# Environment variables that name a process's rank before any process group exists: torchrun and
# Lightning's launcher (RANK / LOCAL_RANK / NODE_RANK), SLURM (SLURM_PROCID), LSF (JSM_NAMESPACE_RANK).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

# Lightning strategies that start their ranks with multiprocessing (spawn/fork): each call to
# fit/test/predict re-spawns workers from a pickled copy of the run and only rank 0's return value
# comes back, so the predictions of the other ranks would be lost.
SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def is_global_zero() -> bool:
    """Whether this process is global rank 0, judged from the launcher's environment variables.

    Valid before the trainer exists (when the MLflow run is created): a process is rank 0 only if
    no rank variable names another rank.
    """
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


def distributed() -> bool:
    """Whether a torch process group with more than one rank is running."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def check_strategy(trainer: Any) -> None:
    """Reject multiprocessing-spawned strategies with the supported alternative.

    Raises:
        emoexp.config.ConfigError: If the trainer's launcher spawns or forks its ranks.
    """
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    from emoexp.config import ConfigError

    if isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher):
        raise ConfigError(
            f"trainer.strategy={type(trainer.strategy).__name__} with start method "
            f"{trainer.strategy.launcher._start_method!r} is not supported ({', '.join(SPAWNING_STRATEGIES)} "
            "return only rank 0's predictions). Use trainer=ddp (GPUs) or trainer=ddp_sim (CPU): "
            "strategy=ddp runs `python train.py ...` once per device."
        )


def gather_predictions(parts: list[list[dict[str, Any]]]) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Join the per-rank outputs of ``trainer.predict`` so that every sample appears exactly once.

    Args:
        parts: One list of ``{"outputs": [B, K], "rows": [B]}`` batches per predict dataloader,
            as this rank's ``trainer.predict`` returned them.

    Returns:
        Per dataloader, the outputs and manifest rows of all ranks in manifest row order, one
        entry per row (a ``DistributedSampler`` pads ranks with repeated samples; repeats are dropped).
    """
    joined = []
    for batches in parts:
        outputs = torch.cat([b["outputs"].detach().cpu() for b in batches])
        rows = torch.cat([torch.as_tensor(b["rows"]).cpu() for b in batches]).numpy()
        if distributed():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (outputs, rows))
            outputs = torch.cat([o for o, _ in gathered])
            rows = np.concatenate([r for _, r in gathered])
        rows, first = np.unique(rows, return_index=True)
        joined.append((outputs[torch.as_tensor(first)], rows))
    return joined
