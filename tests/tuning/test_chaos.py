"""Chaos: workers killed at random and their database connections cut; no trial lost, doubled or mixed.

Four ``python -m emoexp.tune tuner.role=worker`` processes share one PostgreSQL study (its own
database, so that cutting connections touches nobody else's) and one MLflow store (another
database). A seeded random schedule SIGKILLs workers (each is started again, as a requeued job is)
and ends the workers' database sessions from the server side (``pg_terminate_backend``). Then two
finalize steps race for the final run. The trials are tiny: one thread, one epoch of a small LSTM
on the debug subset of the embedded audio corpus.

The study must end with exactly n_trials COMPLETE+PRUNED+FAIL trials (a dead worker's trial is
failed and retried; the retry counts, not the dead trial), no parameters trained twice, exactly one
final run, and MLflow trial runs one to one with the study's trials.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from emoexp.tuning.storage import open_storage
from emoexp.tuning.tracking import PARENT_ATTR

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
N_TRIALS = 6
N_WORKERS = 4
SEED = 11
BUDGET_S = 170.0  # the whole test, on a busy 2-core machine
TINY = [
    "hparams_search=audio_lstm",
    "debug=fast",
    "trainer.max_epochs=1",
    "model.net.hidden_size=16",
    "model.net.num_layers=1",
    "model.features.audio.n_mfcc=20",
    "pruner=none",
    "tuner.heartbeat_interval=1",
    "tuner.grace_period=8",
    "tuner.max_retry=null",
    "tuner.threads_per_worker=1",
]

pytestmark = pytest.mark.db


def _admin(sql: str) -> list[tuple]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"{SERVER}/test", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            result = connection.execute(sqlalchemy.text(sql))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def databases(database_server: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    """(study storage URL, MLflow store URI): two fresh PostgreSQL databases, dropped afterwards."""
    database_server("postgresql")  # skips (or fails under EMOEXP_REQUIRE_DATABASES=1) without a server
    names = [f"emoexp_chaos_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("optuna", "mlflow")]
    for name in names:
        _admin(f"CREATE DATABASE {name}")
    yield f"{SERVER}/{names[0]}", f"{SERVER}/{names[1]}"
    for name in names:
        with contextlib.suppress(Exception):
            _admin(f"DROP DATABASE {name} WITH (FORCE)")


class Workers:
    """The worker processes: started, killed, started again, each with its own log."""

    def __init__(self, overrides: list[str], folder: Path):
        self.overrides, self.folder = overrides, folder
        self.processes: dict[int, subprocess.Popen] = {}
        self.kills = 0

    def start(self, k: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        log = open(self.folder / f"worker{k}.log", "ab")  # noqa: SIM115 - closed with the process
        command = [sys.executable, "-m", "emoexp.tune", *self.overrides, "tuner.role=worker",
                   f"tuner.worker_id={k}", f"hydra.run.dir={self.folder / f'hydra{k}'}"]  # fmt: skip
        self.processes[k] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, k: int) -> None:
        self.processes[k].send_signal(signal.SIGKILL)
        self.processes[k].wait()
        self.kills += 1

    def alive(self) -> list[int]:
        return [k for k, p in self.processes.items() if p.poll() is None]

    def logs(self) -> str:
        logs = sorted(self.folder.glob("worker*.log"))
        return "\n".join(f"== {p.name}\n{p.read_text()[-2500:]}" for p in logs)


def _cut_connections(database: str) -> int:
    """End every session of the study's database from the server side; how many were ended."""
    rows = _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    return sum(bool(ok) for (ok,) in rows)


def _unfinished(study) -> bool:
    """Whether trials are still queued or running (also while the test's own session is being cut)."""
    try:
        return any(t.state.name in ("WAITING", "RUNNING") for t in study.get_trials(deepcopy=False))
    except optuna.exceptions.StorageInternalError:
        return True


