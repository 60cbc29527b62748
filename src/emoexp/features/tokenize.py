r"""Tokens of emotion text: words, emoji, emoticons, kaomoji, hashtags and scripts without spaces.

Emotion is often written without words: ``"soooo tired :( 😭😭😭 #mondays"``,
``"(╯°□°)╯"``, ``"最高！😂"``. A plain word tokenizer keeps ``so tired mondays`` and throws
the rest away. :func:`tokenize` (the default, ``tokenizer: emotion``) keeps it, found by
Unicode category and structure, never by a list of known emoji or emoticons:

- **emoji**: non-ASCII symbols (categories So/Sk) with their variation selectors, skin-tone
  modifiers and zero-width-joiner sequences (``👨‍👩‍👧‍👦`` is one token), flags (pairs of
  regional indicators, tag sequences) and keycaps. Skin tones are stripped by default
  (``👍🏽`` -> ``👍``): they say who writes, not what they feel, and a model should not learn
  emotion from them (``skin_tones="keep"`` keeps them). Variation selectors are always dropped.
- **emoticons**: eyes ``: ; = 8 x``, an optional nose ``- ' ^ o`` and a mouth
  (``:-)``, ``:((``, ``;P``, ``xD``, ``>:(``), reversed (``(:``, ``D:``), hearts (``<3``,
  ``</3``) and eye-mouth-eye faces (``^_^``, ``T_T``, ``o.O``, ``-_-``). They keep their case.
- **kaomoji**: a bracketed face of at most 16 characters with at least one face character
  (non-ASCII symbols and letters of other scripts, or ``^ _ ; * ~ = < > @``), no Latin word
  inside, and up to three arm characters on each side: ``(╯°□°)╯``, ``(^_^)``, ``¯\_(ツ)_/¯``.
- **hashtags**: ``#BestDayEver`` -> ``#bestdayever`` plus its words ``best day ever``
  (``hashtag_words=False``: the tag only). ``@mentions`` become ``@user``, URLs ``<url>``.
- **elongations**: a character repeated more than ``max_repeat`` (2) times is cut to
  ``max_repeat`` (``soooo`` -> ``soo``, ``!!!!`` -> ``!!``; digits are left alone), and so is
  a run of identical tokens (``😭😭😭😭`` -> ``😭 😭``).
- **scripts without spaces** (Chinese, Japanese, Thai, Lao, Khmer, Myanmar): each character
  (with its combining marks) is a token (``no_space="bigrams"``: overlapping pairs instead).
- **words**: letters and digits of any other script, with inner apostrophes (``can't``),
  lower-cased; ``! ? . ,`` runs are tokens, other ASCII punctuation is dropped.

Text is NFKC-normalised first (full-width letters become ASCII) except for characters whose
compatibility form starts with a space (``¯``, ``´``), which would cut a kaomoji in two.

This module depends on the standard library only (``re``, ``unicodedata``), so an exported
model can ship it beside its preprocessing. The behaviour is versioned: a change of what
:func:`tokenize` returns must raise :data:`TOKENIZER_VERSION`, which is part of every
featurizer's parameters and so of the feature cache key.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

TOKENIZER_VERSION = 1
"""Raised whenever :func:`tokenize` returns something else for some text."""

TOKENIZERS = ("emotion", "words")
"""``emotion``: this module's tokenizer; ``words``: lower-cased ASCII words and ``! ? . ,`` only."""

WORD_PATTERN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?.,]")
"""The ``words`` tokenizer, on NFKC-normalised lower-cased text (emoexp's tokenizer before v1)."""

_SCAN_END = 0x32000  # planes 0-3 hold every character the classes below need
_NO_SPACE_BLOCKS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3005, 0x3007),  # ideographic iteration and closing marks, ideographic zero
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)
_PICTOGRAPHS = 0x1F000  # emoji planes start here: never kaomoji arms or faces
_SKIN_TONES = "\U0001f3fb-\U0001f3ff"
_VARIATION = "\ufe0e\ufe0f"
_ZWJ = "\u200d"
_ASCII_ARMS = "\\/_*~"
_ASCII_FACE = "^_;*~=<>@'`\"+"


def _in_no_space_block(code: int) -> bool:
    return any(start <= code <= end for start, end in _NO_SPACE_BLOCKS)


