"""MLflow "model from code" file of emoexp's pyfunc model (see :mod:`emoexp.serving.pyfunc`).

MLflow copies this file into each logged model and runs it to build the model (instead of
unpickling an object), so loading a model needs only emoexp installed.
"""

import mlflow

from emoexp.serving.pyfunc import EmotionModel

mlflow.models.set_model(EmotionModel())
