"""Training-time augmentation of audio and visual inputs: the ``augment=`` config group.

Three stages, each optional (docs/augmentation.md):

- ``waveform``: additive white noise at a random SNR and speed perturbation of the decoded audio.
  The featurizer extracts ``copies`` perturbed versions of every *training* sample once; they are
  cached under their own key (the clean features' cache entry is never touched), and each epoch
  serves a training sample either clean or as one of its copies.
- ``spectrogram``: SpecAugment time and frequency masks (``torchaudio.transforms.TimeMasking`` /
  ``FrequencyMasking``) on the model-ready frames (MFCC, log-mel), on the fly.
- ``image``: horizontal flips, random resized crops, small rotations and colour jitter
  (``torchvision.transforms.v2``) on the model-ready face images, on the fly.

On-the-fly stages run on training batches only, in
:meth:`emoexp.data.datamodule.EmotionDataModule.on_before_batch_transfer`, after the feature
cache; validation, test and prediction batches are never touched. Every draw is a function of
the run's seed, the epoch and the sample (its manifest row, or its id for the cached copies), so
a rerun is identical whatever the number of loader workers, devices or the batch composition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from emoexp.config import CONF_DIR, ConfigError, group_options
from emoexp.data import schema
from emoexp.features.base import Features, Featurizer
from emoexp.features.cache import cached_features, content_key

log = logging.getLogger(__name__)

STAGES = ("waveform", "spectrogram", "image")
# What each stage does, for messages.
STAGE_DESCRIPTIONS = {
    "waveform": "noise and speed perturbation of the decoded audio",
    "spectrogram": "SpecAugment masks on spectral frames (MFCC, log-mel)",
    "image": "flips, crops, rotations and colour jitter of images",
}


# ---- settings: one dataclass per config node, unknown keys named --------------------------------


@dataclass(frozen=True)
class Noise:
    """Additive white Gaussian noise. ``p``: probability per copy; ``snr_db``: [low, high] in dB."""

    p: float = 0.8
    snr_db: tuple[float, float] = (10.0, 30.0)


@dataclass(frozen=True)
class Speed:
    """Speed perturbation by resampling (tempo and pitch together). ``factors`` drawn uniformly."""

    p: float = 0.8
    factors: tuple[float, ...] = (0.9, 1.1)


@dataclass(frozen=True)
class WaveformStage:
    """``copies`` perturbed versions per training sample; an epoch serves one with probability ``p``."""

    copies: int = 3
    p: float = 0.5
    noise: Noise | None = None
    speed: Speed | None = None
    nested: ClassVar[dict[str, type]] = {"noise": Noise, "speed": Speed}


@dataclass(frozen=True)
class Masking:
    """``count`` masks, each applied with probability ``p``, of width uniform in [0, ``max_width``].

    ``max_proportion`` caps a mask's width at that share of the axis (torchaudio's ``p``).
    """

    p: float = 1.0
    count: int = 2
    max_width: int = 10
    max_proportion: float = 1.0


@dataclass(frozen=True)
class SpectrogramStage:
    """SpecAugment: frequency masks (bands / coefficients) and time masks (frames)."""

    frequency_masking: Masking | None = None
    time_masking: Masking | None = None
    nested: ClassVar[dict[str, type]] = {"frequency_masking": Masking, "time_masking": Masking}


@dataclass(frozen=True)
class Flip:
    """Horizontal flip with probability ``p``."""

    p: float = 0.5


@dataclass(frozen=True)
class ResizedCrop:
    """A crop of ``scale`` x the area and ``ratio`` aspect, resized back, with probability ``p``."""

    p: float = 0.5
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)


@dataclass(frozen=True)
class Rotation:
    """Rotation by an angle uniform in [-``degrees``, ``degrees``] with probability ``p``."""

    p: float = 0.5
    degrees: float = 10.0


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness/contrast/saturation/hue changes with probability ``p`` (torchvision's ranges)."""

    p: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.0
    hue: float = 0.0


@dataclass(frozen=True)
class ImageStage:
    """Image transforms, applied in this order."""

    flip: Flip | None = None
    resized_crop: ResizedCrop | None = None
    rotation: Rotation | None = None
    color_jitter: ColorJitter | None = None
    nested: ClassVar[dict[str, type]] = {
        "flip": Flip,
        "resized_crop": ResizedCrop,
        "rotation": Rotation,
        "color_jitter": ColorJitter,
    }


