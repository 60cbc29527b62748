"""emoexp: train, tune, track and compare emotion-recognition models."""

__version__ = "0.1.0"
