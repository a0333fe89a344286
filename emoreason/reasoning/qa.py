"""Free-text questions about a clip: grounded answers from the evidence, or an LLM backend given the evidence as text.

The default (no backend) matches the question to an intent (``INTENTS``, first match wins) and answers from the
:class:`~emoreason.reasoning.engine.Analysis` and the evidence only. When the evidence cannot support an answer it says
"I can't tell from this clip" and why. With a :class:`~emoreason.reasoning.backends.ChatBackend`, the prompt
``ask_system_v1`` carries :func:`~emoreason.evidence_text.evidence_to_text` and the engine's reasoning.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, Field

from emoreason.evidence import Evidence
from emoreason.evidence_text import evidence_to_text
from emoreason.knowledge.facs import AUS
from emoreason.knowledge.prototypes import PROTOTYPES
from emoreason.knowledge.taxonomy import ALL_EMOTIONS, UNCERTAIN, WHEEL
from emoreason.parsing import find_times
from emoreason.prompts import render_prompt
from emoreason.reasoning.backends import ChatBackend, Message
from emoreason.reasoning.engine import Analysis, analyze

CANT_TELL = "I can't tell from this clip"
SYSTEM_PROMPT = "ask_system_v1"
USER_PROMPT = "ask_user_v1"


class QAAnswer(BaseModel):
    question: str
    answer: str
    intent: str = Field(description="the matched question type, or 'llm' when a backend answered")
    grounded: bool = Field(description="False when the evidence could not support an answer")
    backend: str = "engine"


class _Ctx:
    def __init__(self, ev: Evidence, a: Analysis, time: float | None, question: str = "") -> None:
        self.ev, self.a, self.time = ev, a, time
        self.named = named_emotion(question)

    @property
    def has_face(self) -> bool:
        return self.ev.face is not None and self.ev.face.coverage > 0 and self.ev.aus is not None

    @property
    def has_speech(self) -> bool:
        return self.a.voice_arousal is not None

    @property
    def has_words(self) -> bool:
        return self.ev.transcript is not None and bool(self.ev.transcript.text.strip())


Reply = tuple[str, bool]
_WORD_RE = re.compile(r"[a-z]+")


def named_emotion(question: str) -> str | None:
    """The emotion a question names ("is she angry?", "when is she happiest?"), through the taxonomy's wheel.

    >>> named_emotion("When is she happiest?"), named_emotion("Is he furious?"), named_emotion("What happens?")
    ('happiness', 'anger', None)
    """
    for word in _WORD_RE.findall(question.lower()):
        for form in (word, word[:-4] + "y" if word.endswith("iest") else word, word.removesuffix("est")):
            if form in WHEEL and WHEEL[form] != "neutral":
                return WHEEL[form]
            if form in ALL_EMOTIONS and form != "neutral":
                return form
    return None


def _named_other(c: _Ctx) -> Reply | None:
    """When the question names an emotion other than the clip's, answer about that emotion."""
    e = c.named
    if e is None or e == c.a.emotion:
        return None
    segs = [s for s in c.a.segments if s.dominant == e]
    if segs:
        spans = ", ".join(f"{s.start:.2f}–{s.end:.2f} s" for s in segs)
        return f"{e.capitalize()} dominates only in {spans}; over the whole clip it reads as {c.a.emotion}.", True
    return (f"The clip shows no clear {e} (probability {_p(c, e):.2f}); it reads as {c.a.emotion} "
            f"({_p(c, c.a.emotion):.2f}).", True)  # fmt: skip


def _cant(why: str) -> Reply:
    return f"{CANT_TELL}: {why}", False


def _no_face_reason(c: _Ctx) -> str:
    return "no face was found in it" if c.ev.media.has_video else "it has no video"


def _p(c: _Ctx, e: str) -> float:
    return c.a.probabilities.get(e, 0.0)


def _segment_at(c: _Ctx):
    if c.time is None:
        return None
    for s in c.a.segments:
        if s.start <= c.time <= s.end:
            return s
    return None


def _emotion(c: _Ctx) -> Reply:
    if not c.a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    other = _named_other(c)
    if other is not None and c.time is None:
        return other
    seg = _segment_at(c)
    if seg is not None:
        p = seg.probabilities[seg.dominant]
        return (f"Around {c.time:.2f} s ({seg.start:.2f}–{seg.end:.2f} s) the clip reads as {seg.dominant} "
                f"(probability {p:.2f}).", True)  # fmt: skip
    a = c.a
    if a.emotion == UNCERTAIN:
        best = max(a.probabilities, key=lambda e: a.probabilities[e])
        return (f"No emotion fits well: the best candidate is {best} at only {a.probabilities[best]:.2f}, so I "
                "call it uncertain.", True)  # fmt: skip
    text = f"The person most likely shows {a.emotion} (probability {_p(c, a.emotion):.2f})"
    if a.compound:
        text += f", with a compound reading of {a.compound}"
    return text + f". {a.caption}", True