def _is_no_space_letter(char: str) -> bool:
    return unicodedata.category(char)[0] == "L" and _in_no_space_block(ord(char))


def _is_mark(char: str) -> bool:
    return unicodedata.category(char) in ("Mn", "Mc", "Me") and char not in _VARIATION


def _is_word_char(char: str) -> bool:
    category = unicodedata.category(char)
    return (category[0] in "LN" or category in ("Mn", "Mc")) and (
        char not in _VARIATION and not _in_no_space_block(ord(char))
    )


def _is_pictograph(char: str) -> bool:
    return not char.isascii() and unicodedata.category(char) in ("So", "Sk")


def _is_other_symbol(char: str) -> bool:
    category = unicodedata.category(char)
    return not char.isascii() and category in ("Sm", "Sc", "Po") and not char.isspace()


def _is_arm(char: str) -> bool:
    r"""A character that may hang outside a kaomoji's brackets (``╯``, ``ノ``, ``¯``, ``\``)."""
    if char.isascii():
        return char in _ASCII_ARMS
    code, category = ord(char), unicodedata.category(char)
    if code >= _PICTOGRAPHS or 0x3000 <= code <= 0x303F or category in ("Ps", "Pe", "Zs", "Cf"):
        return False
    if category[0] == "L":
        return not unicodedata.name(char, "").startswith(("LATIN", "CJK")) and not 0x3040 <= code <= 0x309F
    return category[0] in "SPMN"


def _is_face_char(char: str) -> bool:
    """A character that makes a bracketed run a face: ``^ _ ;``, or a non-Latin symbol or letter."""
    if char.isascii():
        return char in _ASCII_FACE
    code = ord(char)
    if code >= _PICTOGRAPHS or char.isspace() or unicodedata.name(char, "").startswith("LATIN"):
        return False
    return not (_is_no_space_letter(char) and not unicodedata.name(char, "").startswith("KATAKANA"))


@cache
def _char_class(predicate: Callable[[str], bool]) -> str:
    """A regex character class body of every code point (planes 0-3) the predicate accepts."""
    ranges: list[tuple[int, int]] = []
    for code in range(_SCAN_END):
        if 0xD800 <= code <= 0xDFFF or not predicate(chr(code)):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges
    )


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The kaomoji candidate pattern and the token pattern (built once: scanning takes ~0.2 s)."""
    word, cjk = _char_class(_is_word_char), _char_class(_is_no_space_letter)
    mark, pict, other = _char_class(_is_mark), _char_class(_is_pictograph), _char_class(_is_other_symbol)
    arm = f"[{_char_class(_is_arm)}]"
    kaomoji = re.compile(rf"(?P<left>{arm}{{0,3}})\((?P<inner>[^()\n]{{1,16}})\)(?P<right>{arm}{{0,3}})")
    element = f"[{pict}][{_VARIATION}]?[{_SKIN_TONES}]?"
    emoticon = (
        r"</?3+"
        r"|[>}\]]?[:;=][\-'^o]?[)(\]\[|/\\*<>{}]+"
        r"|(?<!\w)[:;=8xX][\-'^]?[DdPpOoSsXx3bc|](?!\w)"
        r"|(?<!\w)[)(\]\[][\-'^]?[:;=](?![\w)(])"
        r"|(?<!\w)D[\-']?[:;=](?!\w)"
        r"|(?<!\w)(?:\^\^|[\^T;>\-oO@xXuU=][_.~ω][\^T;<\-oO@xXuU=])(?!\w)"
    )
    token = re.compile(
        rf"(?P<url>(?:https?://|www\.)\S+)"
        rf"|(?P<mention>@\w+)"
        rf"|(?P<hashtag>#[{word}{cjk}{mark}]+)"
        rf"|(?P<emoticon>{emoticon})"
        rf"|(?P<keycap>[0-9#*][{_VARIATION}]?\u20e3)"
        rf"|(?P<flag>[\U0001f1e6-\U0001f1ff]{{2}}|\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f)"
        rf"|(?P<emoji>{element}(?:{_ZWJ}{element})*)"
        rf"|(?P<nospace>(?:[{cjk}][{mark}]*)+)"
        rf"|(?P<word>[{word}]+(?:['\u2019][{word}]+)*)"
        rf"|(?P<punct>[!?]+|\.+|,)"
        rf"|(?P<other>[{other}])"
    )
    return kaomoji, token


def fold(text: str) -> str:
    r"""NFKC-normalise ``text``, except characters whose compatibility form starts with a space.

    ``Ｆｕｌｌ``-width letters become ASCII and ``…`` becomes ``...``, but ``¯`` and ``´`` (whose
    NFKC forms are a space and a combining mark) stay, so kaomoji such as ``¯\_(ツ)_/¯`` survive.
    """
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return text
    out = []
    for char in text:
        folded = unicodedata.normalize("NFKC", char)
        out.append(char if folded[:1].isspace() and not char.isspace() else folded)
    return "".join(out)


def cap_repeats(text: str, max_repeat: int = 2) -> str:
    """Cut runs of one non-digit character longer than ``max_repeat`` (``soooo`` -> ``soo``)."""
    return re.sub(rf"(\D)\1{{{max_repeat},}}", lambda m: m.group(1) * max_repeat, text)


def _has_word(text: str) -> bool:
    """Whether ``text`` holds three digits, or three letters of one script, in a row (a word)."""
    run, script = 0, ""
    for char in text:
        if char.isascii() and char.isdigit():
            current = "DIGIT"
        elif unicodedata.category(char)[0] == "L":
            current = unicodedata.name(char, "?").split(" ")[0]
        else:
            run, script = 0, ""
            continue
        run = run + 1 if current == script else 1
        script = current
        if run >= 3:
            return True
    return False


def _is_face(inner: str) -> bool:
    """Whether the text between a kaomoji candidate's brackets is a face (see the module docstring)."""
    solid = inner.replace(" ", "")
    if not solid or (len(solid) == 1 and solid.isascii()) or _has_word(inner):
        return False
    return any(_is_face_char(char) for char in solid)


