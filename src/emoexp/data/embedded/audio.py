"""Speech-like utterances from a source-filter model, with emotion in the voice.

Each clip is a string of CV syllables: a glottal pulse train (F0 contour with declination,
pitch accents, jitter, shimmer, optional creak and tremor) plus aspiration noise, shaped by
vowel and nasal formant filters, preceded by fricative/stop/nasal onsets, radiated, passed
through a per-speaker recording channel and mixed with a little background noise.

Emotion changes the prosodic and voice-quality parameters in the directions reported by
Scherer (2003) and Juslin & Laukka (2003), scaled by the sample's intensity, the speaker's
expressiveness and a per-speaker style. Speakers differ a lot (gender-dependent F0, vocal
tract length, loudness, rate, channel), so a speaker-independent split is clearly harder
than a random one, as on real emotional speech corpora.
"""

from __future__ import annotations

import functools
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emoexp.labels.emotions import circumplex


@dataclass(frozen=True)
class VocalProfile:
    """How one emotion at full intensity moves the voice away from the speaker's neutral.

    Attributes:
        f0_shift: Change of the F0 level, in semitones.
        f0_range: Factor on the size of pitch accents (range/variability).
        rate: Factor on the speaking rate (syllables per second).
        loudness: Change of the level, in dB.
        tilt: Change of the spectral-tilt pole (+ steeper/breathier, - flatter/tenser voice).
        jitter: Factor on cycle-to-cycle F0 perturbation.
        breathiness: Added aspiration-noise level.
        creak: Amount of creaky voice (period doubling, irregular low pulses), 0..1.
        final_rise: F0 rise over the last syllables, in semitones.
        tremor: Depth of a 6-8 Hz F0/amplitude tremor, in semitones.
        formant_scale: Factor on formant frequencies (lip spreading in smiled speech raises them).
    """

    f0_shift: float = 0.0
    f0_range: float = 1.0
    rate: float = 1.0
    loudness: float = 0.0
    tilt: float = 0.0
    jitter: float = 1.0
    breathiness: float = 0.0
    creak: float = 0.0
    final_rise: float = 0.0
    tremor: float = 0.0
    formant_scale: float = 1.0


# Directions after Juslin & Laukka (2003, table 7) and Scherer (2003); magnitudes are chosen
# so that a full-intensity expression by an average speaker is clear but a weak one is not.
VOCAL_PROFILES: dict[str, VocalProfile] = {
    "neutral": VocalProfile(),
    "anger": VocalProfile(f0_shift=3.5, f0_range=1.7, rate=1.15, loudness=7.0, tilt=-0.3, jitter=1.3),
    "happiness": VocalProfile(
        f0_shift=4.0, f0_range=1.6, rate=1.1, loudness=3.0, tilt=-0.1, formant_scale=1.05
    ),
    "fear": VocalProfile(
        f0_shift=5.0,
        f0_range=0.55,
        rate=1.3,
        loudness=0.5,
        jitter=3.0,
        breathiness=0.25,
        tremor=0.8,
    ),
    "sadness": VocalProfile(
        f0_shift=-2.5,
        f0_range=0.45,
        rate=0.72,
        loudness=-6.0,
        tilt=0.3,
        jitter=1.5,
        breathiness=0.3,
        formant_scale=0.97,
    ),
    "surprise": VocalProfile(f0_shift=5.5, f0_range=1.5, rate=1.0, loudness=2.5, tilt=-0.05, final_rise=7.0),
    "disgust": VocalProfile(
        f0_shift=-3.0, f0_range=0.9, rate=0.78, loudness=-3.0, tilt=0.1, jitter=1.5, creak=0.5
    ),
}

