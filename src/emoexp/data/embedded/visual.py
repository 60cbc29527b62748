"""Drawn grayscale faces whose expression follows FACS action units (like FER2013 crops).

A face is drawn at 4x the output size from a subject's identity (face shape, feature
positions, skin and hair tone, glasses) and an expression given as action-unit (AU)
activations: each emotion activates its prototypical AUs (Ekman & Friesen's EMFACS), scaled
by intensity and the subject's expressiveness, plus a little activation of every AU so that
faces are never perfectly clean. Each image then gets its own pose (rotation, shift, scale),
lighting gradient, contrast and sensor noise, and is downsampled with anti-aliasing.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.labels.emotions import circumplex

ACTION_UNITS: tuple[str, ...] = (
    "AU1",  # inner brow raiser
    "AU2",  # outer brow raiser
    "AU4",  # brow lowerer
    "AU5",  # upper lid raiser
    "AU6",  # cheek raiser
    "AU7",  # lid tightener
    "AU9",  # nose wrinkler
    "AU12",  # lip corner puller
    "AU15",  # lip corner depressor
    "AU16",  # lower lip depressor
    "AU20",  # lip stretcher
    "AU23",  # lip tightener
    "AU25",  # lips part
    "AU26",  # jaw drop
)

# Prototypical activations at full intensity (EMFACS; Ekman, Friesen & Hager 2002).
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happiness": {"AU6": 0.9, "AU12": 1.0, "AU25": 0.5},
    "sadness": {"AU1": 1.0, "AU4": 0.6, "AU15": 1.0},
    "surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 0.9, "AU25": 0.8, "AU26": 1.0},
    "fear": {"AU1": 1.0, "AU2": 0.6, "AU4": 0.7, "AU5": 1.0, "AU20": 1.0, "AU25": 0.7, "AU26": 0.5},
    "anger": {"AU4": 1.0, "AU5": 0.6, "AU7": 1.0, "AU23": 1.0},
    "disgust": {"AU4": 0.3, "AU9": 1.0, "AU15": 0.7, "AU16": 0.8, "AU25": 0.4},
}

_SCALE = 4  # drawing supersampling factor
# The drawing moves features by a few percent of the face per unit of AU activation; at
# 48 px that is barely a pixel, so activations are amplified to make a full-intensity
# expression as visible as in posed databases (FER2013, CK+).
_EXPRESSION_GAIN = 1.5


def expression(emotion: str) -> dict[str, float]:
    """Return the AU activations of an emotion's prototype.

    Emotions outside :data:`EXPRESSIONS` get one from their circumplex position: positive
    valence smiles (AU6+12), negative valence lowers the brows and mouth corners (AU4+15),
    arousal widens the eyes and opens the mouth (AU5+26).
    """
    if emotion in EXPRESSIONS:
        return EXPRESSIONS[emotion]
    valence, arousal = circumplex(emotion)
    return {
        "AU6": max(valence, 0) * 0.8,
        "AU12": max(valence, 0),
        "AU4": max(-valence, 0) * 0.8,
        "AU15": max(-valence, 0) * 0.6,
        "AU5": max(arousal, 0) * 0.6,
        "AU26": max(arousal, 0) * 0.4,
    }


@dataclass(frozen=True)
class _Identity:
    """A subject's face, in units of the canvas side (0..1) and gray levels."""

    face_w: float
    face_h: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_len: float
    brow_width: float
    brow_tone: int
    nose_len: float
    mouth_y: float
    mouth_w: float
    lip_h: float
    skin: int
    lip_tone: int
    hair: int
    hair_line: float
    long_hair: bool
    glasses: bool
    background: int
    expressiveness: float


def _rng(*keys: int | str) -> np.random.Generator:
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence([abs(i) for i in ints]))


