"""The exportable graph of a served model: featurizer tensor math + network + the scheme's activation.

A served model's preprocessing is split where tensor math begins. What comes before (decoding an
audio file, resizing an image, splitting a text into token ids) is done by the numpy reference
(:mod:`emoexp.serving.export_reference`); everything after is a :class:`ServedGraph`, built from
the loaded model folder's own featurizer (its learnt state), network and label scheme:

=====================  ======================================  ==================================
featurizer             graph input (batch size 1)              in the graph
=====================  ======================================  ==================================
MFCCFeatures           ``waveform`` float32 [1, samples]       MFCC (float64), crop and padding
LogMelFeatures         ``waveform`` float32 [1, samples]       log-mel (float64), crop, padding
WaveformFeatures       ``waveform`` float32 [1, samples]       crop, per-utterance normalisation,
                                                               padding
ImageFeatures          ``image`` uint8 [1, C, size, size]      (its ``finalize`` only)
VocabTokenizer         ``input_ids`` int64 [1, tokens]         padding, attention mask, length
HFTokenizer            ``input_ids`` int64 [1, tokens]         padding, attention mask, length
NgramFeatures          ``ngram_tfidf`` float32 [1, n-grams]    (the dense TF-IDF row, as is)
MultimodalFeatures     each child's, prefixed ``audio_`` ...   each child's
=====================  ======================================  ==================================

then the featurizer's own ``finalize`` (standardisation with its training-split statistics),
the network and the scheme's :meth:`activate`. The graph pads to the featurizer's fixed size
(``max_frames``, ``max_length``, ``max_seconds``) and computes the lengths exactly as the
featurizer's ``extract`` does, so the network receives what it receives in ``predict``. Where
prediction packs padded sequences (recurrent networks), the exported network runs
:func:`emoexp.models.sequence.lstm_within_lengths` instead: the same numbers, without packing.
The spectrograms are computed in float64 so that the exported FFT agrees with PyTorch's to ~1e-6
relative.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emoexp.features.audio import LogMelFeatures, MFCCFeatures
from emoexp.features.multimodal import MultimodalFeatures, prefixed
from emoexp.features.ngrams import NgramFeatures
from emoexp.features.text import _TOKEN, CLS, PAD, UNK, HFTokenizer, VocabTokenizer
from emoexp.features.visual import ImageFeatures
from emoexp.features.waveform import WaveformFeatures

# Longest audio input the graph accepts (10 minutes at 16 kHz; only a bound for the exporter).
MAX_SAMPLES = 16000 * 600
MIN_SAMPLES = 400  # wav2vec2's first convolution and the STFT's reflect padding need this many
MAX_TOKENS = 4096  # longest token input (longer ones are cropped to the featurizer's max_length)
TOKENIZER_MODULE = "text_tokenizer.py"


class ExportError(ValueError):
    """A model cannot be exported, or its export does not reproduce it; the message says what to do."""


@dataclass
class GraphInput:
    """One input of the graph: its name, the raw column it comes from and how the reference reads it."""

    name: str
    column: str
    kind: str
    example: torch.Tensor
    dynamic: int | None = None  # the dimension whose size may vary (samples, tokens)
    params: dict[str, Any] = field(default_factory=dict)
    save: Callable[[Path], None] | None = None  # writes files the reference needs into the export folder

    def spec(self) -> dict[str, Any]:
        """The JSON description in ``export.json`` (what ``preprocess.py`` reads)."""
        return {
            "name": self.name,
            "column": self.column,
            "kind": self.kind,
            "dtype": str(self.example.dtype).removeprefix("torch."),
            "shape": ["n" if i == self.dynamic else int(size) for i, size in enumerate(self.example.shape)],
            **self.params,
        }


def _lengths(x: torch.Tensor) -> torch.Tensor:
    """``[1]`` holding the (symbolic) size of dimension 1, without a data-dependent tensor."""
    return torch.ones_like(x[:, :, 0] if x.dim() == 3 else x, dtype=torch.long).sum(dim=1)


def _fit(x: torch.Tensor, size: int, value: float, dim: int) -> torch.Tensor:
    """Crop or pad (with ``value``) dimension ``dim`` of ``x`` to ``size``.

    Padding by ``size`` first and cropping after gives every input length the same graph: the
    exporters would otherwise specialise on whether an input is longer than ``size``.
    """
    pad = [0, 0] * (x.dim() - 1 - dim) + [0, size]
    return nn.functional.pad(x, pad, value=value).narrow(dim, 0, size)


class SpectralInput(nn.Module):
    """Waveform -> the featurizer's frames (in float64) -> crop, zero padding -> its standardisation."""

    def __init__(self, featurizer: MFCCFeatures | LogMelFeatures):
        super().__init__()
        self.featurizer = copy.deepcopy(featurizer)
        self.featurizer.frames(torch.zeros(MIN_SAMPLES))  # builds its transform
        self.transform = self.featurizer._transform.double()  # a submodule: the export sees its buffers

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        max_frames = self.featurizer.max_frames
        frames = self.featurizer.frames(waveform[0].double()).float()[None]
        x = _fit(frames, max_frames, 0.0, dim=1)
        return self.featurizer.finalize({"x": x, "lengths": _lengths(frames).clamp(max=max_frames)})


