"""The Hydra sweeper path on a real SLURM cluster: ``python train.py -m ... hydra/launcher=slurm`` submits
each batch of trials as a job array through hydra-submitit-launcher (conf/hydra/launcher/slurm.yaml)
and the trials log to a real MLflow tracking server (docs/tuning.md)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_hydra_sweeper_runs_its_trials_as_a_slurm_job_array_through_submitit(
    slurm, mlflow_server, tmp_path, cache_dir
):
    experiment = f"cluster-submitit-{uuid.uuid4().hex[:8]}"
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=svm", "debug=fast",
        "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={sweep}",
        f"tracking.uri={mlflow_server}", f"tracking.experiment={experiment}", f"paths.cache_dir={cache_dir}",
    ]  # fmt: skip
    # submitit polls sacct, which has no accounting daemon here: it warns and reads the jobs' result files
    result = subprocess.run(
        command, cwd=tmp_path, env=slurm.env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert len(tasks) == 2 and len({name.split("_")[0] for name in tasks}) == 1  # one array, two tasks
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(run.data.metrics["val/uar_best"] for run in runs))
    best_c = [
        float(run.data.params["model.estimator.classifier.C"])
        for run in runs
        if run.data.metrics["val/uar_best"] == pytest.approx(best["best_value"])
    ]
    assert best["best_params"]["model.estimator.classifier.C"] in [pytest.approx(c) for c in best_c]
