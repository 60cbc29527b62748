"""Reference preprocessing of an exported emoexp model: raw inputs -> the graph's inputs, in numpy.

This file is copied beside every exported graph as ``preprocess.py`` and needs only numpy,
plus soundfile (audio), Pillow (images), tokenizers (checkpoint tokenizers) and onnxruntime
(:func:`predict`); it imports nothing from emoexp. It does the part of the preprocessing that
is not tensor math: decoding files, resizing images, splitting text into token ids. Everything
after that (spectrograms, normalisation with the training-split statistics, the network and the
label scheme's activation) is inside the graph.

Usage, with the folder that holds ``export.json``::

    from preprocess import predict
    predict("export/onnx", {"text": "I can't believe you did this!"})   # {"probs": array [1, C]}
    predict("export/onnx", {"audio": "clip.wav"})

Each input of the graph is described in ``export.json`` (``inputs``): its name, the manifest
column it reads (``text``, ``audio``, ``image``) and its ``kind``:

``waveform``
    ``float32 [1, samples]``: the mono waveform at ``sample_rate`` (channels averaged). Files at
    another rate must be resampled to ``sample_rate`` first (this reference refuses them).
``image``
    ``uint8 [1, channels, size, size]``: grayscale (1 channel) or RGB, bilinear-resized.
``vocab_tokens``
    ``int64 [1, tokens]``: the text split by the model's tokenizer (``tokenizer_module``, a copy
    of emoexp's standard-library-only tokenizer, with the options in ``tokenizer``; older models:
    NFKC-normalised, lower-cased, whitespace-collapsed text split by ``pattern``), ``cls`` first,
    unknown words mapped to ``unk``, cropped to ``max_length``.
``hf_tokens``
    ``int64 [1, tokens]``: the same normalised text through the checkpoint's own tokenizer
    (``tokenizer`` file), special tokens added, truncated to ``max_length``, no padding.
``ngram_tfidf``
    ``float32 [1, num_ngrams]``: the TF-IDF row of a bag-of-n-grams model: for each of ``parts``,
    the text's word n-grams (the model's tokenizer, ``stop_words`` dropped) or character n-grams
    (``char_wb``: within words padded by a space; ``char``: across the text) of the part's
    ``vocabulary``, counted (``1 + log`` with ``sublinear_tf``), times ``idf``, L2-normalised, times
    the part's ``weight``, at the part's ``offset``; as scikit-learn's ``TfidfVectorizer`` does.

The graph takes one input (batch size 1) of any length and returns the arrays named in
``outputs``: ``probs`` (class probabilities, or per-label probabilities to compare with
``scheme.thresholds``) and/or ``dims`` (valence/arousal in [-1, 1]).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "export.json"


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``export.json`` of an export folder."""
    return json.loads((Path(folder) / MANIFEST).read_text())


def normalise_text(text: str) -> str:
    """NFKC-normalise, lower-case and collapse whitespace (as the model's training did)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty or missing text: {text!r}")
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def vocab_tokens(text: str, spec: Mapping[str, Any], folder: str | Path = ".") -> np.ndarray:
    """Token ids ``[1, tokens]`` of a word-vocabulary model.

    The tokens come from the model's own tokenizer module when it shipped one
    (``tokenizer_module``, with its options in ``tokenizer``), else from ``pattern`` over the
    normalised text.
    """
    vocab, unk = spec["vocab"], spec["unk"]
    if "tokenizer_module" in spec:
        normalise_text(text)  # the same refusal of empty texts
        words = _module(Path(folder) / spec["tokenizer_module"]).make_tokenizer(spec["tokenizer"])(text)
    else:
        words = re.findall(spec["pattern"], normalise_text(text))
    ids = [spec["cls"], *(vocab.get(word, unk) for word in words)][: spec["max_length"]]
    return np.asarray([ids], dtype=np.int64)


def _char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams within words padded by a space; a word shorter than n counts once whole."""
    grams = []
    for word in text.split():
        padded = f" {word} "
        for n in range(low, high + 1):
            grams += [padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]
            if len(padded) <= n:
                break
    return grams


def _ngrams(text: str, part: Mapping[str, Any], spec: Mapping[str, Any], folder: str | Path) -> list[str]:
    """The n-grams of one part of a bag-of-n-grams model (before the vocabulary lookup)."""
    module = _module(Path(folder) / spec["tokenizer_module"])
    low, high = part["ngram_range"]
    if part["analyzer"] == "word":
        stop = set(spec["stop_words"])
        tokens = [t for t in module.make_tokenizer(spec["tokenizer"])(text) if t not in stop]
        return [" ".join(tokens[i : i + n]) for n in range(low, high + 1) for i in range(len(tokens) - n + 1)]
    options = {k: spec["tokenizer"][k] for k in ("skin_tones", "max_repeat") if k in spec["tokenizer"]}
    chars = re.sub(r"\s\s+", " ", module.char_text(text, **options))
    if part["analyzer"] == "char_wb":
        return _char_wb_ngrams(chars, low, high)
    return [chars[i : i + n] for n in range(low, high + 1) for i in range(len(chars) - n + 1)]


