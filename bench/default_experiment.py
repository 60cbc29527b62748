"""The default experiment: its wall time (cold and warm cache) and its test UAR against the SVM.

``python train.py`` is what every new user runs first. This benchmark runs it as a user does (a
subprocess from the repository root, the shipped config, its own empty MLflow store):

* ``--part time``: the default with an empty feature/corpus cache (*cold*), again with the
  cache filled (*warm*) and, side by side, the ``--before`` overrides (warm; e.g. emoexp 0.1's
  BiLSTM: ``--before model.net.subsample=1 --before model.net.hidden_size=128 ...``). Prints
  the wall time of each and the run's test UAR with its speaker-resampled 95% interval.
* ``--part quality``: the default and the RBF-SVM on functionals (``model=svm``) on the same
  speaker-independent splits, one per seed (the seed draws the split and the initialisation).
  Prints each model's mean test UAR with a 95% t-interval over seeds, and the paired difference
  with its interval. The default model was chosen on validation UAR (docs/benchmarks.md); the
  test figures here only report.

    python bench/default_experiment.py --part time
    python bench/default_experiment.py --part quality --seeds 1 2 3 4 5 6 7 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def train(folder: Path, name: str, overrides: list[str], cache: Path) -> tuple[float, dict]:
    """Run ``python train.py`` into ``folder``'s store; return (wall s, the run's metrics)."""
    import mlflow

    store = f"sqlite:///{folder / 'mlflow.db'}"
    command = [
        sys.executable,
        "train.py",
        *overrides,
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={folder / 'outputs' / name}",
        f"tracking.uri={store}",
        f"+tracking.tags.bench={name}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    client = mlflow.MlflowClient(store)
    [run] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.bench = '{name}'",
    )
    return seconds, run.data.metrics


def part_time(args: argparse.Namespace) -> None:
    """Cold and warm wall times of the default, then ``--before`` warm, side by side.

    All variants share one feature cache: the ``--before`` variant runs warm (its features are
    the default's when only the network differs), so its time is training, not extraction.
    """
    runs = [("default", "cold", list(args.override)), ("default", "warm", list(args.override))]
    if args.before:
        runs.append(("before", "warm", [*args.override, *args.before]))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for name, state, overrides in runs:
            seconds, m = train(Path(tmp), f"{name}-{state}", overrides, cache)
            print(
                f"{name:8s} {state}: {seconds:6.1f} s  test/uar {m['test/uar']:.3f} "
                f"(95% CI {m.get('test/uar_ci_low', float('nan')):.3f} to "
                f"{m.get('test/uar_ci_high', float('nan')):.3f}), "
                f"val/uar_best {m.get('val/uar_best', float('nan')):.3f}, "
                f"{int(m.get('epoch', -1)) + 1} epochs",
                flush=True,
            )


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of ``values`` (seeds are the unit of replication)."""
    from emoexp.evaluation.statistics import mean_std_ci

    summary = mean_std_ci(values, method="t")
    return summary["mean"], summary["ci_low"], summary["ci_high"]


def part_quality(args: argparse.Namespace) -> None:
    """The default against the SVM on the same split per seed."""
    models = {"default": list(args.override), "svm": [*args.override, "model=svm"]}
    scores: dict[str, list[float]] = {name: [] for name in models}
    walls: dict[str, list[float]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for seed in args.seeds:
            for name, overrides in models.items():
                seconds, m = train(Path(tmp), f"{name}-s{seed}", [*overrides, f"seed={seed}"], cache)
                scores[name].append(m["test/uar"])
                walls[name].append(seconds)
                print(f"seed {seed} {name:8s} test/uar {m['test/uar']:.3f}  {seconds:5.1f} s", flush=True)
    for name, values in scores.items():
        mean, low, high = t_interval(np.asarray(values))
        print(
            f"{name:8s} test UAR {mean:.3f} (95% t-CI {low:.3f} to {high:.3f}), "
            f"median wall {np.median(walls[name]):.0f} s, {len(values)} seeds"
        )
    diff = np.asarray(scores["default"]) - np.asarray(scores["svm"])
    mean, low, high = t_interval(diff)
    print(f"default - svm: {mean:+.3f} (95% t-CI {low:+.3f} to {high:+.3f}), paired over seeds")


def main() -> None:
    """Run the part the options ask for."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["time", "quality"], default="time")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--override", action="append", default=[], help="a train.py override for every run")
    parser.add_argument("--before", action="append", default=[], help="an override of the 'before' variant")
    args = parser.parse_args()
    {"time": part_time, "quality": part_quality}[args.part](args)


if __name__ == "__main__":
    main()
