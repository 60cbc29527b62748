"""The run core: check a config, record its run, fit every fold, end in a true state.

See docs/design.md#run-lifecycle. :func:`emoexp.engine.run.train_run` is the one path every
entry point (``train.py``, the tuner, experiments) takes.
"""
