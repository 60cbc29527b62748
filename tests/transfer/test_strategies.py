"""Transfer strategies on real Lightning training: frozen freezes, gradual unfreezing follows its schedule."""

from __future__ import annotations

import copy
import functools

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from emoexp.config import ConfigError
from emoexp.models.cnn import SmallCNN
from emoexp.models.sequence import LSTMClassifier
from emoexp.tasks.emotion import EmotionTask
from emoexp.tasks.transfer import TransferStrategy, backbone_layers, backbone_parameter_ids


class _Images(Dataset):
    def __init__(self, n: int = 32):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 16, 16, generator=generator)
        self.y = torch.randint(0, 7, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": {"x": self.x[i]}, "targets": {"label": self.y[i]}, "row": i}


class _Recorder(pl.Callback):
    """At each epoch start (after the strategy's callback): trainable layers, param groups, modes."""

    def __init__(self, layers):
        self.layers = layers
        self.epochs: dict[int, dict] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.epochs[trainer.current_epoch] = {
            "trainable": [
                i for i, layer in enumerate(self.layers) if all(p.requires_grad for p in layer.parameters())
            ],
            # the layer groups may be wrappers (slices of a Sequential): look at the modules inside
            "in_training_mode": [
                i for i, layer in enumerate(self.layers) if all(m.training for m in layer.children())
            ],
            "groups": [(len(g["params"]), g["lr"]) for g in optimizer.param_groups],
            "optimised": {id(p) for g in optimizer.param_groups for p in g["params"]},
        }


def _fit(net, strategy: TransferStrategy, scheme, epochs: int, scheduler=None, lr: float = 1e-2):
    task = EmotionTask(
        net,
        scheme,
        optimizer=functools.partial(torch.optim.AdamW, lr=lr),
        scheduler=scheduler,
        param_groups=strategy.param_groups if strategy.uses_backbone() else None,
    )
    recorder = _Recorder(backbone_layers(net))
    callbacks = [c for c in (strategy.callback(net),) if c is not None] + [recorder]
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(
        task,
        train_dataloaders=DataLoader(_Images(), batch_size=8, shuffle=True),
        val_dataloaders=DataLoader(_Images(16), batch_size=8),
    )
    return trainer, recorder


def _cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(num_outputs=7, channels=(4, 8, 8), dropout=0.0)


def test_frozen_backbone_is_unchanged_and_not_in_the_optimiser(scheme):
    net = _cnn()
    before = copy.deepcopy(net.state_dict())
    _, recorder = _fit(net, TransferStrategy(name="frozen", freeze_backbone=True), scheme, epochs=2)
    backbone = backbone_parameter_ids(net)
    assert backbone and not backbone & recorder.epochs[1]["optimised"]
    assert recorder.epochs[0]["trainable"] == [] and recorder.epochs[1]["in_training_mode"] == []
    after = net.state_dict()
    for name, value in before.items():
        if name.startswith("features."):
            # parameters and BatchNorm running statistics alike
            assert torch.equal(value, after[name]), name
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_finetune_uses_discriminative_learning_rates(scheme):
    net = _cnn()
    before = copy.deepcopy(net.state_dict())
    strategy = TransferStrategy(name="finetune", backbone_lr_mult=0.1)
    _, recorder = _fit(net, strategy, scheme, epochs=1, lr=1e-2)
    n_head = sum(1 for _ in net.head.parameters())
    assert recorder.epochs[0]["groups"] == [
        (n_head, pytest.approx(1e-2)),
        (len(list(net.features.parameters())), pytest.approx(1e-3)),
    ]
    assert not torch.equal(before["features.0.weight"], net.state_dict()["features.0.weight"])


def test_gradual_unfreeze_unfreezes_top_down_on_schedule(scheme):
    net = _cnn()
    strategy = TransferStrategy(
        name="gradual_unfreeze",
        freeze_backbone=True,
        unfreeze_start_epoch=1,
        unfreeze_every=1,
        backbone_lr_mult=0.5,
    )
    scheduler = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=10)
    before = copy.deepcopy(net.state_dict())
    _, recorder = _fit(net, strategy, scheme, epochs=4, scheduler=scheduler, lr=1e-2)
    layers = backbone_layers(net)
    assert len(layers) == 3  # one per conv block, bottom-up
    assert [recorder.epochs[e]["trainable"] for e in range(4)] == [[], [2], [1, 2], [0, 1, 2]]
    assert [recorder.epochs[e]["in_training_mode"] for e in range(4)] == [[], [2], [1, 2], [0, 1, 2]]
    assert [len(recorder.epochs[e]["groups"]) for e in range(4)] == [1, 2, 3, 4]
    # each new group starts at backbone_lr_mult x the head's initial rate, then follows the scheduler
    head_lr, top_lr = (lr for _, lr in recorder.epochs[1]["groups"])
    assert top_lr == pytest.approx(0.5 * 1e-2) and head_lr < 1e-2
    assert recorder.epochs[3]["groups"][1][1] < 0.5 * 1e-2
    # the bottom block trained in the last epoch only, so it did change
    assert not torch.equal(before["features.0.weight"], net.state_dict()["features.0.weight"])


