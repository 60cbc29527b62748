"""``bench/gpu_throughput.py`` answers on a machine without a GPU, and its measurements run (on the CPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_throughput.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the script measures instead")
def test_without_a_gpu_it_says_so_and_exits_0():
    result = _run()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No CUDA GPU is visible" in result.stdout and "--cpu" in result.stdout


def test_the_cpu_path_measures_every_default_model_in_fp32_and_bf16(cache_dir):
    result = _run(
        "--cpu", "--steps", "2", "--warmup", "1", "--max-samples", "84", "--cache-dir", str(cache_dir)
    )
    assert "failed:" not in result.stdout, result.stdout  # a configuration that does not train
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line[:1].isalpha()}
    assert rows["modality"] == ["fp32", "bf16-mixed", "bf16/fp32"]  # no DDP column without GPUs
    for modality in ("audio", "text", "visual"):
        fp32, bf16, ratio = (float(v) for v in rows[modality])
        assert fp32 > 0 and bf16 > 0 and ratio == pytest.approx(bf16 / fp32, abs=0.01), rows[modality]
    assert re.match(r"CPU \(\d+ cores", result.stdout)