STAGE_SETTINGS: dict[str, type] = {
    "waveform": WaveformStage,
    "spectrogram": SpectrogramStage,
    "image": ImageStage,
}


def parse_settings(cls: type, value: Mapping[str, Any] | None, path: str) -> Any:
    """Build the settings dataclass ``cls`` from a config mapping (``None`` stays ``None``).

    Raises:
        ConfigError: Naming ``path.key`` for an unknown key or a probability outside [0, 1].
    """
    if value is None:
        return None
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ConfigError(
            f"{path}.{unknown[0]} is not an augmentation setting; valid keys of {path}: {names}."
        )
    nested = getattr(cls, "nested", {})
    kwargs = {}
    for key, item in value.items():
        if key in nested:
            kwargs[key] = parse_settings(nested[key], item, f"{path}.{key}")
        elif isinstance(item, list | tuple):
            kwargs[key] = tuple(item)
        else:
            kwargs[key] = item
    settings = cls(**kwargs)
    probability = getattr(settings, "p", 0.0)
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"{path}.p={probability} is a probability: set it within [0, 1].")
    return settings


# ---- seeding ----------------------------------------------------------------------------------


def draw_seed(*parts: object) -> int:
    """A 63-bit seed that is a function of ``parts`` only (run seed, stage, epoch, sample...)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU generator seeded by ``seed``, restoring it afterwards.

    torchaudio's masks and torchvision's transforms draw from the global generator; forking it
    keeps every other draw of the run (shuffling, dropout) what it would be without augmentation.
    Only the CPU generator is seeded: ``torch.manual_seed`` would also reseed every accelerator's
    generator (which ``fork_rng(devices=[])`` does not restore) and, where CUDA is built but not
    initialised, format the caller's whole stack on every call (0.4 ms per training sample under
    Lightning's deep call stack, ~17% of the default model's epoch; docs/benchmarks.md).
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


# ---- the waveform stage: perturbed copies, extracted and cached under their own key --------------


def perturb_waveform(
    waveform: torch.Tensor, sample_rate: int, stage: WaveformStage, generator: torch.Generator
) -> torch.Tensor:
    """Speed-perturb, then add noise to, one mono waveform (each with its probability)."""
    import torchaudio.functional as AF  # noqa: N812  deferred: torchaudio only where audio is augmented

    if stage.speed is not None and float(torch.rand((), generator=generator)) < stage.speed.p:
        factors = stage.speed.factors
        factor = factors[int(torch.randint(len(factors), (), generator=generator))]
        waveform = AF.speed(waveform, sample_rate, float(factor))[0]
    if stage.noise is not None and float(torch.rand((), generator=generator)) < stage.noise.p:
        low, high = stage.noise.snr_db
        snr = low + (high - low) * torch.rand(1, generator=generator)
        noise = torch.randn(waveform.shape, generator=generator)
        waveform = AF.add_noise(waveform[None], noise[None], snr)[0]
    return waveform


def _perturbed_waveforms(
    featurizer: Featurizer, manifest: pd.DataFrame, stage: WaveformStage, seed: int, copy: int
) -> Iterator[torch.Tensor]:
    from emoexp.features.audio import load_waveform

    rate = int(featurizer.sample_rate)  # type: ignore[attr-defined]
    for sample_id, path in zip(manifest[schema.ID].tolist(), manifest[schema.AUDIO].tolist(), strict=True):
        generator = torch.Generator().manual_seed(draw_seed(seed, "waveform", copy, str(sample_id)))
        yield perturb_waveform(load_waveform(path, rate), rate, stage, generator)


def waveform_copies(
    featurizer: Featurizer,
    manifest: pd.DataFrame,
    stage: WaveformStage,
    seed: int,
    cache_dir: Any = None,
    use_cache: bool = True,
) -> tuple[list[Features], bool]:
    """The ``stage.copies`` perturbed versions of ``manifest``'s samples, as model inputs.

    Each copy is extracted by the featurizer from perturbed waveforms and cached under a key of
    its own (the clean key's inputs plus the perturbation settings, the seed and the copy index),
    then finalised with the state the featurizer learnt from the *clean* training samples.

    Returns:
        One features dict per copy (rows as in ``manifest``) and whether every copy hit the cache.
    """
    settings = {"noise": dataclasses.asdict(stage.noise) if stage.noise else None}
    settings["speed"] = dataclasses.asdict(stage.speed) if stage.speed else None
    copies, hits = [], []
    for copy in range(stage.copies):
        params = {**featurizer.params(), "augment": settings, "seed": seed, "copy": copy}
        key = content_key(manifest, params, f"{type(featurizer).__qualname__}+waveform_augment")

        def compute(copy: int = copy) -> Features:
            waveforms = _perturbed_waveforms(featurizer, manifest, stage, seed, copy)
            return featurizer.from_waveforms(waveforms)  # type: ignore[attr-defined]

        raw, hit = cached_features(key, compute, cache_dir, use_cache and featurizer.cacheable)
        copies.append(featurizer.finalize(raw))
        hits.append(hit)
    return copies, all(hits)


# ---- the on-the-fly stages: one sample's model inputs in, the same shapes out ---------------------


class SpecAugment:
    """Frequency and time masks on one sample's frames, within its valid length.

    Masked values are the sample's mean over its valid frames (0 for standardised features).
    """

    def __init__(self, stage: SpectrogramStage, time_axis: int, frequency_axis: int):
        import torchaudio.transforms as T  # noqa: N812  deferred: torchaudio only where audio is augmented

        self.time_axis, self.frequency_axis = time_axis, frequency_axis
        self.masks: list[tuple[float, Callable[..., torch.Tensor]]] = []
        if stage.frequency_masking is not None:
            node = stage.frequency_masking
            mask = T.FrequencyMasking(node.max_width)
            mask.p = node.max_proportion  # torchaudio's cap on the masked share of the axis
            self.masks += [(node.p, mask)] * node.count
        if stage.time_masking is not None:
            node = stage.time_masking
            self.masks += [(node.p, T.TimeMasking(node.max_width, p=node.max_proportion))] * node.count

    def __call__(self, sample: Features) -> Features:
        """Mask ``sample["x"]`` (frames beyond ``sample["lengths"]`` stay padding)."""
        spec = sample["x"].movedim((self.frequency_axis, self.time_axis), (-2, -1)).clone()
        length = int(sample["lengths"]) if "lengths" in sample else spec.shape[-1]
        valid = spec[..., :length]
        fill = float(valid.mean()) if length else 0.0
        for probability, mask in self.masks:
            if float(torch.rand(())) < probability:
                valid = mask(valid, fill)
        spec[..., :length] = valid
        return {**sample, "x": spec.movedim((-2, -1), (self.frequency_axis, self.time_axis))}


class ImageTransforms:
    """torchvision v2 transforms on one standardised image, applied to its [0, 1] intensities."""

    def __init__(self, stage: ImageStage, size: tuple[int, int], featurizer: Any):
        from torchvision.transforms import v2  # deferred: torchvision only where images are augmented

        self.featurizer = featurizer
        steps: list[Any] = []
        if stage.flip is not None:
            steps.append(v2.RandomHorizontalFlip(p=stage.flip.p))
        if stage.resized_crop is not None:
            node = stage.resized_crop
            crop = v2.RandomResizedCrop(size, scale=node.scale, ratio=node.ratio, antialias=True)
            steps.append(v2.RandomApply([crop], p=node.p))
        if stage.rotation is not None:
            steps.append(v2.RandomApply([v2.RandomRotation(stage.rotation.degrees)], p=stage.rotation.p))
        if stage.color_jitter is not None:
            node = stage.color_jitter
            jitter = v2.ColorJitter(node.brightness, node.contrast, node.saturation, node.hue)
            steps.append(v2.RandomApply([jitter], p=node.p))
        self.pipeline = v2.Compose(steps)

    def __call__(self, sample: Features) -> Features:
        """Transform ``sample["x"]`` (``[C, H, W]``)."""
        pixels = self.featurizer.to_pixels(sample["x"]).clamp(0.0, 1.0)
        return {**sample, "x": self.featurizer.from_pixels(self.pipeline(pixels)).to(sample["x"].dtype)}


# ---- the augmentation of a run -----------------------------------------------------------------


class Augmentation:
    """A run's training-time augmentation, built from ``conf/augment/<name>.yaml``.

    Args:
        name: The option's name (recorded as the run's ``augment`` tag).
        modalities: Modalities the option is meant for (checked by :func:`check_augmentation`).
        seed: The run's seed; with the epoch and the sample it decides every draw.
        waveform: :class:`WaveformStage` settings, or ``None``.
        spectrogram: :class:`SpectrogramStage` settings, or ``None``.
        image: :class:`ImageStage` settings, or ``None``.
        by_stage: ``augment=auto``'s map from featurizer stages to options; the run replaces
            ``auto`` with the option it picks before building anything
            (:func:`resolve_augmentation`), so an ``Augmentation`` never uses it.

    Raises:
        ConfigError: Naming an unknown key or a probability outside [0, 1].
    """

    def __init__(
        self,
        name: str = "none",
        modalities: list[str] | tuple[str, ...] = (),
        seed: int = 0,
        waveform: Mapping[str, Any] | None = None,
        spectrogram: Mapping[str, Any] | None = None,
        image: Mapping[str, Any] | None = None,
        by_stage: Mapping[str, str] | None = None,
    ):
        del by_stage  # resolved away by resolve_augmentation; accepted so the config binds
        self.name = name
        self.modalities = tuple(modalities)
        self.seed = int(seed)
        nodes = {"waveform": waveform, "spectrogram": spectrogram, "image": image}
        self.stages = {
            stage: parse_settings(STAGE_SETTINGS[stage], node, f"augment.{stage}")
            for stage, node in nodes.items()
            if node is not None
        }
        self.copies: list[Features] = []
        self.copies_hit = False
        self._positions: torch.Tensor | None = None
        self._transforms: list[Callable[[Features], Features]] = []

    @property
    def active(self) -> bool:
        """Whether any stage is configured (``augment=none`` has none)."""
        return bool(self.stages)

    def prepare(
        self,
        featurizer: Featurizer,
        manifest: pd.DataFrame,
        train_rows: np.ndarray,
        inputs: Features,
        cache_dir: Any = None,
        use_cache: bool = True,
    ) -> None:
        """Build the stages for a fitted featurizer: waveform copies of the training rows, transforms."""
        waveform = self.stages.get("waveform")
        if waveform is not None and waveform.copies > 0:
            self.copies, self.copies_hit = waveform_copies(
                featurizer, manifest.iloc[train_rows], waveform, self.seed, cache_dir, use_cache
            )
            self._positions = torch.full((len(manifest),), -1, dtype=torch.long)
            self._positions[torch.as_tensor(train_rows, dtype=torch.long)] = torch.arange(len(train_rows))
        self._transforms = []
        if "spectrogram" in self.stages:
            axes = (featurizer.time_axis, featurizer.frequency_axis)  # type: ignore[attr-defined]
            self._transforms.append(SpecAugment(self.stages["spectrogram"], *axes))
        if "image" in self.stages:
            size = tuple(inputs["x"].shape[-2:])
            self._transforms.append(ImageTransforms(self.stages["image"], size, featurizer))  # type: ignore[arg-type]

    def augment_batch(self, batch: dict[str, Any], epoch: int) -> dict[str, Any]:
        """A training batch with every sample augmented (new tensors; shapes and dtypes kept)."""
        inputs = batch["inputs"]
        samples = [
            self.augment_sample({k: v[i] for k, v in inputs.items()}, int(row), epoch)
            for i, row in enumerate(batch["row"].tolist())
        ]
        stacked = {k: torch.stack([s[k] for s in samples]).to(v.dtype) for k, v in inputs.items()}
        return {**batch, "inputs": stacked}

    def augment_sample(self, sample: Features, row: int, epoch: int) -> Features:
        """One training sample (manifest ``row``) as epoch ``epoch`` sees it."""
        sample = self._version(sample, row, epoch)
        if self._transforms:
            with seeded(draw_seed(self.seed, "features", epoch, row)):
                for transform in self._transforms:
                    sample = transform(sample)
        return sample

    def _version(self, sample: Features, row: int, epoch: int) -> Features:
        """The clean sample, or (with probability ``waveform.p``) one of its perturbed copies."""
        if not self.copies or self._positions is None or self._positions[row] < 0:
            return sample
        generator = torch.Generator().manual_seed(draw_seed(self.seed, "version", epoch, row))
        if float(torch.rand((), generator=generator)) >= self.stages["waveform"].p:
            return sample
        copy = self.copies[int(torch.randint(len(self.copies), (), generator=generator))]
        position = int(self._positions[row])
        return {k: copy[k][position] for k in sample}


def build_augmentation(node: DictConfig | None) -> Augmentation | None:
    """The run's augmentation from ``cfg.augment``, or ``None`` when nothing is augmented."""
    if node is None:
        return None
    from emoexp.config import instantiate

    augmentation = instantiate(node)
    return augmentation if augmentation.active else None


