"""The study in MLflow: one parent run per study, one child run per trial, plots at the end.

The parent run's id is kept in the study's user attributes, so every worker, a resumed study and
the final step all log to the same parent; a parent that cannot be read after the recorder's
retries (deleted, another store) is an error, never silently replaced by a new one. Trials are
child runs created by ``train(cfg)`` (``tracking.parent_run_id``), tagged
``optuna.study``/``optuna.trial``; after each trial the tuner adds ``optuna.state`` (COMPLETE,
PRUNED or FAIL).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emoexp.config import ConfigError
from emoexp.engine.recorder import ERROR_TAG, RESUMED_TAG

log = logging.getLogger(__name__)

PARENT_ATTR = "emoexp:mlflow_parent_run_id"
STUDY_TAG = "optuna.study"
TRIAL_TAG = "optuna.trial"
STATE_TAG = "optuna.state"
ROLE_TAG = "optuna.role"


def open_parent_run(
    recorder: Any, experiment_id: str, study: Any, params: dict[str, str], tags: dict[str, str]
) -> str:
    """Return the study's parent run (created on first use, set RUNNING again when resumed).

    A finished parent run that a resumed study opens again counts the resume (tag ``resumed``),
    as a resumed training run does.
    """
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        run = parent_run(recorder, study.study_name, run_id)
        if run.info.status != "RUNNING":
            recorder.reopen(run_id, int(run.data.tags.get(RESUMED_TAG, 0)) + 1)
        recorder.set_tags(run_id, tags)
        return run_id
    run_id = recorder.create_run(
        experiment_id, study.study_name, {**tags, STUDY_TAG: study.study_name, ROLE_TAG: "study"}
    )
    recorder.log_params(run_id, {k: v[:6000] for k, v in params.items()})
    study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def parent_run(recorder: Any, study_name: str, run_id: str) -> Any:
    """The study's recorded parent run, read with the recorder's retries; never replaced silently.

    Raises:
        ConfigError: The run is missing or deleted in this tracking store (another
            ``tracking.uri``, a reset or cleaned store), or the store refuses to read it.
    """
    where = f"study {study_name!r}'s MLflow parent run {run_id} in {recorder.tracking_uri}"
    fix = (
        "Use the tracking.uri the study was set up with, restore the run (MlflowClient().restore_run), "
        "or give this search another hydra.sweeper.study_name."
    )
    try:
        run = recorder.get_run(run_id)
    except Exception as error:  # after the recorder's retries: missing, or a refusal
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"{where} cannot be read ({type(error).__name__}: {reason}). {fix}") from error
    if run.info.lifecycle_stage == "deleted":
        raise ConfigError(f"{where} was deleted. {fix}")
    return run


def find_trial_run(client: Any, experiment_id: str, parent_id: str, number: int) -> str | None:
    """The child run that ``train(cfg)`` created for trial ``number`` (the latest, if retried)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{number}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def find_final_run(client: Any, parent_id: str) -> str | None:
    """The latest final (test) run under the study's parent run."""
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{ROLE_TAG}` = 'final'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def record_trial(
    recorder: Any, experiment_id: str, parent_id: str, frozen: Any, run_name: str, reason: str = ""
) -> str:
    """Tag trial ``frozen``'s child run with its final Optuna state (creating one if training never started).

    A pruned trial's run is FINISHED (it stopped on purpose, its metrics are valid up to there);
    a failed trial's run is FAILED with the error as a tag.
    """
    state = frozen.state.name
    run_id = find_trial_run(recorder.client, experiment_id, parent_id, frozen.number)
    if run_id is None:  # the trial failed before train() created its run (e.g. a bad combination)
        run_id = recorder.create_run(
            experiment_id,
            run_name,
            {"mlflow.parentRunId": parent_id, TRIAL_TAG: str(frozen.number), ROLE_TAG: "trial"},
        )
    tags = {STATE_TAG: state} | {f"optuna.param.{key}": str(value) for key, value in frozen.params.items()}
    if state == "PRUNED":
        tags["optuna.pruned_at_step"] = str(max(frozen.intermediate_values, default=-1))
    elif state == "FAIL" and reason:
        tags[ERROR_TAG] = reason[:5000]
    recorder.set_tags(run_id, tags)
    if state == "PRUNED":
        # train() recorded the TrialPruned exception as an error. The recorder cannot remove a
        # tag yet: the one MLflow write outside the engine (tests/architecture/test_single_writer.py).
        with contextlib.suppress(Exception):
            recorder.delete_tag(run_id, ERROR_TAG)
        recorder.end(run_id, "FINISHED")
    elif state == "FAIL":
        recorder.end(run_id, "FAILED")
    return run_id


def move_trial_run(recorder: Any, experiment_id: str, parent_id: str, old: int, new: int) -> str | None:
    """Make the run trained for trial ``old`` trial ``new``'s: a late worker adopted ``old``'s retry.

    The run is tagged ``optuna.trial=<new>`` and ``optuna.retry_of=<old>``; the error tag and FAILED
    status that the worker which declared ``old`` stale may have written are undone.
    """
    run_id = find_trial_run(recorder.client, experiment_id, parent_id, old)
    if run_id is None:
        return None
    recorder.set_tags(run_id, {TRIAL_TAG: str(new), "optuna.retry_of": str(old)})
    with contextlib.suppress(Exception):  # no error tag: nothing to undo
        recorder.delete_tag(run_id, ERROR_TAG)
    recorder.end(run_id, "FINISHED")
    return run_id


def log_progress(recorder: Any, parent_id: str, study: Any, frozen: Any) -> None:
    """Per-trial metrics on the parent run (step = trial number) to watch a study in the MLflow UI."""
    metrics = {"trials/finished": float(len(_finished(study)))}
    if frozen.state.name == "COMPLETE" and frozen.values and len(frozen.values) == 1:
        metrics["trials/value"] = float(frozen.values[0])
        with contextlib.suppress(ValueError):  # no completed trial yet
            metrics["trials/best_value"] = float(study.best_value)
    recorder.log_metrics(parent_id, metrics, step=frozen.number)
    recorder.flush()  # written now, as each trial ends: the UI shows the study's progress


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))


def _log_figure(recorder: Any, run_id: str, figure: Any, name: str) -> None:
    """Log a plot as ``plots/<name>`` (110 dpi), then close it."""
    import matplotlib.pyplot as plt

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            figure.savefig(path, dpi=110, bbox_inches="tight")
            recorder.log_artifact(run_id, path, "plots")
    finally:
        plt.close(figure)


def _plots(study: Any, metric_names: Sequence[str]) -> dict[str, Any]:
    """Optuna's matplotlib plots of the study; a plot that cannot be drawn yet is skipped with a note."""
    import optuna.visualization.matplotlib as vis

    multi = len(metric_names) > 1
    target: dict[str, Any] = {"target_name": metric_names[0]}
    if multi:
        target["target"] = lambda t: t.values[0]
    makers = {
        "optimization_history.png": lambda: vis.plot_optimization_history(study, **target),
        "param_importances.png": lambda: vis.plot_param_importances(study, **target),
        "parallel_coordinate.png": lambda: vis.plot_parallel_coordinate(study, **target),
    }
    if multi:
        makers["pareto_front.png"] = lambda: vis.plot_pareto_front(study, target_names=list(metric_names))
    else:
        makers["intermediate_values.png"] = lambda: vis.plot_intermediate_values(study)
    figures = {}
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = make()
        except Exception as error:  # e.g. importances need two finished trials that vary
            log.info("plot %s skipped: %s", name, error)
            continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figures[name] = first.figure
    return figures


def summarise(
    recorder: Any, parent_id: str, study: Any, metric_names: Sequence[str], plots: bool = True
) -> dict[str, Any]:
    """Best value(s) and parameters, trial counts, trial table, Pareto front and plots on the parent run.

    Returns:
        ``{"best": [{"number", "values", "params"}, ...], "counts": {...}, "epochs": int}``.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    epochs = sum(
        int(t.user_attrs.get("epochs", len(t.intermediate_values))) for t in trials if t.state.is_finished()
    )
    metrics = {f"trials/{k}": float(v) for k, v in counts.items()} | {"trials/epochs": float(epochs)}
    multi = len(metric_names) > 1
    try:
        best = study.best_trials if multi else [study.best_trial]
    except ValueError:  # no completed trial yet
        best = []
    tags = {"best.trials": ",".join(str(t.number) for t in best)[:5000]}
    if best and not multi:
        metrics |= {f"best/{metric_names[0]}": float(best[0].value), "best/trial": float(best[0].number)}
        tags |= {f"best.{key}": str(value) for key, value in best[0].params.items()}
    recorder.log_metrics(parent_id, metrics)
    recorder.flush()
    recorder.set_tags(parent_id, tags)
    front = [{"number": t.number, "values": list(t.values), "params": t.params} for t in best]
    recorder.log_json(parent_id, front, "best_trials.json")
    frame = study.trials_dataframe(attrs=("number", "state", "values", "params", "user_attrs", "duration"))
    recorder.log_frame(parent_id, frame, "trials.csv")
    if multi and best:
        import pandas as pd

        pareto = pd.DataFrame(
            [{"number": t.number, **dict(zip(metric_names, t.values, strict=True)), **t.params} for t in best]
        )
        recorder.log_frame(parent_id, pareto, "pareto_front.csv")
    if plots:
        for name, figure in _plots(study, metric_names).items():
            _log_figure(recorder, parent_id, figure, name)
    return {"best": front, "counts": counts, "epochs": epochs}
