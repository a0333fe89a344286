"""The FACS Action Unit table: every AU EmoReason knows, its name, muscle and appearance.

Source: Ekman, Friesen & Hager, *Facial Action Coding System* (2002), AU names and muscular basis as in the FACS manual's
summary table. AU numbering is the FACS numbering; ``"AU12"`` style strings are the one spelling used everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionUnit:
    number: int
    name: str
    muscle: str
    appearance: str

    @property
    def code(self) -> str:
        return f"AU{self.number}"


_TABLE = [
    ActionUnit(1, "inner brow raiser", "frontalis, pars medialis", "inner corners of the brows rise"),
    ActionUnit(2, "outer brow raiser", "frontalis, pars lateralis", "outer parts of the brows rise"),
    ActionUnit(4, "brow lowerer", "corrugator supercilii, depressor supercilii", "brows lower and draw together"),
    ActionUnit(5, "upper lid raiser", "levator palpebrae superioris", "eyes widen, upper lids rise"),
    ActionUnit(6, "cheek raiser", "orbicularis oculi, pars orbitalis", "cheeks lift, crow's feet at the eye corners"),
    ActionUnit(7, "lid tightener", "orbicularis oculi, pars palpebralis", "lids tense and narrow the eyes"),
    ActionUnit(9, "nose wrinkler", "levator labii superioris alaeque nasi", "nose wrinkles, upper lip rises"),
    ActionUnit(10, "upper lip raiser", "levator labii superioris", "upper lip rises"),
    ActionUnit(12, "lip corner puller", "zygomaticus major", "lip corners pull up and back (smile)"),
    ActionUnit(14, "dimpler", "buccinator", "lip corners tighten inward, dimples form"),
    ActionUnit(15, "lip corner depressor", "depressor anguli oris", "lip corners pull down"),
    ActionUnit(16, "lower lip depressor", "depressor labii inferioris", "lower lip pulls down"),
    ActionUnit(17, "chin raiser", "mentalis", "chin boss pushes up, lower lip rises"),
    ActionUnit(20, "lip stretcher", "risorius with platysma", "lips stretch sideways"),
    ActionUnit(23, "lip tightener", "orbicularis oris", "lips tighten and narrow"),
    ActionUnit(24, "lip pressor", "orbicularis oris", "lips press together"),
    ActionUnit(25, "lips part", "depressor labii inferioris or relaxation of mentalis", "lips part"),
    ActionUnit(
        26, "jaw drop", "masseter relaxed; temporalis and internal pterygoid relaxed", "jaw drops, mouth opens"
    ),
    ActionUnit(43, "eyes closed", "relaxation of levator palpebrae superioris", "eyes close"),
]

AUS: dict[str, ActionUnit] = {au.code: au for au in _TABLE}
AU_CODES: tuple[str, ...] = tuple(AUS)

# AUs estimated from landmark geometry by the perception step (AU14/AU16/AU24 are in the table for knowledge only).
PERCEIVED_AUS: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15",
    "AU17", "AU20", "AU23", "AU25", "AU26", "AU43",
)  # fmt: skip

# Intensity scale used everywhere: 0 (absent) to 5 (maximum), FACS A..E mapped to 1..5.
INTENSITY_MAX = 5.0
# An AU counts as present (occurrence) at or above this intensity: FACS "A" (trace) is 1, BP4D/DISFA use >= 2 ("B").
OCCURRENCE_THRESHOLD = 2.0

_AU_RE = re.compile(r"\bAU\s*0*(\d{1,2})\b", re.IGNORECASE)


def normalize_au(text: str) -> str:
    """``"au 06"`` -> ``"AU6"``. Raises ``ValueError`` for anything that is not a known AU."""
    m = _AU_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not an Action Unit: {text!r}")
    code = f"AU{int(m.group(1))}"
    if code not in AUS:
        raise ValueError(f"unknown Action Unit {code}; known: {', '.join(AU_CODES)}")
    return code


def find_aus(text: str) -> list[str]:
    """Every known AU mentioned in ``text``, in order of first mention, without repeats."""
    seen: dict[str, None] = {}
    for m in _AU_RE.finditer(text):
        code = f"AU{int(m.group(1))}"
        if code in AUS:
            seen.setdefault(code, None)
    return list(seen)
