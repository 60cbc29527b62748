"""Races of a study's workers, provoked deterministically: setup, the final run, fixed settings, parent run.

Each race is forced by hooks and events that order two workers (threads with their own storage
connections and recorders) step by step, never by sleeps that usually work: the hook holds the
first worker right after it read the study, until the second worker has either done the same
(the race) or reached the study's lock (no race possible). Trials are one-fit SVMs on tiny data.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from emoexp.config import ConfigError
from emoexp.tuning import storage as storage_module
from emoexp.tuning import tracking
from emoexp.tuning.tuner import Tuner

KINDS = ["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.db),
         pytest.param("mariadb", marks=pytest.mark.db)]  # fmt: skip
FINAL_CLAIM_ATTR = "emoexp:final_claim"  # the study attribute of a claimed final run
WAIT_S = 60.0  # a safety bound on every wait: a hook that is never released fails the test, not hangs it


@pytest.fixture(params=KINDS)
def study_storage(request, tmp_path, database_server) -> Iterator[tuple[str, str]]:
    """(storage URL, study name): a file storage under tmp_path, or a fresh study on a server."""
    kind = request.param
    name = f"svm-race-{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}", name
        return
    if kind == "journal":
        yield f"journal:{tmp_path / 'optuna.log'}", name
        return
    url = database_server(kind)
    yield url, name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=url)


def _overrides(tmp_path: Path, cache_dir: Path, url: str, name: str, *extra: str) -> list[str]:
    return [
        "hparams_search=svm",
        "debug=fast",
        "model.preprocessing.k_best=32",  # a fixed feature count: fewer searched keys, faster trials
        "tuner.heartbeat_interval=1",
        "tuner.grace_period=3",
        "tuner.threads_per_worker=1",
        f"paths.output_dir={tmp_path / 'out'}",
        f"paths.cache_dir={cache_dir}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.study_name={name}",
        *extra,
    ]


def _in_thread(name: str, call, results: dict) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = call()
        except BaseException as error:  # handed to the test's thread
            results[name] = error

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _runs(tmp_path: Path, role: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    return [r for r in runs if r.data.tags.get("optuna.role") == role]


def _study(url: str, name: str):
    return optuna.load_study(study_name=name, storage=storage_module.open_storage(url))


# ------------------------------------------------------------------------------------------ setup
def test_two_setups_started_together_queue_n_trials_and_one_parent_run(
    study_storage, tmp_path, cache_dir, monkeypatch, make_tuner
):
    url, name = study_storage
    overrides = _overrides(tmp_path, cache_dir, url, name, "hydra.sweeper.n_trials=3")
    first, second = make_tuner(overrides), make_tuner(overrides)
    counted, second_arrived = threading.Event(), threading.Event()
    count = Tuner.counted_trials
    lock = getattr(storage_module, "study_lock", None)

    def hooked_count(self, study):
        trials = count(self, study)
        if threading.current_thread().name == "first":
            counted.set()  # the first setup has counted the study's trials ...
            assert second_arrived.wait(WAIT_S)  # ... and enqueues only once the second has arrived
        else:
            second_arrived.set()  # the race: the second counted the same trials
        return trials

    @contextlib.contextmanager
    def hooked_lock(*args, **kwargs):
        if threading.current_thread().name == "second":
            second_arrived.set()  # the second waits for the first's lock: it cannot count meanwhile
        with lock(*args, **kwargs):
            yield

    monkeypatch.setattr(Tuner, "counted_trials", hooked_count)
    if lock is not None:
        monkeypatch.setattr(storage_module, "study_lock", hooked_lock)
    results: dict = {}
    threads = [_in_thread("first", first.setup, results)]
    assert counted.wait(WAIT_S)
    threads.append(_in_thread("second", second.setup, results))
    for thread in threads:
        thread.join(WAIT_S)
    for value in results.values():
        if isinstance(value, BaseException):
            raise value

    study = _study(url, name)
    assert len(study.trials) == 3 and all(t.state.name == "WAITING" for t in study.trials)
    assert results["first"][1] == results["second"][1]  # one parent run, shared
    assert len(_runs(tmp_path, "study")) == 1


# -------------------------------------------------------------------------------------- final run
def _trained_study(
    make_tuner: Callable[..., Tuner], tmp_path: Path, cache_dir: Path, url: str, name: str, *extra: str
) -> list[str]:
    """A study of two finished SVM trials and its parent run; return its overrides."""
    overrides = _overrides(tmp_path, cache_dir, url, name, "hydra.sweeper.n_trials=2", *extra)
    tuner = make_tuner([*overrides, "tuner.final_run=false"])
    tuner.setup()
    assert tuner.work() == 2
    return overrides


def _best(url: str, name: str):
    study = _study(url, name)
    return study, study.best_trial.number, study.user_attrs[tracking.PARENT_ATTR]


def test_two_finalize_steps_together_train_and_test_the_best_trial_once(
    study_storage, tmp_path, cache_dir, monkeypatch, make_tuner
):
    from emoexp.engine import run as engine_run

    url, name = study_storage
    overrides = _trained_study(make_tuner, tmp_path, cache_dir, url, name)
    first, second = make_tuner(overrides), make_tuner(overrides)
    training, second_done = threading.Event(), threading.Event()
    trained: list[str] = []
    train = engine_run.train_run

    def hooked_train(cfg):
        trained.append(threading.current_thread().name)
        if threading.current_thread().name == "first":
            training.set()  # the first finalize step trains the final run ...
            assert second_done.wait(WAIT_S)  # ... until the second step has made its decision
        else:
            second_done.set()  # the race: the second trains it too
        return train(cfg)

    monkeypatch.setattr(engine_run, "train_run", hooked_train)

    def finalize(tuner: Tuner):
        study, number, parent_id = _best(url, name)
        recorder, _ = tuner._mlflow()
        return tuner.final_run(study, number, parent_id, recorder)

    results: dict = {}
    thread = _in_thread("first", lambda: finalize(first), results)
    assert training.wait(WAIT_S)
    try:
        results["second"] = finalize(second)
    finally:
        second_done.set()
        thread.join(WAIT_S)
    for value in results.values():
        if isinstance(value, BaseException):
            raise value

    assert trained == ["first"]
    assert results["second"]["skipped"] and "owner" in results["second"]
    [final] = _runs(tmp_path, "final")
    assert "test/uar" in final.data.metrics
    study = _study(url, name)
    assert study.user_attrs["emoexp:final_run"]["run_id"] == final.info.run_id
    assert not study.user_attrs.get(FINAL_CLAIM_ATTR)  # released once done


def test_a_dead_claimants_final_run_is_taken_over_a_live_ones_is_not(
    tmp_path, cache_dir, monkeypatch, make_tuner
):
    from emoexp.engine import run as engine_run

    url, name = f"sqlite:///{tmp_path / 'optuna.db'}", "svm-claims"
    overrides = _trained_study(make_tuner, tmp_path, cache_dir, url, name)
    study, number, parent_id = _best(url, name)
    tuner = make_tuner(overrides)
    recorder, _ = tuner._mlflow()
    trained: list[int] = []
    train = engine_run.train_run
    monkeypatch.setattr(engine_run, "train_run", lambda cfg: trained.append(1) or train(cfg))

    owner = "node-7:4242 (worker 3)"
    live = {"trial": number, "owner": owner, "token": "t", "heartbeat": time.time(), "count": 1}
    study.set_user_attr(FINAL_CLAIM_ATTR, live)
    skipped = tuner.final_run(study, number, parent_id, recorder)
    assert skipped["skipped"] and skipped["owner"] == owner and trained == []

    study.set_user_attr(FINAL_CLAIM_ATTR, live | {"heartbeat": time.time() - 60})  # its holder died
    record = tuner.final_run(study, number, parent_id, recorder)
    assert trained == [1] and record["trial"] == number and record["run_id"]
    assert len(_runs(tmp_path, "final")) == 1


# --------------------------------------------------------------------------------- fixed settings
def test_a_worker_with_other_fixed_settings_is_refused_naming_the_keys(tmp_path, cache_dir, make_tuner):
    url, name = f"sqlite:///{tmp_path / 'optuna.db'}", "svm-fixed"
    overrides = _overrides(tmp_path, cache_dir, url, name, "hydra.sweeper.n_trials=1")
    make_tuner(overrides).setup()

    with pytest.raises(ConfigError) as refused:
        make_tuner([*overrides, "seed=7", "data.max_samples=90", "tuner.role=worker"]).work()
    message = str(refused.value)
    assert "seed" in message and "data.max_samples" in message and name in message
    assert "trainer.max_epochs" not in message
    # What only says where things go, how fast they run or how the tuner runs is not a fixed setting.
    volatile = make_tuner([*overrides, f"paths.output_dir={tmp_path / 'elsewhere'}", "num_threads=1",
                       "tuner.worker_id=5", "tuner.grace_period=9"])  # fmt: skip
    volatile.load_study(volatile.open_storage(), create=False)
    # A searched key given a value on the command line is no longer searched: a different study.
    with pytest.raises(ConfigError, match=r"model\.estimator\.classifier\.C"):
        pinned = make_tuner([*overrides, "model.estimator.classifier.C=1.0"])
        pinned.load_study(pinned.open_storage(), create=False)


def test_the_final_run_is_the_best_trials_stored_configuration(tmp_path, cache_dir, mlflow_runs, make_tuner):
    url, name = f"sqlite:///{tmp_path / 'optuna.db'}", "svm-final-config"
    overrides = _trained_study(make_tuner, tmp_path, cache_dir, url, name)
    study, number, _ = _best(url, name)

    # Another fixed setting on the finalize command line cannot change what is tested: refused.
    with pytest.raises(ConfigError, match="seed"):
        make_tuner([*overrides, "seed=7", "tuner.role=finalize"]).run()
    assert not _runs(tmp_path, "final")

    # Another command line with other allowed keys: where things go and how fast (paths, threads)
    # come from it; what is trained is the trial's stored configuration (its pruner node too).
    elsewhere = [f"paths.output_dir={tmp_path / 'final-job'}", "num_threads=1", "pruner=none"]
    summary = make_tuner([*overrides, "tuner.role=finalize", *elsewhere]).run()
    [final] = _runs(tmp_path, "final")
    assert final.data.tags["output_dir"] == str(tmp_path / "final-job" / "final")
    assert summary["final"]["run_id"] == final.info.run_id and summary["final"]["trial"] == number
    best = study.trials[number]
    for key, value in best.params.items():
        logged = final.data.params[key]
        assert (float(logged) == pytest.approx(value)) if isinstance(value, float) else logged == str(value)
    [trial_run] = [r for r in _runs(tmp_path, "trial") if r.data.tags["optuna.trial"] == str(number)]
    shared = set(trial_run.data.params) & set(final.data.params)
    differ = {k for k in shared if trial_run.data.params[k] != final.data.params[k]}
    # The trial's run and the final run differ only in what the final run is (test, names, folders).
    where_and_what = ("paths.", "tracking.", "tuner.", "callbacks.model_checkpoint.dirpath",
                      "trainer.default_root_dir", "evaluate_test", "run_name")  # fmt: skip
    assert "evaluate_test" in differ and all(k.startswith(where_and_what) for k in differ), differ
    assert final.data.params["pruner._target_"] == trial_run.data.params["pruner._target_"] != "none"


# ------------------------------------------------------------------------------ late heartbeats
def test_a_live_worker_whose_beats_came_late_keeps_its_result_and_its_run(
    study_storage, tmp_path, cache_dir, monkeypatch, make_tuner
):
    """Declared stale after training, before telling: its result goes to the retry, trained once."""
    from emoexp.tuning import liveness

    url, name = study_storage
    overrides = _overrides(tmp_path, cache_dir, url, name, "hydra.sweeper.n_trials=1",
                           "tuner.final_run=false", "tuner.grace_period=1")  # fmt: skip
    late, other = make_tuner(overrides), make_tuner(overrides)
    late.setup()
    trained, declared = threading.Event(), threading.Event()
    objective_values, beat_once = Tuner._objective_values, liveness._beat_once

    def hooked_values(self, metrics, client, run_id):
        if threading.current_thread().name == "late":
            trained.set()  # trained, its run FINISHED; now its beats stop coming ...
            assert declared.wait(WAIT_S)  # ... until another worker has declared its trial stale
        return objective_values(self, metrics, client, run_id)

    def late_beats(storage, trial_id):
        if threading.current_thread().name.startswith("heartbeat"):
            assert declared.wait(WAIT_S)
        beat_once(storage, trial_id)

    monkeypatch.setattr(Tuner, "_objective_values", hooked_values)
    monkeypatch.setattr(liveness, "_beat_once", late_beats)
    results: dict = {}
    thread = _in_thread("late", late.work, results)
    assert trained.wait(WAIT_S)
    try:
        _declare_stale(other, url, name)
    finally:
        declared.set()
        thread.join(WAIT_S)
    assert results["late"] == 1, results
    assert other.work() == 0  # the parameters are not trained a second time

    states = {t.number: t.state.name for t in _study(url, name).trials}
    assert states == {0: "FAIL", 1: "COMPLETE"}  # the stale trial, and its retry with the result
    runs: dict[str, list] = {}
    for run in _runs(tmp_path, "trial"):
        runs.setdefault(run.data.tags["optuna.trial"], []).append(run)
    assert sorted(runs) == ["0", "1"] and all(len(found) == 1 for found in runs.values())
    [done], [stale] = runs["1"], runs["0"]
    assert done.info.status == "FINISHED" and done.data.tags["optuna.state"] == "COMPLETE"
    assert done.data.tags["optuna.retry_of"] == "0" and "error" not in done.data.tags
    assert "val/uar_best" in done.data.metrics
    assert stale.data.tags["optuna.state"] == "FAIL" and "declared stale" in stale.data.tags["error"]


def _declare_stale(tuner: Tuner, url: str, name: str) -> None:
    """Another worker's stale check (as in its work loop), until the storage's clock passes the grace."""
    from emoexp.tuning import liveness

    study = optuna.load_study(study_name=name, storage=tuner.open_storage())
    recorder, experiment_id = tuner._mlflow()
    deadline = time.monotonic() + WAIT_S
    while not (stale := liveness.fail_stale_trials(study, 1.0, tuner._retry())):
        assert time.monotonic() < deadline, "the silent trial was never declared stale"
        time.sleep(0.2)
    for number in stale:
        tuner._record_stale(recorder, experiment_id, study.user_attrs[tracking.PARENT_ATTR], study, number)


# ----------------------------------------------------------------------------------- parent run
def test_a_transient_error_reading_the_parent_run_is_retried_not_a_new_parent(
    tmp_path, cache_dir, monkeypatch, make_tuner
):
    import mlflow
    import requests

    url, name = f"sqlite:///{tmp_path / 'optuna.db'}", "svm-parent"
    overrides = _overrides(tmp_path, cache_dir, url, name, "hydra.sweeper.n_trials=1")
    _, parent_id = make_tuner(overrides).setup()
    failures = []
    get_run = mlflow.MlflowClient.get_run

    def flaky(self, run_id):
        if run_id == parent_id and not failures:
            failures.append(run_id)
            raise requests.exceptions.ConnectionError("connection refused (the server restarts)")
        return get_run(self, run_id)

    monkeypatch.setattr(mlflow.MlflowClient, "get_run", flaky)
    _, again = make_tuner(overrides).setup()
    assert failures == [parent_id] and again == parent_id
    assert len(_runs(tmp_path, "study")) == 1


def test_a_deleted_parent_run_is_a_clear_error_not_a_new_parent(tmp_path, cache_dir, make_tuner):
    import mlflow

    url, name = f"sqlite:///{tmp_path / 'optuna.db'}", "svm-parent-gone"
    overrides = _overrides(tmp_path, cache_dir, url, name, "hydra.sweeper.n_trials=1")
    _, parent_id = make_tuner(overrides).setup()
    mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").delete_run(parent_id)

    with pytest.raises(ConfigError, match=f"{parent_id}.*deleted"):
        make_tuner(overrides).setup()
    assert _study(url, name).user_attrs[tracking.PARENT_ATTR] == parent_id  # not re-pointed
    with pytest.raises(ConfigError, match="parent run"):
        make_tuner([*overrides, f"tracking.uri=sqlite:///{tmp_path / 'other.db'}"]).setup()
