"""Comparing tracked runs: selection, statistics, plots and reports (``python -m emoexp.compare``)."""
