"""A small transcript lexicon: emotion and valence of words, with negation handling.

Source: the word lists follow the NRC Word-Emotion Association Lexicon (Mohammad & Turney 2013) categories for the
common words, reduced to EmoReason's basic emotions; valence of each word from the same category (positive for
happiness, negative for the others). Negation: a negator ("not", "never", "n't" …) within the three preceding words flips
valence and moves the emotion vote to the opposite pole (the NegEx-style window of Hutto & Gilbert 2014, VADER).
This is deliberately small and transparent; a shipped model can replace it behind :func:`score_text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emoreason.knowledge.taxonomy import WHEEL

# Words beyond the taxonomy's wheel that carry emotion in everyday speech (the wheel words are included too).
_EXTRA = {
    "happiness": "wonderful great good love lovely fantastic amazing awesome nice fun beautiful glad yay thanks "
    "thank enjoy enjoyed best perfect excellent brilliant win won celebrate laugh smile",
    "sadness": "cry cried tears miss missed lost loss sorry alone die died death funeral hopeless terrible awful "
    "worst pain painful",
    "fear": "afraid scary danger dangerous threat help risk horror nightmare",
    "anger": "hate hated unacceptable outrageous damn ridiculous unfair stupid idiot shut enough disgrace "
    "sick furious",
    "disgust": "gross yuck disgusting nasty filthy vile rotten",
    "surprise": "wow whoa unbelievable unexpected suddenly really omg",
}
LEXICON: dict[str, str] = {w: e for w, e in WHEEL.items() if e != "neutral"}
for _emotion, _words in _EXTRA.items():
    for _w in _words.split():
        LEXICON.setdefault(_w, _emotion)

_NEGATORS = (
    "not no never nothing nobody neither nor without hardly isn't aren't wasn't don't doesn't didn't can't cannot"
)
NEGATORS = frozenset((_NEGATORS + " won't wouldn't shouldn't couldn't").split())
NEGATION_WINDOW = 3
# Where a negated emotion word goes (NRC has no negation rule; this mapping is ours: "not happy" reads as sad, a negated
# negative emotion is only "not that", so its vote is dropped).
NEGATED = {"happiness": "sadness"}

_TOKEN_RE = re.compile(r"[a-z']+")


@dataclass
class Hit:
    word: str
    emotion: str
    negated: bool
    index: int  # token index in the text


@dataclass
class LexiconScore:
    hits: list[Hit] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)  # emotion -> votes after negation
    valence: float = 0.0  # mean of +1/-1 over hits, in [-1, 1]; 0 when no hit

    @property
    def n(self) -> int:
        return len(self.hits)


def score_text(text: str) -> LexiconScore:
    """Emotion votes and valence of a transcript.

    >>> s = score_text("I am not happy, this is unacceptable")
    >>> (s.counts, s.valence)
    ({'sadness': 1.0, 'anger': 1.0}, -1.0)
    """
    tokens = _TOKEN_RE.findall(text.lower().replace("’", "'"))
    out = LexiconScore()
    signs: list[float] = []
    for i, tok in enumerate(tokens):
        emotion = LEXICON.get(tok)
        if emotion is None:
            continue
        negated = any(t in NEGATORS for t in tokens[max(0, i - NEGATION_WINDOW) : i])
        out.hits.append(Hit(tok, emotion, negated, i))
        sign = 1.0 if emotion == "happiness" else -1.0 if emotion != "surprise" else 0.0
        if negated:
            sign = -sign
            emotion = NEGATED.get(emotion, "")
        signs.append(sign)
        if emotion:
            out.counts[emotion] = out.counts.get(emotion, 0.0) + 1.0
    out.valence = sum(signs) / len(signs) if signs else 0.0
    return out
