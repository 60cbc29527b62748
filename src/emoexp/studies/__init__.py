"""Studies: an experiment config with a ``study:`` block, trained system x seed and reported in one command.

``emoexp.studies.definition`` reads and checks the block, ``emoexp.studies.runner`` trains the
units (resuming what is already in the store) and ``emoexp.comparison.study_report`` writes the
results table; ``python -m emoexp.study`` is the command (docs/experiments.md).
"""
