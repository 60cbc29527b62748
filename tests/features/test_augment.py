"""Training-time augmentation (emoexp.features.augment): training batches only, seeded, shape-preserving.

Real WAV and PNG files in ``tmp_path``, the real featurizers, the real data module; the training
stage is the one the Lightning trainer reports (a stub for the hook, a real ``Trainer.fit`` once).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from PIL import Image

from emoexp.config import CONF_DIR, ConfigError, group_options
from emoexp.data.datamodule import EmotionDataModule
from emoexp.data.splits import Fold
from emoexp.features.audio import LogMelFeatures, MFCCFeatures
from emoexp.features.augment import Augmentation, check_augmentation, perturb_waveform, resolve_augmentation
from emoexp.features.visual import ImageFeatures
from emoexp.features.waveform import WaveformFeatures

RATE = 16000
N = 12
ASSIGNMENT = np.array(["train"] * 8 + ["val"] * 2 + ["test"] * 2)


def _option(name: str, seed: int = 7, **changes: object) -> Augmentation:
    """The shipped ``conf/augment/<name>.yaml`` as the run would build it (seed given)."""
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "augment" / f"{name}.yaml"))
    node.pop("_target_")
    node.update(seed=seed, **changes)
    return Augmentation(**node)


@pytest.fixture(scope="module")
def audio_manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N):
        t = np.arange(int((0.6 + 0.05 * i) * RATE)) / RATE
        signal = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t))
        path = root / f"clip{i}.wav"
        sf.write(path, signal.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(str(path))
    return pd.DataFrame({"id": [f"s{i}" for i in range(N)], "audio": paths, "label": np.arange(N) % 3})


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(N):
        # A bright left half and a gradient: flips, crops and rotations all show.
        face = np.tile(np.linspace(0, 255, 32, dtype=np.float64), (32, 1))
        face[:, :12] = 255
        face = np.clip(face + rng.normal(0, 10, face.shape), 0, 255).astype(np.uint8)
        path = root / f"face{i}.png"
        Image.fromarray(face).save(path)
        paths.append(str(path))
    return pd.DataFrame({"id": [f"f{i}" for i in range(N)], "image": paths, "label": np.arange(N) % 3})


def _datamodule(manifest, featurizer, augmentation, cache_dir, **kwargs) -> EmotionDataModule:
    datamodule = EmotionDataModule(
        manifest,
        Fold("holdout", ASSIGNMENT),
        featurizer,
        {"label": manifest["label"].to_numpy()},
        batch_size=4,
        cache_dir=cache_dir,
        augmentation=augmentation,
        **kwargs,
    )
    datamodule.setup()
    return datamodule


def _stage(datamodule: EmotionDataModule, training: bool, epoch: int = 0) -> None:
    """What the trainer tells the data module: the running stage and the epoch."""
    cpu = SimpleNamespace(root_device=torch.device("cpu"))
    datamodule.trainer = SimpleNamespace(training=training, current_epoch=epoch, strategy=cpu)


def _by_row(datamodule: EmotionDataModule, loader, epoch: int = 0, training: bool = True) -> dict:
    """Every sample the loader serves, after the data module's batch hook, keyed by manifest row."""
    _stage(datamodule, training, epoch)
    samples = {}
    for batch in loader:
        batch = datamodule.on_before_batch_transfer(batch, 0)
        for i, row in enumerate(batch["row"].tolist()):
            samples[row] = {k: v[i] for k, v in batch["inputs"].items()}
    return samples


def _clean(datamodule: EmotionDataModule, row: int) -> dict:
    return {k: v[row] for k, v in datamodule.inputs.items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# One case per augmentation stage and input layout: (featurizer, option, manifest fixture).
CASES = {
    "audio-mfcc": (lambda: MFCCFeatures(n_mfcc=20, max_seconds=1.0), "audio", "audio_manifest"),
    "specaugment-logmel": (
        lambda: LogMelFeatures(n_mels=32, max_seconds=1.0),
        "specaugment",
        "audio_manifest",
    ),
    "waveform-raw": (lambda: WaveformFeatures(max_seconds=1.0), "waveform", "audio_manifest"),
    "visual-image": (lambda: ImageFeatures(size=32), "visual", "image_manifest"),
}


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path):
    make_featurizer, option, manifest = CASES[request.param]

    def augmentation(seed: int = 7) -> Augmentation:
        built = _option(option, seed)
        if "waveform" in built.stages:
            # Every epoch serves a perturbed copy here, so that each sample shows its augmentation.
            built.stages["waveform"] = dataclasses.replace(built.stages["waveform"], p=1.0)
        return built

    return SimpleNamespace(
        featurizer=make_featurizer,
        augmentation=augmentation,
        manifest=request.getfixturevalue(manifest),
        cache_dir=tmp_path / "cache",
    )


