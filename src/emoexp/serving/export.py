"""Exporting a served model (ONNX or ``torch.export``) and checking that the export reproduces it.

:func:`export_model` loads a model folder exactly as prediction does
(:meth:`emoexp.serving.predictor.Predictor.from_folder`), writes the graph of
:mod:`emoexp.serving.export_graph` with ``export.json`` (inputs, outputs, the scheme's state) and
``preprocess.py`` (the numpy reference, :mod:`emoexp.serving.export_reference`), then runs every
given input both ways, raw input to probabilities:

* PyTorch: the predictor's featurizer, network and scheme (what ``python -m emoexp.predict`` does);
* export: ``preprocess.py`` on the raw input, then the graph in ONNX Runtime (``onnx``) or the
  saved ``ExportedProgram`` (``torch_export``).

The largest absolute difference over every output is the export's ``max_abs_diff``.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emoexp.serving import export_reference
from emoexp.serving.export_graph import (
    MAX_SAMPLES,
    MAX_TOKENS,
    MIN_SAMPLES,
    ExportError,
    GraphInput,
    ServedGraph,
    served_graph,
)
from emoexp.serving.predictor import Predictor

FORMATS = {"onnx": "model.onnx", "torch_export": "model.pt2"}
OPSET = 18


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely it reproduces the PyTorch model."""

    format: str
    folder: Path
    max_abs_diff: float
    checked: int
    tolerance: float

    @property
    def passed(self) -> bool:
        """Whether every output is within the tolerance."""
        return self.max_abs_diff <= self.tolerance


def _dynamic_shapes(inputs: list[GraphInput]) -> dict[str, dict[int, Any]]:
    shapes: dict[str, dict[int, Any]] = {}
    for spec in inputs:
        if spec.dynamic is None:
            shapes[spec.name] = {}
        elif spec.kind == "waveform":
            shapes[spec.name] = {
                spec.dynamic: torch.export.Dim(f"{spec.name}_n", min=MIN_SAMPLES, max=MAX_SAMPLES)
            }
        else:
            shapes[spec.name] = {spec.dynamic: torch.export.Dim(f"{spec.name}_n", min=1, max=MAX_TOKENS)}
    return shapes