@functools.lru_cache(maxsize=256)
def _identity(subject: str, gender: str | None, seed: int) -> _Identity:
    rng = _rng(seed, "face", subject)
    female = gender == "female" if gender in ("female", "male") else bool(rng.random() < 0.5)
    skin = int(rng.uniform(95, 215))
    return _Identity(
        face_w=rng.uniform(0.28, 0.34) * (0.96 if female else 1.0),
        face_h=rng.uniform(0.38, 0.44),
        eye_y=rng.uniform(0.42, 0.47),
        eye_dx=rng.uniform(0.11, 0.14),
        eye_w=rng.uniform(0.05, 0.065),
        eye_h=rng.uniform(0.018, 0.026) * (1.1 if female else 1.0),
        brow_gap=rng.uniform(0.055, 0.075),
        brow_len=rng.uniform(0.08, 0.11),
        brow_width=rng.uniform(0.012, 0.022) * (0.8 if female else 1.0),
        brow_tone=int(rng.uniform(20, 90)),
        nose_len=rng.uniform(0.12, 0.16),
        mouth_y=rng.uniform(0.70, 0.75),
        mouth_w=rng.uniform(0.075, 0.1),
        lip_h=rng.uniform(0.012, 0.02) * (1.2 if female else 1.0),
        skin=skin,
        lip_tone=int(skin * rng.uniform(0.55, 0.75)),
        hair=int(rng.uniform(15, 140)),
        hair_line=rng.uniform(0.2, 0.27),
        long_hair=bool(rng.random() < (0.7 if female else 0.15)),
        glasses=bool(rng.random() < 0.2),
        background=int(rng.uniform(30, 225)),
        expressiveness=float(np.clip(np.exp(0.3 * rng.standard_normal()), 0.5, 1.7)),
    )


def _action_units(
    emotion: str, intensity: float, ident: _Identity, subject: str, seed: int, rng
) -> dict[str, float]:
    """AU activations of one image: prototype x strength x personal style, plus noise."""
    personal = np.exp(0.3 * _rng(seed, "face-style", subject, emotion).standard_normal(len(ACTION_UNITS)))
    weak_to_full = 0.45 + 0.55 * float(np.clip(intensity, 0, 1))
    strength = _EXPRESSION_GAIN * weak_to_full * ident.expressiveness
    prototype = expression(emotion)
    values = np.array([prototype.get(au, 0.0) for au in ACTION_UNITS]) * strength * personal
    values = np.clip(values + np.abs(0.1 * rng.standard_normal(len(ACTION_UNITS))), 0.0, 2.0)
    return dict(zip(ACTION_UNITS, values.tolist(), strict=True))


_T = np.linspace(0.0, 1.0, 10)
_BEZIER = np.stack([(1 - _T) ** 2, 2 * (1 - _T) * _T, _T**2], axis=1)


def _bezier(p0, p1, p2) -> list[tuple[float, float]]:
    """Points on a quadratic Bezier curve from ``p0`` to ``p2`` pulled towards ``p1``."""
    return [tuple(p) for p in (_BEZIER @ np.array([p0, p1, p2])).tolist()]


@dataclass(frozen=True)
class _Canvas:
    """A PIL drawing context with the geometry every part of the face is placed by."""

    draw: Any
    s: float  # side of the square canvas, pixels
    cx: float  # centre of the face
    cy: float
    shade: int  # skin in shadow: neck, ears, creases


@dataclass(frozen=True)
class _EyeShape:
    """Vertical position, lid openings above and below, and half-width of both eyes (pixels)."""

    y: float
    upper: float
    lower: float
    w: float


