"""``python -m emoexp.predict`` starts fast: it does not import MLflow's pyfunc machinery (~0.5 s)."""

from __future__ import annotations

import subprocess
import sys

# What emoexp.predict.predict() and model_folder() import to find a run's model and predict with it.
PREDICT_IMPORTS = (
    "emoexp.predict",
    "emoexp.comparison.runs",
    "emoexp.serving.logged",
    "emoexp.serving.inputs",
    "emoexp.serving.predictor",
    "emoexp.serving.streaming",
    "mlflow.models",
    "mlflow.artifacts",
)


def test_predicting_imports_neither_pyfunc_nor_lightning():
    code = (
        "import importlib, sys\n"
        f"for name in {PREDICT_IMPORTS!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = ('mlflow.pyfunc', 'emoexp.serving.pyfunc', 'lightning')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_the_pyfunc_module_still_offers_the_model_lookup():
    from emoexp.serving import logged, pyfunc

    assert pyfunc.download_logged_model is logged.download_logged_model
    assert (pyfunc.BUNDLE_KEY, pyfunc.MODEL_NAME) == (logged.BUNDLE_KEY, logged.MODEL_NAME)
