"""Every shipped modality x model x label_scheme combination composes and binds, or is rejected.

The tables are read from the registries, not restated: modalities from :mod:`emoexp.modalities`,
models and schemes from ``conf/``, which model serves which modality from its config's
``features`` keys, and which scheme a scikit-learn model serves from ``scheme.estimator_role``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools

import pytest
from omegaconf import DictConfig, OmegaConf

from emoexp import modalities
from emoexp.config import CONF_DIR, ConfigError, group_options, instantiate, validate

MODALITIES = list(modalities.MODALITIES)
MODELS = group_options("model")
SCHEMES = group_options("label_scheme")


def _model_modalities(model: str) -> set[str]:
    """The modalities a model config declares: the keys of its ``features`` (or its ``modalities``)."""
    node = OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")
    features = node.get("features")
    return set(features.keys()) if features is not None else set(node.get("modalities", []))


# Which models each modality supports, as the model configs declare it.
EXPECTED = {m: {model for model in MODELS if m in _model_modalities(model)} for m in MODALITIES}
# Featurizer kwargs per modality, as MultimodalFeatures.net_kwargs() hands them to a fusion net's encoders.
MODALITY_KWARGS = {
    "audio": {"input_size": 40},
    "visual": {"in_chans": 1},
    "text": {"vocab_size": 100, "max_length": 48},
}


def _targets(node: object, path: str = ""):
    """Yield (path, node) for every config node with a ``_target_``."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from _targets(value, f"{path}.{key}" if path else key)


def _bind(path: str, node: dict, extra: dict | None = None) -> None:
    module_name, _, attr = node["_target_"].rpartition(".")
    target = getattr(importlib.import_module(module_name), attr)
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    kwargs.update(extra or {})
    signature = inspect.signature(target)
    if node.get("_partial_"):
        signature.bind_partial(**kwargs)
    else:
        try:
            signature.bind(**kwargs)
        except TypeError as error:
            raise AssertionError(
                f"{path}: {node['_target_']} does not bind {sorted(kwargs)}: {error}"
            ) from error


def _bind_sklearn_estimator(cfg: DictConfig, resolved: dict, scheme_name: str) -> None:
    """A scikit-learn model binds the estimator its scheme selects, or the scheme rejects it clearly."""
    scheme = instantiate(cfg.label_scheme)
    try:
        role = scheme.estimator_role(cfg.model.name)
    except ConfigError as error:
        # The message names the model and the scheme, and says what to use instead.
        assert f"model={cfg.model.name}" in str(error) and scheme_name in str(error)
        assert "neural model" in str(error)
        return
    assert resolved["model"]["estimator"].get(role) is not None, (
        f"model={cfg.model.name} lacks estimator.{role}"
    )
    _bind(f"model.estimator.{role}", resolved["model"]["estimator"][role])
    for key in ("preprocessing", "search"):
        assert key in resolved["model"], key


