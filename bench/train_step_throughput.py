"""Training-step throughput: emoexp (Lightning + MLflow logging) vs a hand-written PyTorch loop.

Same model (BiLSTM on MFCCs), same embedded audio data, same batch size and optimiser,
measured side by side in one process, alternating, several repeats (the order of the two
alternates too, so neither always runs first). Lightning logs at the shipped
``log_every_n_steps`` (conf/trainer/default.yaml). Prints samples/s of each, the ratio
emoexp / plain of every repeat (the two runs of a repeat are neighbours in time, so each ratio
sees the same load), and their median and minimum (target >= 0.95).

    python bench/train_step_throughput.py [--epochs 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def shipped_log_every_n_steps() -> int:
    """``trainer.log_every_n_steps`` as shipped in conf/trainer/default.yaml."""
    from omegaconf import OmegaConf

    return int(OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml").log_every_n_steps)


def build(cache_dir: str):
    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.data.embedded import load_embedded
    from emoexp.data.splits import StratifiedHoldout
    from emoexp.features.audio import MFCCFeatures
    from emoexp.labels.emotions import EKMAN7
    from emoexp.labels.schemes import CategoricalScheme

    scheme = CategoricalScheme(name="ekman7", classes=EKMAN7)
    manifest = scheme.prepare(load_embedded(("audio",), cache_dir=cache_dir))
    fold = next(StratifiedHoldout().folds(manifest, scheme.stratify_labels(manifest), 0))
    featurizer = MFCCFeatures()
    datamodule = EmotionDataModule(
        manifest, fold, featurizer, scheme.targets(manifest), batch_size=32, cache_dir=cache_dir
    )
    datamodule.setup()
    return scheme, featurizer, datamodule


def make_net(scheme, featurizer):
    import torch

    from emoexp.models.sequence import LSTMClassifier

    torch.manual_seed(0)
    return LSTMClassifier(num_outputs=scheme.num_outputs, **featurizer.net_kwargs())


def plain_loop(scheme, featurizer, datamodule, epochs: int) -> float:
    import torch
    import torch.nn.functional as F  # noqa: N812

    net = make_net(scheme, featurizer)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = datamodule.train_dataloader()
    samples = 0
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for batch in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(**batch["inputs"]), batch["targets"]["label"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            samples += batch["targets"]["label"].shape[0]
    return samples / (time.perf_counter() - start)


def emoexp_loop(scheme, featurizer, datamodule, epochs: int, tracking_uri: str) -> float:
    from functools import partial

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import MLFlowLogger

    from emoexp.tasks.emotion import EmotionTask

    task = EmotionTask(
        make_net(scheme, featurizer), scheme, optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=1e-4)
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=MLFlowLogger(experiment_name="bench", tracking_uri=tracking_uri),
        gradient_clip_val=1.0,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=shipped_log_every_n_steps(),
    )
    samples = epochs * len(datamodule.dataset("train"))
    start = time.perf_counter()
    trainer.fit(task, train_dataloaders=datamodule.train_dataloader())
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        from emoexp.tracking.store import ensure_experiment

        uri = f"sqlite:///{tmp}/mlflow.db"
        ensure_experiment(uri, "bench")  # the store's one-off migration is not a training cost
        scheme, featurizer, datamodule = build(os.environ.get("EMOEXP_CACHE_DIR", f"{tmp}/cache"))
        plain_loop(scheme, featurizer, datamodule, 1)  # warm-up
        plain, ours = [], []
        for repeat in range(args.repeats):
            runs = [
                lambda: plain.append(plain_loop(scheme, featurizer, datamodule, args.epochs)),
                lambda: ours.append(emoexp_loop(scheme, featurizer, datamodule, args.epochs, uri)),
            ]
            for run in runs if repeat % 2 == 0 else runs[::-1]:
                run()
            print(f"repeat {repeat + 1}: plain {plain[-1]:.1f}, emoexp {ours[-1]:.1f} samples/s", flush=True)
    report(plain, ours, args)


def report(plain: list[float], ours: list[float], args: argparse.Namespace) -> None:
    """Print the medians, every repeat's ratio, and the median and minimum ratio."""
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    print(f"epochs {args.epochs}, repeats {args.repeats}, log_every_n_steps {shipped_log_every_n_steps()}")
    print(f"plain PyTorch loop : {statistics.median(plain):8.1f} samples/s  (runs: {_join(plain)})")
    print(f"emoexp + MLflow    : {statistics.median(ours):8.1f} samples/s  (runs: {_join(ours)})")
    median, low = statistics.median(ratios), min(ratios)
    print(f"ratio emoexp/plain : median {median:.3f}, min {low:.3f}  (target >= 0.95)")
    print(f"ratios per repeat  : {_join(ratios, 3)}")


def _join(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{x:.{digits}f}" for x in values)


if __name__ == "__main__":
    main()
