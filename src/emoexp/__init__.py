"""emoexp: train, tune, track and compare emotion-recognition models."""

__version__ = "0.1.0"

from emoexp import resolvers as _resolvers

# Config interpolations such as ${emoexp.minilm_path:} resolve wherever emoexp is imported.
_resolvers.register()