# Formants (Hz) of an average adult male (Peterson & Barney 1952); "m" is a nasal murmur.
_PHONE_FORMANTS: dict[str, tuple[float, ...]] = {
    "a": (730.0, 1090.0, 2440.0, 3400.0),
    "e": (530.0, 1840.0, 2480.0, 3500.0),
    "i": (270.0, 2290.0, 3010.0, 3700.0),
    "o": (570.0, 840.0, 2410.0, 3300.0),
    "u": (300.0, 870.0, 2240.0, 3300.0),
    "m": (250.0, 1100.0, 2300.0, 3300.0),
}
_VOWELS = ("a", "e", "i", "o", "u")
_BANDWIDTHS = (80.0, 100.0, 140.0, 200.0)
# Onsets: fricatives with their noise band (Hz), a stop burst, the nasal, or none.
_ONSETS = ("s", "sh", "f", "stop", "m", "")
_NOISE_BANDS: dict[str, tuple[float, float]] = {
    "s": (4200.0, 7600.0),
    "sh": (2200.0, 5200.0),
    "f": (1200.0, 7600.0),
    "stop": (500.0, 6000.0),
}
_NOISE_LEVEL = {"s": 0.35, "sh": 0.35, "f": 0.15, "stop": 0.6}

_BASE_RATE = 4.6  # syllables per second in neutral read speech
_BASE_ACCENT = 2.5  # semitones
_BASE_JITTER = 0.006
_GLOTTAL_POLE = 0.95
_TARGET_DBFS = -26.0
_GRID_STEP = 0.005  # s; prosody is computed on this grid, not per sample


