"""Export tiny real runs of every deep model family and check them, raw input to probabilities.

Each test trains a debug run (1 epoch, few samples, small networks) into the test's SQLite store,
then runs ``python -m emoexp.export`` on it: the export is compared with the PyTorch path on the
run's own test inputs (ONNX Runtime for ``onnx``), the difference is a metric on the run, and the
files are artifacts under ``export/<format>/``. The exported folder is then used on its own, as a
consumer would: ``preprocess.py`` + ONNX Runtime on a raw file or text.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from emoexp import cliargs
from emoexp import export as export_cli
from emoexp.train import train

# Small networks: the export, not the model, is under test.
FAMILIES = {
    "ngram_mlp": ["modality=text", "model.net.hidden_size=16"],  # the text default
    "lstm-text": ["modality=text", "model=lstm", "model.net.hidden_size=16", "model.net.num_layers=1"],
    # Clips longer than max_seconds (cropped inside the graph) here, shorter ones (padded) for the CNN.
    "lstm-audio": [
        "modality=audio",
        "model=lstm",
        "model.net.hidden_size=16",
        "model.net.num_layers=1",
        "+model.features.audio.max_seconds=0.5",
    ],
    "cnn-audio": ["modality=audio", "model=cnn", "model.net.channels=[8,16]"],
    # Classes and valence/arousal: the graph has two outputs, ``probs`` and ``dims``.
    "cnn-visual": ["modality=visual", "model=cnn", "model.net.channels=[8,16]", "label_scheme=both"],
    "timm-visual": ["modality=visual", "model=timm", "model.net.name=resnet10t"],
    "transformer": [
        "modality=text",
        "model=transformer",
        "model.net.hidden_size=32",
        "model.net.num_layers=1",
        "model.net.num_heads=2",
        "model.net.intermediate_size=64",
    ],
    "minilm": ["modality=text", "model=minilm", "transfer=frozen", "model.features.text.max_length=24"],
    "wav2vec2": [
        "modality=audio",
        "model=wav2vec2",
        "+model.net.hidden_size=32",
        "+model.net.num_layers=1",
        "+model.net.num_heads=2",
        "+model.net.intermediate_size=32",
        "+model.net.conv_channels=16",
        "model.features.audio.max_seconds=1.0",
    ],
    "early_fusion": ["modality=multimodal", "model=early_fusion", "model.net.fusion_dim=16"],
    "attention_fusion": ["modality=multimodal", "model=attention_fusion"],
}


# One family per input path of the graph (MFCC, log-mel, waveform, checkpoint tokenizer, and
# images + word vocabulary through a fusion model) is also exported with torch.export.
TORCH_EXPORT = {"lstm-audio", "cnn-audio", "wav2vec2", "minilm", "attention_fusion"}


def _trained(compose, tracking_uri: str, overrides: list[str]) -> str:
    cfg = compose(["trainer.max_epochs=1", *overrides])
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    return run.info.run_id


def _export(run_id: str, tracking_uri: str, tmp_path: Path, fmt: str = "onnx", *extra: str) -> dict:
    argv = [f"run_id={run_id}", f"format={fmt}", f"tracking_uri={tracking_uri}", "max_inputs=4"]
    return export_cli.main([*argv, f"output={tmp_path / 'export' / fmt}", *extra])


def _preprocess_module(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_preprocess", folder / "preprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_matches_pytorch_from_raw_input(family, compose, tracking_uri, tmp_path):
    run_id = _trained(compose, tracking_uri, FAMILIES[family])
    result = _export(run_id, tracking_uri, tmp_path)
    report = result["report"]
    assert report.passed and report.checked >= 1 and report.max_abs_diff <= 1e-4

    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.data.metrics["export/onnx/max_abs_diff"] == pytest.approx(report.max_abs_diff)
    logged = {a.path for a in client.list_artifacts(run_id, "export/onnx")}
    assert {"export/onnx/model.onnx", "export/onnx/export.json", "export/onnx/preprocess.py"} <= logged

    # The exported folder on its own: preprocess.py + ONNX Runtime on one raw test input.
    folder = result["output"]
    manifest = json.loads((folder / "export.json").read_text())
    cfg = export_cli.run_config(client, run_id)
    columns = sorted({spec["column"] for spec in manifest["inputs"]})
    row = export_cli.held_out_inputs(client, run_id, cfg, columns, 1).iloc[0].to_dict()
    shipped = [spec["tokenizer_module"] for spec in manifest["inputs"] if "tokenizer_module" in spec]
    assert all((folder / name).is_file() for name in shipped)
    outputs = _preprocess_module(folder).predict(folder, row)
    assert set(outputs) == set(manifest["outputs"])
    if "probs" in outputs and manifest["scheme"].get("classes"):
        assert outputs["probs"].sum() == pytest.approx(1.0, abs=1e-5)
    if family == "cnn-visual":
        assert manifest["outputs"] == ["dims", "probs"] and manifest["scheme"]["dims"] == [
            "valence",
            "arousal",
        ]

    if family in TORCH_EXPORT:
        # The same graph as a torch.export program, checked the same way.
        program = _export(run_id, tracking_uri, tmp_path, "torch_export")["report"]
        assert program.passed and program.max_abs_diff <= 1e-4
        assert "export/torch_export/max_abs_diff" in client.get_run(run_id).data.metrics


def test_failures_are_clear_and_log_no_files(compose, tracking_uri, tmp_path, capsys):
    run_id = _trained(compose, tracking_uri, FAMILIES["cnn-visual"])
    base = [f"run_id={run_id}", f"tracking_uri={tracking_uri}", f"output={tmp_path / 'strict'}"]
    assert cliargs.run_cli(export_cli.main, [*base, "tolerance=1e-30"], prog=export_cli.PROG) == 2
    err = capsys.readouterr().err
    assert "differs from the PyTorch model by up to" in err and "tolerance 1e-30" in err
    client = mlflow.MlflowClient(tracking_uri)
    assert "export/onnx/max_abs_diff" in client.get_run(run_id).data.metrics
    assert not client.list_artifacts(run_id, "export")
    assert cliargs.run_cli(export_cli.main, [*base, "format=tflite"], prog=export_cli.PROG) == 2
    assert "choose one of ['onnx', 'torch_export']" in capsys.readouterr().err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    argv = [f"run_id={run_id}", f"tracking_uri={tracking_uri}", f"output={precious}"]
    assert cliargs.run_cli(export_cli.main, argv, prog=export_cli.PROG) == 2
    assert "is not an earlier export" in capsys.readouterr().err and (precious / "notes.txt").exists()


@pytest.mark.parametrize("name", ["ekman7", "valence_arousal", "both", "multilabel"])
def test_scheme_activation_is_its_decoding(name, compose):
    import torch

    from emoexp.config import instantiate

    scheme = instantiate(compose([f"label_scheme={name}"]).label_scheme)
    if name == "multilabel":
        scheme.restore_state({"labels": ["anger", "joy", "sadness"]})
    outputs = torch.randn(5, scheme.num_outputs)
    decoded = scheme.decode(outputs)
    activated = scheme.activate(outputs)
    assert set(activated) == set(decoded)
    for key, value in activated.items():
        np.testing.assert_allclose(value.numpy(), decoded[key], rtol=1e-6)


def test_the_command_lists_the_formats_the_exporter_writes():
    from emoexp.serving.export import FORMATS

    assert tuple(FORMATS) == export_cli.FORMATS


@pytest.mark.parametrize(("bidirectional", "layers"), [(True, 2), (False, 1)])
def test_lstm_within_lengths_computes_what_packing_does(bidirectional, layers):
    import torch

    from emoexp.models.sequence import LSTMClassifier, lstm_within_lengths

    torch.manual_seed(0)
    net = LSTMClassifier(
        4, input_size=5, hidden_size=6, num_layers=layers, bidirectional=bidirectional
    ).eval()
    x, lengths = torch.randn(3, 9, 5), torch.tensor([9, 4, 1])
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        expected = torch.nn.utils.rnn.pad_packed_sequence(net.lstm(packed)[0], batch_first=True)[0]
        torch.testing.assert_close(lstm_within_lengths(net.lstm, x, lengths), expected)


def test_sklearn_runs_are_refused_with_the_alternative(compose, tracking_uri, tmp_path, capsys):
    run_id = _trained(compose, tracking_uri, ["modality=visual", "model=decision_tree"])
    argv = [f"run_id={run_id}", f"tracking_uri={tracking_uri}", f"output={tmp_path / 'x'}"]
    assert cliargs.run_cli(export_cli.main, argv, prog=export_cli.PROG) == 2
    err = capsys.readouterr().err
    assert "is a scikit-learn model" in err and f"mlflow.pyfunc.load_model('runs:/{run_id}/model')" in err
    assert not (tmp_path / "x").exists()
    missing = ["run_id=0123456789abcdef", *argv[1:]]
    assert cliargs.run_cli(export_cli.main, missing, prog=export_cli.PROG) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        {},  # the default: word 1-2-grams + char_wb 2-5-grams, every word kept
        {"analyzer": "word+char", "char_ngram_range": (1, 3), "stop_words": "english"},
        {"analyzer": "char_wb", "sublinear_tf": False, "char_ngram_range": (3, 6)},
    ],
)
def test_preprocess_reference_builds_the_tfidf_rows_of_the_featurizer(options, tmp_path):
    from emoexp.features import tokenize
    from emoexp.features.ngrams import NgramFeatures
    from emoexp.serving import export_graph, export_reference

    train_texts = [
        "Soooo happy today 😂😂 #BestDayEver",
        "I'm not happy about this :( (T_T)",
        "今日は最高！(^_^) yay",
        "ugh, gross... a hair in the soup 🤢",
        "I can't believe it!!! :O",
    ]
    featurizer = NgramFeatures(**options)
    featurizer.fit(pd.DataFrame({"id": [str(i) for i in range(5)], "text": train_texts}), None)
    module, [graph_spec] = export_graph.graph_input(featurizer)
    shutil.copyfile(tokenize.__file__, tmp_path / graph_spec.spec()["tokenizer_module"])
    texts = [*train_texts, "happpyyy   a b ab 😂👍🏽 最高", "not happy at all (╯°□°)╯", "?"]
    for text in texts:
        expected = featurizer.extract(pd.DataFrame({"id": ["x"], "text": [text]}))
        dense = torch.zeros(1, featurizer.num_ngrams + 1)
        dense.scatter_add_(1, expected["ngram_ids"], expected["ngram_weights"])
        row = export_reference.ngram_tfidf(text, graph_spec.spec(), tmp_path)
        np.testing.assert_allclose(row, dense[:, :-1].numpy(), atol=1e-6, err_msg=text)
        assert set(module(ngram_tfidf=torch.from_numpy(row))) == {"ngram_tfidf"}


def test_preprocess_reference_tokenizes_like_the_featurizer(tmp_path):
    from emoexp.features.text import VocabTokenizer
    from emoexp.serving import export_reference
    from emoexp.serving.export_graph import graph_input

    texts = [
        "I can't  believe it!",
        "Ｆｕｌｌ width, unknown words",
        "soooo tired :( 😭😭😭 #mondays",
        "最高！😂",
    ]
    tokenizer = VocabTokenizer(max_length=6)
    tokenizer.fit(
        pd.DataFrame({"id": ["a", "b"], "text": ["i can't believe it 😭", "full width words"]}), None
    )
    [graph_spec] = graph_input(tokenizer)[1]
    if graph_spec.save is not None:
        graph_spec.save(tmp_path)  # the tokenizer module, as the export folder holds it
    for text in texts:
        expected = tokenizer.extract(pd.DataFrame({"id": ["x"], "text": [text]}))
        ids = export_reference.vocab_tokens(text, graph_spec.spec(), tmp_path)
        np.testing.assert_array_equal(ids[0], expected["input_ids"][0, : int(expected["lengths"][0])].numpy())
