"""Metrics, per-group and calibration reports, statistics over folds and seeds, and figures."""
