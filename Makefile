# emoexp: common tasks. Everything installs into the active Python (bring your own venv).
PYTHON ?= python
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1

.PHONY: install train test test-all lint format ui tune bench cluster cluster-down clean

install: ## install emoexp and its pinned stack (a quick no-op when already installed)
	$(PYTHON) tools/ensure_installed.py

train: install ## train the default experiment (embedded audio, BiLSTM, ekman7) into ./mlflow.db
	$(PYTHON) train.py $(ARGS)

test: install ## every behaviour test (what CI runs); only the quality experiments stay out
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-all: install ## every test, the slow quality experiments (learnability) included
	$(PYTHON) -m pytest -m "" $(PYTEST_ARGS)

lint: install ## ruff lint and format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

tune: install ## Optuna study for the default model (resumable; see docs/tuning.md)
	$(PYTHON) -m emoexp.tune hparams_search=audio_lstm $(ARGS)

ui: install ## MLflow UI over the default store on http://127.0.0.1:5000
	$(PYTHON) -m mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

bench: install ## benchmarks (see docs/benchmarks.md)
	$(PYTHON) bench/train_step_throughput.py
	$(PYTHON) bench/startup_time.py

cluster: ## one-node SLURM cluster on 127.0.0.1 for tests/cluster (root; installs slurm and munge when missing)
	scripts/cluster/up.sh

cluster-down: ## stop the test cluster's daemons
	scripts/cluster/down.sh

clean:
	rm -rf outputs .pytest_cache .ruff_cache