@dataclass(frozen=True)
class _Speaker:
    """A speaker's habitual voice and recording channel."""

    f0: float
    formant_scale: float
    phone_scale: dict[str, np.ndarray]
    loudness: float
    rate: float
    expressiveness: float
    tilt: float
    breathiness: float
    jitter: float
    channel_sos: np.ndarray
    noise_dbfs: float


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _rng(*keys: int | str) -> np.random.Generator:
    """A generator determined by the keys only, independent of row order."""
    ints = [k if isinstance(k, int) else _stable_hash(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence([abs(i) for i in ints]))


def vocal_profile(emotion: str) -> VocalProfile:
    """Return the vocal profile of an emotion.

    Emotions outside :data:`VOCAL_PROFILES` get one derived from their circumplex position:
    arousal raises pitch, loudness, rate and pitch range; valence slightly flattens the tilt.
    """
    if emotion in VOCAL_PROFILES:
        return VOCAL_PROFILES[emotion]
    valence, arousal = circumplex(emotion)
    return VocalProfile(
        f0_shift=4.0 * arousal,
        f0_range=float(np.exp(0.45 * arousal)),
        rate=float(np.exp(0.2 * arousal)),
        loudness=5.0 * arousal,
        tilt=-0.2 * arousal - 0.05 * valence,
    )


@functools.lru_cache(maxsize=256)
def _speaker(speaker: str, gender: str | None, sample_rate: int, seed: int) -> _Speaker:
    from scipy import signal

    rng = _rng(seed, "speaker", speaker)
    if gender not in ("female", "male"):
        gender = "female" if rng.random() < 0.5 else "male"
    female = gender == "female"
    phone_scale = {p: np.exp(0.05 * rng.standard_normal(4)) for p in _PHONE_FORMANTS}
    # A recording channel per speaker (each speaker recorded in its own session): a resonant
    # peak or dip somewhere in the speech band and a band limit, as microphones and rooms add.
    nyquist = sample_rate / 2
    peak_hz = float(np.exp(rng.uniform(np.log(300.0), np.log(4000.0))))
    peak_db = float(rng.uniform(-8.0, 8.0))
    b, a = _peaking(peak_hz, peak_db, q=1.2, sample_rate=sample_rate)
    low_cut = float(rng.uniform(60.0, 250.0))
    high_cut = min(float(rng.uniform(4500.0, 7500.0)), 0.95 * nyquist)
    band = signal.butter(2, [low_cut, high_cut], btype="bandpass", fs=sample_rate, output="sos")
    channel = np.vstack([signal.tf2sos(b, a), band])
    return _Speaker(
        f0=(205.0 if female else 112.0) * float(np.exp(0.11 * rng.standard_normal())),
        formant_scale=(1.16 if female else 1.0) * float(np.exp(0.045 * rng.standard_normal())),
        phone_scale=phone_scale,
        loudness=float(3.0 * rng.standard_normal()),
        rate=float(np.exp(0.13 * rng.standard_normal())),
        expressiveness=float(np.clip(np.exp(0.3 * rng.standard_normal()), 0.5, 1.8)),
        tilt=float(np.clip(0.45 + 0.1 * rng.standard_normal() + (0.05 if female else 0), 0, 0.8)),
        breathiness=float((0.12 if female else 0.07) * np.exp(0.3 * rng.standard_normal())),
        jitter=float(np.exp(0.3 * rng.standard_normal())),
        channel_sos=channel,
        noise_dbfs=float(rng.uniform(-70.0, -55.0)),
    )


def _peaking(freq: float, gain_db: float, q: float, sample_rate: int) -> tuple:
    """Biquad peaking equaliser (RBJ audio EQ cookbook)."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


@functools.lru_cache(maxsize=1024)
def _style(profile: VocalProfile, speaker: str, emotion: str, seed: int) -> VocalProfile:
    """Perturb a profile per speaker: people express the same emotion in their own way."""
    rng = _rng(seed, "style", speaker, emotion)
    factor = np.exp(0.2 * rng.standard_normal(11))
    return VocalProfile(
        f0_shift=profile.f0_shift * factor[0],
        f0_range=profile.f0_range ** factor[1],
        rate=profile.rate ** factor[2],
        loudness=profile.loudness * factor[3],
        tilt=profile.tilt * factor[4],
        jitter=profile.jitter ** factor[5],
        breathiness=profile.breathiness * factor[6],
        creak=profile.creak * factor[7],
        final_rise=profile.final_rise * factor[8],
        tremor=profile.tremor * factor[9],
        formant_scale=profile.formant_scale ** factor[10],
    )


def _resonators(formants: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Cascade of two-pole resonators with unit gain at DC, as one ``(b, a)`` filter.

    One high-order direct-form filter is exact enough here (float64, four formants) and
    costs half as much per call as second-order sections, which matters at ~15 calls a clip.
    """
    gain, denominator = 1.0, np.ones(1)
    for freq, bandwidth in zip(formants, _BANDWIDTHS, strict=True):
        if freq >= 0.48 * sample_rate:
            continue
        radius = np.exp(-np.pi * bandwidth / sample_rate)
        a1, a2 = -2 * radius * np.cos(2 * np.pi * freq / sample_rate), radius**2
        gain *= 1 + a1 + a2
        denominator = np.convolve(denominator, [1.0, a1, a2])
    return np.array([gain]), denominator


@functools.lru_cache(maxsize=16)
def _noise_filter(kind: str, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy import signal

    low, high = _NOISE_BANDS[kind]
    # At low sample rates (telephone speech) the band is squeezed below the Nyquist frequency.
    high = min(high, 0.95 * sample_rate / 2)
    low = min(low, 0.6 * high)
    return signal.butter(2, [low, high], btype="bandpass", fs=sample_rate)


def _white(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance white noise.

    Uniform rather than Gaussian because it is several times cheaper to draw, and neither
    the ear nor an MFCC front end can tell the two apart.
    """
    return (rng.random(n, dtype=np.float32) - 0.5) * np.float32(np.sqrt(12.0))


def _ramp(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average: turns step changes of a gain into linear on/off ramps."""
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(x, max(1, width), mode="nearest")


@dataclass
class _Plan:
    """The segmental plan of one utterance: syllable times in seconds, the rest in samples."""

    n: int
    sample_rate: int
    starts: np.ndarray  # syllable starts, seconds
    ends: np.ndarray  # syllable ends, seconds
    stress: np.ndarray
    voiced_gain: np.ndarray
    noise_gain: np.ndarray
    phones: list[tuple[int, int, str]]  # voiced segments (start, end, phone)
    noises: list[tuple[int, int, str]]  # unvoiced segments (start, end, noise kind)


def _plan(rate: float, sample_rate: int, rng: np.random.Generator) -> _Plan:
    """Lay out syllables (onset consonant + vowel) at a speaking rate."""
    # The content (syllable count) is independent of emotion, so slow speech lasts longer;
    # the count is only bent where the clip would leave the 1-2 s range.
    n_syllables = int(rng.integers(5, 9))
    n_syllables = max(3, int(np.clip(n_syllables, np.ceil(0.8 * rate), np.floor(1.55 * rate))))
    lead, trail = rng.uniform(0.08, 0.15, size=2)
    durations = np.exp(0.2 * rng.standard_normal(n_syllables))
    durations[-1] *= 1.3  # phrase-final lengthening
    durations *= n_syllables / rate / durations.sum()
    ends = np.cumsum(durations) + lead
    starts = ends - durations
    if n_syllables >= 5 and rng.random() < 0.3:
        cut = int(rng.integers(2, n_syllables - 1))
        pause = rng.uniform(0.06, 0.15)
        starts[cut:] += pause
        ends[cut:] += pause
    n = round((ends[-1] + trail) * sample_rate)

    onset_share = rng.uniform(0.25, 0.45, n_syllables)
    onsets = rng.choice(len(_ONSETS), n_syllables, p=[0.2, 0.1, 0.1, 0.25, 0.15, 0.2])
    vowels = rng.choice(len(_VOWELS), n_syllables)
    stress = rng.uniform(0.55, 1.0, n_syllables)
    stress[rng.integers(0, n_syllables)] = 1.0
    voiced_gain = np.zeros(n, dtype=np.float32)
    noise_gain = np.zeros(n, dtype=np.float32)
    phones: list[tuple[int, int, str]] = []
    noises: list[tuple[int, int, str]] = []
    for k in range(n_syllables):
        a, b = round(starts[k] * sample_rate), round(ends[k] * sample_rate)
        onset = _ONSETS[onsets[k]]
        mid = a + int(onset_share[k] * (b - a)) if onset else a
        if onset == "m":
            phones.append((a, mid, "m"))
            voiced_gain[a:mid] = 0.3 * stress[k]
        elif onset == "stop":
            # Closure (silence) then a decaying release burst.
            burst = mid - int(0.35 * (mid - a))
            noises.append((burst, mid, "stop"))
            decay = np.exp(-np.arange(mid - burst) / (0.012 * sample_rate))
            noise_gain[burst:mid] = _NOISE_LEVEL["stop"] * decay
        elif onset:
            noises.append((a, mid, onset))
            noise_gain[a:mid] = _NOISE_LEVEL[onset]
        phones.append((mid, b, _VOWELS[vowels[k]]))
        voiced_gain[mid:b] = stress[k]
    return _Plan(n, sample_rate, starts, ends, stress, voiced_gain, noise_gain, phones, noises)


def _f0_contour(
    plan: _Plan, spk: _Speaker, profile: VocalProfile, s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return a 5 ms time grid (s) and the F0 (Hz) on it."""
    grid = np.arange(0.0, plan.n / plan.sample_rate + 2 * _GRID_STEP, _GRID_STEP)
    n_syllables = len(plan.starts)
    lead, span = plan.starts[0], plan.ends[-1] - plan.starts[0]
    progress = np.clip((grid - lead) / span, 0.0, 1.0)
    semitones = profile.f0_shift * s + 0.8 * rng.standard_normal()
    semitones = semitones - rng.uniform(2.0, 4.0) * progress  # declination
    # One pitch accent per syllable, mostly rises, sized by the emotion's pitch range.
    accents = _BASE_ACCENT * profile.f0_range**s * plan.stress * rng.uniform(0.3, 1.2, n_syllables)
    accents *= np.where(rng.random(n_syllables) < 0.8, 1.0, -0.6)
    centres, widths = (plan.starts + plan.ends) / 2, plan.ends - plan.starts
    phase = np.clip((grid[None, :] - centres[:, None]) / widths[:, None], -1.0, 1.0)
    semitones = semitones + accents @ (0.5 * (1.0 + np.cos(np.pi * phase)))
    if profile.final_rise:
        rise_start = plan.starts[max(0, n_syllables - 2)]
        ramp = np.clip((grid - rise_start) / (plan.ends[-1] - rise_start), 0.0, 1.0)
        semitones += profile.final_rise * s * ramp**1.5
    if profile.tremor:
        tremor_hz, tremor_phase = rng.uniform(6.0, 8.0), rng.uniform(0.0, 2 * np.pi)
        semitones += profile.tremor * s * np.sin(2 * np.pi * tremor_hz * grid + tremor_phase)
    semitones -= 3.0 * profile.creak * s * progress  # creaky voice sinks towards the end
    return grid, np.clip(spk.f0 * 2 ** (semitones / 12), 50.0, 1000.0)


def _glottal_source(
    plan: _Plan,
    grid: np.ndarray,
    f0: np.ndarray,
    spk: _Speaker,
    profile: VocalProfile,
    s: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pulse train with jitter, shimmer and creak, glottal low-pass, tilt and aspiration."""
    from scipy import signal

    # Pulse times invert the running phase (cycles) of the F0 contour: one pulse per cycle.
    cycles = np.concatenate([[0.0], np.cumsum((f0[1:] + f0[:-1]) / 2 * _GRID_STEP)])
    pulse_time = np.interp(np.arange(1.0, cycles[-1]), cycles, grid)
    jitter = _BASE_JITTER * spk.jitter * profile.jitter**s
    period = 1.0 / np.interp(pulse_time, grid, f0)
    pulse_time += jitter * period * rng.standard_normal(len(pulse_time))
    pulse_at = np.clip(np.round(pulse_time * sample_rate).astype(int), 0, plan.n - 1)
    amplitude = np.exp(3 * jitter * rng.standard_normal(len(pulse_at)))
    creak = float(np.clip(profile.creak * s, 0.0, 1.0))
    amplitude[1::2] *= 1.0 - 0.8 * creak  # period doubling: every other pulse weak
    pulses = np.zeros(plan.n)
    np.add.at(pulses, pulse_at, amplitude)

    glottal = signal.lfilter([1.0], [1.0, -2 * _GLOTTAL_POLE, _GLOTTAL_POLE**2], pulses)
    glottal -= glottal.mean()
    tilt = float(np.clip(spk.tilt + profile.tilt * s, 0.0, 0.92))
    source = signal.lfilter([1.0], [1.0, -tilt], glottal)
    source /= np.sqrt(np.mean(source[plan.voiced_gain > 0] ** 2)) + 1e-12
    source += (spk.breathiness + profile.breathiness * s) * _white(rng, plan.n)
    gain = _ramp(plan.voiced_gain, int(0.008 * sample_rate))
    if profile.tremor:
        # Tremor shakes the amplitude too: modulate it with the (tremulous) log-F0 contour.
        wobble = np.interp(np.arange(plan.n) / sample_rate, grid, np.log(f0))
        gain *= 1.0 + 0.5 * (wobble - wobble.mean())
    return source * gain


def _vocal_tract(
    plan: _Plan,
    source: np.ndarray,
    spk: _Speaker,
    profile: VocalProfile,
    s: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Formant-filter each voiced phone, cross-fade the phones, add consonant noise."""
    from scipy import signal

    # Each phone is filtered with a margin (for coarticulation and filter ring-up) and
    # weighted by a partition of unity that cross-fades it into its neighbours.
    margin = int(0.02 * sample_rate)
    owner = np.full(plan.n, -1)
    for index, (a, b, _) in enumerate(plan.phones):
        owner[a:b] = index
    speech = np.zeros(plan.n)
    formant_scale = spk.formant_scale * profile.formant_scale**s
    for index, (a, b, phone) in enumerate(plan.phones):
        lo, hi = max(0, a - margin), min(plan.n, b + margin)
        formants = np.array(_PHONE_FORMANTS[phone]) * spk.phone_scale[phone] * formant_scale
        b_tract, a_tract = _resonators(formants, sample_rate)
        weight = _ramp((owner[lo:hi] == index).astype(np.float32), margin)
        speech[lo:hi] += weight * signal.lfilter(b_tract, a_tract, source[lo:hi])
    # Lip radiation (+6 dB/octave) applies to the voiced sound only: the consonant noise is
    # added after it at its final level, fricatives some 10 dB below the vowels.
    speech = np.diff(speech, prepend=0.0)
    noise_scale = np.sqrt(np.mean(speech[plan.voiced_gain > 0] ** 2))
    for a, b, kind in plan.noises:
        lo, hi = max(0, a - margin // 4), min(plan.n, b + margin // 4)
        band = signal.lfilter(*_noise_filter(kind, sample_rate), _white(rng, hi - lo))
        gain = _ramp(plan.noise_gain[lo:hi], int(0.004 * sample_rate))
        speech[lo:hi] += noise_scale * gain * band
    return speech


def synthesize(
    emotion: str,
    intensity: float,
    speaker: str,
    gender: str | None,
    sample_rate: int,
    seed: int,
    utterance_key: str,
) -> np.ndarray:
    """Synthesise one utterance.

    Args:
        emotion: The emotion the voice displays.
        intensity: Expression strength in [0, 1].
        speaker: Speaker id; fixes the voice and channel.
        gender: ``"female"``/``"male"`` (sets F0 and vocal-tract length), or None for random.
        sample_rate: Output sample rate in Hz.
        seed: Corpus seed.
        utterance_key: Key (e.g. the sample id) that fixes the utterance's own randomness.

    Returns:
        A float32 mono waveform in [-1, 1].
    """
    from scipy import signal

    spk = _speaker(speaker, gender, sample_rate, seed)
    profile = _style(vocal_profile(emotion), speaker, emotion, seed)
    rng = _rng(seed, "utterance", utterance_key)
    # How far the voice moves towards the profile: intensity, times the speaker's habit.
    s = (0.4 + 0.6 * float(np.clip(intensity, 0.0, 1.0))) * spk.expressiveness
    rate = _BASE_RATE * spk.rate * profile.rate**s * float(np.exp(0.07 * rng.standard_normal()))

    plan = _plan(rate, sample_rate, rng)
    grid, f0 = _f0_contour(plan, spk, profile, s, rng)
    source = _glottal_source(plan, grid, f0, spk, profile, s, sample_rate, rng)
    speech = _vocal_tract(plan, source, spk, profile, s, sample_rate, rng)

    speech = signal.sosfilt(spk.channel_sos, speech)
    active = (plan.voiced_gain + plan.noise_gain) > 0
    level_db = _TARGET_DBFS + spk.loudness + profile.loudness * s + 1.5 * rng.standard_normal()
    speech *= 10 ** (level_db / 20) / (np.sqrt(np.mean(speech[active] ** 2)) + 1e-12)
    noise_db = spk.noise_dbfs + 2 * rng.standard_normal()
    speech += 10 ** (noise_db / 20) * _white(rng, plan.n)
    peak = np.max(np.abs(speech))
    if peak > 0.99:
        speech *= 0.99 / peak
    return speech.astype(np.float32)


def render_audio(latents: pd.DataFrame, out_dir: Path, sample_rate: int = 16000, seed: int = 0) -> list[str]:
    """Write one 16-bit mono WAV per latent row and return the file paths.

    Args:
        latents: Rows with ``id``, ``emotion`` and ``speaker``; ``intensity`` (default 0.7)
            and ``group_gender`` are used when present.
        out_dir: Folder for the files (created if missing); files are named ``<id>.wav``.
        sample_rate: Sample rate in Hz.
        seed: Seed of the voices and utterances.

    Returns:
        The paths of the written files, in row order.
    """
    import soundfile as sf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    intensity = latents["intensity"] if "intensity" in latents else pd.Series(0.7, latents.index)
    gender = latents["group_gender"] if "group_gender" in latents else pd.Series(None, latents.index)
    paths = []
    for sample_id, emotion, strength, speaker, sex in zip(
        latents["id"],
        latents["emotion"],
        intensity,
        latents["speaker"],
        gender,
        strict=True,
    ):
        wave = synthesize(emotion, float(strength), str(speaker), sex, sample_rate, seed, str(sample_id))
        path = out_dir / f"{sample_id}.wav"
        # Encoding in memory and writing the bytes at once is twice as fast as letting
        # libsndfile write (and seek in) the file itself.
        buffer = io.BytesIO()
        sf.write(buffer, wave, sample_rate, subtype="PCM_16", format="WAV")
        path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths
