"""GPU training throughput of the default audio, text and visual models: fp32, bf16-mixed, DDP.

For each modality's default model (``modality=audio|text|visual``: BiLSTM on MFCCs, BiLSTM on
tokens, CNN on face crops) on its embedded corpus, the script trains emoexp's ``EmotionTask`` with
a Lightning ``Trainer`` for ``--steps`` steps after ``--warmup`` steps and prints training
samples/s:

* one GPU with ``precision=32-true`` and with ``precision=bf16-mixed``;
* every visible GPU with DDP (``strategy=ddp``, one process per GPU, ``--batch-size`` per GPU)
  against one, when more than one GPU is visible.

Without a CUDA GPU the script says so and exits 0, unless ``--cpu`` asks to run the same
measurements on the CPU (fp32 and bf16-mixed autocast; no DDP), e.g. to check the script. A
configuration that fails prints ``nan`` in its cell and its error below the table, and the
script exits 1.

    python bench/gpu_throughput.py [--steps 50] [--warmup 10] [--batch-size 32]
    python bench/gpu_throughput.py --cpu --steps 3 --warmup 1 --max-samples 84
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("audio", "text", "visual")
PRECISIONS = ("32-true", "bf16-mixed")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class StepClock:
    """Lightning callback factory: time and samples of the steps after the warm-up."""

    @staticmethod
    def make(warmup: int, synchronize: bool) -> Any:
        """The callback; its ``seconds`` and ``samples`` count from step ``warmup`` on."""
        import lightning.pytorch as pl
        import torch

        class _StepClock(pl.Callback):
            def __init__(self) -> None:
                self.start = 0.0
                self.seconds = 0.0
                self.samples = 0

            def _now(self) -> float:
                if synchronize:
                    torch.cuda.synchronize()
                return time.perf_counter()

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == warmup:
                    self.start = self._now()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step > warmup:
                    self.samples += int(batch["targets"]["label"].shape[0]) * trainer.world_size
                    self.seconds = self._now() - self.start

        return _StepClock()


def build(modality: str, args: argparse.Namespace, cache_dir: str) -> tuple[Any, Any, Any]:
    """The label scheme, network and set-up datamodule of ``modality``'s default experiment."""
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR, instantiate
    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.engine.preflight import make_folds
    from emoexp.engine.samples import prepare_samples

    overrides = [f"modality={modality}", f"paths.cache_dir={cache_dir}"]
    if args.max_samples:
        overrides.append(f"data.max_samples={args.max_samples}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides)
    scheme = instantiate(cfg.label_scheme)
    manifest = prepare_samples(cfg, scheme)
    fold = make_folds(cfg, scheme, manifest)[0]
    featurizer = instantiate(cfg.model.features[cfg.modality])
    batch_size = args.batch_size or cfg.datamodule.batch_size
    datamodule = EmotionDataModule(
        manifest, fold, featurizer, scheme.targets(manifest), batch_size=batch_size, cache_dir=cache_dir
    )
    datamodule.setup()
    net = instantiate(cfg.model.net, num_outputs=scheme.num_outputs, **featurizer.net_kwargs())
    return scheme, net, datamodule


def throughput(modality: str, precision: str, devices: int, args: argparse.Namespace) -> float:
    """Training samples/s of ``modality``'s default model (all ranks together)."""
    from functools import partial

    import lightning.pytorch as pl
    import torch

    from emoexp.tasks.emotion import EmotionTask

    scheme, net, datamodule = build(modality, args, args.cache_dir)
    task = EmotionTask(net, scheme, optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=1e-4))
    clock = StepClock.make(args.warmup, synchronize=not args.cpu)
    trainer = pl.Trainer(
        accelerator="cpu" if args.cpu else "gpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        precision=precision,
        max_steps=args.warmup + args.steps,
        max_epochs=-1,
        gradient_clip_val=1.0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(task, train_dataloaders=datamodule.train_dataloader())
    return clock.samples / clock.seconds if clock.seconds else float("nan")


def ddp_throughput(modality: str, devices: int, args: argparse.Namespace) -> float:
    """Samples/s with DDP on ``devices`` GPUs, measured in a child process (DDP re-launches it)."""
    command = [
        sys.executable,
        __file__,
        "--ddp-child",
        modality,
        "--devices",
        str(devices),
        *child_args(args),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        print(result.stdout[-2000:] + result.stderr[-3000:], file=sys.stderr)
        return float("nan")
    return json.loads(lines[-1])["samples_per_s"]


def child_args(args: argparse.Namespace) -> list[str]:
    """The options a DDP child needs to repeat the parent's measurement."""
    extra = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--cache-dir", args.cache_dir]
    extra += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    return extra + (["--max-samples", str(args.max_samples)] if args.max_samples else [])


def device_line(args: argparse.Namespace) -> str:
    """What the measurements run on."""
    import torch

    if args.cpu:
        threads = torch.get_num_threads()
        return f"CPU ({os.cpu_count()} cores, {threads} torch threads), torch {torch.__version__}"
    names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
    return f"{torch.cuda.device_count()} x {', '.join(sorted(names))}, torch {torch.__version__}"


def guarded(what: str, measure_one: Callable[[], float], errors: list[str]) -> float:
    """``measure_one()``, or NaN with ``what`` and the error added to ``errors`` (the table goes on)."""
    try:
        return measure_one()
    except Exception as error:
        errors.append(f"{what}: {type(error).__name__}: {error}")
        return float("nan")


def measure(args: argparse.Namespace) -> list[str]:
    """Print one row per modality: fp32, bf16-mixed, and DDP against one GPU; the failures."""
    import torch

    gpus = 0 if args.cpu else torch.cuda.device_count()
    errors: list[str] = []
    print(device_line(args))
    print(f"steps {args.steps} after {args.warmup} warm-up steps; samples/s (training)")
    header = f"{'modality':9s} {'fp32':>10s} {'bf16-mixed':>11s} {'bf16/fp32':>9s}"
    print(header + (f" {'DDP x' + str(gpus):>10s} {'DDP/1':>6s}" if gpus > 1 else ""))
    for modality in args.modalities:
        fp32, bf16 = (
            guarded(f"{modality} {p}", lambda m=modality, p=p: throughput(m, p, 1, args), errors)
            for p in PRECISIONS
        )
        row = f"{modality:9s} {fp32:10.1f} {bf16:11.1f} {bf16 / fp32:9.2f}"
        if gpus > 1:
            ddp = ddp_throughput(modality, gpus, args)
            row += f" {ddp:10.1f} {ddp / fp32:6.2f}"
        print(row, flush=True)
    for error in errors:
        print(f"failed: {error}")
    return errors


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=0, help="per device (0: the config's)")
    parser.add_argument("--max-samples", type=int, default=0, help="data.max_samples (0: the whole corpus)")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU when no GPU is visible")
    parser.add_argument("--cache-dir", default=str(ROOT / "outputs" / "bench-cache"), help="feature cache")
    parser.add_argument("--ddp-child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, or say why not; the exit status."""
    args = parse(argv)
    import logging

    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.ddp_child:
        speed = throughput(args.ddp_child, "32-true", args.devices, args)
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print(json.dumps({"samples_per_s": speed}))
        return 0
    if not args.cpu and not torch.cuda.is_available():
        print(
            "No CUDA GPU is visible (torch.cuda.is_available() is False): nothing was measured. "
            "Run this on a machine with a GPU, or pass --cpu to run the same measurements on the CPU."
        )
        return 0
    return 1 if measure(args) else 0


if __name__ == "__main__":
    sys.exit(main())
