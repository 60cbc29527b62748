"""Text features for classical models: word and character n-grams, and word-embedding averages.

Word tokens come from :mod:`emoexp.features.tokenize` (``tokenizer: emotion``: lower-cased words,
"n't"-style clitics, ``! ? . ,`` runs, emoji, emoticons, kaomoji, hashtags and characters of
scripts without spaces; ``tokenizer: words``: ASCII words and ``! ? . ,`` only), optionally
without English stop words (scikit-learn's list, by default keeping the negations, which flip an
emotion) and optionally stemmed. Character n-grams (``analyzer: char`` or ``char_wb``) read the
text itself, folded, lower-cased and with elongations cut, so they see what no word list
knows: emoji, emoticons, kaomoji, misspellings, and scripts without spaces. The model configs'
default, ``analyzer: word+char_wb``, joins word n-grams and character 2-5-grams in one
``FeatureUnion`` (docs/classical_models.md#character-n-grams-and-the-default-text-pipeline).
Bag-of-words and TF-IDF use scikit-learn's ``CountVectorizer``/``TfidfVectorizer`` as pipeline
steps, so the vocabularies and the IDF weights are learnt on the training rows only and travel
inside the saved model. Word-embedding averages read a GloVe or word2vec *text-format* vectors file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.features.handcrafted import VectorFeatures
from emoexp.features.text import require_text
from emoexp.features.tokenize import char_text, make_tokenizer, tokenizer_spec

Representation = Literal["tfidf", "bow", "embeddings"]
ANALYZERS = ("word", "char", "char_wb", "word+char", "word+char_wb")
"""Word n-grams, character n-grams (``char_wb``: within words only), or both side by side."""

NEGATIONS = frozenset(
    {"no", "not", "nor", "never", "none", "nothing", "nobody", "nowhere", "neither", "cannot"}
)
"""Stop words kept by default: negation reverses the emotion of what follows."""


class VectorsFileError(ValueError):
    """A word-vectors file is missing, malformed, or has the wrong dimension."""


def stop_word_list(stop_words: str | Sequence[str] | None, keep_negations: bool = True) -> frozenset[str]:
    """Resolve ``"english"`` (scikit-learn's list), an explicit list, or ``None`` (no stop words)."""
    if stop_words is None:
        return frozenset()
    if isinstance(stop_words, str):
        if stop_words != "english":
            raise ValueError(f"stop_words must be 'english', a list of words or null, got {stop_words!r}.")
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        words = frozenset(ENGLISH_STOP_WORDS)
    else:
        words = frozenset(str(w).lower() for w in stop_words)
    return words - NEGATIONS if keep_negations else words


def _load_stemmer() -> Any:
    """An English stemmer from an installed package (snowballstemmer, else NLTK's Porter)."""
    try:
        import snowballstemmer

        stemmer = snowballstemmer.stemmer("english")
        return stemmer.stemWord
    except ImportError:
        pass
    try:
        from nltk.stem import PorterStemmer

        return PorterStemmer().stem
    except ImportError:
        raise ImportError(
            "stem=true needs an English stemmer and none is installed: `pip install snowballstemmer` "
            "(or nltk), or set model.features.text.stem=false."
        ) from None


class Tokenizer:
    """Picklable tokenizer: split (:mod:`emoexp.features.tokenize`), drop stop words, then stem.

    Stop words are removed *before* stemming, so the stop list matches the words as written.
    Only lower-case words are stemmed (not emoji, emoticons, hashtags or numbers).

    Args:
        stop_words: Words to drop (already resolved, see :func:`stop_word_list`).
        stem: Reduce words to their stems.
        tokenizer: The tokenizer's name or spec (:func:`emoexp.features.tokenize.tokenizer_spec`).
    """

    def __init__(
        self, stop_words: Iterable[str] = (), stem: bool = False, tokenizer: str | Mapping[str, Any] = "words"
    ):
        self.stop_words = frozenset(stop_words)
        self.stem = stem
        self.tokenizer = tokenizer_spec(tokenizer)
        self._split = make_tokenizer(self.tokenizer)
        self._stem_word = _load_stemmer() if stem else None

    def __call__(self, text: str) -> list[str]:
        """Return the tokens of one text."""
        tokens = [t for t in self._split(require_text(text)) if t not in self.stop_words]
        if self.stem:
            if self._stem_word is None:
                self._stem_word = _load_stemmer()
            tokens = [self._stem_word(t) if _is_stemmable(t) else t for t in tokens]
        return tokens

    def __getstate__(self) -> dict[str, Any]:
        # Stemmer objects need not pickle; they are rebuilt on first use after loading.
        return {"stop_words": self.stop_words, "stem": self.stem, "tokenizer": self.tokenizer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Models pickled before the tokenizer option used the ASCII word tokenizer.
        self.__init__(state["stop_words"], False, state.get("tokenizer", "words"))
        self.stem, self._stem_word = state["stem"], None


def _is_stemmable(token: str) -> bool:
    return token.islower() and token[0].isalpha()


def load_vectors(
    path: str | Path, words: Iterable[str] | None = None, dim: int | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """Read word vectors from a GloVe or word2vec text-format file.

    GloVe files have one ``word v1 ... vd`` line per word; word2vec text files start with a
    ``<count> <dim>`` header line. Every line's field count is checked; values are parsed only
    for the ``words`` asked for (parsing a 400k-word file in full takes much longer). A word that
    itself contains spaces (as in GloVe 840B) keeps all leading fields.

    Args:
        path: The vectors file (UTF-8 text; binary word2vec is not supported).
        words: Only these words are returned (``None``: all words).
        dim: Expected dimension; ``None`` takes it from the header or the first line.

    Returns:
        The vectors found (word -> float32 ``[dim]``) and the dimension.

    Raises:
        VectorsFileError: If the file is missing, empty, binary, or a line has the wrong number
            of values or a non-numeric value (naming the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise VectorsFileError(
            f"word-vectors file not found: {path}. Set model.features.text.vectors_path to a GloVe or "
            "word2vec text-format file (e.g. glove.6B.100d.txt)."
        )
    wanted = None if words is None else set(words)
    vectors: dict[str, np.ndarray] = {}
    expected = dim
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.rstrip("\n\r").rstrip().split(" ")
                header = _header_dimension(path, fields, expected) if number == 1 else None
                if header is not None:
                    expected = header
                    continue
                if not line.strip():
                    continue
                expected = _line_dimension(path, number, fields, expected, dim)
                word = " ".join(fields[: len(fields) - expected])
                if wanted is not None and word not in wanted:
                    continue
                try:
                    vectors[word] = np.asarray(fields[-expected:], dtype=np.float32)
                except ValueError:
                    raise VectorsFileError(
                        f"{path}: line {number} (word {word!r}) has a non-numeric vector value."
                    ) from None
    except UnicodeDecodeError as error:
        raise VectorsFileError(
            f"{path} is not a UTF-8 text-format vectors file ({error.reason} at byte {error.start}); "
            "binary word2vec files must be converted to text format first."
        ) from None
    if expected is None:
        raise VectorsFileError(f"{path} holds no word vectors (the file is empty).")
    return vectors, expected


def _header_dimension(path: Path, fields: list[str], expected: int | None) -> int | None:
    """The dimension a word2vec ``<count> <dim>`` first line declares (``None``: no such header)."""
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    header_dim = int(fields[1])
    if expected is not None and header_dim != expected:
        raise VectorsFileError(
            f"{path}: line 1 declares dimension {header_dim}, expected {expected} "
            "(model.features.text.vectors_dim)."
        )
    return header_dim


def _line_dimension(path: Path, number: int, fields: list[str], expected: int | None, dim: int | None) -> int:
    """The vector dimension after checking line ``number`` (the first vector line sets it if unknown)."""
    if expected is None:
        expected = len(fields) - 1
        if expected < 1:
            raise VectorsFileError(f"{path}: line {number} has a word but no vector values.")
    if len(fields) < expected + 1:
        raise VectorsFileError(
            f"{path}: line {number} has {len(fields) - 1} values, expected {expected} "
            f"(the dimension {'given' if dim else 'of the first vector line'}). The file is "
            "truncated or mixes dimensions, or vectors_dim does not match the file."
        )
    return expected


def vectorizer_texts(manifest: pd.DataFrame) -> list[str]:
    """The manifest's texts as the n-gram vectorizers take them: checked, whitespace collapsed.

    Texts go to the vectorizers as written: their tokenizer and character preprocessor normalise
    them (lower-casing first would lose the case of emoticons such as ":D" and "D:").

    Raises:
        TextError: If a text is empty or missing (naming the sample).
    """
    pairs = zip(manifest[schema.ID], manifest[schema.TEXT], strict=True)
    return [" ".join(require_text(text, sample_id).split()) for sample_id, text in pairs]


class TextFeatures(VectorFeatures):
    """Bag-of-words, TF-IDF n-grams (of words, characters, or both) or averaged word embeddings.

    Args:
        representation: ``"tfidf"``, ``"bow"`` (token counts) or ``"embeddings"`` (mean word
            vector of the known tokens; samples with none get zeros).
        ngram_range: Smallest and largest word n-gram length (bag-of-words and TF-IDF).
        stop_words: ``"english"`` (scikit-learn's list), a list of words, or ``None``.
        keep_negations: Keep negations ("not", "never", ...) even if they are stop words.
        stem: Stem tokens with an installed stemmer (snowballstemmer or NLTK); not with embeddings.
        min_df: Ignore n-grams in fewer training documents than this (count or fraction).
        max_df: Ignore n-grams in more training documents than this (count or fraction).
        max_features: Keep only this many most frequent n-grams (``None``: all).
        sublinear_tf: Use ``1 + log(tf)`` term frequencies (TF-IDF).
        vectors_path: GloVe/word2vec text-format vectors file (``representation="embeddings"``).
        vectors_dim: Expected vector dimension (``None``: taken from the file).
        analyzer: ``"word"`` (word n-grams), ``"char"``/``"char_wb"`` (character n-grams, across
            or within words), or ``"word+char"``/``"word+char_wb"`` (both, each L2-normalised and
            weighted 1/sqrt(2), so a row keeps unit length). Bag-of-words and TF-IDF only.
        char_ngram_range: Smallest and largest character n-gram length.
        tokenizer: How texts are split into words: ``"emotion"`` (keeps emoji, emoticons,
            kaomoji, hashtags; :mod:`emoexp.features.tokenize`), ``"words"`` (ASCII words), or
            ``{name: emotion, <option>: ...}``.
    """

    modality = "text"

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        representation: Representation = "tfidf",
        ngram_range: Sequence[int] = (1, 2),
        stop_words: str | Sequence[str] | None = "english",
        keep_negations: bool = True,
        stem: bool = False,
        min_df: float = 1,
        max_df: float = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = False,
        vectors_path: str | None = None,
        vectors_dim: int | None = None,
        analyzer: str = "word",
        char_ngram_range: Sequence[int] = (2, 5),
        tokenizer: str | Mapping[str, Any] = "emotion",
    ):
        if analyzer not in ANALYZERS:
            raise ValueError(
                f"model.features.text.analyzer must be one of {list(ANALYZERS)}, got {analyzer!r}."
            )
        if representation not in ("tfidf", "bow", "embeddings"):
            raise ValueError(
                "model.features.text.representation must be tfidf, bow or embeddings, "
                f"got {representation!r}."
            )
        if representation == "embeddings":
            if not vectors_path:
                raise ValueError(
                    "representation=embeddings needs model.features.text.vectors_path=/path/to/vectors.txt "
                    "(a GloVe or word2vec text-format file)."
                )
            if stem:
                raise ValueError(
                    "stem=true cannot be combined with representation=embeddings: stems are not "
                    "words of the vectors file."
                )
        self.representation = representation
        self.ngram_range = tuple(int(n) for n in ngram_range)
        self.stop_words = (
            stop_words if stop_words is None or isinstance(stop_words, str) else list(stop_words)
        )
        self.keep_negations = keep_negations
        self.stem = stem
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.vectors_path = None if vectors_path is None else str(vectors_path)
        self.vectors_dim = vectors_dim
        self.analyzer = analyzer
        self.char_ngram_range = tuple(int(n) for n in char_ngram_range)
        self.tokenizer = tokenizer_spec(tokenizer)
        self.sparse = representation != "embeddings"
        self._tokenizer = Tokenizer(stop_word_list(stop_words, keep_negations), stem, self.tokenizer)
        self._dim: int | None = None

    def extract(
        self, manifest: pd.DataFrame, cache_dir: str | Path | None = None, use_cache: bool = True
    ) -> tuple[np.ndarray, bool]:
        """Texts (bag-of-words, TF-IDF) or mean word vectors ``[N, dim]`` (embeddings)."""
        texts = vectorizer_texts(manifest)
        if self.representation != "embeddings":
            return np.asarray(texts, dtype=object), False
        stat = Path(self.vectors_path).stat() if Path(self.vectors_path).is_file() else None
        source = {"vectors_file": f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "missing"}
        matrix, hit = self._cached(manifest, lambda: self._average(texts), cache_dir, use_cache, source)
        self._dim = matrix.shape[1]
        return matrix, hit

    def _average(self, texts: list[str]) -> np.ndarray:
        tokens = [self._tokenizer(t) for t in texts]
        vectors, dim = load_vectors(self.vectors_path, {t for ts in tokens for t in ts}, self.vectors_dim)
        self._dim = dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, sample in enumerate(tokens):
            known = [vectors[t] for t in sample if t in vectors]
            if known:
                out[row] = np.mean(known, axis=0)
        return out

    def pipeline_steps(self) -> list[tuple[str, Any]]:
        """The vectorizer step: word and/or character n-grams (none for embeddings).

        One ``TfidfVectorizer``/``CountVectorizer``, or a ``FeatureUnion`` of a word and a
        character one (``analyzer: word+char_wb``), named ``vectorize``.
        """
        if self.representation == "embeddings":
            return []
        from sklearn.pipeline import FeatureUnion

        if self.analyzer == "word":
            return [("vectorize", self._vectorizer(word=True))]
        if "+" not in self.analyzer:
            return [("vectorize", self._vectorizer(word=False))]
        parts = [("word", self._vectorizer(word=True)), ("char", self._vectorizer(word=False))]
        weights = {"word": 0.5**0.5, "char": 0.5**0.5}
        return [("vectorize", FeatureUnion(parts, transformer_weights=weights))]

    def _vectorizer(self, word: bool) -> Any:
        """A word vectorizer on the emoexp tokenizer, or a character one on :func:`char_text`."""
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        common: dict[str, Any] = {
            "lowercase": False,
            "min_df": self.min_df,
            "max_df": self.max_df,
            "max_features": self.max_features,
            "dtype": np.float64,
        }
        if word:
            common.update(tokenizer=self._tokenizer, token_pattern=None, ngram_range=self.ngram_range)
        else:
            options = {k: self.tokenizer[k] for k in ("skin_tones", "max_repeat") if k in self.tokenizer}
            common.update(
                analyzer=self.analyzer.rsplit("+", 1)[-1],
                preprocessor=partial(char_text, **options),
                ngram_range=self.char_ngram_range,
            )
        if self.representation == "bow":
            return CountVectorizer(**common)
        return TfidfVectorizer(**common, sublinear_tf=self.sublinear_tf)

    def feature_names(self) -> list[str] | None:  # noqa: D102
        if self.representation == "embeddings" and self._dim is not None:
            return [f"embedding_{i}" for i in range(self._dim)]
        return None