def _draw_face(ident: _Identity, au: dict[str, float], side: int, rng) -> np.ndarray:
    """Draw the face on a ``side`` x ``side`` canvas and return it as float gray levels."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (side, side), ident.background)
    s = float(side)
    canvas = _Canvas(ImageDraw.Draw(image), s, 0.5 * s, 0.52 * s, int(ident.skin * 0.8))
    _draw_head(canvas, ident)
    eye = _draw_eyes(canvas, ident, au, rng)
    _draw_brows(canvas, ident, au)
    nose_tip = _draw_nose(canvas, ident, au, eye.y)
    _draw_mouth(canvas, ident, au, nose_tip)
    if ident.glasses:
        _draw_glasses(canvas, ident, eye)
    return image


def _draw_head(c: _Canvas, ident: _Identity) -> None:
    """Hair behind the head, neck, ears, face and the hair line."""
    draw, s, cx, cy = c.draw, c.s, c.cx, c.cy
    fw, fh = ident.face_w * s, ident.face_h * s
    hair_box = [cx - fw * 1.12, cy - fh * 1.08, cx + fw * 1.12, cy + fh * (0.9 if ident.long_hair else 0.1)]
    draw.ellipse(hair_box, fill=ident.hair)
    draw.rectangle([cx - fw * 0.45, cy + fh * 0.6, cx + fw * 0.45, s], fill=c.shade)
    for sign in (-1, 1):
        ex = cx + sign * fw * 0.98
        draw.ellipse([ex - 0.06 * s, cy - 0.07 * s, ex + 0.06 * s, cy + 0.05 * s], fill=c.shade)
    draw.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=ident.skin)
    hair_top = cy - fh - 0.02 * s
    hair_bottom = hair_top + ident.hair_line * s
    draw.chord([cx - fw * 1.02, hair_top, cx + fw * 1.02, hair_bottom + 0.12 * s], 180, 360, fill=ident.hair)


def _draw_eyes(c: _Canvas, ident: _Identity, au: dict[str, float], rng) -> _EyeShape:
    """Both eyes: lids opened by AU5, narrowed by AU6/7/4; one random gaze for the pair."""
    s = c.s
    upper = ident.eye_h * s * (1 + 0.9 * au["AU5"] - 0.35 * au["AU7"] - 0.2 * au["AU6"] - 0.25 * au["AU4"])
    lower = ident.eye_h * s * (1 - 0.55 * au["AU6"] - 0.5 * au["AU7"] + 0.2 * au["AU5"])
    eye = _EyeShape(
        y=ident.eye_y * s + 0.012 * s * au["AU9"],
        upper=max(upper, 0.08 * ident.eye_h * s),
        lower=max(lower, 0.05 * ident.eye_h * s),
        w=ident.eye_w * s,
    )
    gaze = rng.normal(0.0, 0.25 * eye.w, 2)
    # Raised cheeks / tightened lids bunch the lower lid into a visible fold.
    fold = au["AU6"] + au["AU7"] > 0.4
    for sign in (-1, 1):
        _draw_eye(c, ident, eye, c.cx + sign * ident.eye_dx * s, gaze, fold)
    return eye


def _draw_eye(c: _Canvas, ident: _Identity, eye: _EyeShape, ex: float, gaze: np.ndarray, fold: bool) -> None:
    """One eye at ``ex``: sclera, iris, then skin-coloured lids cut the opening."""
    draw, s, ew, y = c.draw, c.s, eye.w, eye.y
    top = _bezier((ex - ew, y), (ex, y - 2 * eye.upper), (ex + ew, y))
    bottom = _bezier((ex + ew, y), (ex, y + 2 * eye.lower), (ex - ew, y))
    draw.polygon(top + bottom, fill=235)
    r = 0.55 * ew
    ix, iy = ex + gaze[0], y + 0.3 * gaze[1]
    draw.ellipse([ix - r, iy - r, ix + r, iy + r], fill=40)
    reach = ew * 1.2
    above = [(ex - reach, y), *top, (ex + reach, y), (ex + reach, y - 3 * r), (ex - reach, y - 3 * r)]
    below = [(ex + reach, y), *bottom, (ex - reach, y), (ex - reach, y + 3 * r), (ex + reach, y + 3 * r)]
    draw.polygon(above, fill=ident.skin)
    draw.polygon(below, fill=ident.skin)
    draw.line(top, fill=30, width=max(2, int(0.012 * s)))
    if fold:
        crease = _bezier(
            (ex - ew, y + eye.lower + 0.01 * s),
            (ex, y + 2 * eye.lower + 0.03 * s),
            (ex + ew, y + eye.lower + 0.01 * s),
        )
        draw.line(crease, fill=c.shade, width=max(1, int(0.008 * s)))


def _draw_brows(c: _Canvas, ident: _Identity, au: dict[str, float]) -> None:
    """Brows: inner end raised by AU1, outer by AU2; AU4 lowers them and draws them together."""
    draw, s, cx = c.draw, c.s, c.cx
    for sign in (-1, 1):
        ex = cx + sign * ident.eye_dx * s
        base = ident.eye_y * s - ident.brow_gap * s
        inner_x = ex - sign * (0.45 * ident.brow_len * s - 0.025 * s * au["AU4"])
        outer_x = ex + sign * 0.55 * ident.brow_len * s
        inner_y = base - s * (0.045 * au["AU1"] + 0.01 * au["AU2"] - 0.035 * au["AU4"] - 0.012 * au["AU9"])
        outer_y = base - s * (0.045 * au["AU2"] + 0.005 * au["AU1"] - 0.012 * au["AU4"])
        mid_y = min(inner_y, outer_y) - 0.015 * s * (1 + 0.5 * au["AU2"] - 0.5 * au["AU4"])
        brow = _bezier((inner_x, inner_y), ((inner_x + outer_x) / 2, mid_y), (outer_x, outer_y))
        draw.line(brow, fill=ident.brow_tone, width=max(2, int(ident.brow_width * s)), joint="curve")
    if au["AU4"] > 0.5:
        # Vertical furrows between lowered brows.
        for dx in (-0.015, 0.015):
            x = cx + dx * s
            draw.line(
                [(x, ident.eye_y * s - 0.09 * s), (x, ident.eye_y * s - 0.05 * s)],
                fill=c.shade,
                width=max(1, int(0.006 * s)),
            )


def _draw_nose(c: _Canvas, ident: _Identity, au: dict[str, float], eye_y: float) -> float:
    """A side shadow and nostrils; AU9 wrinkles the bridge and lifts the nostrils. Returns the tip's y."""
    draw, s, cx = c.draw, c.s, c.cx
    nose_tip = ident.eye_y * s + ident.nose_len * s - 0.015 * s * au["AU9"]
    draw.line(
        [(cx + 0.01 * s, eye_y + 0.03 * s), (cx + 0.025 * s, nose_tip)],
        fill=c.shade,
        width=max(1, int(0.01 * s)),
    )
    nostril = 0.018 * s * (1 + 0.3 * au["AU9"])
    for sign in (-1, 1):
        nx = cx + sign * 0.03 * s
        draw.ellipse(
            [nx - nostril, nose_tip - 0.4 * nostril, nx + nostril, nose_tip + 0.4 * nostril],
            fill=int(ident.skin * 0.45),
        )
    if au["AU9"] > 0.2:
        tone = int(ident.skin * (1 - 0.35 * min(au["AU9"], 1.0)))
        for k in range(3):
            y = ident.eye_y * s + (0.015 + 0.018 * k) * s
            draw.line(
                [(cx - 0.03 * s, y), (cx + 0.03 * s, y - 0.004 * s)], fill=tone, width=max(1, int(0.008 * s))
            )
    return nose_tip