@pytest.mark.parametrize(
    ("modality", "model", "scheme"), list(itertools.product(MODALITIES, MODELS, SCHEMES))
)
def test_every_combination_composes_and_binds_or_is_rejected(compose, modality, model, scheme):
    cfg: DictConfig = compose([f"modality={modality}", f"model={model}", f"label_scheme={scheme}"])
    if model not in EXPECTED[modality]:
        with pytest.raises(ConfigError, match=f"Models for {modality}: "):
            validate(cfg)
        return
    validate(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if resolved["model"].get("kind") == "sklearn":
        _bind_sklearn_estimator(cfg, resolved, scheme)
    else:
        # Heads, input sizes and vocabularies come from the scheme and featurizer at run time.
        runtime = {
            "num_outputs": 7,
            "input_size": 40,
            "vocab_size": 100,
            "num_ngrams": 100,
            "in_chans": 1,
            "max_length": 48,
            "modality_kwargs": MODALITY_KWARGS,
        }
        net_kwargs = {
            k: v
            for k, v in runtime.items()
            if k
            in inspect.signature(
                getattr(
                    importlib.import_module(resolved["model"]["net"]["_target_"].rpartition(".")[0]),
                    resolved["model"]["net"]["_target_"].rpartition(".")[2],
                )
            ).parameters
        }
        _bind("model.net", resolved["model"]["net"], net_kwargs)
        for name, encoder in (resolved["model"]["net"].get("encoders") or {}).items():
            # Fusion encoders are factories: they bind once given the head width and their modality's kwargs.
            extra = {"num_outputs": 7, **MODALITY_KWARGS[name]}
            _bind(f"model.net.encoders.{name}", {**encoder, "_partial_": False}, extra)
    for key in ("label_scheme", "protocol"):
        node = resolved[key]
        for path, sub in _targets(node, key):
            if path != key:
                _bind(path, sub)
        flat = {k: v for k, v in node.items() if not isinstance(v, dict)}
        _bind(key, {**flat, "_target_": node["_target_"]})
    _bind("data.corpus", resolved["data"]["corpus"])
    _bind(f"model.features.{modality}", resolved["model"]["features"][modality])
    _bind("optimizer", resolved["optimizer"])
    for name, callback in resolved["callbacks"].items():
        if callback:
            _bind(f"callbacks.{name}", callback)
    trainer = dict(resolved["trainer"])
    _bind("trainer", trainer)
    assert cfg.callbacks.early_stopping.monitor == cfg.label_scheme.monitor
    assert cfg.callbacks.model_checkpoint.mode == cfg.label_scheme.mode
    assert cfg.optimized_metric == f"{cfg.label_scheme.monitor}_best"


def test_every_modality_has_models_and_its_defaults_fit_it():
    assert set(group_options("modality")) == set(MODALITIES)
    for modality in MODALITIES:
        assert EXPECTED[modality], f"no model supports modality={modality}"
        defaults = modalities.default_choices(modality, CONF_DIR)
        assert defaults["model"] in EXPECTED[modality], (modality, defaults)
        data = OmegaConf.load(CONF_DIR / "data" / f"{defaults['data']}.yaml")
        assert modality in data.modalities, (modality, defaults)


def test_scheme_decides_monitor_everywhere(compose):
    for scheme, monitor in (("ekman7", "val/uar"), ("valence_arousal", "val/ccc")):
        cfg = compose([f"label_scheme={scheme}", "scheduler=plateau"])
        assert cfg.callbacks.early_stopping.monitor == monitor
        assert cfg.callbacks.model_checkpoint.monitor == monitor
        assert cfg.scheduler.mode == cfg.label_scheme.mode


def test_incompatible_model_message_lists_compatible_models(compose):
    cfg = compose(["modality=text", "model=cnn"])
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert "model=cnn does not support modality=text" in str(error.value)
    assert "lstm" in str(error.value) and "transformer" in str(error.value)


def test_data_without_the_modality_is_rejected(compose):
    cfg = compose(["modality=text", "data=embedded_audio"])
    with pytest.raises(ConfigError, match="data=embedded_audio has no text input"):
        validate(cfg)


def test_unknown_option_and_key_are_hydra_errors_listing_choices(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="Available options"):
        compose(["model=nope"])
    with pytest.raises(ConfigCompositionException, match="nope"):
        compose(["model.net.nope=1"])


def test_monitor_must_be_a_validation_metric_of_the_scheme(compose):
    from emoexp.labels.schemes import CategoricalScheme, DimensionalScheme, LabelSchemeError

    def kwargs(cfg):
        return {k: v for k, v in OmegaConf.to_container(cfg.label_scheme).items() if k != "_target_"}

    with pytest.raises(LabelSchemeError, match="test split is locked"):
        CategoricalScheme(**kwargs(compose(["label_scheme.monitor=test/uar"])))
    with pytest.raises(LabelSchemeError, match="val/ccc"):
        DimensionalScheme(**kwargs(compose(["label_scheme=valence_arousal", "label_scheme.monitor=val/uar"])))
