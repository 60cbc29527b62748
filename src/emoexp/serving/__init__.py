"""Serving logged models: the model folder, the pyfunc wrapper, prediction on new inputs."""
