"""What a run prints on the terminal: each log line once, no third-party noise, a closing summary.

:func:`configure_terminal` makes the console readable without losing anything: Lightning's lines
are printed once (through the root logger's handlers, which Hydra configures), library adverts
are dropped, and warnings and third-party chatter (MLflow store migrations, alembic, GitPython)
go to the log file only. :func:`closing_summary` is the block a run ends with: its id and
status, the headline test figures, its artifacts and the command that opens it.

This module sits in the config layer (docs/design.md#layers): it imports only the standard
library at import time, so ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# Kept in step with conf/hydra/default.yaml (the console and file formats under Hydra).
CONSOLE_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"
CONSOLE_DATEFMT = "%H:%M:%S"
FILE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"

# Loggers Lightning attaches its own console handlers to (standalone packages included).
LIGHTNING_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
)
_LIGHTNING_PACKAGES = frozenset(name.split(".")[0] for name in LIGHTNING_LOGGERS)
# Where Lightning's rank_zero_info adverts ("💡 Tip: ... litlogger / litmodels") are logged.
ADVERT_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)
ADVERT_PREFIX = "💡 Tip:"
# Loggers MLflow would otherwise give their own stderr handler (MLFLOW_CONFIGURE_LOGGING).
MLFLOW_LOGGERS = ("mlflow", "alembic", "huey", "sqlalchemy.engine")
# Third-party loggers whose INFO/DEBUG lines are chatter: log file only (warnings still show).
CHATTY_LOGGERS = (
    "alembic",
    "mlflow",
    "sqlalchemy",
    "huey",
    "git",
    "urllib3",
    "matplotlib",
    "PIL",
    "filelock",
    "fsspec",
    "numexpr",
)
# Lightning INFO lines repeated by every reload of the best checkpoint: log file only.
FILE_ONLY_MESSAGES = (
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
)
RESUME_HINT = "run the same command with resume=true to continue it from last.ckpt"
# Set with setdefault, so a user's own choice wins.
QUIET_ENVIRONMENT = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow's loggers then propagate to the root handlers (console and log file) instead of
    # printing to stderr only.
    "MLFLOW_CONFIGURE_LOGGING": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}


def _belongs_to(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


class AdvertFilter(logging.Filter):
    """Drops Lightning's "💡 Tip: try installing litlogger/litmodels" adverts (no setting turns them off)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return not str(record.msg).startswith(ADVERT_PREFIX)