def _chaos(workers: Workers, storage: str, name: str, deadline: float) -> dict[str, int]:
    """Kill workers and cut connections at seeded random moments until the study is done.

    The first event is a SIGKILL and the second a cut, so that every run sees both; then either.
    """
    rng = random.Random(SEED)
    database = storage.rsplit("/", 1)[-1]
    watched = optuna.load_study(study_name=name, storage=open_storage(storage))  # one pool, pre-pinged
    done = {"kills": 0, "cuts": 0}
    next_at = time.monotonic() + rng.uniform(8, 14)
    while _unfinished(watched):
        assert time.monotonic() < deadline, f"the study did not finish in time\n{workers.logs()}"
        for k in set(workers.processes) - set(workers.alive()):
            if workers.processes[k].returncode != 0:
                workers.start(k)  # a requeued job: the same command again
        acted = done["kills"] + done["cuts"]
        if time.monotonic() >= next_at and acted < 6:
            # One of each first (the study may be done before a third), then at random.
            kill = acted == 0 or (acted > 1 and rng.random() < 0.5)
            if kill and workers.alive():
                workers.kill(rng.choice(workers.alive()))
                done["kills"] += 1
            else:
                _cut_connections(database)
                done["cuts"] += 1
            next_at = time.monotonic() + rng.uniform(4, 9)
        time.sleep(0.5)
    return done


def _run(command: list[str], folder: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    full = [sys.executable, "-m", "emoexp.tune", *command, f"hydra.run.dir={folder / name}"]
    return subprocess.Popen(full, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_workers_killed_and_cut_off_at_random_lose_double_and_mix_no_trial(databases, tmp_path, cache_dir):
    import mlflow

    started = time.monotonic()
    storage, tracking_uri = databases
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    overrides = [*TINY, f"hydra.sweeper.n_trials={N_TRIALS}", f"hydra.sweeper.study_name={name}",
                 f"hydra.sweeper.storage={storage}", f"tracking.uri={tracking_uri}",
                 f"paths.output_dir={tmp_path / 'out'}", f"paths.cache_dir={cache_dir}"]  # fmt: skip
    setup = _run([*overrides, "tuner.role=setup"], tmp_path, "setup")
    assert setup.wait(120) == 0, (tmp_path / "setup.log").read_text()[-3000:]

    workers = Workers(overrides, tmp_path)
    for k in range(N_WORKERS):
        workers.start(k)
    try:
        done = _chaos(workers, storage, name, started + BUDGET_S - 40)
        for process in workers.processes.values():
            process.wait(60)
    finally:
        for k in workers.alive():
            workers.kill(k)
    assert done["kills"] >= 1 and done["cuts"] >= 1, done

    finalizers = [_run([*overrides, "tuner.role=finalize"], tmp_path, f"finalize{i}") for i in range(2)]
    codes = [p.wait(max(10.0, started + BUDGET_S - time.monotonic())) for p in finalizers]
    assert codes == [0, 0], (tmp_path / "finalize0.log").read_text()[-3000:]

    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    retried = {n for t in study.trials for n in t.system_attrs.get("retry_history", [])}
    counted = [t for t in study.trials if t.number not in retried]
    assert len(counted) == N_TRIALS and all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in counted)
    assert not [t for t in study.trials if t.state.name in ("WAITING", "RUNNING")]
    params = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(params)) == len(params), "a trial's parameters were trained twice"

    client = mlflow.MlflowClient(tracking_uri)
    parent = client.get_run(study.user_attrs[PARENT_ATTR])
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000,
    )
    finals = [r for r in children if r.data.tags.get("optuna.role") == "final"]
    assert len(finals) == 1 and "test/uar" in finals[0].data.metrics
    trials = [r for r in children if r.data.tags.get("optuna.role") == "trial"]
    trial_runs = sorted(int(r.data.tags["optuna.trial"]) for r in trials)
    assert trial_runs == sorted(t.number for t in study.trials), workers.logs()  # one to one
    elapsed = time.monotonic() - started
    print(f"chaos: {N_WORKERS} workers, {N_TRIALS} trials, {len(study.trials)} in the study, "
          f"{done['kills']} SIGKILLs, {done['cuts']} connection cuts, {elapsed:.0f} s")  # fmt: skip
    assert elapsed < BUDGET_S
