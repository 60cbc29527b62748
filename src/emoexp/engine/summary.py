"""The closing summary of a run: its id and status, main test figures, artifacts, how to open it."""

from __future__ import annotations

from typing import Any


def artifact_paths(client: Any, run_id: str, path: str = "") -> list[str]:
    """Every artifact file of a run, recursively, as relative paths."""
    found: list[str] = []
    for item in client.list_artifacts(run_id, path or None):
        found += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def summary_text(outcome: Any, recorder: Any) -> str:
    """The terminal block for an ended run (see :func:`emoexp.terminal.closing_summary`)."""
    from emoexp.terminal import closing_summary, stopped_line

    artifacts = sorted(artifact_paths(recorder.client, outcome.run_id))
    if outcome.status != "FINISHED":
        return stopped_line(
            run_id=outcome.run_id, status=outcome.status, error=outcome.error, artifacts=artifacts
        )
    return closing_summary(
        run_id=outcome.run_id,
        status=outcome.status,
        tracking_uri=outcome.tracking_uri,
        experiment_id=outcome.experiment_id,
        metrics=outcome.metrics,
        main_metrics=[m for m in outcome.main_metrics if m in outcome.metrics],
        artifacts=artifacts,
    )
