"""Config and data errors are found before any MLflow run exists, and reach the user as one message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from emoexp.engine.preflight import USER_ERRORS
from emoexp.train import train

ROOT = Path(__file__).resolve().parents[2]


def _runs(tmp_path: Path) -> list:
    """Every run in the test's store (none when the store was never even created)."""
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return []
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=ravdess", "data.root=/nonexistent"], "/nonexistent"),
        (["data=ravdess"], "data.root"),
        (["label_scheme=multilabel", "model=svm"], "label_scheme=multilabel"),
        (["data.max_samples=3"], "data.max_samples=3"),
        (["+trainer.max_epoch=1"], "did you mean trainer.max_epochs"),
        (["+model.net.hiden_size=8"], "did you mean model.net.hidden_size"),
        (["+model.kind=xgboost"], "model.kind='xgboost' is unknown"),
    ],
    ids=["missing-root", "no-root", "scheme-model", "too-few-samples", "trainer-typo", "model-typo", "kind"],
)
def test_config_and_data_errors_create_no_run(compose, tmp_path, overrides, message):
    with pytest.raises(USER_ERRORS) as raised:
        train(compose(overrides))
    assert message in str(raised.value)
    assert _runs(tmp_path) == []


def test_the_command_line_shows_one_message_and_exits_non_zero(tmp_path, cache_dir):
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "data=ravdess",
        "data.root=/nonexistent",
        f"paths.output_dir={tmp_path / 'out'}",
        f"paths.cache_dir={cache_dir}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("python train.py: error:")]
    assert len(errors) == 1 and "/nonexistent" in errors[0]
    assert _runs(tmp_path) == []


def test_a_typo_names_the_closest_key_and_the_valid_ones(compose):
    from emoexp.config import ConfigError
    from emoexp.engine.binding import check_targets

    with pytest.raises(ConfigError) as raised:
        check_targets(compose(["+optimizer.weight_decai=0.1"]))
    text = str(raised.value)
    assert "optimizer.weight_decai is not an argument of torch.optim.AdamW" in text
    assert "did you mean optimizer.weight_decay?" in text and "'lr'" in text
