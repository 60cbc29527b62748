"""Ensembles built from tracked runs' stored predictions (``python -m emoexp.ensemble``)."""