def _draw_mouth(c: _Canvas, ident: _Identity, au: dict[str, float], nose_tip: float) -> None:
    """Nasolabial folds, then the mouth: corners up (AU12) or down (AU15), opening, thin lips (AU23)."""
    draw, s, cx = c.draw, c.s, c.cx
    mouth_y = ident.mouth_y * s
    mw = ident.mouth_w * s * (1 + 0.3 * au["AU12"] + 0.35 * au["AU20"] - 0.25 * au["AU23"] - 0.1 * au["AU26"])
    # Nasolabial folds deepen with smiling (AU6+12) and with AU9.
    fold = au["AU12"] + 0.5 * au["AU6"] + 0.6 * au["AU9"]
    if fold > 0.3:
        tone = int(ident.skin * (1 - 0.25 * min(fold, 1.5)))
        for sign in (-1, 1):
            line = _bezier(
                (cx + sign * 0.05 * s, nose_tip),
                (cx + sign * (mw + 0.03 * s), mouth_y - 0.03 * s),
                (cx + sign * (mw + 0.01 * s), mouth_y + 0.03 * s),
            )
            draw.line(line, fill=tone, width=max(1, int(0.008 * s)))

    corner_y = mouth_y + s * (-0.045 * au["AU12"] + 0.035 * au["AU15"] + 0.01 * au["AU20"])
    opening = s * (
        0.012 * au["AU25"] + 0.06 * au["AU26"] + 0.02 * au["AU16"] + 0.015 * au["AU12"] * au["AU25"]
    )
    lip = ident.lip_h * s * (1 - 0.6 * min(au["AU23"], 1.2) / 1.2)
    curve = 0.03 * s * au["AU12"] - 0.02 * s * au["AU15"]  # >0 smile: middle below the corners
    left, right = (cx - mw, corner_y), (cx + mw, corner_y)
    upper_inner = _bezier(left, (cx, mouth_y + curve - opening * 0.3), right)
    lower_inner = _bezier(right, (cx, mouth_y + curve + opening * 1.6 + 0.02 * s * au["AU16"]), left)
    upper_outer = _bezier(left, (cx, mouth_y + curve - opening * 0.3 - 2.2 * lip), right)
    lower_outer = _bezier(
        right, (cx, mouth_y + curve + opening * 1.6 + 2.4 * lip + 0.02 * s * au["AU16"]), left
    )
    draw.polygon(upper_outer + lower_outer, fill=ident.lip_tone)
    if opening > 0.004 * s:
        draw.polygon(upper_inner + lower_inner, fill=25)
        if au["AU12"] + au["AU16"] > 0.5:
            # Teeth show in a smile or when the lower lip is pulled down.
            teeth = _bezier(left, (cx, mouth_y + curve + 0.25 * opening), right)
            draw.polygon(upper_inner + teeth[::-1], fill=220)
    else:
        draw.line(upper_inner, fill=int(ident.lip_tone * 0.5), width=max(1, int(0.01 * s)))


