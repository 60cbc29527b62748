"""A corpus whose features are larger than the memory a training process may use.

Prints, measured side by side in one run:

1. Log-mel extraction of a generated corpus (``--clips`` WAV files of 2-3 s, 16 kHz, written to a
   temporary folder) into one feature file, by 1 process and by 2 processes (``extract_workers``;
   each process with one torch thread), the ratio of the two (target >= 1.7x), and that both
   files hold the same bytes.
2. Training a small CNN for ``--steps`` steps (Lightning, the datamodule and task that ``train.py``
   uses) in a subprocess with ``datamodule.storage=mapped``, while this process samples the resident
   memory of the subprocess's tree every 20 ms and stops it if it goes over ``--cap-mib``: the peak
   against the cap and the feature file's size (target: the features are larger than the cap and
   training stays under it). The same with ``storage=memory`` shows what the cap does to the
   in-memory path.

psutil is a benchmark-only dependency: ``pip install psutil==7.2.2``.

Usage: ``python bench/bigger_than_memory.py [--clips 30000] [--cap-mib 1536] [--steps 200]``
"""

from __future__ import annotations

import argparse
import filecmp
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from emoexp.data import schema
from emoexp.features.audio import LogMelFeatures
from emoexp.features.cache import content_key, feature_path
from emoexp.features.store import write_feature_file

RATE = 16000
CLASSES = ("neutral", "anger", "happiness", "sadness")
MAX_SECONDS = 3.0


def _psutil():
    try:
        import psutil
    except ImportError as error:
        raise SystemExit(
            "bench/bigger_than_memory.py samples memory with psutil, which is not an emoexp dependency: "
            "install it for the benchmark with `pip install psutil==7.2.2`."
        ) from error
    return psutil


def _clip(rng: np.random.Generator, label: int) -> np.ndarray:
    """A voiced-like tone: a class-dependent pitch contour with harmonics, tremolo and noise."""
    seconds = rng.uniform(2.0, MAX_SECONDS)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = (110 + 45 * label) * (1 + 0.15 * rng.standard_normal()) * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 5))
    wave *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2
    wave += 0.05 * rng.standard_normal(t.size)
    return (0.2 * wave / np.abs(wave).max()).astype(np.float32)


def _write_clips(folder: Path, first: int, labels: list[int], seed: int) -> None:
    for i, label in enumerate(labels, start=first):
        rng = np.random.default_rng([seed, i])  # the same clip whichever process writes it
        sf.write(folder / "wav" / f"clip{i:06d}.wav", _clip(rng, label), RATE, subtype="PCM_16")


def generate(folder: Path, clips: int, seed: int = 0, processes: int = 2) -> pd.DataFrame:
    """Write ``clips`` WAV files under ``folder``; return their manifest (80/10/10 split in ``part``)."""
    rng = np.random.default_rng(seed)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    labels = rng.integers(len(CLASSES), size=clips).tolist()
    step = 1000
    with ProcessPoolExecutor(processes) as pool:
        jobs = [
            pool.submit(_write_clips, folder, s, labels[s : s + step], seed) for s in range(0, clips, step)
        ]
        for job in jobs:
            job.result()
    parts = np.array(["train"] * 8 + ["val", "test"])[rng.integers(10, size=clips)]
    manifest = pd.DataFrame(
        {
            schema.ID: [f"clip{i:06d}" for i in range(clips)],
            schema.AUDIO: [str(folder / "wav" / f"clip{i:06d}.wav") for i in range(clips)],
            schema.EMOTION: [CLASSES[label] for label in labels],
            "part": parts,
        }
    )
    manifest.to_csv(folder / "manifest.csv", index=False)
    return manifest


def time_extraction(manifest: pd.DataFrame, path: Path, workers: int) -> float:
    start = time.perf_counter()
    write_feature_file(LogMelFeatures(max_seconds=MAX_SECONDS), manifest, path, workers)
    return time.perf_counter() - start


