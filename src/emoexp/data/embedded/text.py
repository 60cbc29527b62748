"""Short English utterances that carry emotion the way transcripts and posts do.

A sentence says how someone feels with emotion words of graded strength (annoyed < angry
< furious), intensifiers and hedges tied to intensity ("a bit", "really", "extremely"),
emotion phrases ("I can't stand ..."), or only describes a situation that implies the
emotion. Some sentences negate an emotion word ("I'm not happy about this" is not
happiness; "not scared at all" is rather neutral), some use words that two emotions share
("shocked" for fear and surprise, "fed up" for anger and disgust), and a modest share are
ambiguous, more so for weak expressions. Writers have habits of their own (discourse
markers, punctuation, first or third person), so a writer-independent split is harder.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emoexp.labels.emotions import EKMAN7, circumplex

# Emotion adjectives by strength: weak, medium, strong.
ADJECTIVES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "anger": (
        ("annoyed", "irritated", "bothered", "cross", "grumpy"),
        ("angry", "mad", "upset", "frustrated", "pissed off"),
        ("furious", "livid", "enraged", "outraged", "seething"),
    ),
    "disgust": (
        ("put off", "uncomfortable", "unimpressed", "turned off"),
        ("disgusted", "grossed out", "repelled", "appalled"),
        ("revolted", "sickened", "nauseated", "repulsed"),
    ),
    "fear": (
        ("nervous", "uneasy", "worried", "tense", "jumpy"),
        ("scared", "afraid", "frightened", "anxious", "alarmed"),
        ("terrified", "petrified", "panicked", "horrified", "paralysed with fear"),
    ),
    "happiness": (
        ("glad", "pleased", "content", "cheerful", "satisfied"),
        ("happy", "delighted", "joyful", "excited", "grateful"),
        ("thrilled", "overjoyed", "ecstatic", "elated", "over the moon"),
    ),
    "sadness": (
        ("down", "blue", "disappointed", "low", "a little lost"),
        ("sad", "unhappy", "gloomy", "hurt", "lonely"),
        ("heartbroken", "devastated", "miserable", "crushed", "inconsolable"),
    ),
    "surprise": (
        ("puzzled", "curious", "caught off guard", "intrigued"),
        ("surprised", "amazed", "astonished", "startled"),
        ("stunned", "speechless", "flabbergasted", "blown away", "shocked"),
    ),
    "neutral": (
        ("fine", "okay", "alright", "calm", "unfazed"),
        ("indifferent", "unbothered", "relaxed", "composed"),
        ("completely calm", "totally indifferent", "perfectly fine"),
    ),
}

# Words two emotions share: drawn now and then in place of an emotion's own words.
SHARED_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "fear": ("shocked", "startled", "stunned", "taken aback", "shaken"),
    "surprise": ("shocked", "startled", "shaken", "taken aback", "stunned"),
    "anger": ("fed up", "appalled", "sick of it all", "outraged", "offended"),
    "disgust": ("fed up", "appalled", "sick of it all", "offended", "outraged"),
    "sadness": ("tired", "drained", "quiet", "exhausted"),
    "neutral": ("tired", "quiet", "busy", "distracted"),
    "happiness": ("amazed", "blown away", "excited"),
}

# Verb phrases that carry an emotion (strong ones first).
PHRASES: dict[str, tuple[str, ...]] = {
    "anger": (
        "I hate {obj}",
        "I can't stand {obj}",
        "I'm sick and tired of {obj}",
        "{obj} drives me up the wall",
        "how dare they mess with {obj}",
        "I want to scream about {obj}",
    ),
    "disgust": (
        "{obj} makes me sick",
        "{obj} is absolutely vile",
        "I can't stand the sight of {obj}",
        "{obj} is gross",
        "yuck, {obj} smells rotten",
        "{obj} makes my stomach turn",
    ),
    "fear": (
        "I'm shaking because of {obj}",
        "{obj} gives me the creeps",
        "I dread {obj}",
        "I can't stop thinking something bad will happen with {obj}",
        "my heart is pounding about {obj}",
        "{obj} keeps me up at night",
    ),
    "happiness": (
        "I love {obj}",
        "{obj} made my day",
        "I'm so grateful for {obj}",
        "{obj} is the best thing ever",
        "I can't stop smiling about {obj}",
        "{obj} went perfectly",
    ),
    "sadness": (
        "I miss {obj}",
        "{obj} broke my heart",
        "I cried all night about {obj}",
        "I feel empty since {obj}",
        "nothing will be the same after {obj}",
        "I wish {obj} had gone differently",
    ),
    "surprise": (
        "I never expected {obj}",
        "I can't believe {obj}",
        "{obj} came out of nowhere",
        "who would have guessed {obj}",
        "{obj} caught me completely off guard",
        "I did not see {obj} coming",
    ),
    "neutral": (
        "I need to check {obj}",
        "I'll deal with {obj} tomorrow",
        "we talked about {obj}",
        "{obj} is on the list",
        "I wrote down the details of {obj}",
        "someone asked about {obj}",
    ),
}

# Situations that imply an emotion without naming it (past tense, any grammatical subject).
SITUATIONS: dict[str, tuple[str, ...]] = {
    "anger": (
        "the landlord kept the whole deposit for no reason",
        "someone keyed the car and just drove off",
        "they cancelled the order again without telling anyone",
        "my colleague took credit for all my work",
        "the airline lost the luggage and hung up on me",
        "the neighbours blasted music until four in the morning",
        "the mechanic charged double and fixed nothing",
        "he lied to my face about the money",
        "they cut in front of the whole queue",
        "the company ignored every single complaint",
    ),
    "disgust": (
        "there was a hair in the soup and mould on the bread",
        "the bathroom on the train was covered in filth",
        "he chewed with his mouth open and spat on the floor",
        "the fridge was full of rotten meat and maggots",
        "someone left used tissues all over the desk",
        "the milk had turned into lumps",
        "the politician laughed at the victims",
        "the hostel sheets had stains and bugs",
        "a cockroach crawled out of the salad",
        "the dog rolled in something dead",
    ),
    "fear": (
        "footsteps followed me down the dark alley",
        "the plane dropped suddenly during the storm",
        "the doctor wants to run more tests on the lump",
        "someone tried to open the front door at midnight",
        "the car skidded on the ice towards the barrier",
        "a stranger was waiting outside the house again",
        "the smoke alarm went off and the hallway filled with smoke",
        "the lights went out and something moved in the basement",
        "the exam results decide whether I keep the scholarship",
        "a huge dog ran at us, barking and snarling",
    ),
    "happiness": (
        "we won the final in the last minute",
        "she said yes when I proposed",
        "I got the job I always wanted",
        "the whole family came home for the holidays",
        "the baby took her first steps today",
        "my best friend surprised me with concert tickets",
        "we finally bought our first house",
        "the sun came out and we spent the day at the beach",
        "the team passed every test on the first try",
        "my paper got accepted at the conference",
    ),
    "sadness": (
        "my dog passed away this morning",
        "my grandmother died last week",
        "she moved to another country and we lost touch",
        "nobody came to my birthday party",
        "I failed the exam after months of studying",
        "we had to sell the house I grew up in",
        "my best friend stopped talking to me",
        "the shelter could not find a home for the old cat",
        "he left and took the kids with him",
        "the project I worked on for years was cancelled",
    ),
    "surprise": (
        "all my friends jumped out when I opened the door",
        "a letter arrived from a cousin I never knew I had",
        "the quiet intern turned out to be the owner's daughter",
        "it started snowing in the middle of July",
        "my old teacher was sitting next to me on the plane",
        "the underdog won by twenty points",
        "the box contained a puppy instead of a book",
        "my brother announced he is getting married next week",
        "the shop gave me my money back plus a gift",
        "we found a secret room behind the bookshelf",
    ),
    "neutral": (
        "the bus leaves at seven and arrives at nine",
        "the meeting was moved to the second floor",
        "I bought bread, milk and some apples",
        "the report has twelve pages and three tables",
        "we walked to the station and took the train",
        "the printer on the third floor is working again",
        "she reads the newspaper every morning",
        "the library closes at six on Saturdays",
        "I changed the password and updated the software",
        "the parcel will be delivered on Thursday",
    ),
}

INTERJECTIONS: dict[str, tuple[str, ...]] = {
    "anger": ("Seriously?!", "Unbelievable.", "Enough!", "Are you kidding me?"),
    "disgust": ("Ugh.", "Eww.", "Yuck.", "Gross."),
    "fear": ("Oh no.", "Oh my god.", "Help.", "Please, no."),
    "happiness": ("Yay!", "Hooray!", "Woohoo!", "Finally!"),
    "sadness": ("Sigh.", "Oh well...", "I guess...", "Why..."),
    "surprise": ("Wow!", "Oh my god!", "No way!", "Whoa!"),
    "neutral": ("Okay.", "Right.", "Noted.", "Sure."),
}

# Negated emotion words and the emotion the whole sentence expresses.
NEGATIONS: dict[str, tuple[str, ...]] = {
    "anger": ("I'm not happy about {obj}", "{name} is not pleased with {obj} at all"),
    "sadness": ("I'm not happy anymore", "{name} doesn't enjoy {obj} anymore"),
    "happiness": ("I'm not sad about {obj} anymore", "no complaints about {obj} at all"),
    "neutral": (
        "I'm not scared of {obj} at all",
        "{name} wasn't angry about {obj}, just tired",
        "I'm not really excited about {obj}",
        "I'm not upset about {obj}, it's fine",
        "{name} isn't worried about {obj}",
    ),
    "fear": ("I'm not sure we will survive {obj}", "I don't feel safe with {obj}"),
    "disgust": ("I would not touch {obj} with a stick", "{name} can't even look at {obj}"),
    "surprise": ("I did not expect {obj} at all", "{name} never saw {obj} coming"),
}

# Sentences that fit several emotions; used for a modest share of samples.
AMBIGUOUS: tuple[str, ...] = (
    "I can't believe this happened.",
    "Well, that was something.",
    "I don't know what to say about {obj}.",
    "It is what it is.",
    "So that's how {obj} ended.",
    "{subj} just stared at the screen.",
    "I need a moment after {obj}.",
    "Oh, {obj}. Of course.",
    "What a day.",
    "{subj} didn't say a word all evening.",
    "Here we go again.",
    "I keep thinking about {obj}.",
)

OBJECTS: tuple[str, ...] = (
    "the meeting",
    "my exam results",
    "the new job",
    "the train strike",
    "my phone bill",
    "the neighbours",
    "the party",
    "my brother's wedding",
    "the test results",
    "the interview",
    "the project",
    "the trip to Spain",
    "the new manager",
    "the weather",
    "the election",
    "the football match",
    "the flat",
    "the surgery",
    "the holiday",
    "the break-up",
    "the email from the bank",
    "the school play",
    "the deadline",
    "the concert",
    "the move",
    "the car",
    "the dinner with her parents",
    "the review",
    "this whole situation",
    "the news",
    "the promotion",
    "the rent increase",
    "the dentist appointment",
    "the group chat",
    "the wedding speech",
    "the garden",
)

NAMES: tuple[str, ...] = (
    "Anna",
    "Tom",
    "Maria",
    "James",
    "Priya",
    "Chen",
    "Fatima",
    "Lucas",
    "Sofia",
    "Omar",
    "Emma",
    "Daniel",
    "Aisha",
    "Noah",
    "Mia",
    "Kenji",
    "My sister",
    "My dad",
    "My boss",
    "My roommate",
    "Our teacher",
    "The old man next door",
)

LEADS: tuple[str, ...] = ("so", "guess what,", "apparently", "then", "turns out", "today")
HEDGES: tuple[str, ...] = ("a bit", "a little", "kind of", "somewhat", "slightly", "sort of")
BOOSTERS: tuple[str, ...] = ("really", "so", "very", "quite", "pretty")
MAXIMISERS: tuple[str, ...] = ("extremely", "incredibly", "absolutely", "totally", "utterly")
MARKERS: tuple[str, ...] = (
    "Honestly,",
    "To be fair,",
    "Well,",
    "Like,",
    "You know,",
    "Literally,",
    "I mean,",
    "Tbh",
    "Anyway,",
    "So yeah,",
)
FRAMES_FIRST: tuple[str, ...] = (
    "I'm {adj} about {obj}",
    "I feel {adj}",
    "I was {adj} when {event}",
    "{obj} made me {adj}",
    "I've been {adj} since {event}",
    "I got {adj} after {obj}",
    "today I feel {adj}",
    "I'm {adj}, {event}",
)
FRAMES_THIRD: tuple[str, ...] = (
    "{subj} is {adj} about {obj}",
    "{subj} was {adj} when {event}",
    "{subj} looked {adj} after {obj}",
    "{subj} seems {adj} since {event}",
    "{subj} sounded {adj} on the phone",
    "{subj} said they were {adj}",
)
_HIGH_AROUSAL = ("anger", "fear", "happiness", "surprise")


@dataclass(frozen=True)
class _Writer:
    """A writer's habits."""

    marker: str
    marker_rate: float
    first_person: float
    exclaims: float
    lowercase: bool


