"""notebooks/compare_runs.ipynb executes against a real MLflow store (so it cannot rot)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare_runs.ipynb"


def test_compare_notebook_reproduces_the_comparison(log_run, tracking_uri, tmp_path, monkeypatch):
    for seed in range(3):
        log_run(model="strong", seed=seed, skill=0.85)
        log_run(model="weak", seed=seed, skill=0.35)
        log_run(model="middle", seed=seed, skill=0.6)
    log_run(model="other_scheme", seed=0, label_scheme="ekman6")
    monkeypatch.setenv("EMOEXP_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("EMOEXP_COMPARE_EXPERIMENT", "emoexp-audio")
    monkeypatch.setenv("EMOEXP_COMPARE_FILTER", "label_scheme=ekman7")
    monkeypatch.setenv("EMOEXP_COMPARE_GROUP_BY", "model")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "best system: strong" in text
    assert "Friedman chi2=" in text and "pairs differ significantly" in text
    assert "other_scheme" not in text  # filtered out by label_scheme=ekman7