def _emotion_events(c: _Ctx):
    aus = set(PROTOTYPES.get(c.a.emotion, {}))
    return sorted((e for e in c.ev.au_events if e.au in aus), key=lambda e: e.onset)


def _when(c: _Ctx) -> Reply:
    a = c.a
    if not a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    other = _named_other(c)
    if other is not None:
        return other
    if a.emotion in ("neutral", UNCERTAIN):
        return (f"No particular emotion stands out ({a.emotion}), so there is no moment to point to.", True)
    events = _emotion_events(c) if c.has_face else []
    if events:
        start, end = min(e.onset for e in events), max(e.offset for e in events)
        strongest = max(events, key=lambda e: e.peak)
        return (f"The {a.emotion} shows from {start:.2f} s to {end:.2f} s; it is strongest at {strongest.apex:.2f} s, "
                f"when {strongest.au} ({AUS[strongest.au].name}) peaks at {strongest.peak:.1f}/5.", True)  # fmt: skip
    segs = [s for s in a.segments if s.dominant == a.emotion]
    if segs:
        spans = ", ".join(f"{s.start:.2f}–{s.end:.2f} s" for s in segs)
        return f"The {a.emotion} dominates in {spans}.", True
    return _cant(f"the {a.emotion} reading is clip-wide and no single moment carries it")


def _why(c: _Ctx) -> Reply:
    if not c.a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    seg = _segment_at(c)
    if seg is not None:
        active = [e for e in c.ev.au_events if e.onset - 0.2 <= c.time <= e.offset + 0.2]
        acts = ", ".join(f"{e.au} ({AUS[e.au].name}, {e.onset:.2f}–{e.offset:.2f} s)" for e in active)
        base = f"Around {c.time:.2f} s the clip reads as {seg.dominant} ({seg.probabilities[seg.dominant]:.2f})"
        return (base + (f" because of {acts}." if acts else "; no facial action is active then, so the reading comes "
                        "from the rest of the evidence."), True)  # fmt: skip
    sections = c.a.think.split("\n")
    interp = next((s for s in sections if s.startswith("Overall emotional interpretation:")), "")
    return interp.removeprefix("Overall emotional interpretation:").strip() or c.a.think, True


def _aus(c: _Ctx) -> Reply:
    if not c.has_face:
        return _cant(f"{_no_face_reason(c)}, so there are no facial Action Units")
    if not c.ev.au_events:
        return "No Action Unit rises clearly above the resting face.", True
    ev = sorted(c.ev.au_events, key=lambda e: -e.peak)
    parts = [f"{e.au} ({AUS[e.au].name}) {e.onset:.2f}–{e.offset:.2f} s, peak {e.peak:.1f}/5" for e in ev[:8]]
    used = f" The conclusion rests on {', '.join(c.a.aus)}." if c.a.aus else ""
    return "Active Action Units: " + "; ".join(parts) + "." + used, True


def _smile(c: _Ctx) -> Reply:
    if not c.has_face:
        return _cant(f"{_no_face_reason(c)}, so no smile can be judged")
    if c.a.smile is None:
        return "There is no smile: AU12 (lip corner puller) never rises above the resting face.", True
    return c.a.smile.statement, True


def _change(c: _Ctx) -> Reply:
    segs = c.a.segments
    if not segs:
        return _cant("there is nothing to follow over time")
    seq = [s for i, s in enumerate(segs) if i == 0 or s.dominant != segs[i - 1].dominant]
    over = ", then ".join(f"{s.dominant} from {s.start:.2f} s" for s in seq)
    lead = c.a.caption + " " if c.has_face else ""
    if len(seq) == 1:
        return lead + f"The reading stays {seq[0].dominant} throughout.", True
    return lead + f"Window by window: {over}.", True


def _voice(c: _Ctx) -> Reply:
    if not c.ev.media.has_audio:
        return _cant("it has no audio track")
    if not c.has_speech or c.ev.prosody is None:
        return _cant("no speech was detected in the audio")
    p = c.ev.prosody
    tone = "animated" if c.a.voice_arousal > 0.3 else "flat" if c.a.voice_arousal < -0.3 else "even"
    return (f"The voice is {tone} (arousal {c.a.voice_arousal:+.2f}): mean pitch {p.f0_mean_hz or 0:.0f} Hz, range "
            f"{p.f0_range_semitones or 0:.1f} semitones, about {p.speaking_rate_sps or 0:.1f} syllables per second.",
            True)  # fmt: skip


