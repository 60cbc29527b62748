"""Perturbing a manifest's raw inputs: files are read, perturbed and written to a work folder.

The model's own featurizer then reads the perturbed files (or texts) exactly as it reads
clean ones, so perturbations act before every featurizer and never on cached features
(docs/robustness.md). Audio is written as 32-bit float WAV (no re-quantisation on top of the
perturbation), images as PNG (lossless: a JPEG perturbation's artefacts are baked in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emoexp.data import schema
from emoexp.evaluation.perturbations import AUDIO, TEXT, VISUAL, Family, Level, sample_rng

COLUMNS = {AUDIO: schema.AUDIO, VISUAL: schema.IMAGE, TEXT: schema.TEXT}


def _audio(source: str, target: Path, family: Family, level: Level, rng: Any) -> str:
    import soundfile as sf

    waveform, rate = sf.read(source, dtype="float32")
    sf.write(str(target.with_suffix(".wav")), family.apply(waveform, rate, level.value, rng), rate, "FLOAT")
    return str(target.with_suffix(".wav"))


def _image(source: str, target: Path, family: Family, level: Level, rng: Any) -> str:
    from PIL import Image

    with Image.open(source) as opened:
        image = opened.convert(opened.mode if opened.mode in ("L", "RGB") else "RGB")
    family.apply(image, level.value, rng).save(target.with_suffix(".png"))
    return str(target.with_suffix(".png"))


def perturb_manifest(
    manifest: pd.DataFrame, family: Family, level: Level, seed: int, folder: Path
) -> pd.DataFrame:
    """A copy of ``manifest`` whose ``family.modality`` input is perturbed at ``level``.

    Each sample's randomness depends on ``seed``, the perturbation and its id only
    (:func:`~emoexp.evaluation.perturbations.sample_rng`). A file that cannot be read is left
    as it is: the model's featurizer then reports it as unreadable.
    """
    column = COLUMNS[family.modality]
    folder.mkdir(parents=True, exist_ok=True)
    out = manifest.copy()
    values = []
    for position, (sample_id, raw) in enumerate(zip(manifest[schema.ID], manifest[column], strict=True)):
        rng = sample_rng(seed, family.name, level.name, str(sample_id))
        if family.modality == TEXT:
            values.append(family.apply(raw, level.value, rng) if isinstance(raw, str) else raw)
            continue
        write = _audio if family.modality == AUDIO else _image
        try:
            values.append(write(str(raw), folder / f"{position:06d}", family, level, rng))
        except (OSError, RuntimeError, ValueError):  # unreadable: the featurizer says why
            values.append(raw)
    out[column] = values
    return out
