"""The recorder against a real ``mlflow server`` on 127.0.0.1 that restarts while a run is being written."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from emoexp.engine.recorder import Recorder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    log = (folder / "server.log").open("a")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    _stop_server(server)
    pytest.fail("mlflow server did not answer within 120 s:\n" + (folder / "server.log").read_text()[-3000:])


def _stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def test_points_written_while_the_server_restarts_land_once_it_is_back(tmp_path):
    port = _free_port()
    server = _start_server(tmp_path, port)
    try:
        recorder = Recorder.connect(f"http://127.0.0.1:{port}")
        run_id = recorder.create_run(recorder.experiment_id("restart"), "r", {"k": "v"})
        recorder.log_metrics(run_id, {"val/uar": 0.25}, step=0)
        recorder.flush()
        _stop_server(server)

        recorder.log_metrics(run_id, {"val/uar": 0.5}, step=1)
        writer = threading.Thread(target=recorder.flush)  # retries while the server is away
        writer.start()
        time.sleep(3)
        assert writer.is_alive()  # still retrying, nothing dropped
        server = _start_server(tmp_path, port)
        writer.join(timeout=300)
        assert not writer.is_alive()
        recorder.log_text(run_id, "after the restart", "notes/after.txt")
        recorder.end(run_id)

        history = sorted((m.step, m.value) for m in recorder.client.get_metric_history(run_id, "val/uar"))
        assert history == [(0, 0.25), (1, 0.5)] and recorder.unwritten == 0
        run = recorder.client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [a.path for a in recorder.client.list_artifacts(run_id, "notes")] == ["notes/after.txt"]
    finally:
        _stop_server(server)