def _write_graph(graph: ServedGraph, inputs: list[GraphInput], fmt: str, path: Path) -> None:
    """Trace ``graph`` with the inputs' examples and save it as ``fmt``."""
    kwargs = {spec.name: spec.example for spec in inputs}
    shapes = _dynamic_shapes(inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torch_export":
            # Guards the solver cannot prove over the whole range (STFT frame counts) become checks.
            program = torch.export.export(
                graph,
                (),
                kwargs=kwargs,
                dynamic_shapes=shapes,
                prefer_deferred_runtime_asserts_over_guards=True,
            )
            torch.export.save(program, str(path))
            return
        onnx_program = torch.onnx.export(
            graph,
            (),
            kwargs=kwargs,
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=[spec.name for spec in inputs],
            output_names=graph.names,
            opset_version=OPSET,
            verbose=False,
        )
        _check_dynamic(onnx_program.model.graph.inputs, inputs)
        onnx_program.save(str(path), external_data=False)


def _check_dynamic(values: Any, inputs: list[GraphInput]) -> None:
    """Refuse a graph whose variable-length input the exporter fixed to the example's length."""
    for value, spec in zip(values, inputs, strict=True):
        if spec.dynamic is not None and isinstance(value.shape[spec.dynamic], int):
            raise ExportError(
                f"the ONNX exporter fixed the length of input {spec.name!r} to {value.shape[spec.dynamic]}; "
                "a network op specialises on it (see docs/export.md, 'What the graph holds')."
            )


def _runner(
    fmt: str, path: Path, names: list[str]
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function running the saved graph on numpy inputs (ONNX Runtime, or the loaded program)."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda feed: dict(zip(names, session.run(names, feed), strict=True))
    module = torch.export.load(str(path)).module()

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(**{k: torch.from_numpy(np.asarray(v)) for k, v in feed.items()})
        return {name: tensor.numpy() for name, tensor in zip(names, out, strict=True)}

    return run


def _manifest(predictor: Predictor, inputs: list[GraphInput], names: list[str], fmt: str) -> dict[str, Any]:
    versions = {}
    for package in ("torch", "onnx", "onnxruntime", "onnxscript"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "format": fmt,
        "graph": FORMATS[fmt],
        "run_id": predictor.meta.get("run_id", ""),
        "modality": predictor.modality,
        "inputs": [spec.spec() for spec in inputs],
        "outputs": names,
        "batch_size": 1,
        "scheme": predictor.meta.get("scheme", {}),
        "versions": versions,
    }


def _write_folder(predictor: Predictor, fmt: str, folder: Path) -> tuple[dict[str, Any], list[str]]:
    """Write graph, ``export.json``, ``preprocess.py`` (and a checkpoint tokenizer) into ``folder``."""
    graph, inputs = served_graph(predictor.featurizer, predictor.net, predictor.scheme)
    folder.mkdir(parents=True, exist_ok=True)
    _write_graph(graph, inputs, fmt, folder / FORMATS[fmt])
    for spec in inputs:
        if spec.save is not None:
            spec.save(folder)
    manifest = _manifest(predictor, inputs, graph.names, fmt)
    (folder / export_reference.MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.copyfile(export_reference.__file__, folder / "preprocess.py")
    return manifest, graph.names


def expected_outputs(
    predictor: Predictor, manifest: pd.DataFrame
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The PyTorch path's decoded outputs of the readable rows (as ``predict`` computes them)."""
    features, ok, _ = predictor.featurize(manifest)
    if not len(ok):
        return {}, ok
    return predictor.scheme.decode(predictor.outputs(features)), ok


def check_parity(
    folder: Path, fmt: str, predictor: Predictor, manifest: pd.DataFrame, names: list[str]
) -> tuple[float, int]:
    """Largest absolute difference between the export and the PyTorch path over ``manifest``'s rows.

    Raises:
        ExportError: If no row can be read by the PyTorch path, or the reference cannot read one it read.
    """
    expected, ok = expected_outputs(predictor, manifest)
    if not len(ok):
        raise ExportError("none of the inputs to check could be read by the model; nothing was compared.")
    run = _runner(fmt, folder / FORMATS[fmt], names)
    spec = export_reference.load_manifest(folder)
    worst = 0.0
    for index, position in enumerate(ok):
        row = manifest.iloc[int(position)].to_dict()
        try:
            feed = export_reference.graph_inputs(row, spec, folder)
        except (ValueError, OSError) as error:
            raise ExportError(
                f"preprocess.py cannot read input {row.get('id', position)}: {error}"
            ) from error
        got = run(feed)
        for name in names:
            diff = np.abs(got[name].astype(np.float64) - expected[name][index : index + 1])
            worst = max(worst, float(diff.max()))
    return worst, len(ok)


def export_model(
    model_folder: str | Path, fmt: str, manifest: pd.DataFrame, output: str | Path, tolerance: float = 1e-4
) -> ExportReport:
    """Export a model folder as ``fmt`` into ``output`` and check it on the rows of ``manifest``.

    Args:
        model_folder: A model folder (:mod:`emoexp.serving.bundle`), as the logged model holds it.
        fmt: ``onnx`` or ``torch_export``.
        manifest: Raw inputs to compare on (``id`` and the model's input columns).
        output: Folder to write (an earlier export there is replaced; another non-empty folder is refused).
        tolerance: Largest absolute difference accepted in any output.

    Raises:
        ExportError: If the format is unknown, the model cannot be exported, or nothing could be compared.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format={fmt!r} is unknown; choose one of {sorted(FORMATS)}.")
    output = Path(output)
    if output.exists():
        if any(output.iterdir()) and not (output / export_reference.MANIFEST).is_file():
            raise ExportError(f"output={output} exists and is not an earlier export; choose another folder.")
        shutil.rmtree(output)
    predictor = Predictor.from_folder(model_folder, batch_size=16)
    try:
        _, names = _write_folder(predictor, fmt, output)
    except ExportError:
        raise
    except Exception as error:  # the exporters raise many types; name the model and the step
        raise ExportError(
            f"exporting {type(predictor.net).__name__} as {fmt} failed: {type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        ) from error
    worst, checked = check_parity(output, fmt, predictor, manifest, names)
    return ExportReport(fmt, output, worst, checked, tolerance)
