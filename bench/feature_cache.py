"""Feature cache and MFCC extraction on the embedded audio corpus.

Prints, measured side by side in one run:

1. Data preparation (decode every WAV + MFCC + train-split standardisation, through
   ``emoexp.data.datamodule.build_features``) with a cold feature cache vs a warm one
   (target: warm >= 5x faster). "Cold" means the *feature* cache is empty; the WAV files
   themselves are in the OS page cache, as they are on a second run.
2. MFCC throughput in clips/second: emoexp's torchaudio MFCC (``MFCCFeatures.frames``) vs
   ``librosa.feature.mfcc`` with matched parameters, on the same decoded waveforms, plus how
   close their values are.

librosa is a benchmark-only dependency: ``pip install librosa==0.11.0``.

Usage: ``python bench/feature_cache.py [--n-samples 840] [--repeats 3] [--threads N]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from emoexp.data import schema
from emoexp.data.datamodule import build_features
from emoexp.data.embedded import load_embedded
from emoexp.features.audio import MFCCFeatures, load_waveform


def _librosa():
    try:
        import librosa
    except ImportError as error:
        raise SystemExit(
            "bench/feature_cache.py compares against librosa, which is not an emoexp dependency: "
            "install it for the benchmark with `pip install librosa==0.11.0`."
        ) from error
    return librosa


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_cache(manifest, repeats: int) -> tuple[float, float]:
    train = np.ones(len(manifest), dtype=bool)

    def prepare(cache: str) -> bool:
        # The extraction progress bar (stderr) would garble the table.
        with contextlib.redirect_stderr(io.StringIO()):
            return build_features(MFCCFeatures(), manifest, train, cache)[1]

    colds, warms = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            assert not prepare(cache)
            colds.append(time.perf_counter() - start)
            for _ in range(3):
                start = time.perf_counter()
                assert prepare(cache)
                warms.append(time.perf_counter() - start)
    return statistics.median(colds), statistics.median(warms)


def bench_extraction(waveforms: list[torch.Tensor], repeats: int) -> dict[str, float]:
    librosa = _librosa()
    featurizer = MFCCFeatures()
    arrays = [w.numpy() for w in waveforms]

    def torchaudio_mfcc() -> list[torch.Tensor]:
        return [featurizer.frames(w) for w in waveforms]

    def librosa_mfcc() -> list[np.ndarray]:
        # The torchaudio defaults of MFCCFeatures spelled out for librosa: HTK mel scale without
        # filter normalisation, reflect padding, power spectrum, dB (librosa's top_db=80), DCT-II ortho.
        return [
            librosa.feature.mfcc(
                y=y,
                sr=featurizer.sample_rate,
                n_mfcc=featurizer.n_mfcc,
                n_fft=400,
                hop_length=featurizer.hop_length,
                n_mels=featurizer.n_mels,
                htk=True,
                mel_norm=None,
                center=True,
                pad_mode="reflect",
                power=2.0,
            ).T
            for y in arrays
        ]

    reference, other = torchaudio_mfcc(), librosa_mfcc()  # warm-up and parity
    diff = max(float(np.abs(r.numpy() - o).max()) for r, o in zip(reference, other, strict=True))
    scale = max(float(np.abs(r.numpy()).max()) for r in reference)
    corr = float(np.corrcoef(torch.cat(reference).numpy().ravel(), np.concatenate(other).ravel())[0, 1])
    t_torch = median_time(torchaudio_mfcc, repeats)
    t_librosa = median_time(librosa_mfcc, repeats)
    return {
        "torchaudio": len(waveforms) / t_torch,
        "librosa": len(waveforms) / t_librosa,
        "max_abs_diff": diff,
        "value_scale": scale,
        "corr": corr,
        "librosa_version": librosa.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=840, help="clips (default: the default config)")
    parser.add_argument("--n-speakers", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: theirs)")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # numpy's BLAS (librosa) too
    _librosa()  # fail before the slow part if it is missing

    with tempfile.TemporaryDirectory() as data_dir:
        start = time.perf_counter()
        size = {"n_samples": args.n_samples, "n_speakers": args.n_speakers}
        manifest = load_embedded(modalities=["audio"], seed=0, cache_dir=data_dir, **size)
        generated = time.perf_counter() - start
        cold, warm = bench_cache(manifest, args.repeats)
        waveforms = [load_waveform(p, 16000) for p in manifest[schema.AUDIO]]
        seconds = [len(w) / 16000 for w in waveforms]
        extraction = bench_extraction(waveforms, args.repeats)

    print(
        f"embedded audio: {len(manifest)} clips, mean {np.mean(seconds):.2f} s at 16 kHz "
        f"(generated in {generated:.1f} s, untimed below); torch threads: {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print()
    print("data preparation (decode + MFCC + standardise) via build_features")
    print(f"  cold feature cache : {cold:8.3f} s")
    print(f"  warm feature cache : {warm:8.3f} s")
    print(f"  warm speed-up      : {cold / warm:8.1f} x   (target >= 5x)")
    print()
    print(
        f"MFCC extraction, decoded waveforms, n_mfcc=40 n_mels=64 n_fft=400 hop=160 "
        f"(librosa {extraction['librosa_version']})"
    )
    print(f"  torchaudio (emoexp): {extraction['torchaudio']:8.1f} clips/s")
    print(f"  librosa            : {extraction['librosa']:8.1f} clips/s")
    print(f"  torchaudio/librosa : {extraction['torchaudio'] / extraction['librosa']:8.2f} x")
    print(
        f"  parity             : max |diff| {extraction['max_abs_diff']:.3g} on values up to "
        f"{extraction['value_scale']:.3g}; correlation {extraction['corr']:.6f}"
    )


if __name__ == "__main__":
    main()