class WaveformInput(nn.Module):
    """Waveform -> crop -> per-utterance normalisation -> zero padding, with its length."""

    def __init__(self, featurizer: WaveformFeatures):
        super().__init__()
        self.limit = int(featurizer.max_seconds * featurizer.sample_rate)
        self.normalize = featurizer.normalize

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        lengths = _lengths(waveform).clamp(max=self.limit)
        signal = _fit(waveform, self.limit, 0.0, dim=1)
        if self.normalize:
            valid = (torch.arange(self.limit)[None, :] < lengths[:, None]).to(signal.dtype)
            count = lengths[:, None].to(signal.dtype)
            mean = (signal * valid).sum(dim=1, keepdim=True) / count
            std = (((signal - mean) * valid).square().sum(dim=1, keepdim=True) / count).sqrt()
            signal = (signal - mean) / (std + 1e-7) * valid
        return {"waveform": signal, "lengths": lengths}


class ImageInput(nn.Module):
    """uint8 image -> the featurizer's scaling and standardisation."""

    def __init__(self, featurizer: ImageFeatures):
        super().__init__()
        self.featurizer = copy.deepcopy(featurizer)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return self.featurizer.finalize({"x": image})


class TokenInput(nn.Module):
    """Unpadded token ids -> ids padded to ``max_length``, attention mask and length (as tokenizers give)."""

    def __init__(self, max_length: int, pad_id: int):
        super().__init__()
        self.max_length = max_length
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        lengths = _lengths(input_ids).clamp(max=self.max_length)
        padded = _fit(input_ids, self.max_length, self.pad_id, dim=1)
        mask = (torch.arange(self.max_length)[None, :] < lengths[:, None]).long()
        return {"input_ids": padded, "attention_mask": mask, "lengths": lengths}


