"""Corpora, the common sample schema, splits and the Lightning data module."""