class ConsoleFilter(logging.Filter):
    """Keeps third-party chatter and warnings off the console; the log file still gets them.

    Dropped on the console: records below WARNING from :data:`CHATTY_LOGGERS`, every record of
    ``py.warnings`` (the ``warnings`` module, routed to logging), and Lightning's checkpoint
    reload lines (:data:`FILE_ONLY_MESSAGES`).
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        if record.name == "py.warnings":
            return False
        if record.levelno < logging.WARNING and _belongs_to(record.name, CHATTY_LOGGERS):
            return False
        if _belongs_to(record.name, _LIGHTNING_PACKAGES) and record.levelno < logging.WARNING:
            return not str(record.msg).startswith(FILE_ONLY_MESSAGES)
        return True


class _LightningImportWatcher(importlib.abc.MetaPathFinder):
    """Removes Lightning's console handlers as soon as Lightning adds them; finds no module itself.

    ``import lightning`` attaches a StreamHandler to the ``lightning`` logger unconditionally, so
    under Hydra each Lightning line would print twice (that handler, then the root's). Lightning
    adds it before importing its first submodule, so handing the loggers back to the root at every
    lookup of a Lightning submodule catches it before any record is emitted, without importing
    Lightning here (it takes seconds).
    """

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if "." in fullname and fullname.split(".", 1)[0] in _LIGHTNING_PACKAGES:
            _hand_to_root(LIGHTNING_LOGGERS)


def _hand_to_root(names: Iterable[str]) -> None:
    """Remove the plain console handlers libraries attached to ``names`` and let them propagate."""
    for name in names:
        logger = logging.getLogger(name)
        # Exactly StreamHandler: what Lightning and MLflow add; a user's FileHandler stays.
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers of ``logger`` that write to the terminal (not pytest's capture, not files)."""
    streams = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    return [
        h
        for h in logger.handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
        and (id(getattr(h, "stream", None)) in streams or getattr(h, "_emoexp_console", False))
    ]


def _set_log_file(root: logging.Logger, log_file: Path) -> None:
    """Write the log to ``log_file`` too, replacing a file set by an earlier call."""
    path = str(Path(log_file).resolve())
    ours = [h for h in root.handlers if getattr(h, "_emoexp_log_file", False)]
    if any(h.baseFilename == path for h in ours):  # type: ignore[attr-defined]
        return
    for handler in ours:
        root.removeHandler(handler)
        handler.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler._emoexp_log_file = True  # type: ignore[attr-defined]
    root.addHandler(handler)


def _add_console_if_none(root: logging.Logger) -> None:
    """Give a bare process (no Hydra, no pytest) a console, at INFO, as Hydra would."""
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, CONSOLE_DATEFMT))
    handler._emoexp_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def configure_terminal(log_file: Path | None = None) -> None:
    """Make the terminal readable: each log line once, no adverts, warnings in the log file only.

    Safe to call any number of times, before or after Lightning and MLflow are imported, and in
    every setting:

    * **Under** ``@hydra.main`` Hydra has configured the root logger (console and job log
      ``<output_dir>/<job>.log``); its console handlers get :class:`ConsoleFilter`, and warnings
      and chatter go to the job log.
    * **Without Hydra logging** (``train(cfg)`` from tests, the tuner, a notebook) nothing is
      printed that the caller did not set up: under pytest the root logger keeps only pytest's
      handlers (``caplog`` sees Lightning's lines); in a bare process a console handler at INFO
      is added. Warnings are routed to logging only when there is a log file to receive them,
      otherwise the ``warnings`` module is left alone (pytest keeps recording them).

    Args:
        log_file: Also write the log (warnings included) to this file; a later call with another
            file replaces it. Under Hydra the job log already receives everything.
    """
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if not any(isinstance(f, _LightningImportWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _LightningImportWatcher())
    _hand_to_root(LIGHTNING_LOGGERS)
    if os.environ["MLFLOW_CONFIGURE_LOGGING"].lower() in ("false", "0"):
        # MLflow may already have configured its loggers on import.
        _hand_to_root(MLFLOW_LOGGERS)
    # What MLflow sets when it configures them: at the root's INFO, sqlalchemy would log every SQL
    # statement and alembic ~80 lines per new store (MLflow's own migration lines stay INFO).
    for name in ("sqlalchemy.engine", "alembic", "huey"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    for name in ADVERT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, AdvertFilter) for f in logger.filters):
            logger.addFilter(AdvertFilter())
    root = logging.getLogger()
    _add_console_if_none(root)
    if log_file is not None:
        _set_log_file(root, log_file)
    for handler in _console_handlers(root):
        if not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
    _route_warnings(root)


def _route_warnings(root: logging.Logger) -> None:
    """Send the ``warnings`` module to the root's log files only (none: leave warnings alone)."""
    # Exactly FileHandler: Hydra's job log and ours; pytest's own (to os.devnull by default) is a
    # subclass, and under pytest warnings stay with pytest.
    files = [
        h
        for h in root.handlers
        if type(h) is logging.FileHandler and h.baseFilename != os.path.abspath(os.devnull)
    ]
    if not files:
        return
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers = files
    warnings_logger.propagate = False


