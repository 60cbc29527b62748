"""Seeded perturbations of raw inputs (waveforms, images, texts) for robustness reports.

Every function is pure: it takes one raw input and returns a perturbed copy of the same kind
(a waveform keeps its length, sample rate and dtype; an image its size and mode; a text stays a
string), drawing any randomness from the generator it is given. :func:`sample_rng` derives that
generator from the report seed, the perturbation and the *sample id* only, never from the model
or the run, so every model of a comparison sees exactly the same perturbed inputs
(docs/robustness.md).

:data:`FAMILIES` is the registry: each family has a modality and ordered levels (severity 1 is
the mildest). Libraries do the signal work (scipy.signal for filters, resampling and
convolution, torchaudio for G.711 mu-law, PIL for blur/brightness/contrast/JPEG/rotation,
torchvision for erasing a patch); what no installed library offers (a synthetic room impulse
response, keyboard typos) is written here, and says so.
"""

from __future__ import annotations

import io
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

AUDIO, VISUAL, TEXT, MULTIMODAL = "audio", "visual", "text", "multimodal"


@dataclass(frozen=True)
class Level:
    """One severity of a family: its name (in metric keys), rank and parameter."""

    name: str
    severity: int
    value: Any


@dataclass(frozen=True)
class Family:
    """A kind of perturbation of one modality's raw input, with its ordered levels.

    Attributes:
        name: Used in metric keys (``robust/<name>/<level>/<metric>``) and plot names.
        modality: ``audio``, ``visual``, ``text`` or ``multimodal`` (a missing modality).
        levels: Mildest first.
        apply: ``apply(raw, value, rng)``; audio functions take ``(waveform, sample_rate)`` as raw.
        description: What the levels mean, for reports.
    """

    name: str
    modality: str
    levels: tuple[Level, ...]
    apply: Callable[..., Any] | None
    description: str

    def level(self, name: str) -> Level:
        """The level called ``name``.

        Raises:
            KeyError: Naming the family's levels.
        """
        for level in self.levels:
            if level.name == name:
                return level
        raise KeyError(f"{self.name} has no level {name!r}; levels: {[lv.name for lv in self.levels]}.")


def sample_rng(seed: int, family: str, level: str, sample_id: str) -> np.random.Generator:
    """The generator of one perturbed sample: a function of the seed, perturbation and sample id only."""
    keys = [int(seed) & 0xFFFFFFFF, *(zlib.crc32(k.encode()) for k in (family, level, str(sample_id)))]
    return np.random.default_rng(np.random.SeedSequence(keys))


# ---- audio: float waveforms in [-1, 1], 1-D (mono) or [samples, channels] -----------------------


