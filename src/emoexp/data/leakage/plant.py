"""Plant duplicates in a corpus, as real corpora have them: for experiments on leakage.

FER2013 holds the same face under several ids, and speech corpora re-use recordings across
releases: a copy that lands in train while its original is in test inflates the test figure.
:func:`with_planted_duplicates` adds such copies to an audio corpus (real WAV files): half
re-encoded unchanged, half near-duplicates (white noise at 30 dB SNR, 20 ms later, 0.8 gain),
each under a new id and another speaker, so no speaker-independent split keeps it apart from
its original. The leakage guard (docs/leakage.md) finds them; ``leakage=drop`` removes them from
the evaluation splits. Used by ``experiments/protocols_leakage`` and ``data=embedded_audio_planted``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from emoexp.data import schema

COPY_SUFFIX = "-copy"


def _write_copy(source: str, target: Path, near: bool, rng: np.random.Generator) -> None:
    signal, rate = sf.read(source, dtype="float64")
    if near:
        noise = rng.normal(size=len(signal))
        noise *= np.sqrt(np.mean(signal**2) / max(np.mean(noise**2), 1e-12) / 10 ** (30 / 10))
        signal = 0.8 * np.concatenate([np.zeros(int(0.02 * rate)), signal + noise])
    sf.write(target, np.clip(signal, -1.0, 1.0), rate)


def with_planted_duplicates(
    corpus: pd.DataFrame, fraction: float = 0.3, seed: int = 0, cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """``corpus`` plus copies of a random ``fraction`` of its audio samples under other speakers.

    Args:
        corpus: A manifest with an ``audio`` column (e.g. the embedded audio corpus).
        fraction: Share of samples copied (in ``(0, 1]``).
        seed: Which samples are copied, how, and under which speaker.
        cache_dir: Where the copies are written (``<cache_dir>/planted/<corpus>-<seed>-<fraction>/``).

    Returns:
        The manifest with one row per copy appended: id ``<id>-copy``, another speaker of the
        corpus, the same labels and group attributes, the copy's WAV path.

    Raises:
        ValueError: For a corpus without audio or a fraction outside ``(0, 1]``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"data.corpus.fraction={fraction} must be in (0, 1].")
    audio = corpus[corpus[schema.AUDIO].notna()] if schema.AUDIO in corpus else corpus.iloc[:0]
    if audio.empty:
        raise ValueError("with_planted_duplicates: the corpus has no audio samples to copy.")
    rng = np.random.default_rng(seed)
    picked = audio.iloc[np.sort(rng.choice(len(audio), max(1, round(fraction * len(audio))), replace=False))]
    # Keyed by the corpus too, so a copy of another corpus's clip of the same id is never reused.
    source = schema.fingerprint(audio[schema.ID].astype(str) + "|" + audio[schema.AUDIO].astype(str))[:12]
    folder = Path(cache_dir or "cache").expanduser() / "planted" / f"{source}-{seed}-{fraction}"
    folder.mkdir(parents=True, exist_ok=True)
    speakers = corpus[schema.SPEAKER].astype(str).unique()
    copies = picked.copy()
    for position, (index, row) in enumerate(picked.iterrows()):
        target = folder / f"{row[schema.ID]}{COPY_SUFFIX}.wav"
        if not target.exists():  # its own noise seed: copies already written change no other draw
            noise = np.random.default_rng([seed, position])
            _write_copy(row[schema.AUDIO], target, near=position % 2 == 1, rng=noise)
        others = speakers[speakers != str(row[schema.SPEAKER])]
        copies.loc[index, schema.SPEAKER] = rng.choice(others) if len(others) else row[schema.SPEAKER]
        copies.loc[index, schema.AUDIO] = str(target)
    copies[schema.ID] = copies[schema.ID].astype(str) + COPY_SUFFIX
    return pd.concat([corpus, copies], ignore_index=True)