def test_gradual_unfreeze_extends_a_plateau_scheduler_to_new_groups(scheme):
    net = _cnn()
    strategy = TransferStrategy(
        name="gradual_unfreeze", freeze_backbone=True, unfreeze_start_epoch=1, layers_per_step=2
    )
    scheduler = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="max", patience=0)
    trainer, recorder = _fit(net, strategy, scheme, epochs=3, scheduler=scheduler)
    assert [recorder.epochs[e]["trainable"] for e in range(3)] == [[], [1, 2], [0, 1, 2]]
    plateau = trainer.lr_scheduler_configs[0].scheduler
    # one new parameter group per unfrozen layer, each with its own plateau floor
    assert len(plateau.min_lrs) == len(trainer.optimizers[0].param_groups) == 4


def test_unfreeze_milestones():
    net = LSTMClassifier(num_outputs=7, vocab_size=20, embedding_dim=8, hidden_size=8, num_layers=1)
    strategy = TransferStrategy(
        name="gradual_unfreeze", freeze_backbone=True, unfreeze_start_epoch=2, layers_per_step=2
    )
    assert strategy.milestones(len(backbone_layers(net))) == [2, 2]
    strategy = TransferStrategy(
        name="gradual_unfreeze", freeze_backbone=True, unfreeze_start_epoch=0, unfreeze_every=3
    )
    assert strategy.milestones(4) == [9, 6, 3, 0]
    assert TransferStrategy(name="frozen", freeze_backbone=True).milestones(3) == [None, None, None]


def test_bad_strategy_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"transfer\.name='nope'"):
        TransferStrategy(name="nope")
    with pytest.raises(ConfigError, match="backbone_lr_mult"):
        TransferStrategy(name="finetune", backbone_lr_mult=0.0)
    with pytest.raises(ConfigError, match="has no backbone_layers"):
        TransferStrategy(name="frozen", freeze_backbone=True).callback(torch.nn.Linear(2, 2))


def test_every_transfer_config_builds_its_strategy(compose):
    from emoexp.config import group_options
    from emoexp.tasks.transfer import build

    assert set(group_options("transfer")) == {"scratch", "frozen", "finetune", "gradual_unfreeze"}
    assert build(compose([]).transfer).name == "scratch"
    for name in group_options("transfer"):
        strategy = build(compose([f"transfer={name}"]).transfer)
        assert strategy.name == name
    assert build(compose(["transfer=frozen"]).transfer).frozen_throughout
    assert not build(compose(["transfer=gradual_unfreeze"]).transfer).frozen_throughout


def test_gradual_unfreeze_resumes_from_a_checkpoint_with_its_parameter_groups(scheme, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(epochs: int, ckpt_path: str | None):
        net = _cnn()
        strategy = TransferStrategy(name="gradual_unfreeze", freeze_backbone=True, unfreeze_start_epoch=1)
        task = EmotionTask(
            net,
            scheme,
            optimizer=functools.partial(torch.optim.AdamW, lr=1e-2),
            param_groups=strategy.param_groups,
        )
        recorder = _Recorder(backbone_layers(net))
        checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=epochs,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[strategy.callback(net), recorder, checkpoint],
        )
        loader = DataLoader(_Images(), batch_size=8)
        trainer.fit(task, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
        return recorder

    run(2, None)  # epochs 0-1: the top block joined at epoch 1
    resumed = run(4, str(tmp_path / "last.ckpt"))
    assert sorted(resumed.epochs) == [2, 3]
    assert resumed.epochs[2]["trainable"] == [1, 2] and resumed.epochs[3]["trainable"] == [0, 1, 2]
    assert [len(resumed.epochs[e]["groups"]) for e in (2, 3)] == [3, 4]