def _voice_vs_face(c: _Ctx) -> Reply:
    if not c.ev.media.has_audio:
        return _cant("it has no audio track, so the voice cannot be compared with the face")
    if not c.has_face:
        return _cant(f"{_no_face_reason(c)}, so the face cannot be compared with the voice")
    if not c.has_speech:
        return _cant("no speech was detected, so the voice cannot be compared with the face")
    return " ".join(s for s in c.a.agreement if "voice" in s or "words" in s), True


def _said(c: _Ctx) -> Reply:
    if not c.ev.media.has_audio:
        return _cant("it has no audio track")
    if not c.has_words:
        return _cant("no words were transcribed")
    t = c.ev.transcript
    first = f" (from {t.words[0].start:.2f} s to {t.words[-1].end:.2f} s)" if t.words else ""
    return f'The person says: "{t.text.strip()}"{first}.', True


def _intensity(c: _Ctx) -> Reply:
    if not c.has_face:
        if c.has_words:
            return _cant(f"{_no_face_reason(c)}; the words alone do not show a strongest moment")
        return _cant(_no_face_reason(c))
    if not c.ev.au_events:
        return "No facial action stands out, so there is no strongest moment.", True
    e = max(c.ev.au_events, key=lambda e: e.peak)
    return (f"The strongest moment is at {e.apex:.2f} s, when {e.au} ({AUS[e.au].name}) peaks at {e.peak:.1f}/5 "
            f"(active {e.onset:.2f}–{e.offset:.2f} s).", True)  # fmt: skip


def _confidence(c: _Ctx) -> Reply:
    a = c.a
    if not a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    ranked = sorted(a.probabilities, key=lambda e: -a.probabilities[e])
    mods = ", ".join(f"{m} {w:.2f}" for m, w in a.modality_weights.items())
    text = (f"{ranked[0].capitalize()} has probability {a.probabilities[ranked[0]]:.2f}, against "
            f"{a.probabilities[ranked[1]]:.2f} for {ranked[1]}; the reading uses {mods}.")  # fmt: skip
    if c.ev.flags:
        text += " Caveats: " + "; ".join(f.message for f in c.ev.flags) + "."
    if a.ambivalence.flag:
        text += " The cues conflict: " + "; ".join(a.ambivalence.reasons) + "."
    return text, True


def _compound(c: _Ctx) -> Reply:
    if not c.a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    if c.a.compound:
        return f"Yes: {c.a.compound} (pair score {c.a.compound_score:.2f}).", True
    score = (f" (best pair score {c.a.compound_score:.2f}, but not both parts are in the evidence)"
             if c.a.compound_score else "")  # fmt: skip
    return f"No compound expression: one emotion dominates{score}.", True


def _micro(c: _Ctx) -> Reply:
    if not c.has_face:
        return _cant(_no_face_reason(c))
    if not c.a.micro_expressions:
        return "No micro-expression: no facial action lasts less than half a second.", True
    parts = [f"{m.au} {m.onset:.2f}–{m.offset:.2f} s" for m in c.a.micro_expressions]
    return "Possible micro-expressions (actions under half a second): " + "; ".join(parts) + ".", True


def _ambivalence(c: _Ctx) -> Reply:
    if not c.a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    if c.a.ambivalence.flag:
        return "Yes, the cues are mixed: " + "; ".join(c.a.ambivalence.reasons) + ".", True
    return "No sign of ambivalence or hesitancy: the cues point the same way.", True


def _dimensions(c: _Ctx) -> Reply:
    if not c.a.modality_weights:
        return _cant("there is no face, speech or transcript to read")
    a = c.a
    return (f"Valence {a.valence.mean:+.2f} ± {a.valence.std:.2f}, arousal {a.arousal.mean:+.2f} ± "
            f"{a.arousal.std:.2f}, dominance {a.dominance.mean:+.2f} ± {a.dominance.std:.2f} (scale -1 to 1; the "
            "spread is the uncertainty).", True)  # fmt: skip