def ngram_tfidf(text: str, spec: Mapping[str, Any], folder: str | Path = ".") -> np.ndarray:
    """The TF-IDF row ``float32 [1, num_ngrams]`` of a bag-of-n-grams model.

    Written out (with :func:`_ngrams`) rather than by scikit-learn's ``TfidfVectorizer``: this
    file ships beside the graph and needs only numpy (module docstring). The test of the exporter
    checks it against the featurizer's own rows.
    """
    normalise_text(text)  # the same refusal of empty texts
    text = " ".join(text.split())
    row = np.zeros((1, spec["num_ngrams"]), dtype=np.float64)
    for part in spec["parts"]:
        vocabulary = part["vocabulary"]
        counts = Counter(g for g in _ngrams(text, part, spec, folder) if g in vocabulary)
        if not counts:
            continue
        columns = np.asarray([vocabulary[g] for g in counts])
        values = np.asarray(list(counts.values()), dtype=np.float64)
        if spec["sublinear_tf"]:
            values = 1.0 + np.log(values)
        values *= np.asarray(part["idf"])[columns]
        values /= np.sqrt(np.sum(values**2))
        row[0, part["offset"] + columns] = values * part["weight"]
    return row.astype(np.float32)


@functools.cache
def _module(path: Path) -> Any:
    """Import a Python file shipped in the export folder (the tokenizer) by its path, once."""
    import importlib.util
    import sys

    name = f"_exported_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def hf_tokens(text: str, spec: Mapping[str, Any], folder: str | Path) -> np.ndarray:
    """Token ids ``[1, tokens]`` from the checkpoint's own tokenizer (``tokenizers`` library)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(folder) / spec["tokenizer"]))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=spec["max_length"])
    return np.asarray([tokenizer.encode(normalise_text(text)).ids], dtype=np.int64)


def waveform(path: str | Path, spec: Mapping[str, Any]) -> np.ndarray:
    """The mono waveform ``float32 [1, samples]`` of an audio file at ``spec["sample_rate"]``."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} has no samples.")
    if rate != spec["sample_rate"]:
        raise ValueError(
            f"audio file {path} is at {rate} Hz; resample it to {spec['sample_rate']} Hz first "
            "(the exported model was trained at that rate)."
        )
    return np.ascontiguousarray(data.mean(axis=1))[None].astype(np.float32)


def image(path: str | Path, spec: Mapping[str, Any]) -> np.ndarray:
    """An image as ``uint8 [1, channels, size, size]`` (grayscale or RGB, bilinear resize)."""
    from PIL import Image

    size, channels = spec["size"], spec["channels"]
    with Image.open(path) as opened:
        converted = opened.convert("L" if channels == 1 else "RGB")
        if converted.size != (size, size):
            converted = converted.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(converted, dtype=np.uint8)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array[None])


def graph_inputs(row: Mapping[str, Any], manifest: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """The graph's inputs for one raw input ``row`` (``text`` / ``audio`` / ``image`` columns).

    Raises:
        ValueError: If the row lacks a column the model reads, or an input cannot be used.
    """
    readers = {
        "waveform": lambda value, spec: waveform(value, spec),
        "image": lambda value, spec: image(value, spec),
        "vocab_tokens": lambda value, spec: vocab_tokens(value, spec, folder),
        "hf_tokens": lambda value, spec: hf_tokens(value, spec, folder),
        "ngram_tfidf": lambda value, spec: ngram_tfidf(value, spec, folder),
    }
    inputs = {}
    for spec in manifest["inputs"]:
        if spec["column"] not in row:
            raise ValueError(f"the model reads a {spec['column']!r} input; the row has {sorted(row)}.")
        inputs[spec["name"]] = readers[spec["kind"]](row[spec["column"]], spec)
    return inputs


def predict(folder: str | Path, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Run an exported ONNX graph (``model.onnx``) on one raw input with ONNX Runtime."""
    import onnxruntime as ort

    manifest = load_manifest(folder)
    session = ort.InferenceSession(str(Path(folder) / manifest["graph"]), providers=["CPUExecutionProvider"])
    outputs = session.run(manifest["outputs"], graph_inputs(row, manifest, folder))
    return dict(zip(manifest["outputs"], outputs, strict=True))