class NgramInput(nn.Module):
    """The dense TF-IDF row, handed to the network as its ``ngram_tfidf`` input (no padding to do)."""

    def forward(self, ngram_tfidf: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        return {"ngram_tfidf": ngram_tfidf}


class MultimodalInput(nn.Module):
    """Each modality's input module; graph inputs ``<modality>_<name>``, features ``<modality>.<key>``."""

    def __init__(self, children: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(children)

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: D102
        out: dict[str, torch.Tensor] = {}
        for modality, part in self.parts.items():
            own = {k[len(modality) + 1 :]: v for k, v in inputs.items() if k.startswith(f"{modality}_")}
            out.update(prefixed(modality, part(**own)))
        return out


def _audio_input(featurizer: Any, module: nn.Module) -> tuple[nn.Module, list[GraphInput]]:
    example = torch.randn(1, int(featurizer.sample_rate * 1.5)) * 0.1
    spec = GraphInput("waveform", "audio", "waveform", example, 1, {"sample_rate": featurizer.sample_rate})
    return module, [spec]


def _image_input(featurizer: ImageFeatures) -> tuple[nn.Module, list[GraphInput]]:
    size, channels = featurizer.size, featurizer.channels
    example = torch.randint(0, 256, (1, channels, size, size), dtype=torch.uint8)
    spec = GraphInput("image", "image", "image", example, None, {"size": size, "channels": channels})
    return ImageInput(featurizer), [spec]


def _vocab_input(featurizer: VocabTokenizer) -> tuple[nn.Module, list[GraphInput]]:
    state = featurizer.state_dict()
    vocab = state["vocab"]
    params = {"vocab": vocab, "cls": vocab[CLS], "unk": vocab[UNK], "max_length": featurizer.max_length}
    example = torch.randint(1, len(vocab), (1, min(8, featurizer.max_length)))
    spec = GraphInput("input_ids", "text", "vocab_tokens", example, 1, params)
    if "tokenizer" in state:
        # The featurizer's tokenizer module depends on the standard library only: it ships beside
        # the graph (as text_tokenizer.py: a file named tokenize.py would shadow Python's own).
        from emoexp.features import tokenize

        params.update(tokenizer=state["tokenizer"], tokenizer_module=TOKENIZER_MODULE)
        spec.save = lambda folder: shutil.copyfile(tokenize.__file__, folder / TOKENIZER_MODULE)
    else:
        params["pattern"] = _TOKEN.pattern  # normalised text split by this pattern
    return TokenInput(featurizer.max_length, vocab[PAD]), [spec]


def _hf_input(featurizer: HFTokenizer) -> tuple[nn.Module, list[GraphInput]]:
    tokenizer = featurizer._load()
    params = {"tokenizer": "tokenizer/tokenizer.json", "max_length": featurizer.max_length}
    example = torch.randint(1000, 2000, (1, min(8, featurizer.max_length)))
    spec = GraphInput("input_ids", "text", "hf_tokens", example, 1, params)
    spec.save = lambda folder: tokenizer.save_pretrained(str(folder / "tokenizer"))
    return TokenInput(featurizer.max_length, tokenizer.pad_token_id or 0), [spec]


def _ngram_input(featurizer: NgramFeatures) -> tuple[nn.Module, list[GraphInput]]:
    """The TF-IDF row as the graph's input; its vocabularies, idf and options go to ``export.json``.

    ``preprocess.py`` rebuilds the row with the model's tokenizer module and the same n-gram rules
    as scikit-learn's vectorizers; the export's own check compares it with the model's predictions.
    """
    from emoexp.features import tokenize
    from emoexp.features.handcrafted.text import stop_word_list

    parts, offset = [], 0
    for part in featurizer.fitted_parts():
        parts.append({**part, "idf": part["idf"].tolist(), "offset": offset})
        offset += len(part["vocabulary"])
    params = {
        "parts": parts,
        "num_ngrams": offset,
        "sublinear_tf": bool(featurizer.sublinear_tf),
        "stop_words": sorted(stop_word_list(featurizer.stop_words, featurizer.keep_negations)),
        "tokenizer": dict(featurizer.tokenizer),
        "tokenizer_module": TOKENIZER_MODULE,
    }
    example = torch.zeros(1, offset)
    example[0, : min(8, offset)] = 0.3
    spec = GraphInput("ngram_tfidf", "text", "ngram_tfidf", example, None, params)
    spec.save = lambda folder: shutil.copyfile(tokenize.__file__, folder / TOKENIZER_MODULE)
    return NgramInput(), [spec]


def _multimodal_input(featurizer: MultimodalFeatures) -> tuple[nn.Module, list[GraphInput]]:
    children, specs = {}, []
    for modality, child in featurizer.children.items():
        module, inputs = graph_input(child)
        children[modality] = module
        for spec in inputs:
            specs.append(copy.copy(spec))
            specs[-1].name = f"{modality}_{spec.name}"
    return MultimodalInput(children), specs


# Featurizer class -> its graph input; the first matching entry applies.
BUILDERS: tuple[tuple[type, Callable[[Any], tuple[nn.Module, list[GraphInput]]]], ...] = (
    (MFCCFeatures, lambda f: _audio_input(f, SpectralInput(f))),
    (LogMelFeatures, lambda f: _audio_input(f, SpectralInput(f))),
    (WaveformFeatures, lambda f: _audio_input(f, WaveformInput(f))),
    (ImageFeatures, _image_input),
    (VocabTokenizer, _vocab_input),
    (HFTokenizer, _hf_input),
    (NgramFeatures, _ngram_input),
    (MultimodalFeatures, _multimodal_input),
)


def graph_input(featurizer: Any) -> tuple[nn.Module, list[GraphInput]]:
    """The input module and input descriptions of a featurizer (see the module docstring).

    Raises:
        ExportError: If the featurizer has no exportable form.
    """
    for cls, build in BUILDERS:
        if isinstance(featurizer, cls):
            return build(featurizer)
    known = ", ".join(cls.__name__ for cls, _ in BUILDERS)
    raise ExportError(
        f"{type(featurizer).__name__} has no exportable form (exportable featurizers: {known}); "
        "serve this model with `python -m emoexp.predict` or its MLflow pyfunc model instead."
    )


class ServedGraph(nn.Module):
    """Raw-input tensors -> features -> network -> the scheme's activation (a tuple in ``names`` order).

    Args:
        inputs: The input module (:func:`graph_input`).
        net: The network in eval mode.
        scheme: The run's label scheme (its :meth:`activate` ends the graph).
        names: The outputs, in order (``probs`` and/or ``dims``).
    """

    def __init__(self, inputs: nn.Module, net: nn.Module, scheme: Any, names: list[str]):
        super().__init__()
        self.inputs = inputs
        self.net = net
        self.scheme = scheme
        self.names = names

    def forward(self, **raw: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        activated = self.scheme.activate(self.net(**self.inputs(**raw)))
        return tuple(activated[name] for name in self.names)


def served_graph(featurizer: Any, net: nn.Module, scheme: Any) -> tuple[ServedGraph, list[GraphInput]]:
    """The :class:`ServedGraph` of a loaded model and its inputs (with examples to trace).

    The network is copied: exporting traces it, and fusion networks keep state from their last pass.
    """
    module, inputs = graph_input(featurizer)
    net = copy.deepcopy(net).eval()
    with torch.no_grad():
        probe = {spec.name: spec.example for spec in inputs}
        names = sorted(scheme.activate(net(**module(**probe))))
    return ServedGraph(module, net, scheme, names).eval(), inputs