def _rng(*keys: int | str) -> np.random.Generator:
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence([abs(i) for i in ints]))


def _writer(speaker: str, seed: int) -> _Writer:
    rng = _rng(seed, "writer", speaker)
    return _Writer(
        marker=str(rng.choice(MARKERS)),
        marker_rate=float(rng.uniform(0.05, 0.4)),
        first_person=float(rng.uniform(0.4, 0.85)),
        exclaims=float(rng.uniform(0.3, 1.5)),
        lowercase=bool(rng.random() < 0.2),
    )


def _lexical_emotion(emotion: str) -> str:
    """The emotion whose words to use: itself, or the nearest one on the circumplex."""
    if emotion in ADJECTIVES:
        return emotion
    point = np.array(circumplex(emotion))
    return min(EKMAN7, key=lambda e: float(np.linalg.norm(point - np.array(circumplex(e)))))


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _adjective(emotion: str, intensity: float, rng: np.random.Generator) -> str:
    """An emotion word whose strength follows intensity, with a matching modifier."""
    if rng.random() < 0.15 and emotion in SHARED_ADJECTIVES:
        word = _pick(rng, SHARED_ADJECTIVES[emotion])
    else:
        level = int(np.clip(np.floor(intensity * 3 + rng.normal(0, 0.5)), 0, 2))
        word = _pick(rng, ADJECTIVES[emotion][level])
    if emotion == "neutral":
        return word
    draw = intensity + rng.normal(0, 0.15)
    if draw < 0.3:
        return f"{_pick(rng, HEDGES)} {word}"
    if draw > 0.85:
        return f"{_pick(rng, MAXIMISERS)} {word}"
    if draw > 0.6:
        return f"{_pick(rng, BOOSTERS)} {word}"
    return word