# ---- the preflight check: does the option fit the modality and the model? -------------------------


def _featurizer_stages(cfg: DictConfig) -> tuple[str, ...]:
    """The augmentation stages of the run's featurizer (none for scikit-learn models)."""
    if cfg.model.get("kind") == "sklearn":
        return ()
    features = (cfg.model.get("features") or {}).get(cfg.modality)
    if not features:
        return ()
    try:
        featurizer = _featurizer_class(features._target_)
    except (ImportError, AttributeError):
        return ()  # a wrong _target_: the binding check names it with its fix
    return tuple(getattr(featurizer, "augment_stages", ()))


def resolve_augmentation(cfg: DictConfig) -> None:
    """Replace ``augment=auto`` with the option it chooses for the run's model and modality.

    ``conf/augment/auto.yaml`` maps featurizer stages to options (``by_stage``); the first stage
    the model's featurizer has, whose option is meant for the run's modality, wins, else
    ``none``. Everything recorded afterwards names the concrete option, so an ``auto`` run and an
    explicit run of that option have the same config fingerprint.
    """
    node = cfg.get("augment")
    if node is None or node.get("name") != "auto":
        return
    stages = _featurizer_stages(cfg)
    option = "none"
    for stage, candidate in (node.get("by_stage") or {}).items():
        chosen = OmegaConf.load(CONF_DIR / "augment" / f"{candidate}.yaml")
        if stage in stages and cfg.modality in chosen.get("modalities", []):
            option = candidate
            break
    with open_dict(cfg):
        cfg.augment = OmegaConf.load(CONF_DIR / "augment" / f"{option}.yaml")
    log.info("augment=%s for model=%s on %s (augment=auto).", option, cfg.model.name, cfg.modality)


