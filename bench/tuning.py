"""Tuning benchmarks on the embedded audio corpus (results in docs/benchmarks.md, "Tuning").

1. Pruning: the same number of trials with and without pruning (same sampler seed); best
   validation UAR and total epochs trained. Target: within 1 point at <= 50% of the epochs.
2. Workers: trials per hour of one SQLite study run by 1 worker with 1 torch thread, by 1 worker
   with a thread per core (the best a single worker can do with the whole machine), and by 2 worker
   processes with 1 thread each. Throughput is measured from the trials' own start/complete times
   in the storage, so process start-up (imports) is not counted; "warm" also leaves out each
   worker's first trial (data and caches loaded in that process). Target: >= 1.7x.

    python bench/tuning.py                       # both, modest size
    python bench/tuning.py --part pruning --trials 16 --epochs 12 --samples 420
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def run_study(
    workdir: Path,
    name: str,
    args: argparse.Namespace,
    *extra: str,
    trials: int = 0,
    epochs: int = 0,
    threads: int = 1,
) -> tuple[dict, list]:
    """One study in ``workdir``: returns the tuner's summary and the study's trials."""
    import optuna
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.tuning import tune
    from emoexp.tuning.storage import open_storage

    storage = f"sqlite:///{workdir / 'optuna.db'}"
    overrides = [
        "hparams_search=audio_lstm",
        f"data.corpus.n_samples={args.samples}",
        f"data.corpus.n_speakers={args.speakers}",
        f"trainer.max_epochs={epochs or args.epochs}",
        "trainer.num_sanity_val_steps=0",
        "callbacks=none",  # no early stopping: epochs saved are the pruner's alone
        f"hydra.sweeper.n_trials={trials or args.trials}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.sampler.n_startup_trials={args.startup}",
        f"paths.output_dir={workdir / name}",
        f"paths.cache_dir={args.cache_dir}",
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        "tuner.final_run=false",
        f"tuner.threads_per_worker={threads}",
        *args.override,
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="tune", overrides=overrides, return_hydra_config=True)
        summary = tune(cfg, overrides)
    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).trials
    return summary, trials


def _best(trials: list) -> float:
    return max((t.value for t in trials if t.state.name == "COMPLETE"), default=float("nan"))


def _epochs(trials: list) -> int:
    return sum(int(t.user_attrs.get("epochs", 0)) for t in trials)


def _trials_per_hour(trials: list) -> float:
    finished = [t for t in trials if t.datetime_complete is not None]
    span = (
        max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    ).total_seconds()
    return 3600.0 * len(finished) / span


def _trials_per_hour_warm(trials: list, workers: int) -> float:
    """Throughput once every worker is warm: without each worker's first trial (imports, data, caches)."""
    finished = sorted((t for t in trials if t.datetime_complete is not None), key=lambda t: t.datetime_start)
    warm = finished[workers:]
    span = (max(t.datetime_complete for t in warm) - min(t.datetime_start for t in warm)).total_seconds()
    return 3600.0 * len(warm) / span


def bench_pruning(workdir: Path, args: argparse.Namespace) -> dict:
    rows = {}
    for label, pruner in (("no pruning", "none"), (f"pruner={args.pruner}", args.pruner)):
        start = time.perf_counter()
        settings = args.pruner_override if pruner != "none" else []
        name = "-".join([f"prune-{pruner}", *(o.split("=")[-1] for o in settings)])
        _, trials = run_study(workdir, name, args, f"pruner={pruner}", *settings)
        rows[label] = {
            "best_val_uar": _best(trials),
            "epochs": _epochs(trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "wall_s": time.perf_counter() - start,
        }
    base, pruned = rows["no pruning"], rows[f"pruner={args.pruner}"]
    rows["ratio"] = {
        "best_delta_points": 100 * (pruned["best_val_uar"] - base["best_val_uar"]),
        "epochs_fraction": pruned["epochs"] / max(1, base["epochs"]),
    }
    return rows


def _median_trial_s(trials: list) -> float:
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete is not None
    ]
    return statistics.median(durations)


def bench_workers(workdir: Path, args: argparse.Namespace) -> dict:
    """1 worker with 1 thread, 1 worker with every core's thread, and 2 workers with 1 thread each."""
    rows = {}
    for label, workers, threads in (
        ("1 worker x 1 thread", 1, 1),
        (f"1 worker x {os.cpu_count()} threads", 1, os.cpu_count()),
        ("2 workers x 1 thread", 2, 1),
    ):
        start = time.perf_counter()
        _, trials = run_study(
            workdir,
            f"workers-{workers}x{threads}",
            args,
            "pruner=none",
            f"tuner.n_workers={workers}",
            trials=args.worker_trials,
            epochs=args.worker_epochs,
            threads=threads,
        )
        rows[label] = {
            "trials_per_hour": _trials_per_hour(trials),
            "trials_per_hour_warm": _trials_per_hour_warm(trials, workers),
            "median_trial_s": _median_trial_s(trials),
            "trials": len(trials),
            "wall_s": time.perf_counter() - start,
        }
    two = rows["2 workers x 1 thread"]
    one = rows["1 worker x 1 thread"]
    singles = [r for k, r in rows.items() if k.startswith("1 worker")]
    best_single = max(singles, key=lambda r: r["trials_per_hour"])
    rows["speedup_vs_1x1"] = two["trials_per_hour"] / one["trials_per_hour"]
    rows["speedup_vs_best_single"] = two["trials_per_hour"] / best_single["trials_per_hour"]
    rows["speedup_warm_vs_1x1"] = two["trials_per_hour_warm"] / one["trials_per_hour_warm"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("pruning", "workers", "all"), default="all")
    parser.add_argument("--trials", type=int, default=10, help="trials per study")
    parser.add_argument("--epochs", type=int, default=8, help="trainer.max_epochs")
    parser.add_argument("--samples", type=int, default=252, help="embedded audio clips")
    parser.add_argument("--speakers", type=int, default=6)
    parser.add_argument("--startup", type=int, default=4, help="TPE random start-up trials")
    parser.add_argument("--pruner", default="successive_halving", help="pruner config to compare")
    parser.add_argument(
        "--pruner-override",
        action="append",
        default=[],
        help="override of the pruned study only, e.g. pruner.min_resource=10 (repeatable)",
    )
    parser.add_argument("--worker-trials", type=int, default=6, help="trials per study of the workers part")
    parser.add_argument("--worker-epochs", type=int, default=4, help="max_epochs of the workers part")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "emoexp-bench-cache"))
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--workdir", default=None, help="keep the studies here (default: a temporary folder)")
    args = parser.parse_args()
    results = {"settings": vars(args), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="emoexp-bench-tuning-") as tmp:
        # A kept --workdir also resumes: finished studies (e.g. the no-pruning baseline) are reused.
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.part in ("pruning", "all"):
            results["pruning"] = bench_pruning(workdir, args)
        if args.part in ("workers", "all"):
            results["workers"] = bench_workers(workdir, args)
    results["load_avg_end"] = os.getloadavg()
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
