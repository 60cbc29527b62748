"""The emotion tokenizer keeps emoji, emoticons, kaomoji and hashtags, cuts elongations, splits CJK."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from emoexp.features.handcrafted.text import TextFeatures
from emoexp.features.text import VocabTokenizer
from emoexp.features.tokenize import (
    TOKENIZER_VERSION,
    EmotionTokenizer,
    char_text,
    fold,
    make_tokenizer,
    tokenize,
    tokenizer_spec,
    word_tokenize,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # man ZWJ woman ZWJ girl ZWJ boy
THUMBS_MEDIUM = "\U0001f44d\U0001f3fd"  # thumbs up + medium skin tone
RAINBOW_FLAG = "\U0001f3f3\ufe0f\u200d\U0001f308"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so happy 😂", ["so", "happy", "😂"]),
        (f"love it {THUMBS_MEDIUM}", ["love", "it", "\U0001f44d"]),  # skin tone stripped by default
        (f"{FAMILY} day", [FAMILY, "day"]),  # one token for the whole ZWJ sequence
        ("❤️ and ❤", ["❤", "and", "❤"]),  # variation selector dropped: one token for both
        (f"{RAINBOW_FLAG} 🇫🇷", ["\U0001f3f3\u200d\U0001f308", "🇫🇷"]),
        ("😭😭😭😭😭", ["😭", "😭"]),  # a run of one emoji is cut like an elongation
    ],
)
def test_emoji_sequences_are_single_tokens(text, expected):
    assert tokenize(text) == expected


def test_skin_tones_can_be_kept_but_never_split_off():
    keep = EmotionTokenizer(skin_tones="keep")
    assert keep(f"ok {THUMBS_MEDIUM}") == ["ok", THUMBS_MEDIUM]
    assert keep("\U0001f469\U0001f3fd\u200d\U0001f4bb") == ["\U0001f469\U0001f3fd\u200d\U0001f4bb"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("great :-) :) ;P xD <3 </3", ["great", ":-)", ":)", ";P", "xD", "<3", "</3"]),
        ("no :( >:( :'( :((((((", ["no", ":(", ">:(", ":'(", ":(("]),
        ("hmm :/ =D :O (: D:", ["hmm", ":/", "=D", ":O", "(:", "D:"]),
        ("^_^ T_T o.O -_- >_< ^^", ["^_^", "T_T", "o.O", "-_-", ">_<", "^^"]),
    ],
)
def test_emoticons_are_found_by_structure_and_keep_their_case(text, expected):
    assert tokenize(text) == expected


def test_emoticon_lookalikes_inside_words_and_times_are_not_emoticons():
    assert tokenize("at 12:30 xDD XDefault 8Dollars") == ["at", "12", "30", "xdd", "xdefault", "8dollars"]


@pytest.mark.parametrize(
    ("text", "face"),
    [
        ("table flip (╯°□°)╯︵ ┻━┻", "(╯°□°)╯"),
        ("(^_^) nice", "(^_^)"),
        ("whatever ¯\\_(ツ)_/¯", "¯\\_(ツ)_/¯"),  # ¯ survives normalisation (its NFKC form is " ̄")
        ("ヽ(´▽`)/ yay", "ヽ(´▽`)/"),
        ("crying (T_T)", "(T_T)"),
        ("(ノಠ益ಠ)ノ彡┻━┻", "(ノಠ益ಠ)ノ"),
        ("lenny ( ͡° ͜ʖ ͡°)", "( ͡° ͜ʖ ͡°)"),
        ("full width （＾＿＾）", "(^_^)"),
    ],
)
def test_kaomoji_are_single_tokens(text, face):
    assert face in tokenize(text)


def test_bracketed_words_numbers_and_emoji_are_not_kaomoji():
    assert tokenize("(see above) (lol) (1) (笑) (что) (😂)") == [
        "see",
        "above",
        "lol",
        "1",
        "笑",
        "что",
        "😂",
    ]


def test_elongations_are_cut_to_two_but_numbers_are_not():
    assert tokenize("Soooooo HAPPYYYY!!!!! ?!?! ...... 1000") == ["soo", "happyy", "!!", "?!?!", "..", "1000"]
    assert EmotionTokenizer(max_repeat=1)("sooo!!!") == ["so", "!"]


def test_hashtags_keep_the_tag_and_its_words_mentions_and_urls_are_placeholders():
    assert tokenize("#BestDayEver @anna https://t.co/x") == [
        "#bestdayever",
        "best",
        "day",
        "ever",
        "@user",
        "<url>",
    ]
    assert EmotionTokenizer(hashtag_words=False)("#SoHappy") == ["#sohappy"]
    assert tokenize("#幸せ") == ["#幸せ", "幸", "せ"]


def test_scripts_without_spaces_become_characters_or_bigrams():
    assert tokenize("今日は楽しい！") == ["今", "日", "は", "楽", "し", "い", "!"]
    assert tokenize("我很开心😊") == ["我", "很", "开", "心", "😊"]
    assert EmotionTokenizer(no_space="bigrams")("我很开心") == ["我很", "很开", "开心"]
    assert tokenize("สนุกมาก")[:2] == ["ส", "นุ"]  # Thai: a consonant keeps its vowel mark
    # Scripts with spaces stay words, accents and combining marks included.
    assert tokenize("Café naïve नमस्ते 사랑해") == ["café", "naïve", "नमस्ते", "사랑해"]


def test_words_keep_apostrophes_and_full_width_letters_fold():
    assert tokenize("I can’t  believe it, Ｆｕｌｌ width") == [
        "i",
        "can't",
        "believe",
        "it",
        ",",
        "full",
        "width",
    ]
    assert fold("Ｆｕｌｌ…") == "Full..." and fold("¯´") == "¯´"


def test_the_words_tokenizer_is_the_old_ascii_one():
    assert word_tokenize("So HAPPY :) 😂 (^_^) #yay can't!") == ["so", "happy", "yay", "can't", "!"]
    assert make_tokenizer("words") is word_tokenize


def test_specs_are_json_versioned_and_validated():
    spec = tokenizer_spec({"name": "emotion", "no_space": "bigrams"})
    assert json.loads(json.dumps(spec)) == spec and spec["version"] == TOKENIZER_VERSION
    assert make_tokenizer(spec)("我很") == ["我很"]
    assert tokenizer_spec("words") == {"name": "words", "version": 0}
    with pytest.raises(ValueError, match=r"unknown tokenizer 'bpe'.*emotion"):
        tokenizer_spec("bpe")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['cjk'\].*no_space"):
        tokenizer_spec({"name": "emotion", "cjk": "chars"})
    with pytest.raises(ValueError, match="no_space must be chars or bigrams"):
        EmotionTokenizer(no_space="words")


def test_char_text_folds_lowercases_and_cuts():
    assert char_text(f"SOOOO Happy {THUMBS_MEDIUM}❤️!!!!") == "soo happy \U0001f44d❤!!"
    assert char_text(THUMBS_MEDIUM, skin_tones="keep") == THUMBS_MEDIUM


def _manifest(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts})


def test_vocab_tokenizer_keeps_emoji_in_its_vocabulary_and_state_round_trips():
    train = _manifest(["so happy 😂😂", "sad :( (T_T)", "怖い!!!"])
    featurizer = VocabTokenizer(max_length=8)
    featurizer.fit(train, None)
    state = json.loads(json.dumps(featurizer.state_dict()))  # the bundle stores it as JSON
    assert {"😂", ":(", "(T_T)", "怖", "い", "!!"} <= set(state["vocab"])
    restored = VocabTokenizer(max_length=8, tokenizer="words")
    restored.load_state_dict(state)
    assert restored.tokenizer == featurizer.tokenizer
    new = _manifest(["happy 😂 :( ???"])
    assert np.array_equal(featurizer.extract(new)["input_ids"], restored.extract(new)["input_ids"])
    # A state saved before the tokenizer option had a word vocabulary: it stays a word one.
    legacy = VocabTokenizer(max_length=8)
    legacy.load_state_dict({"vocab": state["vocab"]})
    assert legacy.tokenizer["name"] == "words" and legacy.tokens("happy 😂") == ["happy"]


def test_tokenizer_options_are_featurizer_params_so_caches_and_fingerprints_see_them():
    default, bigrams = VocabTokenizer(), VocabTokenizer(tokenizer={"name": "emotion", "no_space": "bigrams"})
    assert default.params() != bigrams.params()
    assert default.params()["tokenizer"]["version"] == TOKENIZER_VERSION
    words, emotion = TextFeatures(tokenizer="words"), TextFeatures()
    assert words.params() != emotion.params()


def test_embedding_cache_key_changes_with_the_tokenizer(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("happy 1 0\n😂 0 1\n", encoding="utf-8")
    manifest = _manifest(["happy 😂"])
    emotion = TextFeatures("embeddings", vectors_path=str(vectors))
    matrix, hit = emotion.extract(manifest, tmp_path / "cache")
    assert not hit and np.allclose(matrix, [[0.5, 0.5]])
    words = TextFeatures("embeddings", vectors_path=str(vectors), tokenizer="words")
    matrix, hit = words.extract(manifest, tmp_path / "cache")
    assert not hit and np.allclose(matrix, [[1.0, 0.0]])  # its own entry, not the emotion one


def test_word_and_char_pipeline_is_a_unit_norm_union_that_pickles():
    features = TextFeatures(analyzer="word+char_wb", ngram_range=(1, 1), stop_words=None)
    texts, _ = features.extract(_manifest(["so happy 😂 (^_^)", "sad :( 😭", "怖い D:"]))
    [(name, union)] = features.pipeline_steps()
    matrix = union.fit_transform(texts)
    assert name == "vectorize" and np.allclose(np.sqrt(matrix.multiply(matrix).sum(axis=1)), 1.0)
    names = set(union.get_feature_names_out())
    assert {"word__😂", "word__(^_^)", "word__:(", "char__ 😭 "} <= names
    restored = pickle.loads(pickle.dumps(union))
    assert np.allclose(restored.transform(texts).toarray(), matrix.toarray())
    [(_, chars)] = TextFeatures(analyzer="char", char_ngram_range=(1, 1)).pipeline_steps()
    assert "😂" in chars.fit(["SOOO 😂"]).get_feature_names_out()
    with pytest.raises(ValueError, match="analyzer must be one of"):
        TextFeatures(analyzer="chars")
