"""Render a :class:`~emoexp.comparison.analysis.Comparison` as Markdown and HTML, and log it.

The report is a list of blocks (headings, text, tables, figures) rendered twice: Markdown
with the figures as PNG files beside it, and one self-contained HTML file (figures inlined)
that the MLflow UI's artifact viewer shows as it is.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.comparison import plots
from emoexp.comparison.analysis import Comparison
from emoexp.comparison.robustness import add_robustness
from emoexp.comparison.scoring import bare_name

KIND = "comparison"


@dataclass
class Report:
    """The blocks of a report, its figures (PNG bytes) and its named tables.

    Blocks are ``("h", level, text)``, ``("p", text)``, ``("table", frame, bold)`` and
    ``("img", figure_name)``; ``bold`` is a boolean frame of the table's shape marking cells to
    emphasise.
    """

    title: str
    blocks: list[tuple] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def heading(self, text: str, level: int = 2) -> None:  # noqa: D102
        self.blocks.append(("h", level, text))

    def text(self, text: str) -> None:  # noqa: D102
        self.blocks.append(("p", text))

    def table(self, frame: pd.DataFrame, name: str | None = None, bold: pd.DataFrame | None = None) -> None:
        """Add a table (also saved as ``tables/<name>.csv`` when named)."""
        self.blocks.append(("table", frame, bold))
        if name:
            self.tables[name] = frame

    def figure(self, figure: Any, name: str) -> None:
        """Add a figure, rendered to PNG once."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        self.figures[name] = buffer.getvalue()
        self.blocks.append(("img", name))


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return "–"
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return str(value)


