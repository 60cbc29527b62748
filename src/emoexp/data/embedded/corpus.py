"""The embedded corpus: latents rendered into audio, faces and text, cached on disk.

``load_embedded`` is the default data of every modality. It generates in seconds, offline
and deterministically from its parameters, and caches the result in a folder named after
the parameters and :data:`GENERATOR_VERSION` (bump it whenever a generator changes what
it produces, so stale caches are not reused).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data.schema import validate_manifest
from emoexp.labels.emotions import EKMAN7

GENERATOR_VERSION = 5
"""Version of the embedded generators; part of every cache folder name.

2: faces come with a ``landmarks`` column (flattened facial landmark coordinates).
3: stronger facial expressions and less pose jitter (faces were barely learnable); quieter
   fricatives, milder creak and more consistent vocal styles in the audio.
4: grammatical third-person negations in the texts.
5: no two texts are exact or near duplicates (the leakage guard's settings): later copies are
   rewritten, so no split shares a text between train and test.
"""

EMBEDDED_MODALITIES: tuple[str, ...] = ("audio", "visual", "text")
_INPUT_COLUMN = {"audio": "audio", "visual": "image", "text": "text"}
_MANIFEST = "manifest.parquet"

# What a modality shows instead of the felt emotion when it disagrees: faces mask with a
# neutral "poker face" or a social smile, words are polite or sarcastically positive, and
# voices are held flat (Ekman & Friesen 1969 on display rules; sarcasm as positive words in
# a negative voice).
_MASKS: dict[str, tuple[str, ...]] = {
    "visual": ("neutral", "happiness"),
    "text": ("happiness", "neutral"),
    "audio": ("neutral",),
}


def default_cache_dir() -> Path:
    """Return ``$EMOEXP_CACHE_DIR`` or ``~/.cache/emoexp``."""
    return Path(os.environ.get("EMOEXP_CACHE_DIR") or Path.home() / ".cache" / "emoexp")


def _check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = [modalities]
    unknown = sorted(set(modalities) - set(EMBEDDED_MODALITIES))
    if unknown or not modalities:
        raise ValueError(
            f"unknown embedded modalities {unknown or list(modalities)}; choose one or more of "
            f"{list(EMBEDDED_MODALITIES)}."
        )
    return tuple(m for m in EMBEDDED_MODALITIES if m in modalities)


def _displayed_emotions(
    emotions: np.ndarray, modalities: tuple[str, ...], disagreement: float, seed: int
) -> dict[str, np.ndarray]:
    """Return, per modality, the emotion it shows.

    In a ``disagreement`` share of the samples one randomly chosen modality masks the felt
    emotion; all other modalities show it.
    """
    displayed = {m: emotions.copy() for m in modalities}
    n_disagree = round(disagreement * len(emotions))
    if n_disagree == 0:
        return displayed
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD15A]))
    rows = rng.choice(len(emotions), size=n_disagree, replace=False)
    for row, modality in zip(rows, rng.choice(modalities, size=n_disagree), strict=True):
        felt = emotions[row]
        masks = [e for e in _MASKS[modality] if e != felt]
        # A neutral felt state "disagrees" by showing some emotion (a posed expression).
        options = masks or [e for e in EKMAN7 if e != felt]
        displayed[modality][row] = options[int(rng.integers(len(options)))]
    return displayed


@dataclass(frozen=True)
class _Spec:
    """What to generate: the checked parameters of :func:`load_embedded` and the corpus name."""

    modalities: tuple[str, ...]
    corpus: str
    n_samples: int
    n_speakers: int
    seed: int
    disagreement: float
    n_annotators: int
    annotator_accuracy: float
    sample_rate: int
    image_size: int


def _generate(folder: Path, spec: _Spec) -> pd.DataFrame:
    """Generate the corpus into ``folder``; input paths are relative to it."""
    from emoexp.data.embedded.audio import render_audio
    from emoexp.data.embedded.latents import sample_latents
    from emoexp.data.embedded.text import render_text
    from emoexp.data.embedded.visual import render_faces_with_landmarks

    modalities, seed = spec.modalities, spec.seed
    latents = sample_latents(
        spec.n_samples,
        spec.n_speakers,
        seed,
        classes=EKMAN7,
        n_annotators=spec.n_annotators,
        annotator_accuracy=spec.annotator_accuracy,
        corpus=spec.corpus,
    )
    displayed = _displayed_emotions(latents["emotion"].to_numpy(object), modalities, spec.disagreement, seed)
    manifest = latents.copy()
    for modality in modalities:
        shown = latents.assign(emotion=displayed[modality])
        if modality == "audio":
            paths = render_audio(shown, folder / "audio", sample_rate=spec.sample_rate, seed=seed)
            manifest["audio"] = [str(Path(p).relative_to(folder)) for p in paths]
        elif modality == "visual":
            paths, landmarks = render_faces_with_landmarks(
                shown, folder / "visual", size=spec.image_size, seed=seed
            )
            manifest["image"] = [str(Path(p).relative_to(folder)) for p in paths]
            # Where the generator drew each face's landmarks (see visual.LANDMARKS), for geometric features.
            manifest["landmarks"] = landmarks
        else:
            manifest["text"] = render_text(shown, seed=seed)
        manifest[f"displayed_{modality}"] = displayed[modality]
    return manifest


def _read(folder: Path, source: str) -> pd.DataFrame:
    """Read a cached manifest and make its file paths absolute."""
    manifest = pd.read_parquet(folder / _MANIFEST)
    manifest["annotations"] = [list(a) for a in manifest["annotations"]]
    for column in ("audio", "image"):
        if column in manifest:
            manifest[column] = [str(folder / p) for p in manifest[column]]
    return validate_manifest(manifest, source)


def load_embedded(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
    modalities: Sequence[str] = ("audio",),
    n_samples: int = 840,
    n_speakers: int = 12,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    disagreement: float = 0.0,
    n_annotators: int = 5,
    annotator_accuracy: float = 0.7,
    sample_rate: int = 16000,
    image_size: int = 48,
) -> pd.DataFrame:
    """Load (generating and caching on first use) the embedded corpus.

    Args:
        modalities: Any of ``"audio"``, ``"visual"``, ``"text"``; one modality gives the
            corpus ``embedded_<modality>``, several give ``embedded_multimodal``.
        n_samples: Number of samples, balanced over the seven Ekman classes (EKMAN7).
        n_speakers: Number of speakers/subjects, balanced over classes and genders.
        seed: Generator seed; the same parameters give the identical corpus.
        cache_dir: Cache root; defaults to ``$EMOEXP_CACHE_DIR`` or ``~/.cache/emoexp``.
        disagreement: Share of samples in which one randomly chosen modality shows another
            emotion than the felt one (masking, sarcasm); only with several modalities.
        n_annotators: Simulated annotator labels per sample.
        annotator_accuracy: Mean probability that an annotator gives the felt emotion.
        sample_rate: Audio sample rate in Hz.
        image_size: Side of the square face images in pixels.

    Returns:
        A manifest following the sample schema, with the files' absolute paths, plus the
        columns ``intensity`` and ``displayed_<modality>`` (the emotion each rendered
        modality shows; it differs from ``emotion`` only for disagreeing samples), and with
        faces ``landmarks`` (each face's landmark coordinates, see ``visual.LANDMARKS``).

    Raises:
        ValueError: On an unknown modality or a disagreement outside [0, 1].
    """
    modalities = _check_modalities(modalities)
    if not 0.0 <= disagreement <= 1.0:
        raise ValueError(f"disagreement must be a fraction in [0, 1], got {disagreement}.")
    if disagreement and len(modalities) < 2:
        warnings.warn(
            f"disagreement={disagreement} needs several modalities to disagree; it is ignored "
            f"for modalities={list(modalities)}.",
            stacklevel=2,
        )
        disagreement = 0.0
    corpus = f"embedded_{modalities[0]}" if len(modalities) == 1 else "embedded_multimodal"
    spec = _Spec(
        modalities,
        corpus,
        n_samples,
        n_speakers,
        seed,
        disagreement,
        n_annotators,
        annotator_accuracy,
        sample_rate,
        image_size,
    )
    params = {
        "generator_version": GENERATOR_VERSION,
        "modalities": list(modalities),
        "n_samples": n_samples,
        "n_speakers": n_speakers,
        "seed": seed,
        "disagreement": disagreement,
        "n_annotators": n_annotators,
        "annotator_accuracy": annotator_accuracy,
        "sample_rate": sample_rate if "audio" in modalities else None,
        "image_size": image_size if "visual" in modalities else None,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = f"{corpus}-n{n_samples}-spk{n_speakers}-seed{seed}-v{GENERATOR_VERSION}-{digest}"
    folder = root / "embedded" / name
    if not (folder / _MANIFEST).exists():
        _build(folder, spec, params)
    return _read(folder, corpus)


def build_into_place(folder: Path, marker: str, build: Callable[[Path], None]) -> None:
    """Run ``build(private_folder)`` and rename the folder to ``folder`` in one step.

    A concurrent process sees either no folder or a complete one; if another process won the
    race (``folder / marker`` exists), its (identical) build is kept.

    Args:
        folder: The final folder (its parent is created).
        marker: A file the build writes last; its presence means the folder is complete.
        build: Fills the private folder it is given.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    building.chmod(0o755)  # mkdtemp's private 0700 would stay on the renamed cache folder
    try:
        build(building)
        try:
            os.replace(building, folder)
        except OSError:
            if not (folder / marker).exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _build(folder: Path, spec: _Spec, params: dict[str, Any]) -> None:
    """Generate the corpus and move it to ``folder`` (its manifest and ``params.json`` included)."""

    def build(building: Path) -> None:
        _generate(building, spec).to_parquet(building / _MANIFEST, index=False)
        (building / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))

    build_into_place(folder, _MANIFEST, build)