def closing_summary(
    *,
    run_id: str,
    status: str,
    tracking_uri: str,
    experiment_id: str,
    metrics: Mapping[str, float],
    main_metrics: Sequence[str],
    artifacts: Sequence[str],
    ci_suffixes: tuple[str, str] = ("_ci_low", "_ci_high"),
) -> str:
    """The block a run ends with: id and status, main figures, artifacts, how to open it.

    Example (a FINISHED run in a local store)::

        Run 0f3c... FINISHED
          test/uar       0.6120  (95% CI 0.5710 to 0.6530)
          test/accuracy  0.6400
          artifacts  config.yaml, environment.json, predictions.csv
                     checkpoints/ best.ckpt, last.ckpt
                     model/ 6 files
          open       mlflow ui --backend-store-uri sqlite:///mlflow.db
                     http://127.0.0.1:5000/#/experiments/1/runs/0f3c...

    A FAILED run adds where its traceback is, a KILLED run how to resume it (the error itself
    is :func:`stopped_line`).

    Args:
        run_id: The MLflow run.
        status: ``FINISHED``, ``FAILED`` or ``KILLED`` (others are shown as they are).
        tracking_uri: The resolved tracking URI of the run's store.
        experiment_id: The run's MLflow experiment id.
        metrics: The run's final metrics; ``<name><ci_suffixes[0]>`` and
            ``<name><ci_suffixes[1]>`` give a metric's 95% confidence interval.
        main_metrics: The headline metrics to show, in order (missing ones are skipped).
        artifacts: The run's artifact paths, relative to its artifact root.
        ci_suffixes: Suffixes of the lower and upper CI bounds.

    Returns:
        A multi-line text without a trailing newline.
    """
    lines = [f"Run {run_id} {status}"]
    if status == "FAILED":
        lines.append(f"  traceback  {_traceback_location(artifacts)}")
    elif status == "KILLED":
        lines.append(f"  resume     {RESUME_HINT}")
    lines += _metric_lines(metrics, main_metrics, ci_suffixes)
    lines += _artifact_lines(artifacts)
    lines += _open_lines(tracking_uri, experiment_id, run_id)
    return "\n".join(lines)


def stopped_line(*, run_id: str, status: str, error: str, artifacts: Sequence[str] = ()) -> str:
    """One line for a run that stopped early: the error, and where its traceback is or how to resume.

    Args:
        run_id: The MLflow run.
        status: ``FAILED`` (an error) or ``KILLED`` (SIGTERM/SIGINT; resumable).
        error: The error, e.g. ``"ValueError: bad input"`` or ``"interrupted by SIGTERM"``.
        artifacts: The run's artifact paths (to tell whether ``error.txt`` was logged).

    Returns:
        ``Run <id> FAILED: <error> (traceback: ...)`` or ``Run <id> KILLED: <error>; <hint>``.
    """
    if status == "KILLED":
        return f"Run {run_id} KILLED: {error}; {RESUME_HINT}"
    return f"Run {run_id} {status}: {error} (traceback: {_traceback_location(artifacts)})"


def _traceback_location(artifacts: Sequence[str]) -> str:
    # The recorder logs it as error.txt, or writes it beside the checkpoints when the store refuses.
    if "error.txt" in artifacts:
        return "artifact error.txt of the run"
    return "error.txt in the run's output folder"


def _metric_lines(
    metrics: Mapping[str, float], names: Sequence[str], ci_suffixes: tuple[str, str]
) -> list[str]:
    shown = [name for name in names if name in metrics]
    width = max((len(name) for name in shown), default=0)
    lines = []
    for name in shown:
        line = f"  {name:<{width}}  {metrics[name]:.4f}"
        low, high = (metrics.get(name + suffix) for suffix in ci_suffixes)
        if low is not None and high is not None:
            line += f"  (95% CI {low:.4f} to {high:.4f})"
        lines.append(line)
    return lines


def _artifact_lines(artifacts: Sequence[str], max_names: int = 4) -> list[str]:
    """Top-level files on one line, then one line per folder (its files, or how many)."""
    folders: dict[str, list[str]] = {}
    for path in sorted(artifacts):
        head, _, rest = path.partition("/")
        folders.setdefault(head + "/" if rest else "", []).append(rest or head)
    rows = []
    for folder, names in sorted(folders.items()):
        listed = ", ".join(names) if len(names) <= max_names else f"{len(names)} files"
        rows.append(f"{folder} {listed}" if folder else listed)
    return [f"  {'artifacts' if i == 0 else '':<9}  {row}" for i, row in enumerate(rows)]


def _open_lines(tracking_uri: str, experiment_id: str, run_id: str) -> list[str]:
    """How to look at the run: its URL on an MLflow server, after ``mlflow ui`` for a local store."""
    route = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return [f"  open       {tracking_uri.rstrip('/')}/{route}"]
    return [
        f"  open       mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}",
        f"             http://127.0.0.1:5000/{route}",
    ]