def test_training_batches_are_augmented_with_their_shapes_kept(case):
    datamodule = _datamodule(case.manifest, case.featurizer(), case.augmentation(), case.cache_dir)
    augmented = _by_row(datamodule, datamodule.train_dataloader())
    assert sorted(augmented) == list(range(8))
    changed = 0
    for row, sample in augmented.items():
        clean = _clean(datamodule, row)
        assert sample.keys() == clean.keys()
        for key in clean:
            assert sample[key].shape == clean[key].shape and sample[key].dtype == clean[key].dtype, key
            assert torch.isfinite(sample[key].float()).all()
        changed += not _same(sample, clean)
    assert changed >= 6, f"only {changed} of 8 training samples changed"


def test_validation_test_and_prediction_batches_are_never_augmented(case):
    datamodule = _datamodule(case.manifest, case.featurizer(), case.augmentation(), case.cache_dir)
    loaders = [datamodule.val_dataloader(), datamodule.test_dataloader(), *datamodule.predict_dataloader()]
    for loader in loaders:
        # The trainer's stage is validating/testing/predicting there (a real fit: the test below).
        served = _by_row(datamodule, loader, training=False)
        assert served
        for row, sample in served.items():
            assert _same(sample, _clean(datamodule, row)), row
    # The clean training tensors are what validation/test/predict read: augmentation never writes them.
    before = {k: v.clone() for k, v in datamodule.inputs.items()}
    _by_row(datamodule, datamodule.train_dataloader())
    assert _same(before, datamodule.inputs)


def test_same_seed_same_batch_other_seed_or_epoch_differs(case):
    first = _datamodule(case.manifest, case.featurizer(), case.augmentation(7), case.cache_dir)
    again = _datamodule(case.manifest, case.featurizer(), case.augmentation(7), case.cache_dir)
    other = _datamodule(case.manifest, case.featurizer(), case.augmentation(8), case.cache_dir)
    a = _by_row(first, first.train_dataloader())
    b = _by_row(again, again.train_dataloader())
    assert all(_same(a[row], b[row]) for row in a)
    c = _by_row(other, other.train_dataloader())
    assert sum(not _same(a[row], c[row]) for row in a) >= 4
    next_epoch = _by_row(first, first.train_dataloader(), epoch=1)
    assert sum(not _same(a[row], next_epoch[row]) for row in a) >= 4


def test_draws_do_not_depend_on_loader_workers_or_batch_size(audio_manifest, tmp_path):
    def make(**kwargs):
        return _datamodule(
            audio_manifest, MFCCFeatures(n_mfcc=20, max_seconds=1.0), _option("audio"), tmp_path, **kwargs
        )

    serial = make()
    reference = _by_row(serial, serial.train_dataloader(), epoch=3)
    workers = make(num_workers=2, persistent_workers=False)
    assert all(
        _same(reference[r], s) for r, s in _by_row(workers, workers.train_dataloader(), epoch=3).items()
    )
    batched = make()
    batched.batch_size = 3
    assert all(
        _same(reference[r], s) for r, s in _by_row(batched, batched.train_dataloader(), epoch=3).items()
    )


def test_augmentation_leaves_the_global_generator_alone(audio_manifest, tmp_path):
    datamodule = _datamodule(audio_manifest, MFCCFeatures(max_seconds=1.0), _option("audio"), tmp_path)
    batch = next(iter(datamodule.val_dataloader()))
    batch["row"] = torch.arange(len(batch["row"]))  # training rows: copies and masks both apply
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    augmented = datamodule.augmentation.augment_batch(batch, epoch=0)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.equal(augmented["inputs"]["x"], batch["inputs"]["x"])


