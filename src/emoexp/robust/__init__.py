"""Robustness reports: a tracked run's model re-evaluated on perturbed test inputs (docs/robustness.md).

:mod:`emoexp.robust.record` rebuilds the run's test samples and model from its record,
:mod:`emoexp.robust.inputs` perturbs raw inputs before the model's own featurizer, and
:mod:`emoexp.robust.report` scores every condition and logs the report to the run.
"""
