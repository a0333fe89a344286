"""Facial and emotional *events* in a free-text caption, in temporal order: the unit the caption score compares.

An event is a canonical action key (``"brow_raise"``, ``"smile"``, ``"mouth_open"`` ...) or an emotion state
(``"emotion:happiness"``, through the taxonomy wheel), with a negation flag ("does not smile"). Extraction is a small
lexicon, deterministic and fast (no model):

1. The caption is lower-cased, ``n't`` becomes ``not``, and it is cut into *clauses* at sentence punctuation
   (``. ; , ! ?``) and at the connectives ``and, then, but, while, before, after, followed, afterwards, later, next,
   finally, eventually, subsequently``.
2. In each clause, filler words (articles, possessives, "slightly" ...) are dropped. An action is found when one of its
   *part* words (``brows``) and one of its *verb* words (``raise``) stand within :data:`WINDOW` tokens of each other, in
   either order ("brows raise", "raises her brows"), or from a one-word form ("smiles", "frowns", "squints", "nods").
   An emotion state is any emotion name, adjective or wheel word (``taxonomy.WHEEL``) not already used by an action.
3. An event is negated when ``not``, ``no``, ``never``, ``without``, ``nor`` or ``neither`` stands up to
   :data:`NEGATION_SPAN` tokens before it in its clause, or between its part and verb words ("mouth does not open").
4. Order: clauses keep text order, except that a clause opened by "after" in mid-sentence ("she smiles after her brows
   rise") moves before the clause it follows, and a sentence-initial "before ..." clause moves after the next clause.
   Clauses holding "first / initially / at first / at the beginning / at the start" are placed before all others and
   those holding "finally / eventually / lastly / in the end / at the end" after all others (stable sort).
   Within a clause, events keep the position of their first word; a repeated key within one clause counts once, and
   so does the same event in consecutive clauses ("his brows lower and he frowns").

Opposite actions (:data:`OPPOSITES`, e.g. brows raise vs brows lower) and emotions of opposite valence
(``taxonomy.VAD``, both at least :data:`OPPOSITE_VALENCE` away from zero) are *contradictions*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emoreason.knowledge.taxonomy import ADJECTIVE, ALL_EMOTIONS, VAD, WHEEL

WINDOW = 3  # max token distance between a part word and a verb word of one action (after dropping fillers)
NEGATION_SPAN = 3  # a negator this many tokens (or fewer) before an event negates it
OPPOSITE_VALENCE = 0.5  # two emotions contradict when their valences have opposite signs and |v| >= this

_NEGATORS = frozenset({"not", "no", "never", "without", "nor", "neither"})
_FILLER_WORDS = (
    "a an the her his their its my your our of slightly bit briefly quickly slowly suddenly gently visibly clearly "
    "noticeably somewhat very really just momentarily"
)
_FILLERS = frozenset(_FILLER_WORDS.split())
_CONNECTIVE_WORDS = (
    "and then but while before after followed afterwards afterward later next finally eventually subsequently"
)
_CONNECTIVES = frozenset(_CONNECTIVE_WORDS.split())
_FIRST = ("first", "initially", "at first", "at the beginning", "at the start", "to begin", "in the beginning")
_LAST = ("finally", "eventually", "lastly", "in the end", "at the end", "by the end", "in the end")

# Action lexicon: key -> (one-word forms, [(part words, verb words), ...]).
_ACTIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "brow_raise": ("", [("brow brows eyebrow eyebrows forehead", "raise raises raised raising lift lifts lifted "
                         "lifting rise rises rising rose arch arches arched arching up shoot shoots")]),
    "brow_lower": ("frown frowns frowned frowning scowl scowls scowled scowling",
                   [("brow brows eyebrow eyebrows", "lower lowers lowered lowering furrow furrows furrowed furrowing "
                     "knit knits knitted knitting draw draws drawn together down pinch pinched scrunch scrunched")]),
    "mouth_open": ("gasp gasps gasped gasping yawn yawns yawned yawning agape",
                   [("mouth jaw lips", "open opens opened opening drop drops dropped dropping fall falls falling "
                     "fell part parts parted parting gape gapes gaping slack")]),
    "mouth_close": ("", [("mouth jaw", "close closes closed closing shut shuts")]),
    "lips_press": ("", [("lips lip mouth", "press presses pressed pressing tighten tightens tightened tightening "
                         "purse purses pursed pursing compress compresses compressed thin thins thinned")]),
    "smile": ("smile smiles smiled smiling grin grins grinned grinning beam beams beamed beaming",
              [("corner corners", "up upward upwards upturn upturned curl curls curled rise rises rising raise "
                "raised lift lifts lifted")]),
    "lip_corner_down": ("pout pouts pouted pouting grimace grimaces grimaced grimacing",
                        [("corner corners mouth", "down downward downwards droop droops drooped drooping "
                          "depress depresses depressed sag sags sagging")]),
    "eyes_widen": ("", [("eye eyes", "widen widens widened widening wide bulge bulges bulging"),
                        ("lid lids eyelid eyelids", "raise raises raised rise rises rising lift lifts lifted widen")]),
    "eyes_narrow": ("squint squints squinted squinting",
                    [("eye eyes lid lids eyelid eyelids", "narrow narrows narrowed narrowing tighten tightens "
                      "tightened tightening squint squints")]),
    "eyes_close": ("", [("eye eyes lid lids eyelid eyelids", "close closes closed closing shut shuts")]),
    "blink": ("blink blinks blinked blinking", []),
    "cheek_raise": ("", [("cheek cheeks", "raise raises raised raising lift lifts lifted rise rises bunch "
                          "bunches bunched puff puffs")]),
    "nose_wrinkle": ("sneer sneers sneered sneering", [("nose", "wrinkle wrinkles wrinkled wrinkling scrunch "
                                                        "scrunches scrunched crinkle crinkles crinkled")]),
    "upper_lip_raise": ("", [("lip", "raise raises raised raising curl curls curled lift lifts lifted")]),
    "chin_raise": ("", [("chin", "raise raises raised raising push pushes pushed wrinkle wrinkles")]),
    "head_turn": ("", [("head face gaze", "turn turns turned turning away avert averts averted"),
                       ("look looks looked looking glance glances glanced", "away aside sideways")]),
    "head_nod": ("nod nods nodded nodding", []),
    "head_shake": ("", [("head", "shake shakes shook shaking")]),
    "head_tilt": ("", [("head", "tilt tilts tilted tilting cock cocks cocked")]),
    "head_down": ("", [("head gaze", "down downward lower lowers lowered lowering drop drops dropped bow bows "
                        "bowed"), ("look looks looked looking glance glances glanced", "down downward")]),
    "head_up": ("", [("head gaze", "up upward raise raises raised lift lifts lifted"),
                     ("look looks looked looking glance glances glanced", "up upward")]),
    "laugh": ("laugh laughs laughed laughing chuckle chuckles chuckled chuckling giggle giggles giggling", []),
    "cry": ("cry cries cried crying tears tearful sob sobs sobbed sobbing weep weeps wept weeping", []),
}  # fmt: skip

OPPOSITES: frozenset[frozenset[str]] = frozenset(
    frozenset(p)
    for p in (
        ("brow_raise", "brow_lower"),
        ("mouth_open", "mouth_close"),
        ("mouth_open", "lips_press"),
        ("smile", "lip_corner_down"),
        ("eyes_widen", "eyes_narrow"),
        ("eyes_widen", "eyes_close"),
        ("head_up", "head_down"),
    )
)
ACTION_KEYS: tuple[str, ...] = tuple(_ACTIONS)

# Words of the wheel too ambiguous to mean an emotion state in a face caption ("lips tense", "relaxed brows").
_NOT_EMOTION = frozenset({"content", "tense", "relaxed", "love", "loving", "blank"})

_SINGLE: dict[str, str] = {}
_PART: dict[str, list[tuple[str, int]]] = {}
_VERB: dict[str, list[tuple[str, int]]] = {}
for _key, (_singles, _pairs) in _ACTIONS.items():
    for _w in _singles.split():
        _SINGLE[_w] = _key
    for _i, (_parts, _verbs) in enumerate(_pairs):
        for _w in _parts.split():
            _PART.setdefault(_w, []).append((_key, _i))
        for _w in _verbs.split():
            _VERB.setdefault(_w, []).append((_key, _i))

_EMOTION_WORDS: dict[str, str] = {w: e for w, e in WHEEL.items() if w not in _NOT_EMOTION}
_EMOTION_WORDS.update({e: e for e in ALL_EMOTIONS})
_EMOTION_WORDS.update({adj: e for e, adj in ADJECTIVE.items()})

_TOKEN_RE = re.compile(r"[a-z]+|[.;,!?]")
_SENTENCE_END = frozenset(".;!?")


@dataclass(frozen=True)
class Event:
    """One event of a caption: ``key`` is an action key or ``"emotion:<basic emotion>"``."""

    key: str
    negated: bool = False
    text: str = ""  # the words it was read from, for reports and an LLM judge

    @property
    def label(self) -> str:
        return ("not " if self.negated else "") + self.key

    @property
    def is_emotion(self) -> bool:
        return self.key.startswith("emotion:")


@dataclass
class _Clause:
    tokens: list[str]
    sentence_start: bool
    opener: str | None  # connective that opened the clause
    order: float = 0.0
    bucket: int = 1


def _clauses(text: str) -> list[_Clause]:
    text = text.lower().replace("’", "'").replace("n't", " not").replace("-", " ")
    clauses: list[_Clause] = []
    current: list[str] = []
    sentence_start = True
    opener: str | None = None

    def close() -> None:
        nonlocal current, opener, sentence_start
        if current:
            clauses.append(_Clause(current, sentence_start, opener))
            sentence_start = False
        current, opener = [], None

    for tok in _TOKEN_RE.findall(text):
        if tok in _SENTENCE_END:
            close()
            sentence_start = True
        elif tok == ",":
            close()
        elif tok in _CONNECTIVES:
            close()
            opener = tok
            current.append(tok)  # kept so that "finally" can set the clause's bucket
        else:
            current.append(tok)
    close()
    return clauses


def _order(clauses: list[_Clause]) -> list[_Clause]:
    for i, c in enumerate(clauses):
        c.order = float(i)
    for i, c in enumerate(clauses):
        if c.opener == "after" and not c.sentence_start and i > 0:
            c.order = clauses[i - 1].order - 0.5
        if c.opener == "before" and c.sentence_start and i + 1 < len(clauses):
            c.order = i + 1.5
        joined = " " + " ".join(c.tokens) + " "
        if any(f" {m} " in joined for m in _FIRST):
            c.bucket = 0
        elif any(f" {m} " in joined for m in _LAST):
            c.bucket = 2
    return sorted(clauses, key=lambda c: (c.bucket, c.order))


def _negated(tokens: list[str], start: int, end: int) -> bool:
    return any(t in _NEGATORS for t in tokens[max(0, start - NEGATION_SPAN) : end])


def _clause_events(tokens: list[str]) -> list[Event]:
    words = [t for t in tokens if t not in _FILLERS]
    found: list[tuple[int, int, str]] = []  # (position, end, key)
    used: set[int] = set()
    for i, w in enumerate(words):
        if w in _SINGLE:
            found.append((i, i, _SINGLE[w]))
            used.add(i)
        for key, alt in _PART.get(w, ()):
            lo, hi = max(0, i - WINDOW), min(len(words), i + WINDOW + 1)
            for j in range(lo, hi):
                if j != i and (key, alt) in _VERB.get(words[j], ()):
                    found.append((min(i, j), max(i, j), key))
                    used.update((i, j))
                    break
    for i, w in enumerate(words):
        if i not in used and w in _EMOTION_WORDS:
            found.append((i, i, "emotion:" + _EMOTION_WORDS[w]))
    found.sort()
    events: list[Event] = []
    seen: set[str] = set()
    for start, end, key in found:
        if key in seen:
            continue
        seen.add(key)
        events.append(Event(key, _negated(words, start, end), " ".join(words[max(0, start - 2) : end + 1])))
    return events


def extract_events(caption: str) -> list[Event]:
    """The events of ``caption`` in temporal order.

    >>> [e.label for e in extract_events("Finally she smiles. At first her brows raise, then her mouth does not open.")]
    ['brow_raise', 'not mouth_open', 'smile']
    """
    events: list[Event] = []
    for clause in _order(_clauses(caption)):
        for e in _clause_events(clause.tokens):
            if not events or events[-1].label != e.label:  # "brows lower and he frowns": one sustained action
                events.append(e)
    return events


def _valence(key: str) -> float:
    return VAD[key.split(":", 1)[1]][0]


def relation(pred: Event, ref: Event) -> str:
    """``"match"``, ``"contradiction"`` or ``"unrelated"`` between two events (the default lexicon rules).

    Same key and same negation: match. Same key, opposite negation: contradiction. Opposite actions, or emotions of
    opposite valence, neither negated: contradiction. Anything else: unrelated.

    >>> relation(Event("smile", negated=True), Event("smile"))
    'contradiction'
    """
    if pred.key == ref.key:
        return "match" if pred.negated == ref.negated else "contradiction"
    if pred.negated or ref.negated:
        return "unrelated"
    if frozenset((pred.key, ref.key)) in OPPOSITES:
        return "contradiction"
    if pred.is_emotion and ref.is_emotion:
        a, b = _valence(pred.key), _valence(ref.key)
        if a * b < 0 and min(abs(a), abs(b)) >= OPPOSITE_VALENCE:
            return "contradiction"
    return "unrelated"