def test_sample_draws_never_reseed_accelerator_generators(audio_manifest, tmp_path, monkeypatch):
    """Only the CPU generator is seeded per sample: a GPU run's dropout draws stay its own.

    (``torch.manual_seed`` would reseed every CUDA device, which ``fork_rng(devices=[])`` does not
    restore, and where CUDA is built but idle it formats a stack trace on every call.)
    """
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    datamodule = _datamodule(audio_manifest, MFCCFeatures(max_seconds=1.0), _option("specaugment"), tmp_path)
    batch = next(iter(datamodule.val_dataloader()))
    first = datamodule.augmentation.augment_batch(batch, epoch=0)
    again = datamodule.augmentation.augment_batch(batch, epoch=0)
    assert reseeded == []
    assert torch.equal(first["inputs"]["x"], again["inputs"]["x"])  # still a function of the seed
    assert not torch.equal(first["inputs"]["x"], batch["inputs"]["x"])


@pytest.mark.parametrize("axis", ["time", "frequency"])
def test_specaugment_masks_bands_or_frames_within_the_valid_length(audio_manifest, tmp_path, axis):
    masks = {"p": 1.0, "count": 2, "max_width": 6, "max_proportion": 1.0}
    augmentation = _option("specaugment", spectrogram={f"{axis}_masking": masks})
    datamodule = _datamodule(audio_manifest, MFCCFeatures(n_mfcc=20, max_seconds=1.0), augmentation, tmp_path)
    masked = 0
    for row, sample in _by_row(datamodule, datamodule.train_dataloader()).items():
        clean = _clean(datamodule, row)
        length = int(clean["lengths"])
        assert torch.equal(sample["lengths"], clean["lengths"])
        assert torch.equal(sample["x"][length:], clean["x"][length:])  # padding stays padding
        # x is [frames, coefficients]: time masks blank whole frames, frequency masks whole bands.
        changed = sample["x"][:length] != clean["x"][:length]
        lines = changed.any(dim=1) if axis == "time" else changed.any(dim=0)
        assert int(lines.sum()) <= 2 * 6
        masked += int(lines.sum())
        if lines.any():
            fill = sample["x"][:length][lines] if axis == "time" else sample["x"][:length][:, lines]
            assert torch.allclose(fill, fill.flatten()[0].expand_as(fill))  # one value: the sample's mean
    assert masked > 8


def test_waveform_copies_are_cached_under_their_own_key(audio_manifest, tmp_path):
    featurizer = MFCCFeatures(n_mfcc=20, max_seconds=1.0)
    clean = _datamodule(audio_manifest, featurizer, None, tmp_path)
    files = sorted((tmp_path / "features").glob("*.safetensors"))
    assert len(files) == 1 and not clean.cache_hit
    stamp = (files[0].stat().st_mtime_ns, files[0].read_bytes())
    augmentation = _option("waveform")
    augmented = _datamodule(audio_manifest, MFCCFeatures(n_mfcc=20, max_seconds=1.0), augmentation, tmp_path)
    assert augmented.cache_hit and not augmentation.copies_hit
    assert (files[0].stat().st_mtime_ns, files[0].read_bytes()) == stamp  # the clean entry is untouched
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 1 + 3
    assert _same(augmented.inputs, clean.inputs)  # the model inputs every part reads stay clean
    for copy in augmentation.copies:
        assert copy["x"].shape == (8, *clean.inputs["x"].shape[1:])
        assert not torch.equal(copy["x"], clean.inputs["x"][:8])
    again = _option("waveform")
    _datamodule(audio_manifest, MFCCFeatures(n_mfcc=20, max_seconds=1.0), again, tmp_path)
    assert again.copies_hit
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(again.copies, augmentation.copies, strict=True))


def test_perturb_waveform_speed_and_snr():
    from emoexp.features.augment import Noise, Speed, WaveformStage

    waveform = torch.sin(torch.arange(RATE) * 2 * torch.pi * 200 / RATE)
    fast = WaveformStage(speed=Speed(p=1.0, factors=(1.25,)))
    assert perturb_waveform(waveform, RATE, fast, torch.Generator().manual_seed(0)).shape == (RATE * 4 // 5,)
    noisy = WaveformStage(noise=Noise(p=1.0, snr_db=(10.0, 10.0)))
    out = perturb_waveform(waveform, RATE, noisy, torch.Generator().manual_seed(0))
    snr = 10 * torch.log10(waveform.pow(2).sum() / (out - waveform).pow(2).sum())
    assert abs(float(snr) - 10.0) < 0.1


def test_real_trainer_augments_training_steps_only(audio_manifest, tmp_path):
    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(20, 3)
            self.seen = {"train": [], "val": []}

        def _record(self, batch, stage):
            self.seen[stage].append((batch["row"].clone(), batch["inputs"]["x"].clone()))
            return self.layer(batch["inputs"]["x"].mean(dim=1)).sum()

        def training_step(self, batch, batch_idx):
            return self._record(batch, "train")

        def validation_step(self, batch, batch_idx):
            self._record(batch, "val")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    datamodule = _datamodule(
        audio_manifest, MFCCFeatures(n_mfcc=20, max_seconds=1.0), _option("audio"), tmp_path
    )
    model = Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=datamodule)
    clean = datamodule.inputs["x"]
    assert model.seen["val"] and all(torch.equal(x, clean[rows]) for rows, x in model.seen["val"])
    changed = sum(int((x != clean[rows]).flatten(1).any(dim=1).sum()) for rows, x in model.seen["train"])
    assert changed >= 12  # of 16 training samples seen over two epochs


