"""Tracking overhead: training throughput with no logging, SQLite logging and an MLflow server.

The training is emoexp's (``EmotionTask`` + Lightning ``Trainer``, the default BiLSTM on the
embedded audio, validation and a checkpoint every epoch); only where the metrics go differs:

* ``none``: ``logger=False``, nothing recorded;
* ``sqlite``: the run's :class:`~emoexp.engine.recorder.Recorder` on a local SQLite store;
* ``http``: the recorder on an ``mlflow server`` on 127.0.0.1 with a PostgreSQL backend, started
  by ``scripts/cluster/mlflow_server.sh`` on its own port and database (``--port``,
  ``--database``; dropped at the end), so that a cluster test's server is not disturbed;
* ``http-sync``: the same server, with every buffered batch written in the training thread (how
  the recorder wrote before it had a background writer), for a before/after in the same run.

Each recording variant creates its run before the clock starts (a per-run cost, measured by
``bench/whole_run.py``), then trains while holding the run's lease (its heartbeat thread) and
ends the run, every point written, before the clock stops.
``--stress`` logs 20 extra metrics at every step (``log_every_n_steps=1``), far more than
emoexp's epoch metrics, to show the cost of the writes themselves. The variants alternate
within each repeat; prints samples per wall second and per CPU second of the training process
(all its threads; the MLflow server and PostgreSQL run in other processes) of each variant, and
each variant's ratio to ``none`` (median and minimum over repeats; target >= 0.95 for ``http``);
then the share of each run's wall time that the training thread spent inside the logger
(Lightning's calls into it and ending the run): the logging's cost without the noise of other
jobs sharing the cores.

    python bench/tracking_overhead.py [--epochs 1] [--repeats 5] [--stress]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("none", "sqlite", "http", "http-sync")
CLOCKS = {
    "wall": "what a user waits for; noisy while other jobs share the cores",
    "CPU": "this process's CPU time, all threads: the logging's own cost, robust to other jobs",
}
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def tracking_server(folder: Path, port: int, database: str) -> Iterator[str]:
    """An MLflow server with a PostgreSQL backend (database ``database``), stopped and dropped after."""
    env = dict(
        os.environ,
        EMOEXP_MLFLOW_PORT=str(port),
        EMOEXP_MLFLOW_BACKEND=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        EMOEXP_MLFLOW_DIR=str(folder),
        PYTHON=sys.executable,
    )
    script = str(ROOT / "scripts" / "cluster" / "mlflow_server.sh")
    uri = subprocess.run(
        [script, "start"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield uri
    finally:
        subprocess.run([script, "stop"], env=env, check=False, capture_output=True)
        drop_database(database)


def drop_database(database: str) -> None:
    """Drop the benchmark's PostgreSQL database."""
    import psycopg2
    from psycopg2 import sql

    server = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    server.autocommit = True
    with server.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
    server.close()


