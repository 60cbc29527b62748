"""Search spaces: every shipped hparams_search file parses, matches its config, and bad input fails early."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from emoexp.config import CONF_DIR, ConfigError, group_options
from emoexp.tuning.space import SearchSpaceError, check_against_config, parse_search_space, to_overrides
from emoexp.tuning.storage import StorageError, redact
from emoexp.tuning.tuner import settings_from_config

SEARCHES = group_options("hparams_search")


def _settings(compose_tune, overrides: list[str]):
    cfg = compose_tune(overrides)
    return settings_from_config(cfg, cfg.hydra.sweeper, cfg.hydra.runtime.choices.get("hparams_search"))


def test_one_search_space_per_default_model_and_a_classical_one():
    for name in ("audio_lstm", "text_lstm", "visual_cnn", "svm"):
        assert name in SEARCHES


@pytest.mark.parametrize("name", SEARCHES)
def test_every_search_space_composes_parses_and_names_only_existing_keys(compose_tune, name):
    settings = _settings(compose_tune, [f"hparams_search={name}"])
    assert settings.space.distributions
    assert settings.objectives[0].metric == "val/uar_best" and settings.objectives[0].direction == "maximize"
    assert settings.study_name.startswith(name)


@pytest.mark.parametrize(
    ("scheme", "metric"), [("valence_arousal", "val/ccc_best"), ("ekman6", "val/uar_best")]
)
def test_metric_and_direction_follow_the_label_scheme(compose_tune, scheme, metric):
    settings = _settings(compose_tune, ["hparams_search=audio_lstm", f"label_scheme={scheme}"])
    assert settings.objectives[0].metric == metric
    assert settings.objectives[0].direction == "maximize"
    assert scheme in settings.study_name


def test_sweep_grammar_maps_to_optuna_distributions():
    space = parse_search_space(
        {
            "lr": "tag(log, interval(1e-4, 1e-2))",
            "dropout": "interval(0.0, 0.5)",
            "layers": "int(interval(1, 3))",
            "width": "range(16, 129, 16)",
            "batch": "choice(16, 32)",
            "channels": "choice([16,32],[32,64])",
            "seed": "7",
        }
    )
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["dropout"] == FloatDistribution(0.0, 0.5)
    assert d["layers"] == IntDistribution(1, 3)
    assert d["width"] == IntDistribution(16, 128, step=16)  # Python's exclusive stop
    assert d["batch"] == CategoricalDistribution([16, 32])
    assert d["channels"] == CategoricalDistribution(["[16,32]", "[32,64]"])
    assert space.fixed == {"seed": "7"}
    assert to_overrides({"lr": 1e-05, "channels": "[16,32]"}, {"seed": "7"}) == [
        "seed=7", "lr=1e-05", "channels=[16,32]",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("interval(0.5, 0.1)", "empty interval"),
        ("interval(0.1, 0.1)", "empty interval"),
        ("range(8, 8)", "empty range"),
        ("tag(log, interval(0.0, 1.0))", "needs low > 0"),
        ("choice()", "does not parse"),
        ("intervall(1, 2)", "does not parse"),
    ],
)
def test_empty_or_invalid_ranges_are_rejected_with_file_and_key(expression, message):
    with pytest.raises(SearchSpaceError, match=message) as error:
        parse_search_space({"optimizer.lr": expression}, "conf/hparams_search/mine.yaml")
    assert "conf/hparams_search/mine.yaml" in str(error.value) and "optimizer.lr" in str(error.value)


def test_unknown_parameter_is_rejected_with_a_suggestion(compose_tune):
    cfg = compose_tune(["hparams_search=audio_lstm"])
    space = parse_search_space({"model.net.hiden_size": "choice(8, 16)"}, "conf/hparams_search/mine.yaml")
    with pytest.raises(SearchSpaceError, match="not in the composed config") as error:
        check_against_config(space, cfg)
    assert "model.net.hidden_size" in str(error.value)  # the close match is suggested
    groups = parse_search_space({"optimizer": "choice(adamw, adamx)"}, "mine.yaml")
    with pytest.raises(SearchSpaceError, match="adamx"):
        check_against_config(groups, cfg)
    check_against_config(parse_search_space({"optimizer": "choice(adamw, sgd)"}), cfg)


def _user_search_space(tmp_path, name: str, params: str) -> str:
    """A search space in the user's own config directory (on hydra.searchpath), extending audio_lstm."""
    folder = tmp_path / "my_conf" / "hparams_search"
    folder.mkdir(parents=True, exist_ok=True)
    body = f"# @package _global_\ndefaults:\n  - audio_lstm\nhydra:\n  sweeper:\n    params:\n{params}\n"
    (folder / f"{name}.yaml").write_text(body)
    return f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"


def test_bad_input_fails_before_any_trial_or_run(tmp_path, tune_overrides, run_tune, mlflow_runs):
    typo = _user_search_space(tmp_path, "typo", "      model.net.hiden_size: choice(8, 16)")
    with pytest.raises(SearchSpaceError, match="hiden_size") as error:
        run_tune([*tune_overrides(search="typo"), typo])
    assert str(tmp_path / "my_conf" / "hparams_search" / "typo.yaml") in str(error.value)
    empty = _user_search_space(tmp_path, "empty", "      optimizer.lr: tag(log, interval(1e-2, 1e-4))")
    with pytest.raises(SearchSpaceError, match="empty interval"):
        run_tune([*tune_overrides(search="empty"), empty])
    unreachable = "postgresql+psycopg2://postgres:secret@127.0.0.1:1/test"
    with pytest.raises(StorageError, match="unreachable") as error:
        run_tune(tune_overrides(storage=unreachable))
    assert "secret" not in str(error.value) and "127.0.0.1:1" in str(error.value)
    with pytest.raises(ConfigError, match=r"contradicts label_scheme\.mode"):
        run_tune(tune_overrides("hydra.sweeper.direction=minimize"))
    with pytest.raises(ConfigError, match=r"hparams_search=NAME"):
        run_tune([o for o in tune_overrides() if not o.startswith(("hparams_search=", "hydra.sweeper"))])
    with pytest.raises(ConfigError, match="one device"):
        run_tune(tune_overrides("trainer=ddp"))
    with pytest.raises(ConfigError, match=r"tuner\.role=setup"):
        run_tune(tune_overrides("tuner.role=worker"))
    assert not mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_storage_urls_are_shown_without_passwords():
    assert (
        redact("postgresql+psycopg2://me:secret@db:5432/optuna")
        == "postgresql+psycopg2://me:***@db:5432/optuna"
    )
    assert redact("mysql+pymysql://root@127.0.0.1:3306/test") == "mysql+pymysql://root@127.0.0.1:3306/test"


def test_slurm_launcher_config_composes_into_submitits_launcher(tmp_path):
    import hydra
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hparams_search=audio_lstm", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                       f"hydra.sweep.dir={tmp_path}"],
            return_hydra_config=True,
        )  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert f"OMP_NUM_THREADS={launcher.cpus_per_task}" in launcher.setup[0]
    assert type(hydra.utils.instantiate(launcher)).__name__ == "SlurmLauncher"  # builds; submits nothing


@pytest.mark.parametrize("name", group_options("pruner"))
def test_every_pruner_config_builds_an_optuna_pruner(compose_tune, name):
    import hydra
    import optuna

    cfg = compose_tune(["hparams_search=audio_lstm", f"pruner={name}"])
    assert isinstance(hydra.utils.instantiate(cfg.pruner), optuna.pruners.BasePruner)
