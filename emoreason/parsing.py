"""The one parser of model output, shared by rewards, metrics, the faithfulness check and the report.

Answer format (every model, the engine and the training targets agree on it)::

    <think>Key observations: ... Overall emotional interpretation: ... Conclusion: ...</think>
    <answer>{"emotion": "happiness", "compound": "happily surprised", "aus": ["AU6", "AU12"]}</answer>

``compound`` may be ``null``; ``aus`` may be empty. The answer body may also be a bare label (``<answer>happy</answer>``),
which yields the emotion only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from emoreason.knowledge.facs import find_aus, normalize_au
from emoreason.knowledge.taxonomy import UnknownLabelError, normalize_compound, normalize_emotion

THINK_SECTIONS = ("Key observations", "Overall emotional interpretation", "Conclusion")

_FORMAT_RE = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass
class ParsedOutput:
    text: str
    format_ok: bool = False  # exactly one think block followed by one answer block, nothing around them
    think: str | None = None
    answer_raw: str | None = None
    answer: dict | None = None  # the JSON object, when the answer is one
    emotion: str | None = None  # normalised (taxonomy.normalize_emotion)
    compound: str | None = None  # normalised (taxonomy.normalize_compound)
    aus: list[str] = field(default_factory=list)  # AUs listed in the answer
    think_aus: list[str] = field(default_factory=list)  # AUs named in the reasoning
    errors: list[str] = field(default_factory=list)


def parse_output(text: str) -> ParsedOutput:
    """Parse a model's output; never raises, records what is wrong in ``errors``.

    >>> p = parse_output('<think>Key observations: AU6 and AU12 at 1.0 s.</think><answer>{"emotion": "happy"}</answer>')
    >>> (p.format_ok, p.emotion, p.think_aus)
    (True, 'happiness', ['AU6', 'AU12'])
    """
    out = ParsedOutput(text=text)
    m = _FORMAT_RE.match(text)
    out.format_ok = bool(m) and text.count("<think>") == 1 and text.count("<answer>") == 1
    think = _THINK_RE.search(text)
    answer = _ANSWER_RE.search(text)
    if think:
        out.think = think.group(1).strip()
        out.think_aus = find_aus(out.think)
    else:
        out.errors.append("no <think> block")
    if not answer:
        out.errors.append("no <answer> block")
        return out
    out.answer_raw = answer.group(1).strip()
    body = out.answer_raw
    if body.startswith("{"):
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as e:
            out.errors.append(f"answer is not valid JSON: {e.msg}")
            return out
        if not isinstance(obj, dict):
            out.errors.append("answer JSON is not an object")
            return out
        out.answer = obj
        _read_fields(out, obj)
    elif body:
        _set_emotion(out, body)
    return out


def _set_emotion(out: ParsedOutput, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        out.errors.append("emotion missing or not a string")
        return
    try:
        out.emotion = normalize_emotion(value)
    except UnknownLabelError as e:
        out.errors.append(str(e))


def _read_fields(out: ParsedOutput, obj: dict) -> None:
    _set_emotion(out, obj.get("emotion"))
    compound = obj.get("compound")
    if isinstance(compound, str) and compound.strip() and compound.strip().lower() not in ("none", "null", "n/a"):
        try:
            out.compound = normalize_compound(compound)
        except UnknownLabelError as e:
            out.errors.append(str(e))
    aus = obj.get("aus", [])
    if not isinstance(aus, list):
        out.errors.append("aus is not a list")
        return
    for a in aus:
        try:
            code = normalize_au(str(a))
        except ValueError as e:
            out.errors.append(str(e))
            continue
        if code not in out.aus:
            out.aus.append(code)


def format_answer(think: str, emotion: str, compound: str | None = None, aus: list[str] | None = None) -> str:
    """Write an answer in the shared format (the inverse of :func:`parse_output`)."""
    body = json.dumps({"emotion": emotion, "compound": compound, "aus": list(aus or [])})
    return f"<think>{think.strip()}</think><answer>{body}</answer>"


# Times as written in reasoning: "1.2 s", "1.2s", "at 3 seconds", "0:04", "1.0-2.5 s" (both ends are read).
_TIME_PATTERNS = (
    re.compile(r"(?<![\d.:])(\d+):([0-5]\d(?:\.\d+)?)(?![\d:])"),  # m:ss(.f)
    re.compile(r"(?<![\d.:])(\d+(?:\.\d+)?)\s*(?:[-–]\s*(\d+(?:\.\d+)?)\s*)?(?:s|sec|secs|seconds?)\b"),
)


def find_times(text: str) -> list[float]:
    """Every time in seconds mentioned in ``text``, in order.

    >>> find_times("AU12 from 0.4-2.0 s, apex at 1.2s; again at 0:04")
    [0.4, 2.0, 1.2, 4.0]
    """
    found: list[tuple[int, float]] = []
    for m in _TIME_PATTERNS[0].finditer(text):
        found.append((m.start(), int(m.group(1)) * 60 + float(m.group(2))))
    for m in _TIME_PATTERNS[1].finditer(text):
        found.append((m.start(1), float(m.group(1))))
        if m.group(2):
            found.append((m.start(2), float(m.group(2))))
    return [t for _, t in sorted(found)]


def think_sections(think: str) -> dict[str, str]:
    """Split a reasoning text into its three named sections (missing ones are absent from the result)."""
    pattern = re.compile(r"(" + "|".join(re.escape(s) for s in THINK_SECTIONS) + r")\s*:", re.IGNORECASE)
    marks = list(pattern.finditer(think))
    sections: dict[str, str] = {}
    for i, m in enumerate(marks):
        name = next(s for s in THINK_SECTIONS if s.lower() == m.group(1).lower())
        end = marks[i + 1].start() if i + 1 < len(marks) else len(think)
        sections[name] = think[m.end() : end].strip()
    return sections
