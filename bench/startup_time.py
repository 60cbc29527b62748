"""Start-up times: config printing, time to the first optimiser step, and prediction.

* ``python train.py --cfg job`` and ``--help`` (config printing must stay light; target < 1.5 s),
  next to a bare ``python -c pass``.
* **First optimiser step**: ``python train.py`` (the default experiment) is launched with
  ``bench/first_step_clock.py``'s ``FirstStepClock`` as an extra callback, which writes the
  wall-clock time of the end of the first training batch (its optimiser step done) to a file;
  the process is then killed. The first launch fills the feature cache (*cold*); the next ones
  find it (*warm*, target <= 15 s).
* **Prediction** (``--predict <run id> <text | file>``, repeatable, with ``--tracking-uri``):
  ``python -m emoexp.predict run_id=... input=...`` from launch to exit (target <= 5 s).

Every timing is the median over ``--repeats`` runs.

    python bench/startup_time.py [--repeats 5] [--skip-first-step]
        [--tracking-uri sqlite:///mlflow.db --predict <run id> clip.wav --predict <run id> "a text"]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK_FILE = "EMOEXP_FIRST_STEP_FILE"  # read by bench/first_step_clock.py


def timed(cmd: list[str], repeats: int) -> float:
    """Median wall time of ``cmd`` (it must succeed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_step_s(folder: Path, timeout_s: float = 600) -> float:
    """Seconds from launching ``python train.py`` to the end of its first optimiser step."""
    clock = folder / f"first-step-{time.monotonic_ns()}"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")])
    )
    env[CLOCK_FILE] = str(clock)
    command = [
        sys.executable,
        "train.py",
        "+callbacks.first_step._target_=first_step_clock.FirstStepClock",
        f"paths.cache_dir={folder / 'cache'}",
        f"paths.output_dir={folder / 'outputs'}",
        f"hydra.run.dir={folder / 'hydra'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
    ]
    launched = time.time()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        while not clock.exists():
            if process.poll() is not None:
                sys.exit(f"train.py exited before its first step:\n{process.stderr.read().decode()[-3000:]}")
            if time.time() - launched > timeout_s:
                sys.exit(f"no optimiser step within {timeout_s:.0f} s")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one call; let it land
        return float(clock.read_text()) - launched
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def first_step(repeats: int) -> None:
    """Print the cold (empty feature cache) and warm first-step times."""
    with tempfile.TemporaryDirectory() as tmp:
        cold = first_step_s(Path(tmp))
        warm = statistics.median(first_step_s(Path(tmp)) for _ in range(repeats))
    print(f"first optimiser step, cold cache : {cold:6.2f} s")
    print(f"first optimiser step, warm cache : {warm:6.2f} s  (target <= 15 s)")


def predict(args: argparse.Namespace) -> None:
    """Print the median time of ``python -m emoexp.predict`` for each ``--predict RUN INPUT``."""
    for run_id, text in args.predict:
        command = [
            sys.executable,
            "-m",
            "emoexp.predict",
            f"run_id={run_id}",
            f"input={text}",
            f"tracking_uri={args.tracking_uri}",
            f"output={Path(tempfile.gettempdir()) / 'emoexp-bench-predict.csv'}",
            "progress=false",
        ]
        seconds = timed(command, args.repeats)
        print(f"python -m emoexp.predict input={text[-40:]!r}: {seconds:6.2f} s  (target <= 5 s)")


def main() -> None:
    """Time what the options ask for."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-config", action="store_true", help="skip --cfg job / --help")
    parser.add_argument("--skip-first-step", action="store_true", help="skip the first-optimiser-step timing")
    parser.add_argument("--tracking-uri", default="", help="the store of the --predict runs")
    parser.add_argument(
        "--predict",
        nargs=2,
        action="append",
        default=[],
        metavar=("RUN", "INPUT"),
        help="time predicting INPUT (a text or a file) with RUN's model (repeatable)",
    )
    args = parser.parse_args()
    if not args.skip_config:
        print(f"python -c pass           : {timed([sys.executable, '-c', 'pass'], args.repeats):6.2f} s")
        job = timed([sys.executable, "train.py", "--cfg", "job"], args.repeats)
        print(f"python train.py --cfg job: {job:6.2f} s  (target < 1.5 s)")
        print(
            f"python train.py --help   : {timed([sys.executable, 'train.py', '--help'], args.repeats):6.2f} s"
        )
    if not args.skip_first_step:
        first_step(args.repeats)
    if args.predict:
        predict(args)


if __name__ == "__main__":
    main()
