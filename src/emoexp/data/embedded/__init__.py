"""Built-in ("embedded") corpora: deterministic, offline, generated from a seed in seconds.

Latent emotions, intensities and speakers (:func:`sample_latents`) are rendered into
speech-like audio, drawn faces and short texts, and cached as a manifest
(:func:`load_embedded`). See docs/design.md#6-embedded-data-is-learnable-and-honest.
"""

from emoexp.data.embedded.corpus import GENERATOR_VERSION, load_embedded
from emoexp.data.embedded.latents import sample_latents

__all__ = ["GENERATOR_VERSION", "load_embedded", "sample_latents"]