def _featurizer_class(target: str) -> type:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _stages_of(node: Any) -> list[str]:
    return [stage for stage in STAGES if node.get(stage) is not None]


def _options_fitting(modality: str, featurizer_stages: tuple[str, ...]) -> list[str]:
    """``conf/augment`` options whose modalities and stages fit (``none`` always does)."""
    fitting = []
    for option in group_options("augment", CONF_DIR):
        node = OmegaConf.load(CONF_DIR / "augment" / f"{option}.yaml")
        stages = _stages_of(node)
        if not stages or (modality in node.get("modalities", []) and set(stages) <= set(featurizer_stages)):
            fitting.append(option)
    return fitting


def check_augmentation(cfg: DictConfig) -> None:
    """Reject an ``augment`` option that does not fit the run's modality and model, before any run.

    Scikit-learn models are rejected rather than silently left unaugmented: their handcrafted
    features (functionals, HOG, n-grams) are computed once, and an augmentation the config asks
    for but the run ignores would be recorded as if it had happened (docs/augmentation.md).

    Raises:
        ConfigError: Naming ``augment``, the model and modality, and the options that fit.
    """
    node = cfg.get("augment")
    if node is None:
        return
    augmentation = build_augmentation(node)  # unknown keys and bad probabilities are named here
    if augmentation is None:
        return
    name, modality, model = augmentation.name, cfg.modality, cfg.model
    if model.get("kind") == "sklearn":
        raise ConfigError(
            f"augment={name} trains neural models only; model={model.name} is a scikit-learn model on "
            f"handcrafted features, which are not augmented. Use augment=none with model={model.name}, "
            "or a neural model (docs/augmentation.md)."
        )
    features = (model.get("features") or {}).get(modality)
    featurizer_stages = _featurizer_stages(cfg)
    fitting = ", ".join(f"augment={option}" for option in _options_fitting(modality, featurizer_stages))
    if modality not in augmentation.modalities:
        raise ConfigError(
            f"augment={name} is for modality {list(augmentation.modalities)}, and this run is "
            f"modality={modality}. Options for model={model.name} on {modality}: {fitting}."
        )
    for stage in augmentation.stages:
        if stage not in featurizer_stages:
            featurizer = features._target_.rpartition(".")[2] if features else "its featurizer"
            raise ConfigError(
                f"augment={name}: augment.{stage} ({STAGE_DESCRIPTIONS[stage]}) does not fit "
                f"model={model.name} on modality={modality}, whose inputs come from {featurizer} (stages it "
                f"supports: {list(featurizer_stages) or 'none'}). Use one of {fitting}, or set "
                f"augment.{stage}=null."
            )
