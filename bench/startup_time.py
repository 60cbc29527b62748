"""Start-up time of `python train.py --cfg job` (config printing must stay light).

Prints the median wall time over several runs next to a bare `python -c pass` (target < 1.5 s).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    bare = timed([sys.executable, "-c", "pass"])
    job = timed([sys.executable, "train.py", "--cfg", "job"])
    help_ = timed([sys.executable, "train.py", "--help"])
    print(f"python -c pass           : {bare:6.2f} s")
    print(f"python train.py --cfg job: {job:6.2f} s  (target < 1.5 s)")
    print(f"python train.py --help   : {help_:6.2f} s")


if __name__ == "__main__":
    main()
