"""Random vs speaker-independent splits, clean vs planted duplicates, on the embedded audio.

Four protocols, one model (the RBF-SVM on utterance functionals, C chosen on validation), five
seeds each (a seed draws the split and the model's randomness):

* ``random``: ``protocol=holdout``, the stratified random split (speakers in every split);
* ``speaker``: the default ``protocol=auto``, here ``speaker_holdout`` (no speaker in two splits);
* ``planted``: the same protocol on ``data=embedded_audio_planted`` (copies of 30% of the clips
  under other speakers), the leakage guard warning (``leakage=warn``, the default);
* ``planted_dropped``: the same with ``leakage=drop`` (copies removed from val/test).

    python experiments/protocols_leakage/run.py            # train (about 10 minutes) and report
    python experiments/protocols_leakage/run.py --report   # report the store again

``results.md`` gives, per protocol, the mean test UAR over seeds with a Student-t 95% interval
over the seeds, the mean of the runs' own speaker-resampled intervals (docs/protocols.md), the
speakers shared between splits and the cross-split duplicate pairs the guard found.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
STORE = f"sqlite:///{HERE / 'mlflow.db'}"
SEEDS = (1, 2, 3, 4, 5)
PROTOCOLS: dict[str, tuple[str, list[str]]] = {
    "random": ("stratified random split (protocol=holdout)", ["protocol=holdout"]),
    "speaker": ("speaker-independent split (the default, protocol=auto)", []),
    "planted": ("speaker-independent, 30% planted duplicates, leakage=warn", ["data=embedded_audio_planted"]),
    "planted_dropped": (
        "speaker-independent, 30% planted duplicates, leakage=drop",
        ["data=embedded_audio_planted", "leakage=drop"],
    ),
}


def _train_all() -> None:
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.train import train

    for name, (_, overrides) in PROTOCOLS.items():
        for seed in SEEDS:
            started = time.monotonic()
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose(
                    config_name="train",
                    overrides=[
                        "model=svm",
                        f"seed={seed}",
                        f"tracking.uri={STORE}",
                        "tracking.experiment=protocols_leakage",
                        f"+tracking.tags.condition={name}",
                        f"paths.output_dir={HERE / 'outputs' / name / str(seed)}",
                        *overrides,
                    ],
                )
            train(cfg)
            print(f"{name} seed {seed}: {time.monotonic() - started:.0f} s", flush=True)


def _report() -> str:
    import mlflow
    import numpy as np
    from scipy import stats

    client = mlflow.MlflowClient(STORE)
    experiment = client.get_experiment_by_name("protocols_leakage")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
    lines = [
        "| protocol | runs | test UAR mean | 95% CI over seeds | mean speaker-resampled CI | "
        "speaker overlap (guard) | cross-split duplicates (guard) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (what, _) in PROTOCOLS.items():
        mine = [r for r in runs if r.data.tags.get("condition") == name]
        if not mine:
            continue
        uar = np.array([r.data.metrics["test/uar"] for r in mine])
        half = (
            stats.t.ppf(0.975, len(uar) - 1) * uar.std(ddof=1) / np.sqrt(len(uar)) if len(uar) > 1 else np.nan
        )
        low = np.mean([r.data.metrics.get("test/uar_ci_low", np.nan) for r in mine])
        high = np.mean([r.data.metrics.get("test/uar_ci_high", np.nan) for r in mine])
        shared = np.mean([r.data.metrics.get("leakage/group_overlap/speaker", 0.0) for r in mine])
        pairs = np.mean(
            [
                r.data.metrics.get("leakage/exact_duplicates", 0.0)
                + r.data.metrics.get("leakage/near_duplicates", 0.0)
                for r in mine
            ]
        )
        lines.append(
            f"| {name}: {what} | {len(mine)} | {uar.mean():.3f} | [{uar.mean() - half:.3f}, "
            f"{uar.mean() + half:.3f}] | [{low:.3f}, {high:.3f}] | {shared:.1f} | {pairs:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only report the runs in the store")
    args = parser.parse_args()
    started = time.monotonic()
    if not args.report:
        _train_all()
    table = _report()
    print(table)
    print(f"wall: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
