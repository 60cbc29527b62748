"""The modality registry answers every modality question, and everything else agrees with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoexp import modalities
from emoexp.config import CONF_DIR, ConfigError, group_options
from emoexp.data import schema
from emoexp.serving import inputs as serving_inputs
from emoexp.serving.bundle import input_columns as bundle_input_columns


def _manifest() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            schema.ID: ["a", "b", "c"],
            schema.CORPUS: "t",
            schema.SPEAKER: "p",
            schema.TEXT: ["hello", None, "bye"],
            schema.AUDIO: ["a.wav", "b.wav", None],
        }
    )
    return schema.validate_manifest(frame, "t")


def test_registry_names_and_columns():
    assert modalities.MODALITIES == ("text", "audio", "visual", "multimodal")
    assert modalities.UNIMODAL == ("text", "audio", "visual")
    assert modalities.INPUT_COLUMNS == {"text": "text", "audio": "audio", "visual": "image"}
    assert modalities.input_columns("visual") == ("image",)
    assert modalities.input_columns("multimodal") == ("audio", "image", "text")
    assert [modalities.get(m).is_unimodal for m in modalities.MODALITIES] == [True, True, True, False]
    with pytest.raises(KeyError, match=r"modality='smell' is unknown; choose one of \['text'"):
        modalities.get("smell")


def test_schema_and_config_options_derive_from_the_registry():
    assert schema.INPUT_COLUMNS == modalities.INPUT_COLUMNS and schema.MODALITIES == modalities.MODALITIES
    assert (schema.TEXT, schema.AUDIO, schema.IMAGE) == ("text", "audio", "image")
    # Every registered modality is a `modality=` option and vice versa.
    assert set(group_options("modality")) == set(modalities.MODALITIES)


def test_default_choices_come_from_the_modality_configs():
    assert modalities.default_choices("audio", CONF_DIR) == {"data": "embedded_audio", "model": "lstm"}
    assert modalities.default_choices("multimodal", CONF_DIR) == {
        "data": "embedded_multimodal",
        "model": "early_fusion",
    }


def test_samples_with_input_keeps_rows_that_have_the_modality():
    manifest = _manifest()
    assert modalities.usable_rows(manifest, "text").tolist() == [True, False, True]
    assert modalities.usable_rows(manifest, "multimodal").tolist() == [True, True, True]
    text = schema.samples_with_input(manifest, "text")
    assert text[schema.ID].tolist() == ["a", "c"] and text.index.tolist() == [0, 1]
    assert schema.samples_with_input(manifest, "audio")[schema.ID].tolist() == ["a", "b"]
    assert schema.samples_with_input(manifest, "multimodal")[schema.ID].tolist() == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="data=toy has no sample with a visual input"):
        schema.samples_with_input(manifest, "visual", source="toy")


def test_present_modalities_need_every_sample_filled():
    manifest = _manifest()
    assert modalities.present_modalities(manifest) == []
    assert modalities.present_modalities(manifest.iloc[[0]]) == ["text", "audio"]
    assert schema.available_modalities(manifest.iloc[[0]]) == ["text", "audio"]
    assert modalities.present_modalities(manifest.assign(image=np.nan)) == []


def test_serving_reads_inputs_by_the_registry():
    assert modalities.modality_of_file(Path("clip.WAV")) == "audio"
    assert modalities.modality_of_file(Path("face.jpeg")) == "visual"
    assert modalities.modality_of_file(Path("notes.txt")) == "text"
    assert modalities.modality_of_file(Path("data.csv")) is None
    assert serving_inputs.kind_of(Path("data.csv")) == "table"
    assert serving_inputs.kind_of(Path("face.png")) == "visual"
    for modality in modalities.MODALITIES:
        assert bundle_input_columns(modality) == list(modalities.input_columns(modality))
