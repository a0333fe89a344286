"""Faithfulness of a reasoning text to the evidence: every claim it makes must agree with the evidence.

Claims read from the text (its ``<think>`` block when there is one, else the whole text), clause by clause (a clause
ends at ``.``, ``;`` or ``:`` followed by a space):

- **presence**: every AU named is present (:func:`present_aus`: an AU event, or its series reaching
  ``OCCURRENCE_THRESHOLD``, the same rule the writer uses);
- **absence**: an AU said to be missing ("without AU6", "no AU4", "AU6 is absent") is not present over the times the
  same clause names (the whole clip when it names none);
- **timing**: every time lies within a tolerance of an AU event's onset, apex or offset, or of a transcript word's start
  or end; a photo has no time axis, so any time named about it is unsupported;
- **stillness**: "stays neutral", "neutral throughout", "no facial action stands out" and the like hold only when no AU
  is present (and, given the fused probabilities, only when the call is neutral or uncertain); "no face was found" holds
  only when no face was;
- **conclusion**: given the fused ``probabilities``, the answer's emotion and the conclusion's label are the top label
  (or ``uncertain``), and every "emotion probability" pair the conclusion writes matches them; a label that needs an AU
  (:data:`LABEL_REQUIRES`: "happiness" needs AU12) comes with it when a face was read.

The parsing of AUs and times is :mod:`emoreason.parsing`'s (``find_aus``, ``find_times``), the same that rewards and
metrics use. ``score`` is the fraction of claims that hold; it is 1.0 only when none is unsupported or contradicted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emoreason.evidence import Evidence
from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD
from emoreason.knowledge.taxonomy import ALL_EMOTIONS, UNCERTAIN, normalize_emotion
from emoreason.parsing import find_aus, find_times, parse_output, think_sections

TIME_TOLERANCE_S = 0.25  # at least this; widened to two analysed frames for low frame rates
PROBABILITY_TOLERANCE = (
    0.006  # a written probability is rounded to 2 decimals (0.005), plus the stored 4-decimal rounding
)
# Labels that need an AU in the evidence when a face was read: AU12 (lip corner puller) is the one action every
# happiness prototype has (EMFACS; see emoreason.knowledge.prototypes) — a happy call on a face without it is not borne
# out by the face.
LABEL_REQUIRES: dict[str, tuple[str, ...]] = {"happiness": ("AU12",)}

_CLAUSE_RE = re.compile(r"(?<=[.;:!?])\s+|\n+")
_AU = r"AU\s*0*\d{1,2}"
# "without AU6", "no AU4", "nor AU2", "lacks AU15", "absence of AU9", "AU6 is absent / not present / not active"
_ABSENCE_RES = (
    re.compile(
        rf"\b(?:without|no|nor|neither|lacks?|lacking|absence of)\s+(?:any\s+)?((?:{_AU})(?:\s*(?:,|or|and|nor)\s*{_AU})*)",
        re.IGNORECASE,
    ),  # fmt: skip
    re.compile(
        rf"((?:{_AU})(?:\s*\([^)]*\))?)\s+(?:is|was|stays|remains)\s+(?:absent|not present|not active|missing)\b",
        re.IGNORECASE,
    ),  # fmt: skip
)
# Whole-clip claims that the face does nothing; "neutral" ones also claim the call is neutral.
_STILL_NEUTRAL_RE = re.compile(r"\b(?:stays|remains) neutral\b|\bneutral throughout\b|\bshows a neutral "
                               r"face\b|\bexpressionless\b", re.IGNORECASE)  # fmt: skip
_STILL_AU_RE = re.compile(r"\bno (?:facial )?(?:action(?: unit)?s?|AUs?) (?:stands? out|rises?|is active|are active|"
                          r"moves?|reach(?:es)? the occurrence threshold)|\bno facial action unit rises\b",
                          re.IGNORECASE)  # fmt: skip
_NO_FACE_RE = re.compile(r"\bno face (?:was|is|could be) (?:found|visible|seen|detected)\b", re.IGNORECASE)
_EMOTION_WORDS = "|".join(ALL_EMOTIONS)
_PROB_RE = re.compile(rf"\b({_EMOTION_WORDS})\b\s*(?:\(\s*)?(?:probability\s+|at\s+|=\s*)?([01]\.\d{{2,4}})\b",
                      re.IGNORECASE)  # fmt: skip
_LABEL_RE = re.compile(rf"\b({_EMOTION_WORDS}|{UNCERTAIN})\b", re.IGNORECASE)


@dataclass
class FaithfulnessResult:
    unsupported_aus: list[str] = field(default_factory=list)
    unsupported_times: list[float] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)  # each: "<kind>: <claim> — <why>"
    n_claims: int = 0
    score: float = 1.0  # claims that hold / claims; 1.0 when nothing is claimed

    @property
    def ok(self) -> bool:
        return self.cites_only_evidence and not self.contradictions

    @property
    def cites_only_evidence(self) -> bool:
        """Every AU and time the text names is in the evidence (the per-answer faithfulness notion)."""
        return not self.unsupported_aus and not self.unsupported_times

    @property
    def n_unsupported(self) -> int:
        """The claims the evidence does not hold: AUs it does not show, times no event is near, contradictions."""
        return len(self.unsupported_aus) + len(self.unsupported_times) + len(self.contradictions)


def _tolerance(ev: Evidence) -> float:
    fps = ev.media.sample_fps
    return max(TIME_TOLERANCE_S, 2.0 / fps) if fps else TIME_TOLERANCE_S


def present_aus(ev: Evidence, start: float | None = None, end: float | None = None) -> set[str]:
    """AUs present in the evidence: an AU event, or the AU's series at or above ``OCCURRENCE_THRESHOLD`` on a frame.

    With ``start``/``end`` only what overlaps ``[start, end]`` widened by the time tolerance counts. This is the one
    notion of "present" that the writer (:mod:`emoreason.reasoning.engine`) and this check share.
    """
    tol = _tolerance(ev)
    lo = -float("inf") if start is None else start - tol
    hi = float("inf") if end is None else end + tol
    aus = {e.au for e in ev.au_events if e.offset >= lo and e.onset <= hi}
    if ev.aus is not None:
        for au, vals in ev.aus.intensities.items():
            if any(v is not None and v >= OCCURRENCE_THRESHOLD and lo <= t <= hi
                   for t, v in zip(ev.aus.times, vals, strict=False)):  # fmt: skip
                aus.add(au)
    return aus


def supported_aus(ev: Evidence) -> set[str]:
    """AUs the text may name as present (anywhere in the clip)."""
    return present_aus(ev)


def anchor_times(ev: Evidence) -> list[float]:
    """Times a text may name: AU events' onsets, apexes and offsets and transcript words' starts and ends. A photo has
    none (no time axis)."""
    if ev.media.still_image:
        return []
    times = [t for e in ev.au_events for t in (e.onset, e.apex, e.offset)]
    if ev.transcript is not None:
        times += [t for w in ev.transcript.words for t in (w.start, w.end)]
    return times


def face_read(ev: Evidence) -> bool:
    return ev.face is not None and ev.aus is not None and ev.face.coverage > 0


def _conclusion_text(think: str) -> str:
    return think_sections(think).get("Conclusion") or ""


def _label_of(text: str) -> str | None:
    m = _LABEL_RE.search(text)
    return m.group(1).lower() if m else None


def check_faithfulness(
    text: str, evidence: Evidence, probabilities: dict[str, float] | None = None
) -> FaithfulnessResult:
    """Check the reasoning in ``text`` against ``evidence`` (and, when given, the fused ``probabilities``).

    >>> from emoreason.evidence import AUEvent, MediaInfo
    >>> ev = Evidence(media=MediaInfo(path="a.mp4", duration_s=3, has_video=True, has_audio=False),
    ...               au_events=[AUEvent(au="AU12", onset=0.5, apex=1.0, offset=2.0, peak=3.0, mean=2.5)])
    >>> r = check_faithfulness("AU12 from 0.5 s to 2.0 s; AU4 at 2.8 s", ev)
    >>> (r.unsupported_aus, r.unsupported_times, r.score)
    (['AU4'], [2.8], 0.6)
    >>> check_faithfulness("The face stays neutral throughout; no facial action stands out.", ev).contradictions
    ['stillness: The face stays neutral throughout; — AU12 is present', 'stillness: no facial action stands out. — AU12 is present']
    """
    ev = evidence
    p = parse_output(text)
    think = p.think if p.think is not None else text
    tol = _tolerance(ev)
    present = present_aus(ev)
    contradictions: list[str] = []
    n = 0

    # absence claims (masked out before the presence claims are read)
    masked = think
    for clause in _CLAUSE_RE.split(think):
        times = find_times(clause)
        lo, hi = (min(times), max(times)) if times else (None, None)
        window = present_aus(ev, lo, hi) if times else present
        for rx in _ABSENCE_RES:
            for m in rx.finditer(clause):
                for au in find_aus(m.group(0)):
                    n += 1
                    if au in window:
                        where = f"from {lo:.2f} s to {hi:.2f} s" if times else "in the clip"
                        contradictions.append(f"absence: {m.group(0)} — {au} is present {where}")
                masked = masked.replace(m.group(0), " ")
        # stillness claims: about the whole clip
        for rx, neutral in ((_STILL_NEUTRAL_RE, True), (_STILL_AU_RE, False)):
            if rx.search(clause):
                n += 1
                if present:
                    contradictions.append(f"stillness: {clause.strip()} — {_names(present)} present")
                elif neutral and probabilities and _top(probabilities) not in ("neutral", UNCERTAIN):
                    top = _top(probabilities)
                    contradictions.append(f"stillness: {clause.strip()} — the fused call is {top} "
                                          f"({probabilities[top]:.2f})")  # fmt: skip
        if _NO_FACE_RE.search(clause):
            n += 1
            if face_read(ev):
                contradictions.append(f"no face: {clause.strip()} — a face is in {ev.face.coverage:.0%} of the frames")

    # presence and timing
    aus = find_aus(masked)
    times = list(dict.fromkeys(find_times(think)))
    anchors = anchor_times(ev)
    bad_aus = [a for a in aus if a not in present]
    bad_times = [t for t in times if not any(abs(t - a) <= tol for a in anchors)]
    n += len(aus) + len(times)

    # the conclusion: its label, the answer's label and the probabilities it writes
    concl = _conclusion_text(think)
    labels: list[tuple[str, str]] = []
    if p.emotion is not None:
        labels.append(("answer", p.emotion))
    stated = _label_of(concl) if concl else None
    if stated is not None:
        labels.append(("conclusion", stated))
    for where, label in labels:
        try:
            label = normalize_emotion(label)
        except ValueError:
            continue
        if probabilities:
            n += 1
            top = _top(probabilities)
            if label not in (top, UNCERTAIN):
                contradictions.append(f"conclusion: the {where} says {label} — the fused top label is {top} "
                                      f"({probabilities[top]:.2f})")  # fmt: skip
        need = LABEL_REQUIRES.get(label, ())
        if need and face_read(ev):
            n += 1
            missing = [au for au in need if au not in present]
            if missing:
                contradictions.append(f"label: the {where} says {label} — {_names(set(missing))} not present")
    if probabilities:
        for m in _PROB_RE.finditer(concl):
            e, v = m.group(1).lower(), float(m.group(2))
            n += 1
            if e in probabilities and abs(probabilities[e] - v) > PROBABILITY_TOLERANCE:
                contradictions.append(f"probability: {m.group(0)} — the fused probability of {e} is "
                                      f"{probabilities[e]:.4f}")  # fmt: skip

    result = FaithfulnessResult(bad_aus, bad_times, contradictions, n)
    result.score = round(max(1.0 - result.n_unsupported / n, 0.0), 4) if n else 1.0
    return result


def check_analysis(analysis: object, evidence: Evidence) -> FaithfulnessResult:
    """Check an :class:`~emoreason.reasoning.engine.Analysis` whole: its answer (think block and answer block) against
    the evidence and its own fused probabilities, and its caption against the same."""
    probs = analysis.probabilities  # type: ignore[attr-defined]
    a = check_faithfulness(analysis.answer_text(), evidence, probs)  # type: ignore[attr-defined]
    c = check_faithfulness(analysis.caption, evidence, probs)  # type: ignore[attr-defined]
    n = a.n_claims + c.n_claims
    bad = len(a.unsupported_aus + c.unsupported_aus + a.contradictions + c.contradictions)
    bad += len(a.unsupported_times + c.unsupported_times)
    score = round(max(1.0 - bad / n, 0.0), 4) if n else 1.0
    return FaithfulnessResult(list(dict.fromkeys(a.unsupported_aus + c.unsupported_aus)),
                              list(dict.fromkeys(a.unsupported_times + c.unsupported_times)),
                              a.contradictions + c.contradictions, n, score)  # fmt: skip


def _top(p: dict[str, float]) -> str:
    return max(p, key=lambda e: p[e])


def _names(aus: set[str]) -> str:
    s = sorted(aus, key=lambda a: int(a[2:]))
    return ", ".join(s) + (" is" if len(s) == 1 else " are")