def to_markdown(report: Report, assets: str) -> str:
    """The report as Markdown; figures are linked as ``<assets>/<name>.png``."""
    lines = [f"# {report.title}", ""]
    for block in report.blocks:
        if block[0] == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "img":
            lines += [f"![{block[1]}]({assets}/{block[1]}.png)", ""]
        else:
            frame, bold = block[1], block[2]
            header = [str(c) for c in frame.columns]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for i in range(len(frame)):
                cells = []
                for j, column in enumerate(frame.columns):
                    text = _cell(frame.iloc[i, j]).replace("|", "\\|")
                    strong = bold is not None and column in bold.columns and bool(bold.iloc[i][column])
                    cells.append(f"**{text}**" if strong else text)
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%} strong{color:#b00}
"""


def to_html(report: Report) -> str:
    """The report as one self-contained HTML page (figures inlined as base64 PNG)."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(report.title)}</h1>",
    ]
    for block in report.blocks:
        if block[0] == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            text = html.escape(block[1])
            while "**" in text:
                text = text.replace("**", "<strong>", 1).replace("**", "</strong>", 1)
            parts.append(f"<p>{text.replace('`', '')}</p>")
        elif block[0] == "img":
            data = base64.b64encode(report.figures[block[1]]).decode()
            parts.append(f"<p><img alt='{block[1]}' src='data:image/png;base64,{data}'></p>")
        else:
            frame, bold = block[1], block[2]
            rows = [
                "<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns) + "</tr>"
            ]
            for i in range(len(frame)):
                cells = []
                for j, column in enumerate(frame.columns):
                    text = html.escape(_cell(frame.iloc[i, j]))
                    strong = bold is not None and column in bold.columns and bool(bold.iloc[i][column])
                    cells.append(f"<td><strong>{text}</strong></td>" if strong else f"<td>{text}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("".join(rows) + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(comparison: Comparison, title: str, selection: dict[str, Any]) -> Report:
    """Lay out the comparison: selection, leaderboard, tests, ranks, per-class, per-group, calibration."""
    report = Report(title)
    _add_overview(report, comparison, selection)
    _add_pairwise(report, comparison)
    if comparison.ranks is not None:
        _add_ranks(report, comparison)
    group_metric = _add_per_class(report, comparison)
    _add_per_group(report, comparison, group_metric)
    add_robustness(report, comparison)  # curves of runs with a robustness report
    classes = list(comparison.scorer.classes)
    if comparison.scorer.categorical and all(
        f"prob_{k}" in comparison.systems[0].predictions().columns for k in classes
    ):
        report.heading("Calibration")
        figure, eces = plots.reliability_curves(comparison.systems, classes)
        report.text("Expected calibration error (ECE, 10 bins, top label) of the pooled test predictions.")
        report.table(eces.rename_axis("system").reset_index(), "ece")
        report.figure(figure, "reliability")
    if comparison.notes:
        report.heading("Notes")
        for note in comparison.notes:
            report.text(f"- {note}")
    return report


def _add_overview(report: Report, c: Comparison, selection: dict[str, Any]) -> None:
    """The introduction, the table of selected runs and the leaderboard with its bar chart."""
    metric, systems = c.metric, c.systems
    report.text(
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {sum(len(s.runs) for s in systems)} runs "
        f"in {len(systems)} systems. Selection: "
        + ", ".join(f"{k}=`{v}`" for k, v in selection.items() if v not in (None, "", [], ()))
        + f". Headline metric: `{metric}` ({'higher' if c.scorer.higher_is_better else 'lower'} is better)."
    )
    report.heading("Runs")
    runs = pd.DataFrame(
        [
            {
                "system": s.name,
                "run": r.name,
                "run_id": r.run_id,
                "experiment": r.experiment,
                "seed": r.seed,
                "folds": len(r.children) or "",
                "data": r.tags.get("data", ""),
                metric: r.metrics.get(metric, np.nan),
            }
            for s in systems
            for r in s.runs
        ]
    )
    report.table(runs, "runs")

    report.heading("Leaderboard")
    board = c.leaderboard
    report.text(
        "Mean over each system's units (seeds, or seeds x folds for cross-validated runs) of the logged "
        "test metric. CI: Student's t over units when there are at least two, else a percentile bootstrap "
        "over the test samples of the single run."
    )
    report.table(board, "leaderboard")
    extra = [m for m in board.columns if "/" in m]
    report.figure(plots.metric_bars(board, metric, extra), "metric_bars")


def _add_pairwise(report: Report, c: Comparison) -> None:
    """The pairwise significance tests, p-values under ``alpha`` in bold."""
    report.heading("Is the difference real?")
    if c.pairwise.empty:
        report.text("Only one system was selected: nothing to test.")
        return
    report.text(
        f"Pairs of systems (A is ranked above B). `delta`: mean over matched units of A - B in "
        f"`{c.metric}`. `sample_delta`, `ci_low`/`ci_high`, `p_bootstrap`: paired bootstrap over the "
        "shared "
        "test samples (matched units pooled, resampling sample ids). `p_mcnemar`: McNemar's test on the "
        "samples only one "
        "system classifies correctly (largest p over matched units). `p_wilcoxon`: Wilcoxon signed-rank "
        f"over matched units (seeds/folds; needs at least 6 for p < 0.05). `_{c.correction}` columns are "
        f"corrected for the number of pairs ({c.correction}); **bold** marks p < {c.alpha}."
    )
    pvalue_columns = [col for col in c.pairwise.columns if col.startswith("p_")]
    bold = pd.DataFrame(False, index=c.pairwise.index, columns=c.pairwise.columns)
    for column in pvalue_columns:
        bold[column] = c.pairwise[column] < c.alpha
    report.table(c.pairwise, "pairwise", bold)


def _add_ranks(report: Report, c: Comparison) -> None:
    """The Friedman test over blocks and the Nemenyi post-hoc table and diagram."""
    r = c.ranks
    report.heading("Several systems: Friedman test and Nemenyi post-hoc")
    report.text(
        f"Friedman chi2 = {r['friedman'].statistic:.3f}, p = {_cell(r['friedman'].p_value)} over "
        f"{r['blocks']} blocks ({r['block_kind']}). Nemenyi critical difference of mean ranks at "
        f"alpha = {c.alpha}: {r['critical_difference']:.3f} (Demšar 2006); systems whose mean ranks "
        "differ "
        "by more are significantly different."
    )
    report.table(r["mean_ranks"].rename("mean_rank").rename_axis("system").reset_index(), "mean_ranks")
    nemenyi = r["nemenyi"].rename_axis("system").reset_index()
    nemenyi_bold = pd.DataFrame(False, index=nemenyi.index, columns=nemenyi.columns)
    for column in r["nemenyi"].columns:
        nemenyi_bold[column] = nemenyi[column] < c.alpha
    report.table(nemenyi, "nemenyi", nemenyi_bold)
    report.figure(plots.critical_difference(r["mean_ranks"], r["critical_difference"]), "critical_difference")


def _add_per_class(report: Report, c: Comparison) -> str:
    """Confusion matrices and per-class F1 (categorical schemes); returns the per-group metric."""
    group_metric = bare_name(c.metric)
    if c.scorer.categorical:
        classes = list(c.scorer.classes)
        report.heading("Confusion matrices (test, pooled over units)")
        report.figure(plots.confusion_matrices(c.systems, classes), "confusion_matrices")
        report.heading("Per-class F1")
        figure, table = plots.per_class_f1(c.systems, classes)
        report.figure(figure, "per_class_f1")
        report.table(table.reset_index(), "per_class_f1")
        if group_metric not in ("accuracy", "uar", "f1_macro"):
            group_metric = "uar"
    elif group_metric not in ("ccc", "mae") and not group_metric.endswith(("_ccc", "_mae")):
        group_metric = "ccc"
    return group_metric


def _add_per_group(report: Report, c: Comparison, group_metric: str) -> None:
    """``group_metric`` per group attribute and speaker, with the best-worst gap per attribute."""
    report.heading("Per-group metrics (bias)")
    figure, groups, gaps = plots.per_group(c.systems, list(c.scorer.classes) or None, group_metric)
    if figure is None:
        report.text("The predictions have no group attributes (group_* columns) or speakers.")
        return
    report.text(
        f"`{group_metric}` per value of each group attribute (gender, corpus, ...) and per "
        "speaker/subject; "
        "the gap table gives, per system and attribute, the best and worst group. **Bold**: the largest "
        "gap of each attribute."
    )
    report.figure(figure, "per_group")
    if not gaps.empty:
        gaps = gaps[
            [
                "group_column",
                "system",
                "gap",
                "best_group",
                "best_value",
                "worst_group",
                "worst_value",
                "n_groups",
            ]
        ].reset_index(drop=True)
        bold = pd.DataFrame(False, index=gaps.index, columns=gaps.columns)
        for _, rows in gaps.groupby("group_column"):
            bold.loc[rows["gap"].idxmax(), "gap"] = True
        report.table(gaps, "per_group_gaps", bold)
    wide = groups[groups["group_column"] != "speaker"]
    if not wide.empty:
        wide = wide.pivot_table(index=["group_column", "group"], columns="system", values=group_metric)
        report.table(wide.reset_index(), "per_group")
    report.tables["per_group_long"] = groups


def write_report(report: Report, folder: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``report_files/*.png`` and ``report_files/tables/*.csv``.

    Returns:
        The paths of the Markdown and HTML files.
    """
    folder = Path(folder)
    assets = folder / "report_files"
    (assets / "tables").mkdir(parents=True, exist_ok=True)
    for name, data in report.figures.items():
        (assets / f"{name}.png").write_bytes(data)
    for name, frame in report.tables.items():
        frame.to_csv(assets / "tables" / f"{name}.csv", index=False)
    markdown, page = folder / "report.md", folder / "report.html"
    markdown.write_text(to_markdown(report, "report_files"))
    page.write_text(to_html(report))
    return {"markdown": markdown, "html": page}


def log_comparison(
    client: Any,
    experiment: str,
    name: str,
    folder: Path,
    comparison: Comparison,
    selection: dict[str, Any],
) -> str:
    """Log the written report as an MLflow run tagged ``emoexp.kind=comparison``.

    The run holds the report files as artifacts, the selection as params, each system's mean
    metric as ``<system>/<metric>`` and the compared run ids in the tag ``comparison.runs``.

    Returns:
        The comparison run's id.
    """
    from emoexp.engine.recorder import Recorder

    recorder = Recorder(client.tracking_uri)
    run_ids = [r.run_id for s in comparison.systems for r in s.runs]
    tags = {
        "emoexp.kind": KIND,
        "comparison.name": name,
        "comparison.metric": comparison.metric,
        "comparison.runs": ",".join(run_ids)[:5000],
        "label_scheme": next(iter(comparison.systems[0].runs)).tags.get("label_scheme", ""),
    }
    run_id = recorder.create_run(recorder.experiment_id(experiment), f"compare-{name}", tags)
    try:
        recorder.log_params(run_id, {k: str(v)[:6000] for k, v in selection.items() if v not in (None, "")})
        recorder.log_metrics(
            run_id,
            {
                _metric_key(f"{row.system}/{comparison.metric}"): float(row.mean)
                for row in comparison.leaderboard.itertuples()
                if np.isfinite(row.mean)
            },
        )
        # Only the report's own files: the folder may hold other things (an experiment's scripts, its store).
        for file in ("report.md", "report.html"):
            recorder.log_artifact(run_id, folder / file, "report")
        recorder.log_artifacts(run_id, folder / "report_files", "report/report_files")
    except BaseException:
        recorder.end(run_id, "FAILED")
        raise
    recorder.end(run_id, "FINISHED")
    return run_id


def _metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . / space``: replace anything else."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def summary_lines(comparison: Comparison, limit: int = 10) -> Sequence[str]:
    """A few lines for the terminal: leaderboard and significant pairs."""
    lines = [f"{'system':<32} {comparison.metric:>12}  95% CI"]
    for row in comparison.leaderboard.head(limit).itertuples():
        lines.append(
            f"{row.system:<32} {row.mean:>12.4f}  [{row.ci_low:.4f}, {row.ci_high:.4f}]  units={row.units}"
        )
    if not comparison.pairwise.empty:
        significant = comparison.pairwise[comparison.pairwise["significant"]]
        lines.append(
            f"{len(significant)} of {len(comparison.pairwise)} pairs differ significantly "
            f"({comparison.correction}-corrected, alpha={comparison.alpha})."
        )
    return lines