def _ending(emotion: str, intensity: float, writer: _Writer, rng: np.random.Generator) -> str:
    if emotion == "sadness" and rng.random() < 0.3:
        return "..."
    if emotion in _HIGH_AROUSAL and rng.random() < writer.exclaims * intensity * 0.7:
        return "!!" if intensity > 0.8 and rng.random() < 0.4 else "!"
    return "."


def compose(emotion: str, intensity: float, speaker: str, seed: int, key: str) -> str:
    """Write one sentence.

    Args:
        emotion: The emotion the text expresses.
        intensity: Expression strength in [0, 1].
        speaker: Writer id; fixes the writer's habits.
        seed: Corpus seed.
        key: Key (e.g. the sample id) that fixes the sentence's own randomness.

    Returns:
        The sentence.
    """
    rng = _rng(seed, "text", key)
    writer = _writer(speaker, seed)
    emotion = _lexical_emotion(emotion)
    intensity = float(np.clip(intensity, 0.0, 1.0))
    first = rng.random() < writer.first_person
    subj = "I" if first else _pick(rng, NAMES)
    obj = _pick(rng, OBJECTS)
    event = _pick(rng, SITUATIONS[emotion])
    # Third-person templates need a name even when the writer mostly speaks for themselves.
    fill = {"subj": subj, "name": _pick(rng, NAMES), "obj": obj, "event": event}

    kind = rng.choice(
        ["ambiguous", "adjective", "phrase", "situation", "negation", "interjection"],
        p=_kind_probabilities(emotion, intensity),
    )
    if kind == "ambiguous":
        sentence = _pick(rng, AMBIGUOUS).format(**fill)
    elif kind == "adjective":
        frame = _pick(rng, FRAMES_FIRST if first else FRAMES_THIRD)
        sentence = frame.format(adj=_adjective(emotion, intensity, rng), **fill)
    elif kind == "phrase":
        sentence = _pick(rng, PHRASES[emotion]).format(**fill)
    elif kind == "situation":
        sentence = event if rng.random() < 0.6 else f"{_pick(rng, LEADS)} {event}"
    elif kind == "negation":
        sentence = _pick(rng, NEGATIONS[emotion]).format(**fill)
    else:
        rest = event if rng.random() < 0.5 else _pick(rng, PHRASES[emotion]).format(**fill)
        sentence = f"{_pick(rng, INTERJECTIONS[emotion])} {rest}"

    if kind != "ambiguous":
        sentence = sentence[0].upper() + sentence[1:] + _ending(emotion, intensity, writer, rng)
    if rng.random() < writer.marker_rate:
        sentence = f"{writer.marker} {sentence[0].lower()}{sentence[1:]}"
        sentence = sentence.replace(" i ", " I ").replace(" i'", " I'")
    if writer.lowercase:
        sentence = sentence.lower()
    return sentence