@dataclass(frozen=True)
class EmotionTokenizer:
    """Callable, picklable tokenizer of emotion text (see the module docstring).

    Args:
        hashtag_words: Also emit the words of a hashtag (``#BestDay`` -> ``#bestday best day``).
        no_space: ``"chars"`` (one token per character) or ``"bigrams"`` (overlapping pairs) for
            runs of scripts written without spaces.
        skin_tones: ``"strip"`` (``👍🏽`` -> ``👍``) or ``"keep"``.
        max_repeat: Longest run of one character, or of one token, that is kept.
        lowercase: Lower-case words and hashtags (emoji, emoticons and kaomoji keep their case).
    """

    hashtag_words: bool = True
    no_space: str = "chars"
    skin_tones: str = "strip"
    max_repeat: int = 2
    lowercase: bool = True

    def __post_init__(self) -> None:
        if self.no_space not in ("chars", "bigrams"):
            raise ValueError(f"tokenizer no_space must be chars or bigrams, got {self.no_space!r}.")
        if self.skin_tones not in ("strip", "keep"):
            raise ValueError(f"tokenizer skin_tones must be strip or keep, got {self.skin_tones!r}.")
        if int(self.max_repeat) < 1:
            raise ValueError(f"tokenizer max_repeat must be at least 1, got {self.max_repeat!r}.")

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description (name, version, options): rebuilds it via :func:`make_tokenizer`."""
        return {"name": "emotion", "version": TOKENIZER_VERSION, **asdict(self)}

    def __call__(self, text: str) -> list[str]:
        """The tokens of one text."""
        kaomoji, _ = _patterns()
        text = " ".join(fold(text).split())
        tokens: list[str] = []
        start = 0
        for match in kaomoji.finditer(text):
            if _is_face(match["inner"]):
                tokens += self._plain(text[start : match.start()])
                tokens.append(match.group())
                start = match.end()
        tokens += self._plain(text[start:])
        return _cap_token_runs(tokens, self.max_repeat)

    def _plain(self, text: str) -> list[str]:
        _, pattern = _patterns()
        tokens: list[str] = []
        for match in pattern.finditer(text):
            kind, value = match.lastgroup, match.group()
            tokens += self._convert(kind or "", value)
        return tokens

    def _convert(self, kind: str, value: str) -> list[str]:
        if kind == "url":
            return ["<url>"]
        if kind == "mention":
            return ["@user"]
        if kind == "hashtag":
            return self._hashtag(value)
        if kind in ("emoji", "keycap", "flag"):
            return [self._emoji(value)]
        if kind == "nospace":
            return self._no_space(value)
        if kind == "word":
            return [self._word(value)]
        if kind in ("emoticon", "punct"):
            return [cap_repeats(value, self.max_repeat)]
        return [value]

    def _word(self, value: str) -> str:
        value = value.replace("\u2019", "'")
        return cap_repeats(value.lower() if self.lowercase else value, self.max_repeat)

    def _hashtag(self, value: str) -> list[str]:
        body = value[1:]
        tag = "#" + cap_repeats(body.lower() if self.lowercase else body, self.max_repeat)
        if not self.hashtag_words:
            return [tag]
        words = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", body)
        return [tag, *self._plain(words)]

    def _emoji(self, value: str) -> str:
        value = re.sub(f"[{_VARIATION}]", "", value)
        return re.sub(f"[{_SKIN_TONES}]", "", value) if self.skin_tones == "strip" else value

    def _no_space(self, value: str) -> list[str]:
        chars = re.findall(rf"[{_char_class(_is_no_space_letter)}][{_char_class(_is_mark)}]*", value)
        if self.no_space == "chars" or len(chars) == 1:
            return chars
        return [a + b for a, b in itertools.pairwise(chars)]


def _cap_token_runs(tokens: list[str], max_repeat: int) -> list[str]:
    """Drop a token repeated right after itself more than ``max_repeat`` times."""
    out: list[str] = []
    for token in tokens:
        if len(out) >= max_repeat and all(t == token for t in out[-max_repeat:]):
            continue
        out.append(token)
    return out


def word_tokenize(text: str) -> list[str]:
    """The ``words`` tokenizer: NFKC, lower-case, then ASCII words and ``! ? . ,`` (emoji dropped)."""
    return WORD_PATTERN.findall(" ".join(unicodedata.normalize("NFKC", text).lower().split()))


def tokenize(text: str) -> list[str]:
    """The tokens of ``text`` with the default :class:`EmotionTokenizer` options."""
    return _DEFAULT(text)


_DEFAULT = EmotionTokenizer()


def tokenizer_spec(tokenizer: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON-serialisable spec of a tokenizer given by name or as ``{name: emotion, <options>}``.

    Raises:
        ValueError: If the name or an option is unknown, naming the valid ones.
    """
    if tokenizer is None or isinstance(tokenizer, str):
        options: dict[str, Any] = {"name": tokenizer or "emotion"}
    else:
        options = {str(k): v for k, v in dict(tokenizer).items()}
    name = options.pop("name", "emotion")
    options.pop("version", None)
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; choose one of {list(TOKENIZERS)}.")
    if name == "words":
        if options:
            raise ValueError(f"tokenizer 'words' takes no options, got {sorted(options)}.")
        return {"name": "words", "version": 0}
    known = set(EmotionTokenizer.__dataclass_fields__)
    if unknown := sorted(set(options) - known):
        raise ValueError(f"unknown option(s) {unknown} of tokenizer 'emotion'; valid: {sorted(known)}.")
    return EmotionTokenizer(**options).spec()


def make_tokenizer(tokenizer: str | Mapping[str, Any] | None) -> Callable[[str], list[str]]:
    """A picklable callable ``text -> tokens`` for a tokenizer name or spec (see :func:`tokenizer_spec`)."""
    spec = tokenizer_spec(tokenizer)
    if spec["name"] == "words":
        return word_tokenize
    return EmotionTokenizer(**{k: v for k, v in spec.items() if k not in ("name", "version")})


def char_text(text: str, skin_tones: str = "strip", max_repeat: int = 2) -> str:
    """Text for character n-grams: folded, lower-cased, elongations and variation selectors cut.

    Args:
        text: A raw text.
        skin_tones: ``"strip"`` removes skin-tone modifiers (as the tokenizer does), ``"keep"``.
        max_repeat: Longest run of one non-digit character that is kept.
    """
    text = re.sub(f"[{_VARIATION}]", "", " ".join(fold(text).split()).lower())
    if skin_tones == "strip":
        text = re.sub(f"[{_SKIN_TONES}]", "", text)
    return cap_repeats(text, max_repeat)
