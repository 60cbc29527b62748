"""The recorder: the only code that writes to MLflow, and the reason a run always ends in a true state.

Everything a run records (tags, params, metrics, artifacts, models, its final status) goes
through one :class:`Recorder`. It owns the network policy (docs/design.md#the-recorder):

* **Before the first write** :meth:`Recorder.connect` probes the store with short, bounded
  retries (about 15 s) and raises :class:`TrackingStoreError`, naming the URI and the operation,
  so an unreachable or unwritable store is a clear error before any run exists.
* **Once the run exists** metric points are buffered and written in batches by one background
  writer thread, so training never waits for the store (a tracking server over the network, or
  one that is restarting); a failed write is retried with back-off for :attr:`Recorder.retry_s`
  (longer than a tracking server restart takes). :meth:`Recorder.flush` waits until every point
  handed over so far is in the store; it runs at each checkpoint, at the end of a run and when a
  run is stopped (SIGTERM/SIGINT, failure), so what a checkpoint holds is never ahead of the
  store. Points that still could not be written are kept in a local JSON-lines file, and the
  run says so on the terminal; nothing is dropped silently.
* **Ending** (:meth:`Recorder.end`, :meth:`Recorder.stop`) never raises: a run ends FINISHED,
  FAILED (error tag, traceback artifact ``error.txt``) or KILLED (interrupted, resumable), and
  when the store refuses the traceback it is written beside the run's checkpoints instead.

On a resumed run the recorder protects what is already there (:meth:`Recorder.protect`): a
metric point at or before the last logged step of its key is a replay and is not written again,
and a param the run has keeps its value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from emoexp.config import ConfigError
from emoexp.engine.lease import LEASE_TAG, Heartbeat, Lease
from emoexp.interruption import TrainingInterrupted
from emoexp.tracking.privacy import SECRET_KEYS, Pseudonymiser

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 15.0
RETRY_S = 300.0
FLUSH_EVERY_S = 10.0
FLUSH_EVERY_POINTS = 200
INTERRUPTED_TAG = "interrupted"
RESUMED_TAG = "resumed"
ERROR_TAG = "error"
# Tags about one run's own life, not copied from a cross-validation parent to its fold runs.
TEXT_SUFFIXES = (".txt", ".yaml", ".yml", ".json", ".csv", ".md", ".log")
"""Artifacts read and scrubbed as text under ``tracking.privacy=pseudonymise``."""
RUN_STATE_TAGS = (INTERRUPTED_TAG, RESUMED_TAG, "interrupted_by", ERROR_TAG, LEASE_TAG)


class TrackingStoreError(ConfigError):
    """The tracking store cannot be reached or written; raised before any run is recorded."""


class Recorder:
    """Writes one run (and its fold runs) to an MLflow store; see the module docstring.

    Args:
        tracking_uri: A resolved tracking URI.
        writes: ``False`` on DDP ranks other than 0: reads reach the store, writes are dropped.
        retry_s: How long a failed write is retried once the run exists.
        spool_dir: Where points that could not be written are kept (``unwritten.jsonl``).
        privacy: With ``tracking.privacy=pseudonymise``, what scrubs every tag, param and text
            artifact before it is written (:mod:`emoexp.tracking.privacy`).
        background: Write metric batches from a background thread; ``False`` writes them in the
            calling thread (the recorder's former behaviour, kept for comparison in
            ``bench/tracking_overhead.py``).
    """

    def __init__(
        self,
        tracking_uri: str,
        writes: bool = True,
        retry_s: float = RETRY_S,
        spool_dir: Path | None = None,
        background: bool = True,
    ):
        import mlflow  # ~3 s: only once a run is about to be recorded

        self.tracking_uri = tracking_uri
        self.client = mlflow.MlflowClient(tracking_uri)
        self.writes = writes
        self.retry_s = retry_s
        self.spool_dir = spool_dir
        self._pending: dict[str, list[Any]] = {}
        self.background = background
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: list[Future[None]] = []
        self._last_flush = time.monotonic()
        self._last_step: dict[str, dict[str, int]] = {}
        self._params: dict[str, set[str]] = {}
        self._ended: set[str] = set()
        self._heartbeats: dict[str, Heartbeat] = {}
        self.unwritten = 0
        self.privacy: Pseudonymiser | None = None

    # -- connecting ---------------------------------------------------------------------------
    @classmethod
    def connect(cls, tracking_uri: str, writes: bool = True, timeout_s: float = PROBE_TIMEOUT_S) -> Recorder:
        """A recorder for ``tracking_uri`` after a bounded probe of the store.

        Raises:
            TrackingStoreError: If the store does not answer within ``timeout_s`` (the message
                names the URI, the operation and the last error).
        """
        recorder = cls(tracking_uri, writes=writes)
        deadline = time.monotonic() + timeout_s
        with _short_http_requests():
            while True:
                try:
                    recorder.client.search_experiments(max_results=1)
                    return recorder
                except Exception as error:
                    if time.monotonic() + 2.0 > deadline:
                        raise TrackingStoreError(
                            f"The MLflow tracking store {tracking_uri} did not answer (listing experiments, "
                            f"tried for {timeout_s:.0f} s): {_first_line(error)}. Start the server or fix "
                            "tracking.uri / $MLFLOW_TRACKING_URI; nothing was recorded."
                        ) from None
                time.sleep(2.0)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created with a local artifact root when it is new.

        Raises:
            TrackingStoreError: If the experiment's local artifact folder cannot be written.
        """
        from emoexp.tracking.store import ensure_experiment

        experiment_id = ensure_experiment(self.tracking_uri, name)
        check_artifact_root(self.client.get_experiment(experiment_id).artifact_location, name)
        return experiment_id

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        """Create a RUNNING run with ``tags``; its id (``""`` when this process does not write)."""
        if not self.writes:
            return ""
        run = self._retry(
            "creating a run", self.client.create_run, experiment_id, run_name=run_name, tags=self._scrub(tags)
        )
        return run.info.run_id

    def hold(self, run_id: str) -> None:
        """Take the run's lease and keep it alive until :meth:`end`/:meth:`stop`."""
        if not self.writes or not run_id:
            return
        self.set_tags(run_id, {LEASE_TAG: Lease.mine().dumps()})
        beat = Heartbeat(
            lambda value: self.client.set_tag(run_id, LEASE_TAG, value),
            lambda error: log.warning("Lease heartbeat of run %s failed: %s", run_id, _first_line(error)),
        )
        beat.start()
        self._heartbeats[run_id] = beat

    def release(self, run_id: str) -> None:
        """Give the lease up (no-op if not held)."""
        beat = self._heartbeats.pop(run_id, None)
        if beat is None:
            return
        beat.stop()
        with contextlib.suppress(Exception):
            self.client.delete_tag(run_id, LEASE_TAG)

    def get_run(self, run_id: str) -> Any:
        """Read run ``run_id``, retried like a write while the store is briefly away.

        Raises:
            Exception: MLflow's error when the store refuses (e.g. the run does not exist).
        """
        return self._retry("reading a run", self.client.get_run, run_id)

    def reopen(self, run_id: str, resumes: int) -> None:
        """Set an interrupted run RUNNING again and count the resume (tag ``resumed``)."""
        if not self.writes:
            return
        self._retry("reopening a run", self.client.update_run, run_id, status="RUNNING")
        self.set_tags(run_id, {RESUMED_TAG: str(resumes)})
        self._ended.discard(run_id)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        """Flush, release and terminate the run with ``status``."""
        if not self.writes or not run_id or run_id in self._ended:
            return
        self.flush()
        self.release(run_id)
        self._retry(f"ending the run as {status}", self.client.set_terminated, run_id, status)
        self._ended.add(run_id)

    def stop(self, run_id: str, error: BaseException, fallback_dir: Path | None = None) -> None:
        """Record how a run ended early, never raising: KILLED for signals, FAILED otherwise.

        An interruption (SIGTERM/SIGINT) is resumable: KILLED with ``interrupted=true`` and
        ``interrupted_by``. Anything else is FAILED with the error as tag ``error`` and its
        traceback as artifact ``error.txt`` (or ``<fallback_dir>/error.txt`` when the artifact
        store refuses it). Metrics, artifacts and checkpoints logged before stay.
        """
        if not self.writes or not run_id or run_id in self._ended:
            return
        steps: list[tuple[str, Callable[[], Any]]] = [("flushing metrics", self.flush)]
        if isinstance(error, TrainingInterrupted | KeyboardInterrupt):
            status = "KILLED"
            by = error.signal_name if isinstance(error, TrainingInterrupted) else "SIGINT"
            steps.append(
                ("tagging", lambda: self.set_tags(run_id, {INTERRUPTED_TAG: "true", "interrupted_by": by}))
            )
        else:
            status = "FAILED"
            message = f"{type(error).__name__}: {error}"[:5000]
            steps.append(("tagging", lambda: self.set_tags(run_id, {ERROR_TAG: message})))
            steps.append(("saving the traceback", lambda: self._save_traceback(run_id, error, fallback_dir)))
        steps.append(("releasing the lease", lambda: self.release(run_id)))
        steps.append(("setting the status", lambda: self.client.set_terminated(run_id, status)))
        for what, step in steps:
            try:
                step()
            except Exception as failure:
                log.error("Run %s: %s failed while ending it as %s: %s", run_id, what, status, failure)
        self._ended.add(run_id)

    def _save_traceback(self, run_id: str, error: BaseException, fallback_dir: Path | None) -> None:
        text = "".join(traceback.format_exception(error))
        if error.__traceback__ is None:
            # Recorded before it is raised (the training guard stops every DDP rank together):
            # the stack that detected it is the traceback.
            text = "Traceback (most recent call last):\n" + "".join(traceback.format_stack()[:-2]) + text
        try:
            self.log_text(run_id, text, "error.txt")
        except Exception:
            if fallback_dir is None:
                raise
            fallback_dir.mkdir(parents=True, exist_ok=True)
            (fallback_dir / "error.txt").write_text(text)
            log.error("The traceback of run %s could not be logged; it is in %s", run_id, fallback_dir)
            raise

    # -- resumed runs ---------------------------------------------------------------------------
    def protect(self, run_id: str) -> None:
        """Never write again what resumed run ``run_id`` already has (see the module docstring)."""
        if not self.writes or not run_id:
            return
        run = self.client.get_run(run_id)
        self._params[run_id] = set(run.data.params)
        self._last_step[run_id] = {
            key: max(m.step for m in self.client.get_metric_history(run_id, key)) for key in run.data.metrics
        }

    # -- writes -----------------------------------------------------------------------------------
    def recordable_config(self, cfg: Any) -> Any:
        """``cfg`` as it may be recorded (in a served model's bundle): scrubbed under privacy."""
        if self.privacy is None:
            return cfg
        from omegaconf import OmegaConf

        return OmegaConf.create(self.privacy.scrub(OmegaConf.to_container(cfg, resolve=True)))

    def _scrub(self, values: dict[str, str]) -> dict[str, str]:
        """Tag/param values as recorded: unchanged, or pseudonymised (secret keys dropped)."""
        if self.privacy is None:
            return {k: v for k, v in values.items() if not k.endswith(SECRET_KEYS)}
        return {k: str(v) for k, v in self.privacy.scrub(values).items()}

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        """Set ``tags`` (values as strings) on the run."""
        if not self.writes or not run_id or not tags:
            return
        from mlflow.entities import RunTag

        tags = self._scrub({k: str(v) for k, v in tags.items()})
        self._retry(
            "setting tags", self.client.log_batch, run_id, tags=[RunTag(k, v) for k, v in tags.items()]
        )

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove tag ``key`` from the run."""
        if not self.writes or not run_id:
            return
        self._retry("deleting a tag", self.client.delete_tag, run_id, key)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Log params (in batches of 100); on a protected run, params it has are skipped."""
        if not self.writes or not run_id:
            return
        from mlflow.entities import Param

        known = self._params.get(run_id, set())
        items = sorted((k, v) for k, v in self._scrub(params).items() if k not in known)
        for start in range(0, len(items), 100):
            batch = [Param(k, v) for k, v in items[start : start + 100]]
            self._retry("logging params", self.client.log_batch, run_id, params=batch)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Buffer metric points at ``step``.

        Every :data:`FLUSH_EVERY_POINTS` points or :data:`FLUSH_EVERY_S` seconds the buffer is
        handed to the background writer (:meth:`send`); :meth:`flush` waits until it is stored.
        """
        if not self.writes or not run_id:
            return
        from mlflow.entities import Metric

        last = self._last_step.get(run_id, {})
        timestamp = int(time.time() * 1000)
        points = [
            Metric(k, float(v), timestamp, int(step))
            for k, v in metrics.items()
            if int(step) > last.get(k, -1)
        ]
        self._pending.setdefault(run_id, []).extend(points)
        waiting = sum(len(p) for p in self._pending.values())
        if waiting >= FLUSH_EVERY_POINTS or time.monotonic() - self._last_flush > FLUSH_EVERY_S:
            self.send()

    def send(self) -> None:
        """Hand the buffered metric points to the background writer without waiting for them."""
        pending, self._pending = self._pending, {}
        self._last_flush = time.monotonic()
        self._in_flight = [future for future in self._in_flight if not future.done()]
        batches = [
            (run_id, points[start : start + 1000])
            for run_id, points in pending.items()
            for start in range(0, len(points), 1000)
        ]
        if not self.background:
            for run_id, batch in batches:
                self._write(run_id, batch)
            return
        if batches and self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emoexp-recorder")
        self._in_flight += [self._writer.submit(self._write, run_id, batch) for run_id, batch in batches]

    def flush(self) -> None:
        """Write the buffered metric points and wait until every point handed over so far is stored.

        One writer thread writes batches in the order they were handed over; what cannot be
        written is spooled to a local file. A signal that interrupts the wait leaves the
        remaining writes queued, and the next :meth:`flush` (the one that ends the run) waits
        for them.
        """
        self.send()
        while self._in_flight:
            self._in_flight[0].result()  # never raises: _write spools what it cannot write
            self._in_flight.pop(0)

    def _write(self, run_id: str, batch: list[Any]) -> None:
        try:
            self._retry("logging metrics", self.client.log_batch, run_id, metrics=batch)
        except Exception as error:
            self._spool(run_id, batch, error)

    def _spool(self, run_id: str, points: list[Any], error: BaseException) -> None:
        self.unwritten += len(points)
        folder = self.spool_dir or Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "unwritten.jsonl"
        with path.open("a") as spool:
            for m in points:
                spool.write(
                    json.dumps({"run_id": run_id, "key": m.key, "value": m.value, "step": m.step}) + "\n"
                )
        log.error(
            "%d metric point(s) of run %s could not be written to %s (%s); they are kept in %s.",
            len(points),
            run_id,
            self.tracking_uri,
            _first_line(error),
            path,
        )

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a local file or folder under ``artifact_path``."""
        if not self.writes or not run_id:
            return
        path = Path(path)
        if self.privacy is not None and path.suffix == ".ckpt":
            with tempfile.TemporaryDirectory() as tmp:
                self._upload(run_id, _scrubbed_checkpoint(path, Path(tmp), self.privacy), artifact_path)
            return
        if self.privacy is not None and path.suffix in TEXT_SUFFIXES:
            text = self.privacy.redact(path.read_text(errors="replace"))
            name = f"{artifact_path}/{path.name}" if artifact_path else path.name
            self._log_via_file(run_id, name, lambda copy: copy.write_text(text))
            return
        self._upload(run_id, path, artifact_path)

    def _upload(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        self._retry(
            f"logging artifact {path.name}", self.client.log_artifact, run_id, str(path), artifact_path
        )

    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
        """Log every file under a local folder under ``artifact_path``."""
        if not self.writes or not run_id:
            return
        if self.privacy is not None:
            for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
                relative = path.parent.relative_to(folder).as_posix()
                parts = [part for part in (artifact_path, relative) if part and part != "."]
                self.log_artifact(run_id, path, "/".join(parts) or None)
            return
        what = f"logging the folder {Path(folder).name}"
        self._retry(what, self.client.log_artifacts, run_id, str(folder), artifact_path)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        """Log ``text`` as the artifact ``name`` (``folder/file.txt`` allowed)."""
        text = text if self.privacy is None else self.privacy.redact(text)
        self._log_via_file(run_id, name, lambda path: path.write_text(text))

    def log_json(self, run_id: str, obj: Any, name: str) -> None:
        """Log ``obj`` as a JSON artifact ``name``."""
        obj = obj if self.privacy is None else self.privacy.scrub(json.loads(json.dumps(obj, default=str)))
        self._log_via_file(run_id, name, lambda path: path.write_text(json.dumps(obj, indent=2, default=str)))

    def log_frame(self, run_id: str, frame: Any, name: str) -> None:
        """Log a pandas frame as the CSV artifact ``name`` (e.g. ``reports/per_group_metrics.csv``)."""
        frame = frame if self.privacy is None else self.privacy.frame(frame)
        self._log_via_file(run_id, name, lambda path: frame.to_csv(path, index=False))

    def log_figure(self, run_id: str, figure: Any, name: str) -> None:
        """Log a matplotlib figure as the PNG artifact ``name`` and close it."""
        import matplotlib.pyplot as plt

        try:
            self._log_via_file(run_id, name, lambda path: figure.savefig(path, dpi=120, bbox_inches="tight"))
        finally:
            plt.close(figure)

    def _log_via_file(self, run_id: str, name: str, write: Callable[[Path], Any]) -> None:
        if not self.writes or not run_id:
            return
        folder, _, filename = name.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            write(path)
            self._upload(run_id, path, folder or None)

    def log_model(self, run_id: str, write: Callable[[], None]) -> None:
        """Run ``write`` (a function that logs an MLflow model into ``run_id``) and keep the run RUNNING.

        MLflow logs models only through its fluent API, which ends the run it resumed; the run
        is set back to RUNNING so that :meth:`end` decides its final status.
        """
        if not self.writes or not run_id:
            return
        try:
            write()
        finally:
            self.client.update_run(run_id, status="RUNNING")

    def log_dataset(
        self, run_id: str, *, name: str, digest: str, source: str, schema: str, profile: str
    ) -> None:
        """Log the run's training data as an MLflow dataset input (its source scrubbed under privacy)."""
        if not self.writes or not run_id:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        source = source if self.privacy is None else str(self.privacy.value(source))
        dataset = Dataset(name, digest, "local", json.dumps({"uri": source}), schema, profile)
        context = [InputTag("mlflow.data.context", "training")]
        inputs = [DatasetInput(dataset, context)]
        try:
            self._retry("logging the dataset", self.client.log_inputs, run_id, inputs)
        except Exception as error:
            # MLflow's SQL store looks the dataset up, then inserts it: two runs of one experiment
            # logging the same dataset at once (tuner workers) can both insert, and the second
            # fails on the unique key. The dataset now exists, so a second call only links it.
            if not _duplicate_key(error):
                raise
            log.info("the dataset %s was logged meanwhile by another run; linking it", name)
            self._retry("logging the dataset", self.client.log_inputs, run_id, inputs)

    def register_model(self, run_id: str, name: str, tags: dict[str, str]) -> str | None:
        """Register the run's logged model as a new version of ``name``; its version (``None``: no model).

        The registered model is created when it does not exist yet.
        """
        if not self.writes or not run_id:
            return None
        from mlflow.exceptions import MlflowException

        experiment_id = self.client.get_run(run_id).info.experiment_id
        models = [m for m in self.client.search_logged_models([experiment_id]) if m.source_run_id == run_id]
        if not models:
            return None
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self._retry("creating the registered model", self.client.create_registered_model, name)
        model = models[-1]
        version = self._retry(
            "registering the model",
            self.client.create_model_version,
            name,
            source=model.artifact_location,
            run_id=run_id,
            tags=self._scrub(tags),
            model_id=model.model_id,
        )
        return str(version.version)

    # -- retries ----------------------------------------------------------------------------------
    def _retry(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, retried with back-off on transient errors for :attr:`retry_s`."""
        deadline = time.monotonic() + self.retry_s
        delay = 1.0
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as error:
                if not _transient(error) or time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "%s in %s failed (%s); retrying in %.0f s",
                    what,
                    self.tracking_uri,
                    _first_line(error),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)


def _duplicate_key(error: BaseException) -> bool:
    """Whether ``error`` is a database's unique-key violation (SQLite, PostgreSQL, MySQL/MariaDB)."""
    text = str(error)
    return any(
        marker in text for marker in ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
    )


def _scrubbed_checkpoint(path: Path, folder: Path, privacy: Pseudonymiser) -> Path:
    """A copy of a Lightning checkpoint whose strings (callback folders and paths) are pseudonymised.

    Loaded weights-only (docs/design.md#8-every-checkpoint-load-is-weights-only); tensors are kept
    as they are, and the copy resumes like the original (its callbacks re-read their folders from
    the config, not from these strings).
    """
    import torch

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(scrub(v) for v in value)
        return privacy.value(value) if isinstance(value, str) else value

    copy = folder / path.name
    torch.save(scrub(torch.load(path, map_location="cpu", weights_only=True)), copy)
    return copy


def check_artifact_root(location: str | None, experiment: str) -> None:
    """Raise :class:`TrackingStoreError` if a local artifact root (``file:`` or a path) is not writable."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if not location:
        return
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return  # a server or object store: its writes are checked when they happen
    folder = Path(url2pathname(parsed.path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".emoexp-probe-"):
            pass
    except OSError as error:
        raise TrackingStoreError(
            f"The artifact folder {folder} of MLflow experiment {experiment!r} is not writable "
            f"({error.strerror or error}). Fix its permissions, or use another tracking.experiment / "
            "tracking.uri; nothing was recorded."
        ) from None


def _transient(error: BaseException) -> bool:
    """Whether ``error`` looks like a store that is briefly away (retry) rather than a refusal."""
    names = {type(e).__name__ for e in _chain(error)}
    if names & {
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "MaxRetryError",
        "RetryError",
        "OperationalError",
    }:
        return True
    code = getattr(error, "error_code", "")
    return code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def _short_http_requests() -> Iterator[None]:
    """MLflow's HTTP client without its long retry loop (defaults retry for minutes) for the probe."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    previous = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