def _kind_probabilities(emotion: str, intensity: float) -> list[float]:
    """How often each kind of sentence is used; weak expressions are more often ambiguous."""
    ambiguous = 0.04 + 0.12 * (1.0 - intensity)
    negation = 0.14 if emotion == "neutral" else 0.07
    interjection = 0.08 * intensity
    rest = 1.0 - ambiguous - negation - interjection
    return [ambiguous, 0.42 * rest, 0.25 * rest, 0.33 * rest, negation, interjection]


def render_text(latents: pd.DataFrame, seed: int = 0) -> list[str]:
    """Write one sentence per latent row.

    Args:
        latents: Rows with ``id``, ``emotion`` and ``speaker`` (the writer); ``intensity``
            (default 0.7) is used when present.
        seed: Seed of the writers and sentences.

    Returns:
        The sentences, in row order.
    """
    intensity = latents["intensity"] if "intensity" in latents else pd.Series(0.7, latents.index)
    rows = list(zip(latents["id"], latents["emotion"], intensity, latents["speaker"], strict=True))
    texts = [compose(str(e), float(i), str(s), seed, str(key)) for key, e, i, s in rows]
    return _distinct(texts, rows, seed)


MAX_REWRITES = 50


def _distinct(texts: list[str], rows: list[tuple], seed: int) -> list[str]:
    """Rewrite later copies until no two texts are exact or near duplicates for the leakage guard.

    A corpus whose test texts repeat its training texts measures memory, not recognition
    (docs/leakage.md); the guard's own default settings decide what a near duplicate is.
    """
    from emoexp.data.leakage.detect import TextSettings
    from emoexp.data.leakage.text import exact_key, near_pairs, normalise

    settings = TextSettings()
    for attempt in range(1, MAX_REWRITES + 1):
        seen: set[str] = set()
        again = set()
        for position, text in enumerate(texts):
            key = exact_key(text)
            if key in seen:
                again.add(position)
            seen.add(key)
        near, _ = near_pairs([normalise(t) for t in texts], settings.max_distance, settings.min_chars)
        again.update(int(max(i, j)) for i, j in near)
        if not again:
            return texts
        for position in sorted(again):
            key, emotion, strength, speaker = rows[position]
            texts[position] = compose(str(emotion), float(strength), str(speaker), seed, f"{key}#{attempt}")
    return texts
