"""Emotion labels defined once: basic emotions, compound expressions and an emotion wheel for open vocabulary.

Sources:
- Basic emotions: Ekman (1992) six plus neutral, the label set of DFEW/MAFW/FERV39k; contempt as in AffectNet and
  CK+ (Matsumoto & Ekman 2004).
- Compound expressions: C-EXPR-DB as used in the ABAW 6th challenge (Kollias et al. 2024: the 7 classes marked ``abaw``)
  and the 4 further RAF-DB compound classes (Li & Deng 2019; Du, Tao & Martinez 2014).
- Valence/arousal of basic emotions: positions on Russell's (1980) circumplex, scaled to [-1, 1], as tabulated for
  AffectNet's categories by Mollahosseini et al. (2019), rounded.
- Wheel words: Plutchik (1980) and Parrott (2001) groupings, the same words Emotion-Qwen and AffectGPT map on DFEW/MER.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BASIC_EMOTIONS: tuple[str, ...] = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
CONTEMPT = "contempt"
ALL_EMOTIONS: tuple[str, ...] = BASIC_EMOTIONS + (CONTEMPT,)
UNCERTAIN = "uncertain"  # open-set answer: no prototype fits well enough

# Adjective and adverb forms, used to read and write compound labels ("happily surprised").
ADJECTIVE = {
    "neutral": "neutral", "happiness": "happy", "sadness": "sad", "surprise": "surprised", "fear": "fearful",
    "disgust": "disgusted", "anger": "angry", "contempt": "contemptuous",
}  # fmt: skip
ADVERB = {
    "happiness": "happily", "sadness": "sadly", "surprise": "surprisedly", "fear": "fearfully",
    "disgust": "disgustedly", "anger": "angrily", "contempt": "contemptuously",
}  # fmt: skip


@dataclass(frozen=True)
class Compound:
    label: str  # "happily surprised"
    modifier: str  # basic emotion of the adverb: "happiness"
    base: str  # basic emotion of the adjective: "surprise"
    abaw: bool  # one of the 7 C-EXPR-DB classes of the ABAW challenge

    @property
    def components(self) -> frozenset[str]:
        return frozenset((self.modifier, self.base))


def _compound(modifier: str, base: str, abaw: bool) -> Compound:
    return Compound(f"{ADVERB[modifier]} {ADJECTIVE[base]}", modifier, base, abaw)


COMPOUNDS: tuple[Compound, ...] = (
    _compound("fear", "surprise", True),
    _compound("happiness", "surprise", True),
    _compound("sadness", "surprise", True),
    _compound("disgust", "surprise", True),
    _compound("anger", "surprise", True),
    _compound("sadness", "fear", True),
    _compound("sadness", "anger", True),
    _compound("happiness", "disgust", False),
    _compound("sadness", "disgust", False),
    _compound("fear", "anger", False),
    _compound("anger", "disgust", False),
)
COMPOUND_LABELS: tuple[str, ...] = tuple(c.label for c in COMPOUNDS)
C_EXPR_DB_LABELS: tuple[str, ...] = tuple(c.label for c in COMPOUNDS if c.abaw)
_BY_COMPONENTS = {c.components: c for c in COMPOUNDS}


def compound_for(a: str, b: str) -> Compound | None:
    """The compound class made of basic emotions ``a`` and ``b`` (order free), or None if there is none."""
    return _BY_COMPONENTS.get(frozenset((a, b)))


# Valence, arousal, dominance in [-1, 1] for each emotion (Russell 1980 circumplex; dominance after Mehrabian 1996 PAD).
VAD: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0),
    "happiness": (0.8, 0.5, 0.45),
    "sadness": (-0.7, -0.35, -0.35),
    "surprise": (0.2, 0.75, 0.0),
    "fear": (-0.65, 0.7, -0.6),
    "disgust": (-0.65, 0.3, 0.25),
    "anger": (-0.6, 0.75, 0.5),
    "contempt": (-0.5, 0.2, 0.45),
}

# Emotion wheel: open-vocabulary word -> the emotion it belongs to.
WHEEL: dict[str, str] = {}
_WHEEL_GROUPS = {
    "neutral": "neutral calm composed indifferent blank impassive relaxed serene bored expressionless",
    "happiness": (
        "happy happiness joy joyful delighted glad pleased cheerful amused content contentment excited elated "
        "ecstatic proud satisfied grateful amusement love loving hopeful optimistic relieved playful smiling laughing"
    ),
    "sadness": (
        "sad sadness unhappy sorrow sorrowful grief grieving depressed disappointed disappointment hurt lonely "
        "melancholy gloomy miserable heartbroken dejected despair crying upset regretful"
    ),
    "surprise": "surprise surprised astonished amazed shocked startled stunned astonishment amazement awe",
    "fear": (
        "fear fearful afraid scared frightened anxious anxiety nervous worried worry terrified panic panicked "
        "uneasy tense apprehensive alarmed insecure"
    ),
    "disgust": "disgust disgusted revolted repulsed grossed sickened nauseated aversion distaste loathing",
    "anger": (
        "anger angry mad furious irritated irritation annoyed annoyance frustrated frustration rage enraged "
        "hostile outraged resentful indignant bitter agitated"
    ),
    "contempt": "contempt contemptuous scornful disdainful sneering smug condescending dismissive",
}
for _emotion, _words in _WHEEL_GROUPS.items():
    for _w in _words.split():
        WHEEL[_w] = _emotion

_WORD_RE = re.compile(r"[a-z]+")


class UnknownLabelError(ValueError):
    """A label that is neither a known emotion nor a wheel word."""


def normalize_emotion(label: str) -> str:
    """Map a label or open-vocabulary word to one of :data:`ALL_EMOTIONS` (or :data:`UNCERTAIN`).

    Rule (stated once, used by rewards and metrics alike): the whole label lower-cased is tried first as an emotion
    name, adjective or wheel word; failing that, the first word of the label that is in the wheel decides.

    >>> normalize_emotion("Delighted")
    'happiness'
    >>> normalize_emotion("a bit irritated")
    'anger'
    """
    text = label.strip().lower()
    if text in ALL_EMOTIONS or text == UNCERTAIN:
        return text
    for emotion, adj in ADJECTIVE.items():
        if text == adj:
            return emotion
    if text in WHEEL:
        return WHEEL[text]
    if text in ("other", "unknown", "uncertain / other", "uncertain/other"):
        return UNCERTAIN
    for word in _WORD_RE.findall(text):
        if word in WHEEL:
            return WHEEL[word]
    raise UnknownLabelError(f"unknown emotion label {label!r}")


def normalize_compound(label: str) -> str:
    """Map ``"Happily Surprised"``, ``"happily-surprised"`` or ``"surprised and happy"`` to a compound label."""
    words = _WORD_RE.findall(label.lower())
    found: list[str] = []
    for w in words:
        for emotion in ALL_EMOTIONS:
            if w in (ADJECTIVE.get(emotion), ADVERB.get(emotion), emotion) and emotion not in found:
                found.append(emotion)
    if len(found) == 2:
        c = compound_for(*found)
        if c is not None:
            return c.label
    raise UnknownLabelError(f"unknown compound label {label!r}; known: {', '.join(COMPOUND_LABELS)}")
