"""Cross-corpus transfer: train on a source corpus, fine-tune on a target corpus, for every pair.

For every corpus ``s`` a model is trained from scratch on ``s`` (the diagonal of the matrix: the
in-corpus result). For every other corpus ``t`` that run initialises a new run on ``t``
(``init_from=<source run id>``, ``transfer=finetune`` by default), which is fine-tuned on ``t``'s
training split and tested on ``t``'s test split. The matrix reads: row = source, column = target,
cell = test UAR on the target (and the same for macro-F1). Each fine-tuned run carries the lineage
tags ``init_from.run_id`` / ``init_from.corpus`` / ``init_from.model``.

    python experiments/cross_corpus/run.py                      # two embedded audio corpora
    python experiments/cross_corpus/run.py --report             # the matrix again from the store
    python experiments/cross_corpus/run.py \\
        --corpus emodb="data=emodb data.root=/data/emodb" \\
        --corpus ravdess="data=ravdess data.root=/data/ravdess"  # real corpora (same label scheme)

The default corpora are two embedded audio corpora generated from different seeds: different
speakers (voices, recording channels) and different utterances, the same seven emotions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = Path(__file__).resolve().parent
STUDY = "cross_corpus"
STORE = f"sqlite:///{HERE / 'mlflow.db'}"

# name -> overrides selecting the corpus (data.name labels it in the runs' `data` tags).
CORPORA = {
    "embedded_a": [
        "data=embedded_audio",
        "data.corpus.seed=0",
        "data.corpus.n_samples=280",
        "data.name=embedded_a",
    ],
    "embedded_b": [
        "data=embedded_audio",
        "data.corpus.seed=1",
        "data.corpus.n_samples=280",
        "data.name=embedded_b",
    ],
}
# BiLSTM on MFCCs: small enough for a CPU budget. Any other model works the same way, e.g.
# --model "model=wav2vec2 model.net.pretrained=/path/to/checkpoint".
MODEL = "modality=audio model=lstm +model.features.audio.max_seconds=2.0 protocol=speaker_holdout"


def _overrides(corpus: list[str], model: str, seed: int, epochs: int, batch: str, name: str) -> list[str]:
    return [
        *shlex.split(model),
        *corpus,
        f"seed={seed}",
        f"trainer.max_epochs={epochs}",
        "num_threads=1",
        f"tracking.uri={STORE}",
        f"tracking.experiment={STUDY}",
        f"+tracking.tags.study={STUDY}",
        f"+tracking.tags.batch={batch}",
        f"paths.output_dir={HERE / 'outputs' / batch / name}",
    ]


def _train(overrides: list[str]) -> tuple[str, dict[str, float]]:
    import mlflow
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.train import train

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    metrics = train(cfg)
    client = mlflow.MlflowClient(STORE)
    experiment = client.get_experiment_by_name(STUDY)
    [run] = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    return run.info.run_id, metrics


def train_all(corpora: dict[str, list[str]], model: str, args: argparse.Namespace, batch: str) -> None:
    """Scratch runs on every corpus, then a fine-tuned run for every (source, target) pair."""
    sources = {}
    for name, corpus in corpora.items():
        overrides = _overrides(corpus, model, args.seed, args.epochs, batch, f"{name}-scratch")
        overrides += ["transfer=scratch", f"+tracking.tags.source={name}", f"+tracking.tags.target={name}"]
        sources[name], metrics = _train(overrides)
        print(f"{name} (scratch): test/uar={metrics['test/uar']:.3f}", flush=True)
    for source, run_id in sources.items():
        for target, corpus in corpora.items():
            if target == source:
                continue
            overrides = _overrides(
                corpus, model, args.seed, args.finetune_epochs, batch, f"{source}-to-{target}"
            )
            overrides += [
                f"init_from={run_id}",
                f"transfer={args.transfer}",
                f"+tracking.tags.source={source}",
                f"+tracking.tags.target={target}",
            ]
            _, metrics = _train(overrides)
            print(f"{source} -> {target} ({args.transfer}): test/uar={metrics['test/uar']:.3f}", flush=True)


def report(batch: str | None = None) -> str:
    """Write results.md (the source x target matrices) from the runs of ``batch`` (default: latest)."""
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
    frame = pd.DataFrame(
        [
            {
                "source": r.data.tags["source"],
                "target": r.data.tags["target"],
                "transfer": r.data.tags.get("transfer", ""),
                "init_from": r.data.tags.get("init_from.run_id", ""),
                "test_uar": r.data.metrics["test/uar"],
                "test_f1_macro": r.data.metrics["test/f1_macro"],
                "epochs": r.data.params.get("trainer.max_epochs", ""),
                "run_id": r.info.run_id,
                "git_commit": r.data.tags.get("git_commit", ""),
            }
            for r in runs
            if r.data.tags.get("batch") == batch
        ]
    )
    names = sorted(set(frame["source"]) | set(frame["target"]))
    lines = [
        "# Cross-corpus transfer",
        "",
        "Row = source corpus, column = target corpus. Diagonal: trained from scratch on the target alone.",
        "Off-diagonal: initialised from the source run (`init_from`) and fine-tuned on the target.",
        "Every cell is tested on the target's own speaker-independent test split.",
    ]
    for metric, title in (("test_uar", "Test UAR"), ("test_f1_macro", "Test macro-F1")):
        matrix = frame.pivot_table(index="source", columns="target", values=metric).reindex(
            index=names, columns=names
        )
        lines += ["", f"**{title}**", "", "| source \\ target | " + " | ".join(names) + " |"]
        lines.append("| --- |" + " --- |" * len(names))
        for source in names:
            cells = [f"{v:.3f}" if pd.notna(v) else "-" for v in matrix.loc[source]]
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
    lines += ["", "| source | target | transfer | epochs | test UAR | init_from | MLflow run |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for row in frame.sort_values(["source", "target"]).itertuples():
        lines.append(
            f"| {row.source} | {row.target} | {row.transfer} | {row.epochs} | {row.test_uar:.3f} "
            f"| `{row.init_from or '-'}` | `{row.run_id}` |"
        )
    commits = sorted(set(frame["git_commit"]))
    lines += [
        "",
        f"Batch `{batch}`; git commit {', '.join(f'`{c}`' for c in commits)}; {platform.machine()} CPU, "
        "`OMP_NUM_THREADS=1`. Chance UAR is 1/7 = 0.143.",
        "",
        f"Reproduce: `python experiments/{STUDY}/run.py`.",
        "",
    ]
    timing_file = HERE / "outputs" / batch / "timing.json"
    if timing_file.exists():
        timing = json.loads(timing_file.read_text())
        lines.insert(
            -3,
            f"The whole batch took {timing['cpu_s'] / 60:.1f} CPU-minutes and {timing['wall_s'] / 60:.1f} "
            "wall-clock minutes on a shared 2-core machine.",
        )
    text = "\n".join(lines)
    (HERE / "results.md").write_text(text)
    frame.drop(columns=["git_commit"]).to_csv(HERE / "results.csv", index=False)
    return text


def _corpus(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise argparse.ArgumentTypeError(f'--corpus {text!r}: expected NAME="data=... data.root=..."')
    return name, [*shlex.split(overrides), f"data.name={name}"]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Parse arguments, train, report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=_corpus, action="append", help='NAME="hydra overrides" (repeat)')
    parser.add_argument("--model", default=MODEL, help="hydra overrides selecting modality/model/protocol")
    parser.add_argument("--transfer", default="finetune", help="strategy of the fine-tuned runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6, help="max epochs of the scratch runs")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="max epochs of the fine-tuned runs")
    parser.add_argument("--report", action="store_true", help="only rewrite results.md from the store")
    parser.add_argument("--batch", default=None, help="report this batch instead of the latest")
    args = parser.parse_args()
    corpora = dict(args.corpus) if args.corpus else CORPORA
    if not args.report:
        batch = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        start, cpu_start = time.time(), _cpu_seconds()
        train_all(corpora, args.model, args, batch)
        timing = {"wall_s": time.time() - start, "cpu_s": _cpu_seconds() - cpu_start}
        (HERE / "outputs" / batch / "timing.json").write_text(json.dumps(timing))
        args.batch = batch
    print(report(args.batch))


if __name__ == "__main__":
    main()