def test_options_that_do_not_fit_are_config_errors(compose):
    with pytest.raises(ConfigError, match=r"augment=visual is for modality \['visual'\].*modality=audio"):
        check_augmentation(compose(["augment=visual"]))
    with pytest.raises(ConfigError, match=r"augment\.spectrogram .*model=wav2vec2.*augment=waveform"):
        check_augmentation(compose(["augment=specaugment", "model=wav2vec2"]))
    with pytest.raises(ConfigError, match=r"model=svm is a scikit-learn model.*augment=none"):
        check_augmentation(compose(["augment=audio", "model=svm"]))
    with pytest.raises(ConfigError, match=r"augment\.image\.flip\.q is not an augmentation setting"):
        check_augmentation(compose(["augment=visual", "modality=visual", "+augment.image.flip.q=1"]))
    with pytest.raises(ConfigError, match=r"augment\.waveform\.p=1\.5 is a probability"):
        check_augmentation(compose(["augment=audio", "augment.waveform.p=1.5"]))


# Which (model, modality) each shipped option fits; every other pair is a ConfigError naming augment.
FITS = {
    "none": None,  # every pair
    "auto": None,  # every pair: it resolves to an option that fits, or none
    "audio": {("lstm", "audio"), ("cnn", "audio"), ("timm", "audio")},
    "specaugment": {("lstm", "audio"), ("cnn", "audio"), ("timm", "audio")},
    "waveform": {("lstm", "audio"), ("cnn", "audio"), ("timm", "audio"), ("wav2vec2", "audio")},
    "visual": {("cnn", "visual"), ("timm", "visual")},
}


def test_every_option_fits_or_is_rejected_for_every_model(compose):
    options = group_options("augment")
    assert set(options) <= set(FITS), "add the new option to FITS"
    fits: dict[str, set] = {option: set() for option in options}
    pairs = 0
    for model in group_options("model"):
        node = OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")
        for modality in node.get("features") or node.get("modalities") or []:
            cfg = compose([f"model={model}", f"modality={modality}"])
            pairs += 1
            for option in options:
                cfg.augment = OmegaConf.load(CONF_DIR / "augment" / f"{option}.yaml")
                try:
                    resolve_augmentation(cfg)
                    check_augmentation(cfg)
                except ConfigError as error:
                    assert f"augment={option}" in str(error) and "augment=none" in str(error), str(error)
                else:
                    fits[option].add((model, str(modality)))
    assert len(fits["none"]) == len(fits["auto"]) == pairs
    for option, expected in FITS.items():
        if expected is not None and option in fits:
            assert fits[option] == expected, option


@pytest.mark.parametrize(
    ("overrides", "chosen"),
    [
        (["modality=audio"], "specaugment"),  # the default BiLSTM on MFCC frames
        (["modality=audio", "model=cnn"], "specaugment"),  # log-mel images
        (["modality=audio", "model=svm"], "none"),  # functionals: scikit-learn
        (["modality=audio", "model=wav2vec2"], "none"),  # raw waveforms: no spectral stage
        (["modality=text"], "none"),
        (["modality=visual"], "visual"),  # the default CNN on faces
        (["modality=visual", "model=svm"], "none"),  # HOG/LBP/landmarks: scikit-learn
    ],
)
def test_auto_resolves_to_the_option_the_model_takes_and_records_it(compose, overrides, chosen):
    from emoexp.engine.preflight import check_config
    from emoexp.engine.resume import config_fingerprint

    cfg = compose([*overrides, "augment=auto"])
    check_config(cfg)
    assert cfg.augment.name == chosen
    assert cfg.augment.seed == cfg.seed
    explicit = compose([*overrides, f"augment={chosen}"])
    check_config(explicit)
    assert config_fingerprint(cfg) == config_fingerprint(explicit)
