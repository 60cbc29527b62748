"""Multi-process training: trainer=ddp_sim (2 CPU processes) and, where present, real GPUs."""

from __future__ import annotations

import math

import hydra
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from emoexp.data.splits import TEST, VAL


def _fold(cfg):
    """The scheme, manifest and fold a run of ``cfg`` trains on."""
    from emoexp.engine.samples import prepare_samples

    scheme = hydra.utils.instantiate(cfg.label_scheme, _convert_="all")
    manifest = prepare_samples(cfg, scheme)
    protocol = hydra.utils.instantiate(cfg.protocol)
    return scheme, manifest, next(protocol.folds(manifest, scheme.stratify_labels(manifest), cfg.seed))


def _test_in_one_process(cfg, checkpoint: str) -> dict[str, float]:
    """Test ``checkpoint`` on ``cfg``'s data with a plain single-process Trainer."""
    from lightning.pytorch import Trainer

    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.tasks.emotion import EmotionTask

    scheme, manifest, fold = _fold(cfg)
    featurizer = hydra.utils.instantiate(cfg.model.features[cfg.modality], _convert_="all")
    datamodule = EmotionDataModule(
        manifest, fold, featurizer, scheme.targets(manifest), cache_dir=cfg.paths.cache_dir
    )
    datamodule.setup()
    net = hydra.utils.instantiate(cfg.model.net, num_outputs=scheme.num_outputs, **featurizer.net_kwargs())
    task = EmotionTask(net, scheme, optimizer=hydra.utils.instantiate(cfg.optimizer))
    task.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    return trainer.test(task, datamodule=datamodule, verbose=False)[0]


@pytest.mark.parametrize("option", ["default", "cpu", "gpu", "ddp", "ddp_sim"])
def test_every_trainer_option_binds_to_the_lightning_trainer(compose, option):
    import inspect

    from lightning.pytorch import Trainer
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(
        compose([f"trainer={option}", "trainer.precision=bf16-mixed"]).trainer, resolve=True
    )
    assert node.pop("_target_") == "lightning.pytorch.Trainer"
    inspect.signature(Trainer).bind(**node)
    if option.startswith("ddp"):
        assert node["strategy"] == "ddp"


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, False),  # Lightning's launcher inside a 1-task SLURM job
        ({"SLURM_PROCID": "3"}, False),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),  # local rank 0 of the second node
    ],
)
def test_rank_zero_is_judged_from_the_launchers_environment(monkeypatch, env, zero):
    from emoexp.distributed import RANK_VARIABLES, is_global_zero

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_global_zero() is zero


def test_spawning_strategies_are_refused_with_the_supported_one():
    from lightning.pytorch import Trainer

    from emoexp.config import ConfigError
    from emoexp.distributed import check_strategy

    with pytest.raises(ConfigError, match="trainer=ddp"):
        check_strategy(Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False))
    check_strategy(Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False))


def test_ddp_sim_logs_one_run_with_every_sample_once_and_single_process_metrics(
    compose, run_train, store_runs, tracking_uri, tmp_path
):
    run_train(["trainer=ddp_sim"])
    [run] = store_runs()  # rank 1 created no run of its own
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "ddp" and run.data.params["trainer.devices"] == "2"
    # One Hydra output folder for both ranks: rank 1 logs into rank 0's folder and writes no config.
    hydra_dir = tmp_path / "hydra"
    assert (hydra_dir / ".hydra" / "config.yaml").exists() and (
        hydra_dir / "train_ddp_process_1.log"
    ).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hydra", "mlartifacts", "mlflow.db", "outputs"]

    cfg = compose([])  # the same data, split and model as the run
    _, manifest, fold = _fold(cfg)
    assert fold.fingerprint(manifest) == run.data.tags["data_fingerprint"]
    client = mlflow.MlflowClient(tracking_uri)
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))
    for part in (VAL, TEST):  # gathered from both ranks, each sample exactly once
        logged = predictions.loc[predictions["split"] == part, "id"]
        assert logged.is_unique
        assert sorted(logged) == sorted(manifest.loc[fold.mask(part), "id"])
    test = predictions[predictions["split"] == TEST]
    logged = run.data.metrics
    assert math.isclose((test["target"] == test["prediction"]).mean(), logged["test/accuracy"], abs_tol=1e-6)
    # The epoch loss is the sample-weighted mean over both ranks: the cross-entropy of all test samples.
    probs = test[[f"prob_{label}" for label in test["target"]]].to_numpy().diagonal()
    assert logged["test/loss"] == pytest.approx(-np.log(probs).mean(), abs=1e-4)

    # The synchronised DDP metrics equal a single-process evaluation of the same weights.
    checkpoint = client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt")
    single = _test_in_one_process(cfg, checkpoint)
    for name in ("test/accuracy", "test/uar", "test/f1_macro", "test/precision_weighted", "test/loss"):
        assert logged[name] == pytest.approx(single[name], abs=1e-5), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_gpu_with_bf16_mixed_precision_trains_and_logs(compose, tracking_uri):
    from emoexp.train import train

    metrics = train(compose(["trainer=gpu", "trainer.precision=bf16-mixed"]))
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("emoexp-audio").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["trainer.precision"] == "bf16-mixed"
    assert 0.0 <= metrics["test/uar"] <= 1.0


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_ddp_on_two_gpus_logs_one_run(run_train, store_runs):
    run_train(["trainer=ddp", "trainer.devices=2"])
    [run] = store_runs()
    assert run.info.status == "FINISHED" and "test/uar" in run.data.metrics