def _draw_glasses(c: _Canvas, ident: _Identity, eye: _EyeShape) -> None:
    """Two round frames around the eyes and the bridge between them."""
    draw, s, cx, ew, y = c.draw, c.s, c.cx, eye.w, eye.y
    for sign in (-1, 1):
        ex = cx + sign * ident.eye_dx * s
        draw.ellipse(
            [ex - 1.6 * ew, y - 1.3 * ew, ex + 1.6 * ew, y + 1.2 * ew],
            outline=20,
            width=max(2, int(0.012 * s)),
        )
    draw.line(
        [(cx - ident.eye_dx * s + 1.6 * ew, y), (cx + ident.eye_dx * s - 1.6 * ew, y)],
        fill=20,
        width=max(2, int(0.01 * s)),
    )


LANDMARKS: tuple[str, ...] = (
    "face_left",
    "face_right",
    "chin",
    "brow_left_inner",
    "brow_left_mid",
    "brow_left_outer",
    "brow_right_inner",
    "brow_right_mid",
    "brow_right_outer",
    "eye_left_inner",
    "eye_left_outer",
    "eye_left_top",
    "eye_left_bottom",
    "eye_right_inner",
    "eye_right_outer",
    "eye_right_top",
    "eye_right_bottom",
    "nose_tip",
    "mouth_left",
    "mouth_right",
    "lip_upper_outer",
    "lip_upper_inner",
    "lip_lower_inner",
    "lip_lower_outer",
)
"""Names of the facial landmarks of :func:`render_face_with_landmarks`, in row order.

``left``/``right`` are as seen in the image (``left`` has the smaller x).
"""


