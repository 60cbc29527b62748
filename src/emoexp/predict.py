"""``python -m emoexp.predict``: predict emotions of new inputs with a tracked run's model.

Examples::

    python -m emoexp.predict run_id=<id> input="I can't believe you did this!"
    python -m emoexp.predict run_id=<id> input=clip.wav
    python -m emoexp.predict run_id=<id> input=faces/            # a folder
    python -m emoexp.predict run_id=<id> input=samples.csv       # columns text / audio / image (+ id)
    python -m emoexp.predict run_id=<id> input=meeting.wav window_s=3 hop_s=1  # a long recording

Audio longer than ``long_s`` is predicted in sliding windows and written as a timeline (per-window
CSV, smoothed segments, plot) next to the output CSV; a folder is predicted ``batch_size`` inputs
at a time. See docs/predict.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoexp import cliargs

if TYPE_CHECKING:  # pandas is imported where it is used: --help stays fast
    import pandas as pd

PROG = "python -m emoexp.predict"

DESCRIPTION = """Predict the emotion (class probabilities) and/or valence/arousal of a text, an audio
file, an image, a folder of them, or a CSV, with the model logged by an MLflow run, using that run's own
preprocessing (vocabulary, normalisation statistics). Prints the predictions and writes them to a CSV;
unreadable inputs are listed and the rest is predicted. Audio longer than long_s is predicted in sliding
windows: a timeline CSV, a smoothed segment list and a plot per recording, in <output>_timelines/."""


class ModelNotFoundError(LookupError):
    """The run does not exist or has no emoexp model; the message says which run to use instead."""


@dataclass
class PredictOptions:
    """Options of ``python -m emoexp.predict``."""

    run_id: str = field(
        metadata={
            "help": "The MLflow run whose model predicts (a holdout or fold run), or models:/<name>/<ver>."
        }
    )
    input: str = field(metadata={"help": "A text, a file (.wav/.png/.txt/.csv), or a folder."})
    output: str = field(
        default="", metadata={"help": "CSV to write (default outputs/predict/<run>-<time>.csv)."}
    )
    batch_size: int = field(
        default=64, metadata={"help": "Inputs (or windows) featurised and predicted at a time."}
    )
    window_s: float = field(
        default=0.0,
        metadata={"help": "Window of a long recording, seconds (0: the model's training clip length)."},
    )
    hop_s: float = field(default=0.0, metadata={"help": "Hop between windows, seconds (0: half the window)."})
    long_s: float = field(
        default=0.0,
        metadata={"help": "Audio longer than this (seconds) is predicted in windows (0: twice the window)."},
    )
    smooth: int = field(
        default=3, metadata={"help": "Windows averaged (centred) before merging segments; 1: no smoothing."}
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over inputs and windows."})
    tracking_uri: str = field(
        default="", metadata={"help": "MLflow store (default $MLFLOW_TRACKING_URI or ./mlflow.db)."}
    )

    def __post_init__(self) -> None:
        if not self.run_id.strip():
            raise ValueError(
                "run_id is empty; copy a run id from the MLflow UI or `python -m emoexp.compare`."
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1.")
        for name in ("window_s", "hop_s", "long_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive (or 0 for the default).")
        if self.smooth < 1:
            raise ValueError(f"smooth={self.smooth} must be at least 1 (1: no smoothing).")


def _source_run_id(client: Any, run_id: str) -> str:
    """``run_id`` itself, or the source run of a registered model version (``models:/<name>/<version>``)."""
    if not run_id.startswith("models:/"):
        return run_id
    from emoexp.tracking.lineage import InitFromError, resolve_source_run

    try:
        return resolve_source_run(client, run_id).info.run_id
    except InitFromError as error:
        raise ModelNotFoundError(str(error).replace("init_from", "run_id")) from error


def model_folder(client: Any, run_id: str) -> Path:
    """Download the run's model and return its emoexp model folder.

    Raises:
        ModelNotFoundError: If the run does not exist, is a cross-validation parent or an ensemble
            (no model of its own), or logged no emoexp model.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from emoexp.comparison.runs import RunSelectionError, get_run
    from emoexp.serving.logged import BUNDLE_KEY, download_logged_model  # not serving.pyfunc: ~0.5 s

    run_id = _source_run_id(client, run_id)
    try:
        run = get_run(client, run_id)
    except RunSelectionError as error:
        raise ModelNotFoundError(str(error)) from error
    if run.children:
        folds = ", ".join(f"{c.tags.get('fold', '?')}={c.run_id}" for c in run.children)
        raise ModelNotFoundError(
            f"run {run_id} is a cross-validation parent and has no model of its own; predict with one of its "
            f"fold runs: {folds}."
        )
    if run.tags.get("ensemble") == "true":
        raise ModelNotFoundError(
            f"run {run_id} is an ensemble: it combines its members' stored predictions and has no model; "
            f"predict with a member ({run.tags.get('ensemble.members', '')})."
        )
    try:
        local = download_logged_model(client, run_id)
    except (MlflowException, OSError) as error:
        reason = (
            "it failed before testing"
            if run.tags.get("error")
            else "it was trained with tracking.log_model=false"
        )
        raise ModelNotFoundError(
            f"run {run_id} ({run.name}) has no logged model ({reason}, or it predates model logging); "
            "retrain it, or pick another run."
        ) from error
    flavor = mlflow.models.Model.load(str(local)).flavors.get("python_function", {})
    bundle = flavor.get("artifacts", {}).get(BUNDLE_KEY, {}).get("path")
    if bundle is None:
        kind = (
            "a scikit-learn pipeline"
            if "sklearn" in mlflow.models.Model.load(str(local)).flavors
            else "not an emoexp model"
        )
        raise ModelNotFoundError(
            f"run {run_id}'s model is {kind}; load it with mlflow.pyfunc.load_model('runs:/{run_id}/model')."
        )
    return local / bundle