def tree_memory(process) -> tuple[int, int]:
    """Resident bytes of a process and all its descendants: in all, and less shared file pages.

    The second figure (resident memory less pages shared with files: libraries, mapped files)
    is what the process allocated itself; the first also counts the ~300 MiB of torch's libraries.
    """
    psutil = _psutil()
    rss = anonymous = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        anonymous += info.rss - info.shared
    return rss, anonymous


def run_capped(command: list[str], cap: int, log_path: Path) -> dict:
    """Run ``command``, sampling its tree's RSS every 20 ms; stop it at once if it exceeds ``cap``."""
    psutil = _psutil()
    start = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        process, peak, peak_anonymous, over = psutil.Process(child.pid), 0, 0, None
        while child.poll() is None:
            try:
                rss, anonymous = tree_memory(process)
            except psutil.NoSuchProcess:
                break
            peak, peak_anonymous = max(peak, rss), max(peak_anonymous, anonymous)
            if rss > cap:
                over = time.perf_counter() - start
                for member in [*process.children(recursive=True), process]:
                    member.kill()
                break
            time.sleep(0.02)
        output = child.communicate()[0]
    report = {"peak_sampled": peak, "peak_anonymous": peak_anonymous, "over_cap_after_s": over}
    report["wall_s"] = time.perf_counter() - start
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if over is None and child.returncode == 0 and lines:
        report.update(json.loads(lines[-1]))
    else:
        report["returncode"] = child.returncode
    return report


def train_child(workdir: Path, storage: str, steps: int, threads: int) -> None:
    """The capped subprocess: prepare the data module (cache hit) and train ``steps`` steps."""
    import lightning.pytorch as pl

    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.data.splits import Fold
    from emoexp.features.store import FeatureStorage
    from emoexp.labels.schemes import CategoricalScheme
    from emoexp.models.cnn import SmallCNN
    from emoexp.tasks.emotion import EmotionTask

    torch.set_num_threads(threads)
    imported = _psutil().Process().memory_info().rss
    manifest = pd.read_csv(workdir / "manifest.csv")
    scheme = CategoricalScheme(name="bench4", classes=list(CLASSES))
    start = time.perf_counter()
    datamodule = EmotionDataModule(
        manifest,
        Fold("holdout", manifest["part"].to_numpy()),
        LogMelFeatures(max_seconds=MAX_SECONDS),
        scheme.targets(manifest),
        batch_size=32,
        cache_dir=workdir / "cache",
        storage=FeatureStorage(storage, 1),
    )
    datamodule.setup()
    prepared = time.perf_counter() - start
    set_up = _psutil().Process().memory_info().rss
    task = EmotionTask(
        SmallCNN(len(CLASSES), in_chans=1, channels=(8, 16, 32)),
        scheme,
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
    )
    trainer = pl.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    result = {
        "cache_hit": datamodule.cache_hit,
        "prepare_s": prepared,
        "steps": trainer.global_step,
        "train_s": time.perf_counter() - start,
        "peak_kernel": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_imported": imported,
        "rss_set_up": set_up,
        "rss_trained": _psutil().Process().memory_info().rss,
    }
    print(json.dumps(result))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def extraction(manifest: pd.DataFrame, workdir: Path) -> tuple[dict, Path]:
    """Extract with 1 then 2 processes; the second file becomes the cache entry training reads."""
    featurizer = LogMelFeatures(max_seconds=MAX_SECONDS)
    key = content_key(manifest, featurizer.params(), type(featurizer).__qualname__)
    cached = feature_path(key, workdir / "cache")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.unlink(missing_ok=True)
    one = workdir / "one_process.safetensors"
    torch.set_num_threads(1)  # one process, one thread: what each of the 2 workers gets
    load_one = _load()
    t_one = time_extraction(manifest, one, 1)
    load_two = _load()
    t_two = time_extraction(manifest, cached, 2)
    same = filecmp.cmp(one, cached, shallow=False)
    one.unlink()
    report = {"one_s": t_one, "two_s": t_two, "load_one": load_one, "load_two": load_two, "same": same}
    return report, cached


