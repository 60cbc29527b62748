"""MLflow tracking: stores, runs, their parameters, tags and artifacts."""