# Question types, most specific first. Each: name, pattern (case-insensitive), handler.
INTENTS: tuple[tuple[str, str, Callable[[_Ctx], Reply]], ...] = (
    ("smile", r"\bsmil|genuine|fake|posed|duchenne", _smile),
    ("micro", r"micro|fleeting|leak", _micro),
    ("ambivalence", r"ambival|hesita|conflicted|mixed (feelings|signals|cues)|\btorn\b", _ambivalence),
    (
        "voice_vs_face",
        r"(voice|tone).*(face|expression)|(face|expression).*(voice|tone)|\bagree|match|congruen",
        _voice_vs_face,
    ),  # noqa: E501
    ("said", r"\b(say|said|says|words?|transcript|talk\w*|mention\w*)\b", _said),
    ("voice", r"\b(voice|tone|pitch|sound\w*|speak\w*|speech|prosody|loud\w*)\b", _voice),
    ("aus", r"\baus?\d*\b|action units?|muscles?|facial actions?", _aus),
    ("intensity", r"strongest|most intense|\bpeak|intensity|how strong|climax", _intensity),
    ("confidence", r"confiden|\bsure\b|certain|reliab|how likely|probab", _confidence),
    ("compound", r"compound|blend|mix|combination|two emotions", _compound),
    ("when", r"^\s*when\b|what time|at what (point|moment)|which moment", _when),
    ("change", r"chang|over time|evolv|shift|progress|develop|transition|beginning|\bstart|\bend\b", _change),
    ("dimensions", r"valence|arousal|dominance|positive|negative|calm|excited", _dimensions),
    ("why", r"^\s*why\b|how do you know|what makes|evidence|reason|explain", _why),
    ("emotion", r"emotion|feel|mood|\blook|seem|happy|sad|angry|afraid|scared|express|state", _emotion),
)
_COMPILED = [(n, re.compile(p, re.IGNORECASE), f) for n, p, f in INTENTS]


def match_intent(question: str) -> str | None:
    """The question type of ``question``, or None when no type matches."""
    for name, pat, _ in _COMPILED:
        if pat.search(question):
            return name
    return None


def answer_from_evidence(evidence: Evidence, question: str, analysis: Analysis | None = None) -> QAAnswer:
    """The default backend: intent matching, every statement taken from the evidence or the engine's analysis."""
    a = analysis if analysis is not None else analyze(evidence)
    times = find_times(question)
    ctx = _Ctx(evidence, a, times[0] if times else None, question)
    for name, pat, handler in _COMPILED:
        if pat.search(question):
            text, grounded = handler(ctx)
            return QAAnswer(question=question, answer=text, intent=name, grounded=grounded)
    kinds = ", ".join(n.replace("_", " ") for n, _, _ in INTENTS)
    return QAAnswer(question=question, answer=f"{CANT_TELL}: the question is not one the evidence answers. I can "
                    f"answer about: {kinds}.", intent="unknown", grounded=False)  # fmt: skip


def build_messages(evidence: Evidence, question: str, analysis: Analysis, history: list[Message] | None = None,
                   max_chars: int = 3000) -> list[Message]:  # fmt: skip
    """The chat for an LLM backend: system prompt with the evidence and analysis, the history, the question."""
    summary = (f"{analysis.think}\nProbabilities: "
               + ", ".join(f"{e} {p:.2f}" for e, p in sorted(analysis.probabilities.items(), key=lambda x: -x[1]))
               + f"\nCaption: {analysis.caption}")  # fmt: skip
    system = render_prompt(SYSTEM_PROMPT, evidence=evidence_to_text(evidence, max_chars=max_chars), analysis=summary)
    return [{"role": "system", "content": system}, *(history or []),
            {"role": "user", "content": render_prompt(USER_PROMPT, question=question)}]  # fmt: skip


def ask(
    evidence: Evidence,
    question: str,
    backend: ChatBackend | None = None,
    history: list[Message] | None = None,
    analysis: Analysis | None = None,
    on_text: Callable[[str], None] | None = None,
) -> QAAnswer:
    """Answer ``question`` about the clip. ``backend=None``: the grounded engine; else the LLM with the evidence.

    ``history`` (earlier user/assistant turns) is given to LLM backends; the engine answers each question on its own.
    ``on_text``: handed to a backend that streams its reply (``chat(messages, on_text)``).
    """
    if not question.strip():
        return QAAnswer(question=question, answer=f"{CANT_TELL}: the question is empty.", intent="unknown",
                        grounded=False)  # fmt: skip
    a = analysis if analysis is not None else analyze(evidence)
    if backend is None:
        return answer_from_evidence(evidence, question, a)
    messages = build_messages(evidence, question, a, history)
    reply = backend.chat(messages, on_text) if on_text is not None else backend.chat(messages)
    return QAAnswer(question=question, answer=reply, intent="llm", grounded=True, backend=backend.name)


class ChatSession:
    """A conversation about one clip: the analysis is computed once and the turns are kept as history."""

    def __init__(self, evidence: Evidence, backend: ChatBackend | None = None) -> None:
        self.evidence = evidence
        self.backend = backend
        self.analysis = analyze(evidence)
        self.history: list[Message] = []

    def ask(self, question: str) -> QAAnswer:
        ans = ask(self.evidence, question, self.backend, self.history, self.analysis)
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": ans.answer}]
        return ans