def print_training(name: str, report: dict, cap: int, size: int) -> None:
    mib = 2**20
    print(f"training, storage={name}:")
    if report.get("over_cap_after_s") is not None:
        print(
            f"  stopped: tree RSS passed the cap after {report['over_cap_after_s']:.1f} s "
            f"(last sample {report['peak_sampled'] / mib:.0f} MiB)"
        )
        return
    if "steps" not in report:
        print(f"  failed with exit status {report.get('returncode')}: see the log")
        return
    print(
        f"  {report['steps']} steps in {report['train_s']:.1f} s after {report['prepare_s']:.1f} s of "
        f"data preparation (feature cache {'hit' if report['cache_hit'] else 'miss'})"
    )
    print(
        f"  RSS: {report['rss_imported'] / mib:.0f} MiB after imports, {report['rss_set_up'] / mib:.0f} MiB "
        f"with the data module set up, {report['rss_trained'] / mib:.0f} MiB after training"
    )
    print(
        f"  peak RSS: {report['peak_sampled'] / mib:.0f} MiB sampled (process tree; "
        f"{report['peak_anonymous'] / mib:.0f} MiB without shared library and file pages), "
        f"{report['peak_kernel'] / mib:.0f} MiB kernel high-water mark; cap {cap / mib:.0f} MiB, "
        f"features {size / mib:.0f} MiB -> {'UNDER' if report['peak_kernel'] <= cap else 'OVER'} the cap"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30000, help="WAV clips to generate (>= 20,000)")
    parser.add_argument("--cap-mib", type=int, default=1536, help="RSS cap of the training process tree")
    parser.add_argument("--steps", type=int, default=200, help="training steps (batch 32)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpus here (default: temp)")
    parser.add_argument("--no-training", action="store_true", help="stop after the extraction figures")
    parser.add_argument("--train-child", choices=["mapped", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_child:
        train_child(args.workdir, args.train_child, args.steps, args.threads)
        return
    _psutil()  # fail before the slow part if it is missing
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="emoexp-bigger-than-memory-"))
    print(f"start: {_load()}; work folder {workdir}")
    try:
        run(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> None:
    start = time.perf_counter()
    reused = (workdir / "manifest.csv").exists()  # --workdir of an earlier run: the same corpus
    manifest = pd.read_csv(workdir / "manifest.csv") if reused else generate(workdir, args.clips)
    if len(manifest) != args.clips:
        raise SystemExit(f"{workdir} holds a corpus of {len(manifest)} clips, not --clips {args.clips}")
    wav_bytes = sum(os.path.getsize(p) for p in manifest[schema.AUDIO])
    how = "reused from --workdir" if reused else f"generated in {time.perf_counter() - start:.0f} s"
    print(
        f"corpus: {len(manifest)} clips of 2-3 s, {wav_bytes / 2**30:.2f} GiB of WAV, {how} (untimed below)"
    )
    report, cached = extraction(manifest, workdir)
    size = cached.stat().st_size
    frames = LogMelFeatures(max_seconds=MAX_SECONDS).max_frames
    print(f"log-mel extraction (64 mels x {frames} frames), each process with one torch thread")
    for label, seconds, load in (
        ("1 process  ", report["one_s"], report["load_one"]),
        ("2 processes", report["two_s"], report["load_two"]),
    ):
        print(f"  {label}: {seconds:7.1f} s  {len(manifest) / seconds:6.0f} clips/s  (at start: {load})")
    ratio = report["one_s"] / report["two_s"]
    print(f"  speed-up   : {ratio:7.2f} x   (target >= 1.7x); the two files are identical: {report['same']}")
    print(f"  feature file: {size / 2**30:.2f} GiB ({size / 2**20:.0f} MiB)")
    cap = args.cap_mib * 2**20
    for storage in () if args.no_training else ("mapped", "memory"):
        command = [sys.executable, __file__, "--train-child", storage, "--workdir", str(workdir)]
        command += ["--steps", str(args.steps), "--threads", str(args.threads)]
        result = run_capped(command, cap, workdir / f"train_{storage}.log")
        print_training(storage, result, cap, size)
        if "steps" not in result and result.get("over_cap_after_s") is None:
            print((workdir / f"train_{storage}.log").read_text()[-3000:])


if __name__ == "__main__":
    main()
