"""A generated speech corpus laid out and named exactly as RAVDESS, read by the real RAVDESS adapter.

RAVDESS (Livingstone & Russo 2018) is the corpus speech-emotion work reaches for first: 24 actors
(odd male, even female), 8 emotions with calm, two intensities (none for neutral), two
statements, two repetitions: 60 speech files per actor, 1440 in all, in
``Actor_XX/03-01-EE-II-SS-RR-XX.wav``. :func:`render_ravdess_layout` renders that design with the
embedded voice synthesiser (:mod:`emoexp.data.embedded.audio`; calm gets the profile its
circumplex position gives: pleasant, low arousal), so that models and protocols can be compared
on data of RAVDESS's shape (more speakers, fewer clips each, an 8th class close to neutral,
repeated statements) without the licence-bound corpus. :func:`load_embedded_ravdess` renders it
once into the cache and loads it through :func:`emoexp.data.adapters.ravdess.load_ravdess`, so
the adapter's parsing, checks and metadata are exercised as on the real files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from emoexp.data.adapters.ravdess import EMOTIONS, OnError, load_ravdess
from emoexp.data.embedded.corpus import GENERATOR_VERSION, build_into_place, default_cache_dir

INTENSITY_LEVELS: dict[str, float] = {"01": 0.5, "02": 0.9}
"""RAVDESS intensity codes (normal, strong) -> the synthesiser's expression strength."""
_COMPLETE = "params.json"


def ravdess_design(n_actors: int = 24) -> pd.DataFrame:
    """Every speech file of RAVDESS's design: one row per actor, emotion, intensity, statement, repetition.

    Args:
        n_actors: Actors 1..n (at most 24, as RAVDESS's file names allow).

    Returns:
        Columns ``id`` (the file stem), ``actor``, ``emotion`` (canonical name), ``intensity``
        (code), ``gender``; 60 rows per actor.
    """
    if not 1 <= n_actors <= 24:
        raise ValueError(f"n_actors={n_actors}: RAVDESS names actors 01-24; choose 1 to 24.")
    rows = []
    for actor in range(1, n_actors + 1):
        for code, emotion in EMOTIONS.items():
            for intensity in ("01",) if code == "01" else ("01", "02"):  # no strong neutral
                for statement in ("01", "02"):
                    for repetition in ("01", "02"):
                        stem = f"03-01-{code}-{intensity}-{statement}-{repetition}-{actor:02d}"
                        gender = "male" if actor % 2 else "female"
                        rows.append(
                            {
                                "id": stem,
                                "actor": actor,
                                "emotion": emotion,
                                "intensity": intensity,
                                "gender": gender,
                            }
                        )
    return pd.DataFrame(rows)


def render_ravdess_layout(
    root: str | Path, n_actors: int = 24, seed: int = 0, sample_rate: int = 16000
) -> Path:
    """Write the RAVDESS design as ``root/Actor_XX/03-01-EE-II-SS-RR-XX.wav`` (16-bit mono).

    Args:
        root: Folder to create the ``Actor_XX`` folders in.
        n_actors: Number of actors (1-24).
        seed: Seed of the voices and utterances.
        sample_rate: Sample rate in Hz.

    Returns:
        ``root``.
    """
    from emoexp.data.embedded.audio import render_audio

    root = Path(root)
    design = ravdess_design(n_actors)
    for actor, files in design.groupby("actor"):
        latents = pd.DataFrame(
            {
                "id": files["id"],
                "emotion": files["emotion"],
                "intensity": files["intensity"].map(INTENSITY_LEVELS),
                # one voice per actor; the file stem keys each utterance's own randomness
                "speaker": f"Actor_{actor:02d}",
                "group_gender": files["gender"],
            }
        )
        render_audio(latents, root / f"Actor_{actor:02d}", sample_rate=sample_rate, seed=seed)
    return root


def load_embedded_ravdess(
    cache_dir: str | Path | None = None,
    n_actors: int = 24,
    seed: int = 0,
    sample_rate: int = 16000,
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Render the RAVDESS-layout corpus once (cached) and load it with the RAVDESS adapter.

    Args:
        cache_dir: Cache root; defaults to ``$EMOEXP_CACHE_DIR`` or ``~/.cache/emoexp``.
        n_actors: Number of actors (1-24; 60 files each).
        seed: Generator seed; the same parameters give the identical files.
        sample_rate: Sample rate in Hz.
        on_error: Passed to :func:`~emoexp.data.adapters.ravdess.load_ravdess`.

    Returns:
        The RAVDESS adapter's manifest (``speaker`` = ``Actor_XX``, corpus ``ravdess``).
    """
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_actors": n_actors,
        "seed": seed,
        "sample_rate": sample_rate,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / "embedded" / f"ravdess_layout-a{n_actors}-seed{seed}-v{GENERATOR_VERSION}-{digest}"
    if not (folder / _COMPLETE).exists():

        def build(building: Path) -> None:
            render_ravdess_layout(building, n_actors, seed, sample_rate)
            (building / _COMPLETE).write_text(json.dumps(params, indent=2, sort_keys=True))

        build_into_place(folder, _COMPLETE, build)
    return load_ravdess(folder, on_error=on_error)
