"""Whole-run overhead: ``python train.py`` against a plain PyTorch loop doing the same work.

Both are processes started from the command line, timed from launch to exit, alternating, several
repeats (the order alternates too), on the same data, split, model, optimiser and epochs:

* **emoexp**: ``python train.py`` with its shipped callbacks and tracking: config checks, the
  leakage guard, an MLflow run (SQLite store), validation each epoch, best and last checkpoints,
  metrics, the checkpoint and the served model as artifacts, test evaluation, predictions, reports.
* **plain**: a hand-written loop (``--plain``) that trains the same network for the same epochs
  with gradient clipping and the run's training-time augmentation (``augment=auto``: SpecAugment
  for the default model, drawn as train.py draws it), validates each epoch (loss and UAR), saves
  the best weights with ``torch.save``, then evaluates the best weights on the test split and
  writes the predictions.

Prints each process's wall time, the ratio plain / emoexp of every repeat (a throughput ratio:
emoexp's share of the plain loop's speed), their median and minimum (target >= 0.90), and the
median extra time of ``train.py`` (its fixed cost at this size: importing MLflow, the leakage
guard and checks, the run record, reports and model logging; the plain loop imports Lightning too,
through emoexp's datamodule).

    python bench/whole_run.py [--epochs 3] [--max-samples 0] [--repeats 3]
    # as long as the default experiment runs, the same epochs in both (no early stopping):
    python bench/whole_run.py --epochs 24 --repeats 2 --override callbacks.early_stopping=null
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def overrides(args: argparse.Namespace, folder: Path) -> list[str]:
    """The config both variants use (the shipped defaults, shortened to ``--epochs``).

    The MLflow store and the feature cache are shared by all runs, as on a user's machine
    (the store's one-off creation and the first feature extraction happen in the warm-up).
    """
    return [
        f"trainer.max_epochs={args.epochs}",
        f"data.max_samples={args.max_samples}",
        f"paths.cache_dir={args.cache_dir}",
        f"paths.output_dir={folder / 'outputs'}",
        f"hydra.run.dir={folder / 'hydra'}",
        f"tracking.uri=sqlite:///{args.store}",
        *args.override,
    ]


def compose(overrides_: list[str]) -> Any:
    """``conf/train.yaml`` composed with ``overrides_`` (no ``hydra.*`` keys)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from emoexp.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hydra_compose("train", [o for o in overrides_ if not o.startswith("hydra.")])


def plain_data(cfg: Any) -> tuple[Any, Any, Any]:
    """The scheme, featurizer and set-up datamodule of the run's first fold, as train.py builds them.

    The datamodule carries the run's training-time augmentation (``augment=auto``: SpecAugment for
    the default model), which :func:`train_epoch` applies to training batches as train.py does.
    """
    from emoexp.config import instantiate
    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.engine.preflight import make_folds
    from emoexp.engine.samples import prepare_samples
    from emoexp.features.augment import build_augmentation, resolve_augmentation

    resolve_augmentation(cfg)
    scheme = instantiate(cfg.label_scheme)
    manifest = prepare_samples(cfg, scheme)
    fold = make_folds(cfg, scheme, manifest)[0]
    featurizer = instantiate(cfg.model.features[cfg.modality])
    datamodule = EmotionDataModule(
        manifest,
        fold,
        featurizer,
        scheme.targets(manifest),
        batch_size=cfg.datamodule.batch_size,
        cache_dir=cfg.paths.cache_dir,
        augmentation=build_augmentation(cfg.get("augment")),
    )
    datamodule.setup()
    return scheme, featurizer, datamodule


def uar(outputs: Any, labels: Any) -> float:
    """Unweighted average recall of ``outputs`` (logits) against integer ``labels``."""
    import torch

    predicted = outputs.argmax(dim=1)
    recalls = [(predicted[labels == c] == c).float().mean() for c in torch.unique(labels)]
    return float(torch.stack(recalls).mean())


def evaluate(net: Any, loader: Any) -> tuple[float, float, Any]:
    """Loss, UAR and logits of ``net`` on ``loader``."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    net.eval()
    outputs, labels = [], []
    with torch.no_grad():
        for batch in loader:
            outputs.append(net(**batch["inputs"]))
            labels.append(batch["targets"]["label"])
    logits, targets = torch.cat(outputs), torch.cat(labels)
    return float(F.cross_entropy(logits, targets)), uar(logits, targets), logits


def train_epoch(net: Any, optimizer: Any, datamodule: Any, clip: float, epoch: int) -> None:
    """One epoch of training with gradient clipping, training batches augmented as train.py's are."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    net.train()
    for batch in datamodule.train_dataloader():
        if datamodule.augmentation is not None:
            batch = datamodule.augmentation.augment_batch(batch, epoch)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(**batch["inputs"]), batch["targets"]["label"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()


def plain_run(overrides_: list[str]) -> dict[str, float]:
    """Train, validate each epoch, keep the best weights, test them, write predictions; the figures."""
    import torch

    from emoexp.config import instantiate

    cfg = compose(overrides_)
    torch.manual_seed(cfg.seed)
    scheme, featurizer, datamodule = plain_data(cfg)
    net = instantiate(cfg.model.net, num_outputs=scheme.num_outputs, **featurizer.net_kwargs())
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    folder = Path(cfg.paths.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    best = -1.0
    for epoch in range(cfg.trainer.max_epochs):
        train_epoch(net, optimizer, datamodule, cfg.trainer.gradient_clip_val, epoch)
        _, val_uar, _ = evaluate(net, datamodule.val_dataloader())
        if val_uar > best:
            best = val_uar
            torch.save(net.state_dict(), folder / "best.pt")
    net.load_state_dict(torch.load(folder / "best.pt", weights_only=True))
    _, test_uar, logits = evaluate(net, datamodule.test_dataloader())
    probabilities = torch.softmax(logits, dim=1).numpy()
    lines = [",".join(f"{p:.6f}" for p in row) for row in probabilities]
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
    return {"val/uar_best": best, "test/uar": test_uar}


def timed(command: list[str]) -> float:
    """Wall time of ``command`` from launch to exit (it must succeed)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def commands(args: argparse.Namespace, folder: Path) -> dict[str, list[str]]:
    """The two processes of one repeat (each in its own folder, sharing the feature cache)."""
    return {
        name: [sys.executable, *entry, *overrides(args, folder / name)]
        for name, entry in (("emoexp", ["train.py"]), ("plain", [__file__, "--plain", "--"]))
    }


def compare(args: argparse.Namespace) -> None:
    """Alternate the two processes ``args.repeats`` times; print the times and ratios."""
    times: dict[str, list[float]] = {"emoexp": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = args.cache_dir or str(Path(tmp) / "cache")
        args.store = Path(tmp) / "mlflow.db"
        for command in commands(args, Path(tmp) / "warm-up").values():
            timed(command)  # creates the store, fills the feature cache
        for repeat in range(args.repeats):
            order = list(commands(args, Path(tmp) / f"r{repeat}").items())
            for name, command in order if repeat % 2 == 0 else order[::-1]:
                times[name].append(timed(command))
            print(
                f"repeat {repeat + 1}: emoexp {times['emoexp'][-1]:.1f} s, plain {times['plain'][-1]:.1f} s"
            )
    ratios = [p / e for p, e in zip(times["plain"], times["emoexp"], strict=True)]
    print(f"epochs {args.epochs}, max_samples {args.max_samples}, repeats {args.repeats}")
    print(f"python train.py : median {statistics.median(times['emoexp']):6.1f} s")
    print(f"plain loop      : median {statistics.median(times['plain']):6.1f} s")
    extra = statistics.median(e - p for e, p in zip(times["emoexp"], times["plain"], strict=True))
    print(f"emoexp - plain  : median {extra:6.1f} s (what train.py adds per run, at this size)")
    median, low = statistics.median(ratios), min(ratios)
    print(f"ratio plain/emoexp (speed of emoexp): median {median:.3f}, min {low:.3f}  (target >= 0.90)")
    print("ratios per repeat: " + ", ".join(f"{r:.3f}" for r in ratios))


def main(argv: list[str] | None = None) -> None:
    """Run the comparison, or (``--plain -- <overrides>``) one plain run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=0, help="data.max_samples (0: the whole corpus)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cache-dir", default="", help="feature cache shared by the runs (default: a temp folder)"
    )
    parser.add_argument("--override", action="append", default=[], help="extra key=value for both variants")
    parser.add_argument(
        "--plain", action="store_true", help="run the plain loop once with the overrides after --"
    )
    args, rest = parser.parse_known_args(argv)
    if args.plain:
        print(plain_run([r for r in rest if r != "--"]))
        return
    if args.max_samples == 0:
        args.max_samples = "null"
    compare(args)


if __name__ == "__main__":
    main()