def _landmarks(ident: _Identity, au: dict[str, float], side: int) -> np.ndarray:
    """Landmark points ``[len(LANDMARKS), 2]`` (x, y) on the drawing canvas of :func:`_draw_face`.

    The positions follow the same formulas as the drawing (eye and brow corners, mid points of
    the lid, brow and lip curves), so they move with the action units exactly as the image does.
    Keep the two in step when either changes.
    """
    s = float(side)
    cx, cy = 0.5 * s, 0.52 * s
    fw, fh = ident.face_w * s, ident.face_h * s
    points: list[tuple[float, float]] = [(cx - fw, cy), (cx + fw, cy), (cx, cy + fh)]

    brows, eyes = [], []
    eye_y = ident.eye_y * s + 0.012 * s * au["AU9"]
    upper = ident.eye_h * s * (1 + 0.9 * au["AU5"] - 0.35 * au["AU7"] - 0.2 * au["AU6"] - 0.25 * au["AU4"])
    lower = ident.eye_h * s * (1 - 0.55 * au["AU6"] - 0.5 * au["AU7"] + 0.2 * au["AU5"])
    upper, lower = max(upper, 0.08 * ident.eye_h * s), max(lower, 0.05 * ident.eye_h * s)
    ew = ident.eye_w * s
    for sign in (-1, 1):
        ex = cx + sign * ident.eye_dx * s
        base = ident.eye_y * s - ident.brow_gap * s
        inner_x = ex - sign * (0.45 * ident.brow_len * s - 0.025 * s * au["AU4"])
        outer_x = ex + sign * 0.55 * ident.brow_len * s
        inner_y = base - s * (0.045 * au["AU1"] + 0.01 * au["AU2"] - 0.035 * au["AU4"] - 0.012 * au["AU9"])
        outer_y = base - s * (0.045 * au["AU2"] + 0.005 * au["AU1"] - 0.012 * au["AU4"])
        mid_y = min(inner_y, outer_y) - 0.015 * s * (1 + 0.5 * au["AU2"] - 0.5 * au["AU4"])
        # The middle of a quadratic Bezier curve is (p0 + 2 p1 + p2) / 4.
        brows += [
            (inner_x, inner_y),
            ((inner_x + outer_x) / 2, (inner_y + 2 * mid_y + outer_y) / 4),
            (outer_x, outer_y),
        ]
        eyes += [(ex - sign * ew, eye_y), (ex + sign * ew, eye_y), (ex, eye_y - upper), (ex, eye_y + lower)]
    points += brows + eyes

    nose_tip = ident.eye_y * s + ident.nose_len * s - 0.015 * s * au["AU9"]
    points.append((cx, nose_tip))

    mouth_y = ident.mouth_y * s
    mw = ident.mouth_w * s * (1 + 0.3 * au["AU12"] + 0.35 * au["AU20"] - 0.25 * au["AU23"] - 0.1 * au["AU26"])
    corner_y = mouth_y + s * (-0.045 * au["AU12"] + 0.035 * au["AU15"] + 0.01 * au["AU20"])
    opening = s * (
        0.012 * au["AU25"] + 0.06 * au["AU26"] + 0.02 * au["AU16"] + 0.015 * au["AU12"] * au["AU25"]
    )
    lip = ident.lip_h * s * (1 - 0.6 * min(au["AU23"], 1.2) / 1.2)
    curve = 0.03 * s * au["AU12"] - 0.02 * s * au["AU15"]
    pulled = 0.02 * s * au["AU16"]
    controls = (
        mouth_y + curve - opening * 0.3 - 2.2 * lip,
        mouth_y + curve - opening * 0.3,
        mouth_y + curve + opening * 1.6 + pulled,
        mouth_y + curve + opening * 1.6 + 2.4 * lip + pulled,
    )
    points += [(cx - mw, corner_y), (cx + mw, corner_y)]
    points += [(cx, (corner_y + control) / 2) for control in controls]
    return np.asarray(points, dtype=np.float64)


def _pose_points(points: np.ndarray, matrix: tuple[float, ...]) -> np.ndarray:
    """Map canvas points through a pose whose *inverse* affine ``matrix`` PIL's transform takes."""
    a, b, c, d, e, f = matrix
    inverse = np.linalg.inv(np.array([[a, b], [d, e]]))
    return (points - np.array([c, f])) @ inverse.T


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> np.ndarray:
    """Pixel coordinates in [-0.5, 0.5], rows then columns."""
    return np.mgrid[0:size, 0:size] / (size - 1) - 0.5


def render_face(
    emotion: str,
    intensity: float,
    subject: str,
    gender: str | None,
    size: int,
    seed: int,
    image_key: str,
) -> np.ndarray:
    """Render one face.

    Args:
        emotion: The emotion the face displays.
        intensity: Expression strength in [0, 1].
        subject: Subject id; fixes the identity.
        gender: ``"female"``/``"male"`` (hair length, face width), or None for random.
        size: Output side in pixels.
        seed: Corpus seed.
        image_key: Key (e.g. the sample id) fixing the image's own pose, light and noise.

    Returns:
        A ``(size, size)`` uint8 array.
    """
    return render_face_with_landmarks(emotion, intensity, subject, gender, size, seed, image_key)[0]


