"""Unimodal vs late fusion vs joint fusion on the embedded multimodal corpus, over several seeds.

For every seed (the seed decides the train/val/test split and the initialisation):

* unimodal: BiLSTM on MFCCs (audio), CNN on faces (visual), BiLSTM on words (text), each on the
  same multimodal samples (data=embedded_multimodal);
* late fusion: ensembles of that seed's three unimodal runs (soft voting and stacking), built
  from their stored predictions by ``python -m emoexp.ensemble``'s code;
* joint fusion: early fusion and attention fusion (modality=multimodal), whose encoders have the
  unimodal models' sizes, trained with modality dropout and tested with each modality missing.

Then ``python -m emoexp.compare``'s code writes the report (report.md / report.html) into this
folder and logs it to MLflow, and ``results.md`` summarises the numbers.

    python experiments/fusion_embedded/run.py                       # 3 seeds, ~12 min on 2 CPU cores
    python experiments/fusion_embedded/run.py --seeds 0 1 2 3 4 --n-samples 840 --epochs 30
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

HERE = Path(__file__).resolve().parent
EXPERIMENT = "fusion_embedded"
# Unimodal models sized like the fusion models' encoders (conf/model/*_fusion.yaml), so that joint
# fusion differs from late fusion by how it fuses, not by bigger encoders.
UNIMODAL = {
    "audio": ["model=lstm", "model.net.hidden_size=64", "model.net.num_layers=1", "model.net.dropout=0.2"],
    "visual": ["model=cnn", "model.net.channels=[16,32,64]", "model.net.dropout=0.2"],
    "text": [
        "model=lstm",
        "model.net.hidden_size=64",
        "model.net.num_layers=1",
        "model.net.dropout=0.2",
        "++model.net.embedding_dim=64",
    ],
}
JOINT = ("early_fusion", "attention_fusion")
LATE = ("soft", "stacking")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from emoexp.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-samples", type=int, default=420, help="corpus size (the default data has 840)")
    parser.add_argument("--epochs", type=int, default=12, help="max epochs (early stopping on val/uar)")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{HERE / 'mlflow.db'}")
    parser.add_argument("--cache-dir", default=None, help="data/feature cache (default $EMOEXP_CACHE_DIR)")
    parser.add_argument("--compare-only", action="store_true", help="skip training; rebuild the report")
    parser.add_argument("--output-dir", type=Path, default=HERE, help="where report.md/results.md go")
    args = parser.parse_args()

    from emoexp import compare, ensemble
    from emoexp.train import train

    common = [
        "data=embedded_multimodal",
        f"data.corpus.n_samples={args.n_samples}",
        f"trainer.max_epochs={args.epochs}",
        "callbacks.early_stopping.patience=4",
        "trainer.num_sanity_val_steps=0",
        "++trainer.enable_progress_bar=false",
        "tracking.log_checkpoint=false",
        f"tracking.uri={args.tracking_uri}",
        f"tracking.experiment={EXPERIMENT}",
        "num_threads=1",
    ]
    if args.cache_dir:
        common.append(f"paths.cache_dir={args.cache_dir}")
    started = time.time()
    if not args.compare_only:
        for seed in args.seeds:
            unimodal = []
            for modality, overrides in UNIMODAL.items():
                out = f"paths.output_dir={args.output_dir / 'outputs' / f'{modality}-s{seed}'}"
                cfg = compose([*common, f"modality={modality}", *overrides, f"seed={seed}", out])
                metrics = train(cfg)
                unimodal.append(_latest_run_id(args.tracking_uri, modality, seed))
                print(
                    f"[{time.time() - started:6.0f}s] seed {seed} {modality}: "
                    f"test/uar={metrics['test/uar']:.3f}"
                )
            for method in LATE:
                result = ensemble.run(
                    ensemble.EnsembleOptions(
                        runs=unimodal,
                        method=method,
                        name=f"late-{method}-s{seed}",
                        log_experiment=EXPERIMENT,
                        tracking_uri=args.tracking_uri,
                    )
                )
                print(
                    f"[{time.time() - started:6.0f}s] seed {seed} late {method}: "
                    f"test/uar={result['ensemble'].metrics['test/uar']:.3f}"
                )
            for model in JOINT:
                out = f"paths.output_dir={args.output_dir / 'outputs' / f'{model}-s{seed}'}"
                cfg = compose([*common, "modality=multimodal", f"model={model}", f"seed={seed}", out])
                metrics = train(cfg)
                print(
                    f"[{time.time() - started:6.0f}s] seed {seed} {model}: test/uar={metrics['test/uar']:.3f}"
                )
    result = compare.run(
        compare.CompareOptions(
            name=EXPERIMENT,
            experiment=[EXPERIMENT],
            # Only the requested seeds: the store may hold other attempts.
            filter=f"seed={','.join(map(str, args.seeds))}",
            group_by=["modality", "model"],
            output_dir=str(args.output_dir),
            tracking_uri=args.tracking_uri,
            log_experiment=EXPERIMENT + "-comparisons",
        )
    )
    write_results(result["comparison"], args, time.time() - started)
    print(f"report: {result['paths']['markdown']}; results: {args.output_dir / 'results.md'}")


def _latest_run_id(tracking_uri: str, modality: str, seed: int) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    [run] = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.modality = '{modality}' AND tags.seed = '{seed}' "
        "AND attributes.status = 'FINISHED'",
        order_by=["start_time DESC"],
        max_results=1,
    )
    return run.info.run_id


def write_results(comparison, args, seconds: float) -> None:
    """results.md: the leaderboard, tests against the best system, robustness to a missing modality."""
    import numpy as np
    import pandas as pd

    board = comparison.leaderboard
    lines = [
        "# Results: unimodal vs late fusion vs joint fusion (embedded multimodal data)",
        "",
        f"Seeds {args.seeds}, {args.n_samples} samples (15% of them with one modality showing another "
        f"emotion), at most {args.epochs} epochs with early stopping on val/uar. "
        + (
            "Report rebuilt from the runs in the store (`--compare-only`). "
            if args.compare_only
            else f"Training and report took {seconds / 60:.1f} min. "
        )
        + "Full report with plots and all tests: [report.md](report.md) ([report.html](report.html)).",
        "",
        f"## Leaderboard ({comparison.metric}, mean over seeds, 95% t interval)",
        "",
        "| system | seeds | mean | 95% CI | test/accuracy | test/f1_macro | test/ece |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in board.itertuples():
        values = board.loc[row.Index]
        lines.append(
            f"| {row.system} | {row.units} | {row.mean:.3f} | [{row.ci_low:.3f}, {row.ci_high:.3f}] | "
            f"{values.get('test/accuracy', np.nan):.3f} | {values.get('test/f1_macro', np.nan):.3f} | "
            f"{values.get('test/ece', np.nan):.3f} |"
        )
    best = board["system"].iloc[0]
    pairs = comparison.pairwise
    lines += [
        "",
        f"## Against the best system ({best})",
        "",
        "Paired bootstrap over the shared test samples of the matched seeds and McNemar (largest p over "
        f"seeds), both Holm-corrected over all pairs (Wilcoxon over the {len(args.seeds)} seeds is in the "
        "report; it needs at least 6 seeds to reach p < 0.05).",
        "",
        "| other system | delta | 95% CI | p bootstrap (Holm) | p McNemar (Holm) | significant |",
        "|---|---|---|---|---|---|",
    ]
    for row in pairs[(pairs["A"] == best) | (pairs["B"] == best)].itertuples():
        sign = 1 if best == row.A else -1
        other = row.B if best == row.A else row.A
        low, high = sorted((sign * row.ci_low, sign * row.ci_high))
        lines.append(
            f"| {other} | {sign * row.sample_delta:+.3f} | [{low:+.3f}, {high:+.3f}] | "
            f"{row.p_bootstrap_holm:.4f} | {row.p_mcnemar_holm:.4f} | {'yes' if row.significant else 'no'} |"
        )
    if comparison.ranks is not None:
        r = comparison.ranks
        lines += [
            "",
            f"Friedman over {r['blocks']} blocks ({r['block_kind']}): chi2 = {r['friedman'].statistic:.2f}, "
            f"p = {r['friedman'].p_value:.4f}; Nemenyi critical difference "
            f"{r['critical_difference']:.2f} ranks.",
        ]
    robustness = []
    for system in comparison.systems:
        values = {}
        for unit in system.units.values():
            for modality in ("audio", "visual", "text"):
                key = f"{comparison.metric}_without_{modality}"
                if key in unit.metrics:
                    values.setdefault(modality, []).append(unit.metrics[key])
        if values:
            full = float(np.mean(list(system.values(comparison.metric, comparison.scorer).values())))
            robustness.append(
                {
                    "system": system.name,
                    "all modalities": full,
                    **{f"without {m}": float(np.mean(v)) for m, v in values.items()},
                }
            )
    if robustness:
        frame = pd.DataFrame(robustness)
        lines += [
            "",
            f"## Joint fusion with a modality missing ({comparison.metric}, mean over seeds)",
            "",
            "| " + " | ".join(frame.columns) + " |",
            "|" + "---|" * len(frame.columns),
        ]
        for row in frame.itertuples(index=False):
            lines.append(
                "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
            )
    (args.output_dir / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