class StepMetrics:
    """Lightning callback factory: ``count`` extra metrics logged at every training step."""

    @staticmethod
    def make(count: int) -> Any:
        """The callback instance (Lightning imported here, not at module import)."""
        import lightning.pytorch as pl

        class _StepMetrics(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                loss = float(outputs["loss"])
                for i in range(count):
                    pl_module.log(f"stress/m{i:02d}", loss + i, on_step=True, on_epoch=False)

        return _StepMetrics()


def stopwatch(call: Callable[..., Any], total: list[float]) -> Callable[..., Any]:
    """``call``, adding the seconds spent in it to ``total[0]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return timed


def make_logger(variant: str, uris: dict[str, str]) -> tuple[Any, Callable[[], None], list[float]]:
    """The Lightning logger of ``variant``, what ends its run, and the seconds training waited for them.

    The run is created and its lease held before training; every call Lightning makes into the
    logger (metrics, after a checkpoint, at the end) and ending the run are timed: that is the
    time the training thread spends on logging.
    """
    blocked = [0.0]
    if variant == "none":
        return False, lambda: None, blocked
    from emoexp.engine.lightning_logger import RecorderLogger
    from emoexp.engine.recorder import Recorder

    recorder = Recorder(uris[variant.removesuffix("-sync")], background=not variant.endswith("-sync"))
    run_id = recorder.create_run(recorder.experiment_id("bench-tracking"), variant, {})
    recorder.hold(run_id)
    logger = RecorderLogger(recorder, run_id)
    for hook in ("log_metrics", "after_save_checkpoint", "finalize"):
        setattr(logger, hook, stopwatch(getattr(logger, hook), blocked))
    return logger, stopwatch(lambda: recorder.end(run_id), blocked), blocked


def one_run(
    variant: str, data: tuple[Any, Any, Any], uris: dict[str, str], args: argparse.Namespace
) -> dict[str, float]:
    """Samples per wall second and per CPU second of one training with ``variant``'s logging.

    The CPU time is this process's (all its threads); both clocks stop once the run has ended,
    every point written. ``blocked``: the share of the wall time the training thread spent in
    the logger (see :func:`make_logger`).
    """
    from functools import partial

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from train_step_throughput import make_net, shipped_log_every_n_steps

    from emoexp.tasks.emotion import EmotionTask

    scheme, featurizer, datamodule = data
    optimizer = partial(torch.optim.AdamW, lr=1e-3, weight_decay=1e-4)
    task = EmotionTask(make_net(scheme, featurizer), scheme, optimizer=optimizer)
    logger, end, blocked = make_logger(variant, uris)  # run creation: timed in bench/whole_run.py
    with tempfile.TemporaryDirectory() as checkpoints:
        start, cpu = time.perf_counter(), time.process_time()
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            logger=logger,
            gradient_clip_val=1.0,
            callbacks=[ModelCheckpoint(checkpoints, monitor=scheme.monitor, mode=scheme.mode, save_last=True)]
            + ([StepMetrics.make(20)] if args.stress else []),
            num_sanity_val_steps=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1 if args.stress else shipped_log_every_n_steps(),
        )
        trainer.fit(task, datamodule=datamodule)
        end()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    samples = args.epochs * len(datamodule.dataset("train"))
    return {"wall": samples / elapsed, "CPU": samples / cpu, "blocked": blocked[0] / elapsed}


def measure(
    args: argparse.Namespace, uris: dict[str, str], data: tuple[Any, Any, Any]
) -> dict[str, dict[str, list[float]]]:
    """Every figure of :func:`one_run` for every variant in every repeat (the order rotates)."""
    figures: dict[str, dict[str, list[float]]] = {f: {v: [] for v in VARIANTS} for f in (*CLOCKS, "blocked")}
    one_run("none", data, uris, argparse.Namespace(**{**vars(args), "epochs": 1}))  # warm-up
    for repeat in range(args.repeats):
        for variant in VARIANTS[repeat % len(VARIANTS) :] + VARIANTS[: repeat % len(VARIANTS)]:
            for name, value in one_run(variant, data, uris, args).items():
                figures[name][variant].append(value)
        wall = figures["wall"]
        print(f"repeat {repeat + 1}: " + ", ".join(f"{v} {wall[v][-1]:.1f}" for v in VARIANTS), flush=True)
    return figures


def report(figures: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    """Print samples/s and the ratio to ``none`` of each variant (wall and CPU), and the time blocked."""
    mode = (
        "stress: 20 metrics every step"
        if args.stress
        else "emoexp's metrics at the shipped log_every_n_steps"
    )
    print(f"epochs {args.epochs}, repeats {args.repeats}, {mode}")
    for clock in CLOCKS:
        print(f"-- samples per {clock} second ({CLOCKS[clock]})")
        for variant in VARIANTS:
            values = figures[clock][variant]
            ratios = [s / n for s, n in zip(values, figures[clock]["none"], strict=True)]
            runs = ", ".join(f"{s:.1f}" for s in values)
            print(
                f"{variant:9s}: {statistics.median(values):7.1f} (runs: {runs}); "
                f"vs none: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}"
            )
    print("-- share of the run the training thread spent in the logger (median, max)")
    for variant in VARIANTS[1:]:
        shares = figures["blocked"][variant]
        print(f"{variant:9s}: {100 * statistics.median(shares):.2f}%, {100 * max(shares):.2f}%")
    print("target: http >= 0.95 x none")


def main() -> None:
    """Start the server, build the data, measure, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stress", action="store_true", help="20 extra metrics at every step")
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    parser.add_argument(
        "--database", default="emoexp_bench_tracking", help="PostgreSQL database (dropped after)"
    )
    args = parser.parse_args()
    import logging

    from train_step_throughput import build

    from emoexp.tracking.store import ensure_experiment

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        data = build(os.environ.get("EMOEXP_CACHE_DIR", f"{tmp}/cache"))
        with tracking_server(Path(tmp) / "server", args.port or free_port(), args.database) as http:
            uris = {"sqlite": f"sqlite:///{tmp}/mlflow.db", "http": http}
            for uri in uris.values():  # a store's one-off creation is not a training cost
                ensure_experiment(uri, "bench-tracking")
            speeds = measure(args, uris, data)
    report(speeds, args)


if __name__ == "__main__":
    main()