def render_face_with_landmarks(
    emotion: str,
    intensity: float,
    subject: str,
    gender: str | None,
    size: int,
    seed: int,
    image_key: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one face (as :func:`render_face`) and return its facial landmarks too.

    Args:
        emotion: The emotion the face displays.
        intensity: Expression strength in [0, 1].
        subject: Subject id; fixes the identity.
        gender: ``"female"``/``"male"`` (hair length, face width), or None for random.
        size: Output side in pixels.
        seed: Corpus seed.
        image_key: Key (e.g. the sample id) fixing the image's own pose, light and noise.

    Returns:
        The ``(size, size)`` uint8 image and the ``[len(LANDMARKS), 2]`` landmark (x, y)
        coordinates in output pixels (origin at the top-left corner), after the image's pose.
    """
    from PIL import Image

    ident = _identity(subject, gender, seed)
    rng = _rng(seed, "image", image_key)
    au = _action_units(emotion, intensity, ident, subject, seed, rng)
    side = size * _SCALE
    face = _draw_face(ident, au, side, rng)

    # Pose: rotate/scale about the centre and shift; the inverse map is what PIL wants.
    angle = np.deg2rad(rng.normal(0.0, 5.0))
    zoom = float(np.exp(rng.normal(0.0, 0.05)))
    shift = rng.normal(0.0, 0.03 * side, 2)
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    c = side / 2
    matrix = (
        cos,
        sin,
        c - cos * (c + shift[0]) - sin * (c + shift[1]),
        -sin,
        cos,
        c + sin * (c + shift[0]) - cos * (c + shift[1]),
    )
    # Nearest-neighbour at 4x followed by a 4x4 box reduction is anti-aliased and fast.
    face = face.transform(
        (side, side), Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=ident.background
    )
    pixels = np.asarray(face.reduce(_SCALE), dtype=np.float32)

    # Lighting: a linear gradient from a random direction, contrast/brightness, sensor noise.
    yy, xx = _grid(size)
    direction = rng.uniform(0.0, 2 * np.pi)
    gradient = 1.0 + rng.uniform(0.0, 0.6) * (np.cos(direction) * xx + np.sin(direction) * yy)
    contrast, brightness = np.exp(rng.normal(0.0, 0.12)), rng.normal(0.0, 12.0)
    pixels = (pixels - 128.0) * contrast + 128.0 + brightness
    pixels = pixels * gradient + rng.normal(0.0, rng.uniform(2.0, 7.0), pixels.shape)
    landmarks = _pose_points(_landmarks(ident, au, side), matrix) / _SCALE
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), landmarks


def render_faces(latents: pd.DataFrame, out_dir: Path, size: int = 48, seed: int = 0) -> list[str]:
    """Write one 8-bit grayscale PNG face per latent row and return the file paths.

    Args:
        latents: Rows with ``id``, ``emotion`` and ``speaker`` (the subject); ``intensity``
            (default 0.7) and ``group_gender`` are used when present.
        out_dir: Folder for the files (created if missing); files are named ``<id>.png``.
        size: Image side in pixels.
        seed: Seed of the identities and images.

    Returns:
        The paths of the written files, in row order.
    """
    return render_faces_with_landmarks(latents, out_dir, size, seed)[0]


def render_faces_with_landmarks(
    latents: pd.DataFrame, out_dir: Path, size: int = 48, seed: int = 0
) -> tuple[list[str], list[list[float]]]:
    """Write the faces as :func:`render_faces` does and also return each face's landmarks.

    Returns:
        The paths of the written files and, per file, its landmarks flattened to
        ``[x0, y0, x1, y1, ...]`` in output pixels (points in :data:`LANDMARKS` order), in row order.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    intensity = latents["intensity"] if "intensity" in latents else pd.Series(0.7, latents.index)
    gender = latents["group_gender"] if "group_gender" in latents else pd.Series(None, latents.index)
    paths, landmarks = [], []
    for sample_id, emotion, strength, subject, sex in zip(
        latents["id"], latents["emotion"], intensity, latents["speaker"], gender, strict=True
    ):
        pixels, points = render_face_with_landmarks(
            emotion, float(strength), str(subject), sex, size, seed, str(sample_id)
        )
        path = out_dir / f"{sample_id}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
        landmarks.append(points.ravel().round(3).tolist())
    return paths, landmarks