def _rms(waveform: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


def add_noise(waveform: np.ndarray, sample_rate: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` below the signal's power (over the whole recording)."""
    noise = rng.standard_normal(waveform.shape)
    scale = _rms(waveform) / (10 ** (snr_db / 20) * max(_rms(noise), 1e-12))
    return (waveform + scale * noise).astype(waveform.dtype)


def apply_gain(
    waveform: np.ndarray, sample_rate: int, gain_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Scale by ``gain_db`` and clip to [-1, 1], as a recording chain that is too quiet or overdriven."""
    return np.clip(waveform * 10 ** (gain_db / 20), -1.0, 1.0).astype(waveform.dtype)


def phone_line(
    waveform: np.ndarray, sample_rate: int, line: tuple[int, float, float, bool], rng: np.random.Generator
) -> np.ndarray:
    """A telephone channel: band-pass, resample to the line's rate and back, optional G.711 mu-law.

    Args:
        waveform: The signal.
        sample_rate: Its rate (kept).
        line: ``(line rate, low cut Hz, high cut Hz, mu-law 8-bit coding)``.
        rng: Unused (the channel is deterministic).
    """
    from math import gcd

    from scipy import signal

    rate, low, high, mu_law = line
    high = min(high, 0.45 * min(rate, sample_rate))
    sos = signal.butter(6, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    x = signal.sosfiltfilt(sos, waveform.astype(np.float64), axis=0)
    if rate != sample_rate:
        factor = gcd(int(rate), int(sample_rate))
        x = signal.resample_poly(x, int(rate) // factor, int(sample_rate) // factor, axis=0)
    if mu_law:
        import torch
        import torchaudio.functional as AF  # noqa: N812

        coded = AF.mu_law_encoding(torch.from_numpy(np.clip(x, -1.0, 1.0)), 256)
        x = AF.mu_law_decoding(coded, 256).numpy()
    if rate != sample_rate:
        x = signal.resample_poly(x, int(sample_rate) // factor, int(rate) // factor, axis=0)
    return _fit_length(x, len(waveform)).astype(waveform.dtype)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros((n - len(x), *x.shape[1:]), dtype=x.dtype)])


def room_impulse_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise.

    Written here because no installed library simulates rooms (pyroomacoustics is not a
    dependency); the exponential-decay model (Polack 1993) fixes the reverberation time: the
    tail's energy falls by 60 dB after ``rt60`` seconds.
    """
    n = max(int(rt60 * sample_rate), 1)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): -60 dB in amplitude
    onset = int(0.005 * sample_rate)  # first reflections arrive a few milliseconds after the direct path
    tail[:onset] = 0.0
    tail *= 0.5 / max(np.abs(tail).max(), 1e-12)
    tail[0] = 1.0
    return tail


def reverberate(waveform: np.ndarray, sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a :func:`room_impulse_response` of ``rt60`` seconds; loudness (RMS) kept."""
    from scipy import signal

    rir = room_impulse_response(rt60, sample_rate, rng)
    kernel = rir if waveform.ndim == 1 else rir[:, None]
    wet = signal.fftconvolve(waveform.astype(np.float64), kernel, axes=0)[: len(waveform)]
    wet *= _rms(waveform) / max(_rms(wet), 1e-12)
    return np.clip(wet, -1.0, 1.0).astype(waveform.dtype)


# ---- images: PIL images, same size and mode in and out -----------------------------------------


def blur(image: Any, fraction: float, rng: np.random.Generator) -> Any:
    """Gaussian blur with a radius of ``fraction`` of the image's shorter side."""
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(radius=fraction * min(image.size)))


def brightness(image: Any, factor: float, rng: np.random.Generator) -> Any:
    """Darken (``factor`` < 1) or brighten (> 1) with PIL's ImageEnhance."""
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(image).enhance(factor)


def contrast(image: Any, factor: float, rng: np.random.Generator) -> Any:
    """Reduce (``factor`` < 1) or raise (> 1) contrast with PIL's ImageEnhance."""
    from PIL import ImageEnhance

    return ImageEnhance.Contrast(image).enhance(factor)


def occlude(image: Any, area: float, rng: np.random.Generator) -> Any:
    """A mid-gray square patch covering ``area`` of the image at a seeded position (torchvision erase)."""
    import torch
    from torchvision.transforms.v2 import functional as TF  # noqa: N812

    width, height = image.size
    side = max(1, round(np.sqrt(area * width * height)))
    side_h, side_w = min(side, height), min(side, width)
    top, left = int(rng.integers(0, height - side_h + 1)), int(rng.integers(0, width - side_w + 1))
    tensor = TF.pil_to_tensor(image)
    erased = TF.erase(tensor, top, left, side_h, side_w, torch.tensor(128, dtype=tensor.dtype))
    return TF.to_pil_image(erased, mode=image.mode)


def jpeg(image: Any, quality: int, rng: np.random.Generator) -> Any:
    """Re-encode as JPEG at ``quality`` (PIL) and decode again: block and ringing artefacts."""
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert(image.mode)


def rotate(image: Any, degrees: float, rng: np.random.Generator) -> Any:
    """Rotate by ``degrees`` in a seeded direction, corners filled with the image's mean colour."""
    from PIL import ImageStat

    sign = 1.0 if rng.random() < 0.5 else -1.0
    mean = ImageStat.Stat(image).mean
    fill = round(mean[0]) if len(mean) == 1 else tuple(round(v) for v in mean)
    return image.rotate(sign * degrees, resample=_bilinear(), fillcolor=fill)


def _bilinear() -> Any:
    from PIL import Image

    return Image.Resampling.BILINEAR


# ---- texts --------------------------------------------------------------------------------------

# Neighbouring keys of a QWERTY keyboard: substitutions hit an adjacent key, as real typos do.
_QWERTY = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    key: "".join(
        _QWERTY[r][c]
        for r in range(max(row - 1, 0), min(row + 2, 3))
        for c in range(max(col - 1, 0), min(col + 2, len(_QWERTY[r])))
        if (r, c) != (row, col)
    )
    for row, keys in enumerate(_QWERTY)
    for col, key in enumerate(keys)
}


def typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """Character typos: each letter is, with probability ``rate``, swapped, dropped, doubled or mistyped.

    Written here because no installed library makes seeded keyboard typos (nlpaug is not a
    dependency). The text keeps at least one character.
    """
    chars, out, i = list(text), [], 0
    while i < len(chars):
        char = chars[i]
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        op = int(rng.integers(0, 4))
        if op == 0 and i + 1 < len(chars):  # swap with the next character
            out += [chars[i + 1], char]
            i += 2
            continue
        if op == 1:  # dropped
            pass
        elif op == 2:  # doubled
            out += [char, char]
        else:  # an adjacent key
            options = _NEIGHBOURS.get(char.lower(), char)
            typed = options[int(rng.integers(0, len(options)))]
            out.append(typed.upper() if char.isupper() else typed)
        i += 1
    return "".join(out) or text[:1]


def casing(text: str, style: str, rng: np.random.Generator) -> str:
    """``upper``, ``title`` or ``random`` (each letter's case drawn at random) casing."""
    if style == "upper":
        return text.upper()
    if style == "title":
        return text.title()
    if style == "random":
        flips = rng.random(len(text)) < 0.5
        return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True))
    raise ValueError(f"casing style {style!r}: use upper, title or random.")


_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’…–—¡¿«»")


def strip_punctuation(text: str, keep: float, rng: np.random.Generator) -> str:
    """Remove punctuation marks; each is kept with probability ``keep`` (0 removes all)."""
    if keep <= 0:
        stripped = text.translate(_PUNCTUATION)
    else:
        stripped = "".join(c for c in text if c.translate(_PUNCTUATION) or rng.random() < keep)
    return " ".join(stripped.split()) or text


def _levels(values: list[tuple[str, Any]]) -> tuple[Level, ...]:
    return tuple(Level(name, i + 1, value) for i, (name, value) in enumerate(values))


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "noise",
            AUDIO,
            _levels([(f"snr_{v}db", v) for v in (30, 20, 10, 5, 0)]),
            add_noise,
            "additive white Gaussian noise at a signal-to-noise ratio (dB)",
        ),
        Family(
            "gain",
            AUDIO,
            _levels([("minus_20db", -20.0), ("plus_10db", 10.0), ("plus_20db", 20.0)]),
            apply_gain,
            "attenuation, then amplification clipped to full scale",
        ),
        Family(
            "phone",
            AUDIO,
            _levels(
                [
                    ("wideband", (16000, 50.0, 7000.0, False)),
                    ("narrowband", (8000, 300.0, 3400.0, False)),
                    ("g711", (8000, 300.0, 3400.0, True)),
                    ("poor_line", (8000, 400.0, 2400.0, True)),
                ]
            ),
            phone_line,
            "telephone channel: band-pass and resampling to the line rate, then G.711 mu-law coding",
        ),
        Family(
            "reverb",
            AUDIO,
            _levels([("rt60_0.3s", 0.3), ("rt60_0.6s", 0.6), ("rt60_1.2s", 1.2)]),
            reverberate,
            "a synthetic room of reverberation time RT60 (s)",
        ),
        Family(
            "blur",
            VISUAL,
            _levels(
                [("radius_1pct", 0.01), ("radius_2pct", 0.02), ("radius_4pct", 0.04), ("radius_6pct", 0.06)]
            ),
            blur,
            "Gaussian blur, radius as a share of the image side",
        ),
        Family(
            "brightness",
            VISUAL,
            _levels([("x0.7", 0.7), ("x0.5", 0.5), ("x0.3", 0.3)]),
            brightness,
            "darkening by a brightness factor",
        ),
        Family(
            "contrast",
            VISUAL,
            _levels([("x0.7", 0.7), ("x0.5", 0.5), ("x0.3", 0.3)]),
            contrast,
            "flattening by a contrast factor",
        ),
        Family(
            "occlusion",
            VISUAL,
            _levels([("area_10pct", 0.10), ("area_20pct", 0.20), ("area_35pct", 0.35)]),
            occlude,
            "a gray square patch covering a share of the image",
        ),
        Family(
            "jpeg",
            VISUAL,
            _levels([("q50", 50), ("q20", 20), ("q10", 10), ("q5", 5)]),
            jpeg,
            "JPEG re-encoding at a quality",
        ),
        Family(
            "rotation",
            VISUAL,
            _levels([("deg_5", 5.0), ("deg_10", 10.0), ("deg_20", 20.0)]),
            rotate,
            "rotation by a number of degrees, direction drawn per sample",
        ),
        Family(
            "typos",
            TEXT,
            _levels([("rate_2pct", 0.02), ("rate_5pct", 0.05), ("rate_10pct", 0.10), ("rate_20pct", 0.20)]),
            typos,
            "character typos (swap, drop, double, adjacent key) per letter",
        ),
        Family(
            "casing",
            TEXT,
            _levels([("upper", "upper"), ("title", "title"), ("random", "random")]),
            casing,
            "upper, title or random letter case",
        ),
        Family(
            "punctuation",
            TEXT,
            _levels([("half", 0.5), ("removed", 0.0)]),
            strip_punctuation,
            "punctuation marks removed (half of them, then all)",
        ),
        Family(
            "missing",
            MULTIMODAL,
            tuple(Level(m, 1, m) for m in (AUDIO, VISUAL, TEXT)),
            None,
            "one modality of a fusion model missing (masked by the model)",
        ),
    )
}


def families_for(modalities: set[str] | frozenset[str], fused: bool) -> list[Family]:
    """The families that apply to a model reading ``modalities`` (``missing`` only for fusion models)."""
    return [f for f in FAMILIES.values() if f.modality in modalities or (f.modality == MULTIMODAL and fused)]
