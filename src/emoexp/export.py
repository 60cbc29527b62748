"""``python -m emoexp.export``: export a tracked run's model (ONNX or torch.export) and prove it matches.

Examples::

    python -m emoexp.export run_id=<id>                       # ONNX, checked with ONNX Runtime
    python -m emoexp.export run_id=<id> format=torch_export   # a torch.export ExportedProgram (.pt2)

See docs/export.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoexp import cliargs

if TYPE_CHECKING:  # pandas is imported where it is used: --help stays fast
    import pandas as pd

PROG = "python -m emoexp.export"

# The keys of emoexp.serving.export.FORMATS, spelled here so that --help does not import torch.
FORMATS = ("onnx", "torch_export")

DESCRIPTION = """Export the model logged by an MLflow run (a deep model: lstm, cnn, transformer, timm,
minilm, wav2vec2, early/attention fusion) as an ONNX graph or a torch.export program, with its
preprocessing: the featurizer's tensor math and training-split statistics inside the graph, and a numpy
reference (preprocess.py) for what is not tensor math (decoding files, tokenization). The export is run
on the run's own test inputs from raw input to probabilities and compared with the PyTorch model; the
largest absolute difference is logged as export/<format>/max_abs_diff, and the files are logged under
export/<format>/ when it is within the tolerance (else the command fails and logs no files)."""


@dataclass
class ExportOptions:
    """Options of ``python -m emoexp.export``."""

    run_id: str = field(
        metadata={"help": "The MLflow run whose model to export (a holdout run or a fold run)."}
    )
    format: str = field(default="onnx", metadata={"help": f"One of {list(FORMATS)}."})
    output: str = field(
        default="",
        metadata={
            "help": "Folder to write (default outputs/export/<run>/<format>; an old export is replaced)."
        },
    )
    max_inputs: int = field(default=32, metadata={"help": "Test inputs the export is checked on."})
    tolerance: float = field(
        default=1e-4, metadata={"help": "Largest absolute difference accepted in any output."}
    )
    tracking_uri: str = field(
        default="", metadata={"help": "MLflow store (default $MLFLOW_TRACKING_URI or ./mlflow.db)."}
    )

    def __post_init__(self) -> None:
        if not self.run_id.strip():
            raise ValueError(
                "run_id is empty; copy a run id from the MLflow UI or `python -m emoexp.compare`."
            )
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r} is unknown; choose one of {list(FORMATS)}.")
        if self.max_inputs < 1:
            raise ValueError(f"max_inputs={self.max_inputs} must be at least 1.")
        if not self.tolerance > 0:
            raise ValueError(f"tolerance={self.tolerance} must be positive.")


def refuse_sklearn(client: Any, run_id: str) -> None:
    """Refuse a run whose model is a scikit-learn pipeline, naming the alternatives.

    Raises:
        emoexp.comparison.runs.RunSelectionError: If the run does not exist.
        emoexp.serving.export_graph.ExportError: If the run's model is a scikit-learn pipeline.
    """
    from emoexp.comparison.runs import get_run
    from emoexp.serving.export_graph import ExportError

    get_run(client, run_id)
    params = client.get_run(run_id).data.params
    if params.get("model.kind") == "sklearn":
        raise ExportError(
            f"run {run_id} is a scikit-learn model ({params.get('model.name', '?')}): emoexp exports deep "
            f"models only. Serve it with mlflow.pyfunc.load_model('runs:/{run_id}/model') or "
            "`python -m emoexp.predict`, or convert the pipeline yourself (e.g. with skl2onnx)."
        )


def run_config(client: Any, run_id: str) -> Any:
    """The run's resolved config (its ``config.yaml``)."""
    from omegaconf import OmegaConf

    from emoexp.comparison.runs import load_config

    return OmegaConf.create(load_config(client, run_id))


def held_out_inputs(client: Any, run_id: str, cfg: Any, columns: list[str], limit: int) -> pd.DataFrame:
    """The first ``limit`` test samples of the run (ids from its predictions.csv), as a prediction manifest.

    Raises:
        emoexp.serving.export_graph.ExportError: If the run has no test predictions.
    """
    from emoexp.comparison.runs import load_predictions
    from emoexp.config import instantiate
    from emoexp.data.splits import TEST
    from emoexp.engine.samples import prepare_samples
    from emoexp.serving.export_graph import ExportError
    from emoexp.serving.predictor import manifest_from_frame

    predictions = load_predictions(client, run_id)
    ids = predictions.loc[predictions["split"] == TEST, "id"].astype(str).head(limit).tolist()
    if not ids:
        raise ExportError(
            f"run {run_id} has no test predictions to check the export on "
            "(trained with evaluate_test=false?)."
        )
    samples = prepare_samples(cfg, instantiate(cfg.label_scheme)).astype({"id": str}).set_index("id")
    return manifest_from_frame(samples.loc[ids, columns].reset_index(), columns)


def export(options: ExportOptions) -> dict[str, Any]:
    """Export, check and record; return the report (folder, max_abs_diff, inputs checked).

    Raises:
        emoexp.predict.ModelNotFoundError: See :func:`emoexp.predict.model_folder`.
        emoexp.serving.export_graph.ExportError: If the model cannot be exported, or its export
            differs from the PyTorch model by more than the tolerance.
    """
    import json

    from emoexp.comparison.runs import client_for
    from emoexp.engine.recorder import Recorder
    from emoexp.predict import model_folder
    from emoexp.serving.export import export_model
    from emoexp.serving.export_graph import ExportError

    client = client_for(options.tracking_uri or None)
    refuse_sklearn(client, options.run_id)
    folder = model_folder(client, options.run_id)
    cfg = run_config(client, options.run_id)
    columns = json.loads((folder / "meta.json").read_text())["input_columns"]
    inputs = held_out_inputs(client, options.run_id, cfg, columns, options.max_inputs)
    output = Path(options.output or Path("outputs") / "export" / options.run_id[:8] / options.format)
    report = export_model(folder, options.format, inputs, output, options.tolerance)
    recorder = Recorder.connect(client.tracking_uri)
    prefix = f"export/{options.format}"
    recorder.log_metrics(
        options.run_id,
        {f"{prefix}/max_abs_diff": report.max_abs_diff, f"{prefix}/inputs_checked": report.checked},
    )
    recorder.flush()
    if not report.passed:
        raise ExportError(
            f"the {options.format} export of run {options.run_id} differs from the PyTorch model by up to "
            f"{report.max_abs_diff:.3g} on its test inputs (tolerance {options.tolerance:g}); its files were "
            f"not logged (they are in {output} for inspection)."
        )
    recorder.log_artifacts(options.run_id, output, prefix)
    return {"report": report, "output": output}


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` arguments, export, print where the files are and how close they are."""
    options = cliargs.parse(ExportOptions, argv, PROG, DESCRIPTION)
    result = export(options)
    report = result["report"]
    print(
        f"exported run {options.run_id} as {options.format} to {result['output']} "
        f"(logged under export/{options.format}/); max |difference| over {report.checked} test inputs: "
        f"{report.max_abs_diff:.2e} (tolerance {options.tolerance:g})"
    )
    return result


if __name__ == "__main__":
    sys.exit(cliargs.run_cli(main, prog=PROG))
