"""Classical vs deep on the embedded audio: RBF-SVM on functionals, BiLSTM on MFCCs, CNN on log-mels.

One command trains every model on every seed through ``emoexp.train.train`` into this folder's
MLflow store, then writes ``results.md`` (mean ± std of test UAR and macro-F1) from the store:

    python experiments/classical_vs_deep_audio/run.py            # train + report
    python experiments/classical_vs_deep_audio/run.py --report   # report the latest batch again

Each seed draws a different speaker-independent split (protocol=speaker_holdout) and model
initialisation; the corpus itself (embedded_audio, data seed 0) is the same for all runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

HERE = Path(__file__).resolve().parent
STUDY = "classical_vs_deep_audio"
STORE = f"sqlite:///{HERE / 'mlflow.db'}"

# Sized to a 15-minute CPU budget (one torch thread): 420 utterances (12 speakers x 7 classes x 5),
# and frame inputs cropped at 2 s (every embedded clip is shorter than 1.95 s, so nothing is lost;
# the default 3 s would only add padding the CNN convolves).
N_SAMPLES = 420
DATA = [
    "modality=audio",
    "data=embedded_audio",
    f"data.corpus.n_samples={N_SAMPLES}",
    "protocol=speaker_holdout",
]

# model name -> (what it sees, overrides). Deep models: moderate epochs, early stopping on val/uar.
MODELS: dict[str, tuple[str, list[str]]] = {
    "svm": (
        "RBF-SVM on 195 utterance functionals (MFCC+Δ, F0, energy, ZCR, spectral; C chosen on val)",
        ["model=svm"],
    ),
    "lstm": (
        "BiLSTM (2x128) on 40-MFCC frame sequences",
        ["model=lstm", "+model.features.audio.max_seconds=2.0"],
    ),
    "cnn": (
        "CNN (32-64-128) on 40-band log-mel spectrograms",
        ["model=cnn", "+model.features.audio.max_seconds=2.0", "model.features.audio.n_mels=40"],
    ),
}


def _overrides(model: str, seed: int, epochs: int, batch: str) -> list[str]:
    return [
        *DATA,
        f"seed={seed}",
        f"trainer.max_epochs={epochs}",
        "num_threads=1",
        f"tracking.uri={STORE}",
        f"tracking.experiment={STUDY}",
        f"+tracking.tags.study={STUDY}",
        f"+tracking.tags.batch={batch}",
        f"paths.output_dir={HERE / 'outputs' / batch / f'{model}-s{seed}'}",
        *MODELS[model][1],
    ]


def train_all(models: list[str], seeds: list[int], epochs: int, batch: str) -> None:
    """Train every model on every seed, one after the other in this process."""
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.train import train

    for model in models:
        for seed in seeds:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose(config_name="train", overrides=_overrides(model, seed, epochs, batch))
            start, cpu_start = time.time(), _cpu_seconds()
            metrics = train(cfg)
            timing = {
                "model": model,
                "seed": seed,
                "wall_s": time.time() - start,
                "cpu_s": _cpu_seconds() - cpu_start,
            }
            with (HERE / "outputs" / batch / "timing.jsonl").open("a") as handle:
                handle.write(json.dumps(timing) + "\n")
            print(
                f"{model} seed {seed}: test/uar={metrics['test/uar']:.3f} "
                f"test/f1_macro={metrics['test/f1_macro']:.3f} ({time.time() - start:.0f} s)",
                flush=True,
            )


def report(batch: str | None = None) -> str:
    """Write results.md from the runs of ``batch`` (default: the latest) in this folder's store."""
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient(STORE)
    experiment = client.get_experiment_by_name(STUDY)
    if experiment is None:
        raise SystemExit(f"no runs in {STORE}: run this script without --report first.")
    runs = client.search_runs([experiment.experiment_id], f"tags.study = '{STUDY}'", max_results=5000)
    runs = [r for r in runs if r.info.status == "FINISHED" and "test/uar" in r.data.metrics]
    if not runs:
        raise SystemExit(f"no finished runs of {STUDY} in {STORE}.")
    batch = batch or max(r.data.tags["batch"] for r in runs)
    latest: dict[tuple[str, str], object] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.data.tags.get("batch") == batch:  # a (model, seed) trained twice counts once: the latest
            latest[run.data.tags["model"], run.data.tags["seed"]] = run
    runs = list(latest.values())
    rows = [
        {
            "model": r.data.tags["model"],
            "seed": int(r.data.tags["seed"]),
            "test_uar": r.data.metrics["test/uar"],
            "test_f1_macro": r.data.metrics["test/f1_macro"],
            "val_uar_best": r.data.metrics["val/uar_best"],
            "seconds": (r.info.end_time - r.info.start_time) / 1000,
            "run_id": r.info.run_id,
            "git_commit": r.data.tags.get("git_commit", ""),
            "epochs": r.data.params.get("trainer.max_epochs", ""),
        }
        for r in runs
    ]
    frame = pd.DataFrame(rows).sort_values(["model", "seed"])

    def mean_std(values: pd.Series) -> str:
        return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"

    order = [m for m in MODELS if m in set(frame["model"])]
    lines = [
        "# Classical vs deep on the embedded audio",
        "",
        "Test UAR and macro-F1, mean ± std (sample std) over seeds; each seed is a different",
        "speaker-independent split (`protocol=speaker_holdout`: 2 of 12 speakers for validation,",
        f"2 for test) and model initialisation, on `data=embedded_audio` ({N_SAMPLES} utterances, ekman7).",
        "",
        "| model | input | test UAR | test macro-F1 | val UAR (best) | seeds | wall s / run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in order:
        part = frame[frame["model"] == model]
        lines.append(
            f"| {model} | {MODELS[model][0]} | {mean_std(part['test_uar'])} "
            f"| {mean_std(part['test_f1_macro'])} | {mean_std(part['val_uar_best'])} | {len(part)} "
            f"| {part['seconds'].mean():.0f} |"
        )
    lines += ["", "Per run:", "", "| model | seed | test UAR | test macro-F1 | val UAR (best) | MLflow run |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for row in frame.itertuples():
        lines.append(
            f"| {row.model} | {row.seed} | {row.test_uar:.3f} | {row.test_f1_macro:.3f} "
            f"| {row.val_uar_best:.3f} | `{row.run_id}` |"
        )
    commits = sorted(set(frame["git_commit"]))
    lines += [
        "",
        f"Batch `{batch}`; deep models `trainer.max_epochs={frame['epochs'].iloc[0]}` with early stopping "
        f"on val/uar; git commit {', '.join(f'`{c}`' for c in commits)}; {platform.machine()} CPU, "
        "`OMP_NUM_THREADS=1`. Chance UAR is 1/7 = 0.143.",
    ]
    cpu, notes = _batch_timing(batch)
    if cpu:
        wall = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
        lines += [
            "",
            f"The batch used {cpu / 60:.1f} CPU-minutes (user + system, one torch thread per run) over "
            f"{wall / 60:.0f} wall-clock minutes on a shared, heavily loaded 2-core machine.",
        ]
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    lines += [
        "",
        f"Reproduce: `python experiments/{STUDY}/run.py`; browse the runs with "
        f"`mlflow ui --backend-store-uri sqlite:///experiments/{STUDY}/mlflow.db`.",
        "",
    ]
    text = "\n".join(lines)
    (HERE / "results.md").write_text(text)
    # Keep the per-run numbers next to the table for statistics (e.g. paired tests across seeds).
    frame.drop(columns=["git_commit"]).to_csv(HERE / "results.csv", index=False)
    return text


def _batch_timing(batch: str) -> tuple[float, list[str]]:
    """CPU seconds and notes of the batch's runs, as recorded in ``outputs/<batch>/timing.jsonl``."""
    path = HERE / "outputs" / batch / "timing.jsonl"
    records = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )
    return sum(r["cpu_s"] for r in records), [r["note"] for r in records if r.get("note")]


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_parallel(models: list[str], seeds: list[int], epochs: int, batch: str, jobs: int) -> None:
    """Train in up to ``jobs`` worker processes (one torch thread each), slowest models first.

    The store and the corpus are created here first: parallel workers must not create the same
    new SQLite store at once, nor all generate the same corpus.
    """
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.tracking.store import ensure_experiment
    from emoexp.train import load_corpus

    ensure_experiment(STORE, STUDY)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        load_corpus(compose(config_name="train", overrides=_overrides(models[0], seeds[0], epochs, batch)))
    # The SVM's seeds share one functional extraction: one worker runs them in turn.
    units = [(m, [s]) for m in ("lstm", "cnn") if m in models for s in seeds]
    units += [(m, seeds) for m in models if m not in ("lstm", "cnn")]

    def run(unit: tuple[str, list[int]]) -> None:
        model, unit_seeds = unit
        command = [sys.executable, __file__, "--models", model, "--seeds", *map(str, unit_seeds)]
        command += ["--epochs", str(epochs), "--batch", batch, "--jobs", "1", "--no-report"]
        subprocess.run(command, check=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run, units))


def main() -> None:
    """Parse arguments, train, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split/initialisation seeds")
    parser.add_argument("--epochs", type=int, default=10, help="max epochs of the deep models")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--report", action="store_true", help="only rewrite results.md from the store")
    parser.add_argument("--batch", default=None, help="batch to add runs to, or to report (default: latest)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one per core)")
    parser.add_argument("--no-report", action="store_true", help="train only (used by the workers)")
    args = parser.parse_args()
    if not args.report:
        # --batch adds runs to an existing batch (e.g. the models trained in several processes).
        batch = args.batch or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        (HERE / "outputs" / batch).mkdir(parents=True, exist_ok=True)
        start = time.time()
        if args.jobs > 1:
            train_parallel(args.models, args.seeds, args.epochs, batch, args.jobs)
        else:
            train_all(args.models, args.seeds, args.epochs, batch)
        print(f"trained {len(args.models) * len(args.seeds)} runs in {time.time() - start:.0f} s", flush=True)
        args.batch = batch
    if not args.no_report:
        print(report(args.batch))


if __name__ == "__main__":
    main()