def predict(options: PredictOptions) -> dict[str, Any]:
    """Predict the inputs; return the predictions, the failures, the timelines and the written CSV path.

    Raises:
        ModelNotFoundError: See :func:`model_folder`.
        InputError: If the input does not fit the model or nothing could be read.
    """
    from emoexp.comparison.runs import client_for
    from emoexp.serving.inputs import InputError, read_inputs
    from emoexp.serving.predictor import Predictor
    from emoexp.serving.streaming import predict_manifest, windowing_for

    client = client_for(options.tracking_uri or None)
    predictor = Predictor.from_folder(model_folder(client, options.run_id), options.batch_size)
    manifest, skipped = read_inputs(
        options.input, predictor.modality, predictor.input_columns, options.run_id
    )
    output = Path(
        options.output
        or Path("outputs") / "predict" / f"{options.run_id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    )
    windowing = windowing_for(predictor, options.window_s, options.hop_s, options.long_s, options.smooth)
    result = predict_manifest(
        predictor, manifest, windowing, output.with_name(output.stem + "_timelines"), options.progress
    )
    predictions, failures = result.predictions, [*skipped, *result.failures]
    if predictions.empty:
        details = "; ".join(f"{f.id}: {f.reason}" for f in failures[:5])
        raise InputError(f"no input could be predicted ({len(failures)} failed): {details}")
    output.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(output, index=False)
    if failures:
        import pandas as pd

        pd.DataFrame([f.__dict__ for f in failures]).to_csv(
            output.with_name(output.stem + "_failures.csv"), index=False
        )
    return {
        "predictions": predictions,
        "failures": failures,
        "timelines": result.timelines,
        "output": output,
        "predictor": predictor,
    }


def _show(predictions: pd.DataFrame, limit: int = 50) -> str:
    columns = [
        c for c in predictions.columns if c in ("id", "prediction", "confidence", "valence", "arousal")
    ]
    probs = [c for c in predictions.columns if c.startswith("prob_")]
    table = predictions[columns].copy()
    if probs:
        top = predictions[probs].apply(
            lambda row: ", ".join(f"{k.removeprefix('prob_')} {v:.2f}" for k, v in row.nlargest(3).items()),
            axis=1,
        )
        table["top probabilities"] = top
    import pandas as pd

    with pd.option_context("display.max_colwidth", 60, "display.width", 160):
        return table.head(limit).to_string(index=False, float_format=lambda v: f"{v:.3f}")


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` arguments, predict, print the table and any failures."""
    options = cliargs.parse(PredictOptions, argv, PROG, DESCRIPTION)
    result = predict(options)
    print(_show(result["predictions"]))
    if len(result["predictions"]) > 50:
        print(f"... {len(result['predictions']) - 50} more rows")
    print(f"wrote {len(result['predictions'])} predictions to {result['output']}")
    for timeline in result["timelines"]:
        print(
            f"{timeline['id']}: {timeline['windows']} windows, {timeline['segments']} segments -> "
            f"{timeline['timeline']}, {timeline['segment_list'].name}, {timeline['plot'].name}"
        )
    if result["failures"]:
        print(f"{len(result['failures'])} input(s) could not be predicted:", file=sys.stderr)
        for failure in result["failures"]:
            print(f"  {failure.id}: {failure.reason}", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(cliargs.run_cli(main, prog=PROG))
