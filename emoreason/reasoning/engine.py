"""The knowledge-based reasoner: :class:`~emoreason.evidence.Evidence` in, an explained :class:`Analysis` out.

Steps (each a small function below): per-segment and whole-clip face distributions from AU prototypes, voice arousal and
transcript lexicon (:mod:`emoreason.reasoning.fusion`), fused with stated weights; open-set decision (a call that needs
an AU the face lacks, e.g. happiness without AU12, is uncertain); a C-EXPR-DB compound only when both parts are in the
evidence; valence/arousal/dominance as distributions; genuine-smile cue; micro-expressions; ambivalence; a temporal
caption (a photo's, ``media.still_image``, speaks without time); and a chain of thought in three sections whose every
claim (presence, absence, timing, stillness, the conclusion against the fused probabilities) agrees with the evidence,
as :mod:`emoreason.reasoning.faithfulness` checks with the same notion of a present AU.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from emoreason.evidence import AUEvent, Evidence
from emoreason.knowledge.facs import AUS
from emoreason.knowledge.lexicon import LexiconScore, score_text
from emoreason.knowledge.prototypes import DUCHENNE_AU, FAST_ONSET_S, MICRO_MAX_S, PROTOTYPES, SMILE_AU
from emoreason.knowledge.taxonomy import ADJECTIVE, ALL_EMOTIONS, UNCERTAIN, VAD, compound_for
from emoreason.parsing import format_answer
from emoreason.reasoning import fusion
from emoreason.reasoning.faithfulness import LABEL_REQUIRES, face_read, present_aus

SEGMENT_S = 1.0  # length of the analysis windows
FRAME_WEIGHT_FLOOR = 0.1  # weight of an idle face frame in its window (see _frame_weight)
APEX_FRACTION = 0.8  # frames this close to the window's most expressive one make up its apex
EXPRESSION_SPAN_S = 0.3  # each AU is read at its peak within this many seconds of a frame (see _face_frames)
# Open set: the answer is "uncertain" when the best fused probability is under UNCERTAIN_BELOW and under UNCERTAIN_RATIO
# times the second best (no emotion stands out), or when no modality could be read at all. These two hold for the
# AU-prototype read; when the learned face reader reads the face, fusion.READER_UNCERTAIN_* (fitted on train) apply.
UNCERTAIN_BELOW = 0.35
UNCERTAIN_RATIO = 1.5
OPEN_SET_COVERAGE = 0.35  # best prototype coverage under which an active face is "not covered by any prototype"
# Compound rule, for C-EXPR-DB's 7 classes (taxonomy.C_EXPR_DB_LABELS). A compound is two emotions shown at once, its
# AUs the union of its parts' (Du, Tao & Martinez 2014), so it is named only when both parts are in the evidence:
# - the primary is the call itself (so a compound never fires more often than its primary);
# - the secondary is the most probable emotion that makes a C-EXPR-DB compound with the primary, with at least
#   COMPOUND_SECONDARY_FRACTION of the primary's fused probability (a second reading of the face, not the distribution's
#   tail). 1/3: a face showing both prototypes whole splits the prototype read about 2:1 (surprise 0.63, happiness 0.30
#   on the synthetic happy-and-surprised face of the tests), so a stricter ratio would miss the very case it names;
# - each part shows its prototype: more than COMPOUND_CORE_FRACTION of its core AUs (weight 1.0 in PROTOTYPES, among
#   those perception reads) are present. Surprise (AU1, AU2, AU5, AU26) thus needs the eyes or the jaw besides the brows,
#   which resting brows can read as raised; happiness (AU6, AU12) needs both.
# compound_score is sqrt(p_primary * p_secondary) of the best such pair (reported, not thresholded).
COMPOUND_SECONDARY_FRACTION = 1 / 3
COMPOUND_CORE_FRACTION = 0.5
AMBIVALENT_MARGIN = 0.1  # top two emotions closer than this (both >= 0.25) count as a conflict
VALENCE_CONFLICT = 0.3  # modality valences of opposite sign, each at least this far from zero, conflict
AROUSAL_CONFLICT = 0.8  # face and voice arousal this far apart are said to disagree
MAX_WORD_HITS = 6  # emotion words cited in the observations
VAD_FLOOR_STD = 0.1  # spread added to every VAD distribution (the prototypes' own imprecision)
KNOWLEDGE_ENGINE = "knowledge-engine"  # the reasoner name of analyses this module writes
# What a model's analysis keeps from the knowledge engine (model_analysis): readings of the evidence the model's reply
# does not give. Everything else (emotion, compound, AUs, chain of thought, probabilities and the VAD and ambivalence
# computed from them) is the model's.
ENGINE_FIELDS = ("smile", "micro_expressions", "voice_arousal", "agreement", "caption")


class Distribution(BaseModel):
    mean: float
    std: float


class Segment(BaseModel):
    start: float
    end: float
    probabilities: dict[str, float]
    dominant: str


class SmileCue(BaseModel):
    kind: Literal["genuine", "posed", "unclear"]
    duchenne: bool = Field(description="AU6 (cheek raiser) overlaps the AU12 smile")
    onset: float | None = Field(None, description="AU12 onset time, s; None if the smile is there from the start")
    apex: float | None = None
    onset_fast: bool | None = None
    statement: str


class MicroExpression(BaseModel):
    au: str
    onset: float
    apex: float
    offset: float
    peak: float


class Ambivalence(BaseModel):
    flag: bool
    reasons: list[str] = Field(default_factory=list)


class Analysis(BaseModel):
    emotion: str = Field(description="one of ALL_EMOTIONS, or 'uncertain' when no prototype fits")
    probabilities: dict[str, float]
    compound: str | None = None
    compound_score: float | None = None
    valence: Distribution
    arousal: Distribution
    dominance: Distribution
    smile: SmileCue | None = None
    segments: list[Segment] = Field(default_factory=list)
    micro_expressions: list[MicroExpression] = Field(default_factory=list)
    ambivalence: Ambivalence
    modality_weights: dict[str, float] = Field(default_factory=dict)
    modality_emotions: dict[str, str] = Field(default_factory=dict, description="top emotion per modality")
    voice_arousal: float | None = None
    agreement: list[str] = Field(default_factory=list)
    caption: str
    think: str
    aus: list[str] = Field(default_factory=list)
    reasoner: str = Field(KNOWLEDGE_ENGINE, description="the engine or model that wrote this analysis")
    engine_fields: list[str] = Field(
        default_factory=list,
        description="when a model wrote the analysis: the fields that are the knowledge engine's reading of the "
        "evidence, not the model's (empty when the knowledge engine wrote all of it)",
    )
    text: str | None = Field(None, description="the model's own reply, verbatim (None for the knowledge engine)")

    def answer_text(self) -> str:
        """The analysis in the shared ``<think>/<answer>`` format: a model's reply verbatim, else the engine's."""
        if self.text is not None:
            return self.text
        return format_answer(self.think, self.emotion, self.compound, self.aus)


# --- helpers over the evidence ----------------------------------------------------------------------------------------


def _face_frames(ev: Evidence, start: float, end: float) -> list[dict[str, float]]:
    """The AU intensities of each face frame in [start, end), each AU taken at its peak within ``EXPRESSION_SPAN_S``
    of the frame (a sliding maximum). The AUs of one expression do not peak together (brows rise before the jaw drops in
    surprise); reading each frame with its neighbourhood's peaks sees the expression whole."""
    if ev.aus is None or not ev.aus.times:
        return []
    t = np.asarray(ev.aus.times, dtype=float)
    series = {au: np.array([np.nan if v is None else v for v in vals], dtype=float)
              for au, vals in ev.aus.intensities.items()}  # fmt: skip
    frames = []
    for i in np.flatnonzero((t >= start) & (t < end)):
        near = np.abs(t - t[i]) <= EXPRESSION_SPAN_S
        row = {}
        for au, x in series.items():
            if np.isnan(x[i]):
                continue
            row[au] = float(np.nanmax(x[near]))
        if row:
            frames.append(row)
    return frames


def _frame_weight(intensities: dict[str, float]) -> float:
    """How expressive a frame is: ``FRAME_WEIGHT_FLOOR`` plus its overall activation (mean of its three strongest AU
    activations)."""
    acts = sorted((fusion.activation(v) for v in intensities.values()), reverse=True)[:3]
    return FRAME_WEIGHT_FLOOR + (sum(acts) / 3 if acts else 0.0)


def _face_window(ev: Evidence, start: float, end: float) -> tuple[dict[str, float], dict[str, float]] | None:
    """The face's emotion distribution over [start, end) and the AU intensities it rests on.

    The window is read at its apex: the frames whose :func:`_frame_weight` is at least ``APEX_FRACTION`` of the
    window's highest, each read on its own (:func:`fusion.face_distribution`) and averaged with those weights. A
    clip's label is the expression at its height (as DFEW/MAFW annotators label), an idle window reads neutral, and
    changes over time show in the per-second segments. The intensities returned are the same weighted mean, for the
    report's prototype-coverage statement. None when no face frame falls in the window.
    """
    frames = _face_frames(ev, start, end)
    if not frames:
        return None
    weights = [_frame_weight(f) for f in frames]
    top = max(weights)
    apex = [(f, w) for f, w in zip(frames, weights, strict=True) if w >= APEX_FRACTION * top]
    total = sum(w for _, w in apex)
    dist = dict.fromkeys(ALL_EMOTIONS, 0.0)
    mean: dict[str, float] = {}
    for f, w in apex:
        for e, q in fusion.face_distribution(f).items():
            dist[e] += w * q / total
        for au, v in f.items():
            mean[au] = mean.get(au, 0.0) + w * v / total
    return dist, mean


def _expression_rows(ev: Evidence, start: float, end: float) -> list[list[float]]:
    x = ev.expression
    if x is None:
        return []
    return [r for t, r in zip(x.times, x.probs, strict=False) if r is not None and start <= t < end]


def _reader_rows(ev: Evidence, start: float, end: float) -> list[list[float]]:
    x = ev.reader
    if x is None:
        return []
    return [r for t, r in zip(x.times, x.probs, strict=False) if r is not None and start <= t < end]


def _au_peak(ev: Evidence, au: str, start: float, end: float) -> float | None:
    if ev.aus is None or au not in ev.aus.intensities:
        return None
    vals = [
        v for t, v in zip(ev.aus.times, ev.aus.intensities[au], strict=False) if v is not None and start <= t < end
    ]
    return max(vals) if vals else None


def _words_in(ev: Evidence, start: float, end: float) -> str:
    if ev.transcript is None:
        return ""
    if not ev.transcript.words:
        return ev.transcript.text if start <= 0 and end >= ev.media.duration_s else ""
    return " ".join(w.word for w in ev.transcript.words if start <= (w.start + w.end) / 2 < end)


def _fmt(t: float) -> str:
    return f"{t:.2f}"


def _au_label(au: str) -> str:
    return f"{au} ({AUS[au].name})" if au in AUS else au


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _top(p: dict[str, float]) -> str:
    return max(p, key=lambda e: p[e])


def _modal_weights(ev: Evidence, lex: LexiconScore, arousal: float | None) -> dict[str, float]:
    w: dict[str, float] = {}
    face_cov = ev.face.coverage if ev.face is not None and ev.aus is not None else 0.0
    if face_cov > 0:
        w["face"] = fusion.BASE_WEIGHTS["face"] * face_cov
    x = ev.expression
    if x is not None and x.times:
        seen = sum(1 for r in x.probs if r is not None) / len(x.times)
        if seen > 0:
            w["expression"] = fusion.BASE_WEIGHTS["expression"] * seen
    if arousal is not None:
        w["voice"] = fusion.BASE_WEIGHTS["voice"]
    if ev.transcript is not None and ev.transcript.text.strip():
        w["words"] = fusion.BASE_WEIGHTS["words"] * (0.5 + 0.5 * min(1.0, lex.n / 2))
    total = sum(w.values())
    return {m: round(v / total, 3) for m, v in w.items()} if total else {}


# --- the pieces of the analysis ---------------------------------------------------------------------------------------


def _distributions(ev: Evidence, start: float, end: float, arousal: float | None, clip: bool) -> dict[str, dict]:
    dists: dict[str, dict[str, float]] = {}
    reader_rows = _reader_rows(ev, start, end)
    face = None if reader_rows else _face_window(ev, start, end)
    if reader_rows:  # the learned reader is the face's emotion read; the AUs stay the evidence it is explained by
        assert ev.reader is not None
        dists["face"] = fusion.gate_happiness(fusion.reader_distribution(ev.reader.labels, reader_rows),
                                              _au_peak(ev, "AU12", start, end))  # fmt: skip
    elif face is not None:
        dists["face"] = face[0]
    rows = _expression_rows(ev, start, end)
    if rows:
        dists["expression"] = fusion.expression_distribution(ev.expression.labels, rows)
    if arousal is not None:
        dists["voice"] = fusion.voice_distribution(arousal)
    text = ev.transcript.text if clip and ev.transcript is not None else _words_in(ev, start, end)
    if text.strip():
        dists["words"] = fusion.words_distribution(score_text(text))
    return dists


def _segments(ev: Evidence, weights: dict[str, float], arousal: float | None) -> list[Segment]:
    dur = ev.media.duration_s
    n = max(1, round(dur / SEGMENT_S))
    edges = np.linspace(0.0, dur, n + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        dists = _distributions(ev, float(a), float(b) + (1e-6 if b == edges[-1] else 0.0), arousal, clip=False)
        if not dists:
            continue
        p = fusion.fuse(dists, weights)
        p = {e: round(v, 4) for e, v in p.items()}
        out.append(Segment(start=round(float(a), 3), end=round(float(b), 3), probabilities=p, dominant=_top(p)))
    return out


def _shows_prototype(emotion: str, present: set[str], read: set[str]) -> bool:
    """More than ``COMPOUND_CORE_FRACTION`` of ``emotion``'s core AUs that perception reads (``read``) are present."""
    core = [au for au, w in PROTOTYPES.get(emotion, {}).items() if w >= 1.0 and au in read]
    return bool(core) and sum(au in present for au in core) > COMPOUND_CORE_FRACTION * len(core)


def _compound(
    p: dict[str, float], emotion: str, present: set[str], read: set[str]
) -> tuple[str | None, float | None, str | None]:
    """The compound label, its pair score and its secondary emotion (see the constants above)."""
    if emotion not in p or emotion == "neutral":
        return None, None, None
    pairs = [(b, c) for b in sorted(p, key=lambda e: -p[e])
             if b != emotion and (c := compound_for(emotion, b)) is not None and c.abaw]  # fmt: skip
    if not pairs:
        return None, None, None
    b, c = pairs[0]
    score = round(math.sqrt(p[emotion] * p[b]), 3)
    both = _shows_prototype(emotion, present, read) and _shows_prototype(b, present, read)
    if p[b] >= COMPOUND_SECONDARY_FRACTION * p[emotion] and both:
        return c.label, score, b
    return None, score, None


def _vad(p: dict[str, float], voice_arousal: float | None, voice_weight: float) -> list[Distribution]:
    out = []
    for k in range(3):
        vals = [VAD[e][k] for e in ALL_EMOTIONS]
        probs = [p[e] for e in ALL_EMOTIONS]
        mean = sum(v * q for v, q in zip(vals, probs, strict=True))
        var = sum(q * (v - mean) ** 2 for v, q in zip(vals, probs, strict=True))
        if k == 1 and voice_arousal is not None:  # arousal: the voice's own estimate joins the mixture
            new_mean = (1 - voice_weight) * mean + voice_weight * voice_arousal
            var = (1 - voice_weight) * (var + (mean - new_mean) ** 2) + voice_weight * (voice_arousal - new_mean) ** 2
            mean = new_mean
        out.append(Distribution(mean=round(mean, 3), std=round(math.sqrt(var + VAD_FLOOR_STD**2), 3)))
    return out


def _overlap(a: AUEvent, b: AUEvent) -> float:
    return max(0.0, min(a.offset, b.offset) - max(a.onset, b.onset))


def _still_smile(ev: Evidence) -> SmileCue | None:
    """A photo's smile: AU12 present, Duchenne when AU6 is too; a photo shows no onset, so AU6 alone decides."""
    present = present_aus(ev)
    if SMILE_AU not in present:
        return None
    if DUCHENNE_AU in present:
        statement = ("AU6 (cheek raiser) accompanies the AU12 smile in the photo, the Duchenne marker of felt enjoyment; "
                     "a photo shows no onset, so the cheeks alone decide: the smile looks genuine.")  # fmt: skip
        return SmileCue(kind="genuine", duchenne=True, statement=statement)
    statement = ("AU12 pulls the lip corners in the photo without AU6 raising the cheeks; a photo shows no onset, so "
                 "the cheeks alone decide: the smile looks posed (social).")  # fmt: skip
    return SmileCue(kind="posed", duchenne=False, statement=statement)


def _smile(ev: Evidence) -> SmileCue | None:
    if ev.media.still_image:
        return _still_smile(ev) if face_read(ev) else None
    smiles = [e for e in ev.au_events if e.au == SMILE_AU]
    if not smiles:
        return None
    s = max(smiles, key=lambda e: e.peak)
    cheeks = [e for e in ev.au_events if e.au == DUCHENNE_AU and _overlap(e, s) >= 0.5 * max(s.duration, 1e-6)]
    duchenne = bool(cheeks)
    # AU6 present during part of the smile only (an event that overlaps less than half of it, or a series that reaches
    # the threshold there without an event): not the Duchenne marker, but not "without AU6" either
    partial = [e for e in ev.au_events if e.au == DUCHENNE_AU and _overlap(e, s) > 0]
    cheeks_seen = DUCHENNE_AU in present_aus(ev, s.onset, s.offset)
    first = ev.aus.times[0] if ev.aus is not None and ev.aus.times else 0.0
    from_start = s.onset <= first + 1e-6
    onset_fast = None if from_start else (s.apex - s.onset) < FAST_ONSET_S
    if duchenne:
        c = max(cheeks, key=lambda e: e.peak)
        parts = [f"AU6 (cheek raiser) accompanies the AU12 smile ({_fmt(c.onset)}–{_fmt(c.offset)} s), the Duchenne "
                 "marker of felt enjoyment"]  # fmt: skip
    elif partial:
        c = max(partial, key=lambda e: _overlap(e, s))
        parts = [f"AU12 pulls the lip corners ({_fmt(s.onset)}–{_fmt(s.offset)} s); AU6 (cheek raiser) joins it only "
                 f"from {_fmt(c.onset)} s to {_fmt(c.offset)} s, less than half of the smile"]  # fmt: skip
    elif cheeks_seen:
        parts = [f"AU12 pulls the lip corners ({_fmt(s.onset)}–{_fmt(s.offset)} s); AU6 (cheek raiser) reaches the "
                 "occurrence threshold only momentarily during it"]  # fmt: skip
    else:
        parts = [f"AU12 pulls the lip corners ({_fmt(s.onset)}–{_fmt(s.offset)} s) without AU6 raising the cheeks"]
    if from_start:
        parts.append("the smile is already there at the start, so its onset speed cannot be judged")
    elif onset_fast:
        parts.append(f"AU12 rises quickly from {_fmt(s.onset)} s to its apex at {_fmt(s.apex)} s, as deliberate "
                     "smiles do")  # fmt: skip
    else:
        parts.append(f"AU12 rises gradually from {_fmt(s.onset)} s to its apex at {_fmt(s.apex)} s, as spontaneous "
                     "smiles do")  # fmt: skip
    if duchenne and not onset_fast:
        kind = "genuine"
    elif not duchenne and (onset_fast or from_start):
        kind = "posed"
    else:
        kind = "unclear"
    verdict = {"genuine": "the smile looks genuine", "posed": "the smile looks posed (social)",
               "unclear": "the cues conflict, so the smile's nature is unclear"}[kind]  # fmt: skip
    statement = "; ".join(parts) + f": {verdict}."
    return SmileCue(kind=kind, duchenne=duchenne, onset=None if from_start else s.onset,
                    apex=s.apex, onset_fast=onset_fast, statement=statement[0].upper() + statement[1:])  # fmt: skip


def _micro(ev: Evidence) -> list[MicroExpression]:
    return [MicroExpression(au=e.au, onset=e.onset, apex=e.apex, offset=e.offset, peak=e.peak)
            for e in ev.au_events if 0 < e.duration < MICRO_MAX_S]  # fmt: skip


def _phrase(au: str) -> str:
    a = AUS[au].appearance.split(",")[0] if au in AUS else au
    return a if a.startswith(("the ", "lips", "eyes")) else "the " + a


def _peaks(ev: Evidence, present: set[str]) -> list[tuple[str, float]]:
    """The present AUs with their highest intensity, strongest first."""
    assert ev.aus is not None
    peaks = {au: max((v for v in ev.aus.intensities.get(au, []) if v is not None), default=0.0) for au in present}
    return sorted(peaks.items(), key=lambda kv: -kv[1])


def _still_caption(ev: Evidence, emotion: str, present: set[str]) -> str:
    """A photo's caption: what the face shows, without time."""
    label = ADJECTIVE.get(emotion, emotion)
    if present:
        look = f"the face looks {label}" if emotion != UNCERTAIN else "its expression is unclear"
        return f"The photo shows {_join([_phrase(au) for au, _ in _peaks(ev, present)[:4]])}; {look}."
    if emotion in ("neutral", UNCERTAIN):
        return "The photo shows a neutral face; no facial action stands out."
    return (
        f"The photo shows a face with no facial action unit at the occurrence threshold; as a whole it reads {label}."
    )


def _caption(ev: Evidence, emotion: str) -> str:
    """Beginning -> progress -> end of the face, in FEC-Bench's style, from AU events (a photo: what it shows)."""
    if not face_read(ev):
        return "No face is visible in the photo." if ev.media.still_image else "No face is visible in the clip."
    present = present_aus(ev)
    if ev.media.still_image:
        return _still_caption(ev, emotion, present)
    dur = ev.media.duration_s
    tol = 2.0 / (ev.media.sample_fps or 10.0)
    events = sorted(ev.au_events, key=lambda e: (e.onset, -e.peak))
    if not events:
        if present:
            return (f"No facial action lasts long enough to form an event; "
                    f"{_join([_phrase(au) for au, _ in _peaks(ev, present)[:4]])} only momentarily.")  # fmt: skip
        if emotion in ("neutral", UNCERTAIN):
            return "The face stays neutral throughout; no facial action stands out."
        label = ADJECTIVE.get(emotion, emotion)
        return f"No facial action unit reaches the occurrence threshold; the face as a whole reads {label}."
    early = [e.au for e in events if e.onset <= min(tol, 0.15 * dur)]
    middle = [e for e in events if e.au not in early]
    ending = [e.au for e in events if e.offset >= dur - tol]
    parts = [
        f"At first {_join([_phrase(a) for a in dict.fromkeys(early)])}" if early else "At first the face is neutral"
    ]
    if middle:
        rises = [_phrase(e.au) for e in middle if e.offset < dur - tol]
        stays = [_phrase(e.au) for e in middle if e.offset >= dur - tol]
        if rises:
            parts.append(f"then briefly {_join(list(dict.fromkeys(rises)))}")
        if stays:
            parts.append(f"then {_join(list(dict.fromkeys(stays)))}")
    else:
        parts.append("the expression then holds")
    label = ADJECTIVE.get(emotion, emotion)
    if ending:
        end = f"finally the face still looks {label}" if emotion not in ("neutral", UNCERTAIN) else "finally it holds"
    else:
        end = "finally the face relaxes back to neutral"
    return "; ".join(parts + [end]) + "."


def _agreement(dists: dict[str, dict[str, float]], weights: dict[str, float], arousal: float | None) -> list[str]:
    out: list[str] = []
    tops = {m: _top(d) for m, d in dists.items()}
    val = {m: sum(d[e] * VAD[e][0] for e in ALL_EMOTIONS) for m, d in dists.items() if m != "voice"}
    names = {"face": "the face", "words": "the words", "voice": "the voice", "expression": "the expression classifier"}
    if "face" in tops and "words" in tops:
        f, w = tops["face"], tops["words"]
        if f == w:
            out.append(f"The face and the words agree on {f}.")
        elif val["face"] * val["words"] < 0 and min(abs(val["face"]), abs(val["words"])) >= VALENCE_CONFLICT / 2:
            out.append(f"The face and the words disagree: the face reads as {f} while the words read as {w}.")
        else:
            out.append(f"The face reads as {f} and the words as {w}.")
    if "face" in tops and "expression" in tops:
        same = tops["face"] == tops["expression"]
        out.append(f"The AU prototypes and the expression classifier {'agree on' if same else 'differ:'} "
                   + (tops["face"] if same else f"{tops['face']} against {tops['expression']}") + ".")  # fmt: skip
    if arousal is not None and "face" in dists:
        face_a = sum(dists["face"][e] * VAD[e][1] for e in ALL_EMOTIONS)
        tone = _tone(arousal)
        if abs(face_a - arousal) >= AROUSAL_CONFLICT / 2:
            out.append(f"The face and the voice disagree: the face shows {tops['face']} while the voice is {tone} "
                       f"(voice arousal {arousal:+.2f}).")  # fmt: skip
        else:
            out.append(f"The voice is {tone} (arousal {arousal:+.2f}), consistent with the face.")
    if arousal is not None and "words" in dists and "face" not in dists:
        words_a = sum(dists["words"][e] * VAD[e][1] for e in ALL_EMOTIONS)
        tone = _tone(arousal)
        agree = "matching" if abs(words_a - arousal) < AROUSAL_CONFLICT / 2 else "less intense than"
        out.append(f"The voice is {tone} (arousal {arousal:+.2f}), {agree} the words.")
    if len(weights) == 1:
        (m,) = weights
        out.append(f"Only {names[m]} could be read, so nothing cross-checks it.")
    return out


def _tone(arousal: float) -> str:
    return "animated" if arousal > 0.3 else "flat" if arousal < -0.3 else "even"


def _ambivalence(dists: dict, p: dict[str, float], segments: list[Segment]) -> Ambivalence:
    reasons: list[str] = []
    if "face" in dists and "words" in dists:
        vf = sum(dists["face"][e] * VAD[e][0] for e in ALL_EMOTIONS)
        vw = sum(dists["words"][e] * VAD[e][0] for e in ALL_EMOTIONS)
        if vf * vw < 0 and min(abs(vf), abs(vw)) >= VALENCE_CONFLICT / 2:
            reasons.append(f"face valence {vf:+.2f} against word valence {vw:+.2f}")
    ranked = sorted(p.values(), reverse=True)
    if len(ranked) > 1 and ranked[1] >= 0.25 and ranked[0] - ranked[1] < AMBIVALENT_MARGIN:
        a, b = sorted(p, key=lambda e: -p[e])[:2]
        reasons.append(f"{a} and {b} are nearly equally likely ({p[a]:.2f} vs {p[b]:.2f})")
    doms = [s.dominant for s in segments if s.dominant != "neutral"]
    switches = sum(1 for x, y in zip(doms, doms[1:], strict=False) if x != y)
    if switches >= 3:
        reasons.append(f"the dominant emotion switches {switches} times between segments")
    return Ambivalence(flag=bool(reasons), reasons=reasons)


def _observations(ev: Evidence, lex: LexiconScore, arousal: float | None, micro: list[MicroExpression]) -> str:
    lines: list[str] = []
    still = ev.media.still_image
    if not face_read(ev):
        where = "photo" if still else "clip"
        lines.append(f"No face was found in the {where}, so there are no facial Action Units to read.")
    else:
        assert ev.face is not None and ev.aus is not None
        if ev.face.coverage < 0.5:
            lines.append(f"The face is visible in only {ev.face.coverage:.0%} of the analysed frames.")
        events = sorted(ev.au_events, key=lambda e: -e.peak)[:8]
        present = present_aus(ev)
        if still:  # one frame, no time axis: the AUs at their intensity in the photo
            if present:
                parts = [f"{_au_label(au)} at intensity {v:.1f}/5" for au, v in _peaks(ev, present)[:8]]
                lines.append("Facial actions in the photo: " + "; ".join(parts) + ".")
            else:
                lines.append("No facial action unit reaches the occurrence threshold in the photo.")
        elif not events and present:
            parts = [f"{_au_label(au)} peaks at {v:.1f}/5" for au, v in _peaks(ev, present)[:8]]
            lines.append("No facial action lasts long enough to form an event; only momentarily: "
                         + "; ".join(parts) + ".")  # fmt: skip
        elif events:
            parts = [f"{_au_label(e.au)} from {_fmt(e.onset)} s to {_fmt(e.offset)} s, apex at {_fmt(e.apex)} s, peak "
                     f"intensity {e.peak:.1f}/5" for e in events]  # fmt: skip
            lines.append("Facial actions: " + "; ".join(parts) + ".")
        else:
            lines.append("No facial Action Unit rises clearly above the face's resting state.")
        for m in micro:
            lines.append(f"{m.au} flashes for under half a second ({_fmt(m.onset)}–{_fmt(m.offset)} s), a possible "
                         "micro-expression.")  # fmt: skip
        rows = _expression_rows(ev, 0.0, ev.media.duration_s + 1e-6)
        if rows and ev.expression is not None:
            d = fusion.expression_distribution(ev.expression.labels, rows)
            top2 = sorted(d, key=lambda e: -d[e])[:2]
            lines.append(f"Expression classifier ({ev.expression.model}) over {len(rows)} face frames: "
                         + ", ".join(f"{e} {d[e]:.2f}" for e in top2) + ".")  # fmt: skip
        poses = [p for p in ev.face.poses if p is not None]
        if poses and still:
            lines.append(f"Head: yaw {round(poses[0].yaw)} degrees, pitch {round(poses[0].pitch)} degrees.")
        elif poses:
            yaw = [p.yaw for p in poses]
            pitch = [p.pitch for p in poses]
            moved = (max(yaw) - min(yaw)) > 15 or (max(pitch) - min(pitch)) > 15
            lines.append(f"Head: yaw between {round(min(yaw))} and {round(max(yaw))} degrees, pitch between "
                         f"{round(min(pitch))} and {round(max(pitch))} degrees ({'moving' if moved else 'steady'}).")  # fmt: skip
    if ev.prosody is not None and arousal is not None:
        p = ev.prosody
        bits = [f"speech in {p.speech_ratio:.0%} of the audio"]
        if p.f0_mean_hz:
            bits.append(f"mean pitch {p.f0_mean_hz:.0f} Hz (spread {p.f0_std_hz or 0:.0f} Hz, range "
                        f"{p.f0_range_semitones or 0:.1f} semitones)")  # fmt: skip
        if p.speaking_rate_sps:
            bits.append(f"about {p.speaking_rate_sps:.1f} syllables per second")
        lines.append(f"Voice: {', '.join(bits)}; estimated arousal {arousal:+.2f}.")
    elif not ev.media.has_audio:
        lines.append("A photo has no sound." if still else "There is no audio track.")
    else:
        lines.append("No speech was detected in the audio.")
    if ev.transcript is not None and ev.transcript.text.strip():
        text = ev.transcript.text.strip()
        if len(text) > 200:
            text = text[:197] + "..."
        line = f'Words: "{text}"'
        starts: dict[str, list[float]] = {}  # word -> its start times, in order, to pair with the lexicon hits
        for w in ev.transcript.words:
            starts.setdefault(w.word.lower().strip(".,!?;:\"'"), []).append(w.start)
        hits = []
        for h in lex.hits[:MAX_WORD_HITS]:
            queue = starts.get(h.word, [])
            where = f" at {_fmt(queue.pop(0))} s" if queue else ""
            hits.append(f"{'negated ' if h.negated else ''}'{h.word}' ({h.emotion}){where}")
        if len(lex.hits) > MAX_WORD_HITS:
            hits.append(f"{len(lex.hits) - MAX_WORD_HITS} more")
        line += f"; emotion words: {_join(hits)}." if hits else "; no emotion words."
        lines.append(line)
    return " ".join(lines)


def analyze(evidence: Evidence) -> Analysis:
    """Reason about one clip's evidence; deterministic and fast (no model weights)."""
    ev = evidence
    dur = ev.media.duration_s
    arousal = fusion.voice_arousal(ev.prosody) if ev.prosody is not None else None
    lex = score_text(ev.transcript.text) if ev.transcript is not None else LexiconScore()
    weights = _modal_weights(ev, lex, arousal)
    dists = {m: d for m, d in _distributions(ev, 0.0, dur + 1e-6, arousal, clip=True).items() if m in weights}
    p_raw = fusion.fuse(dists, weights)
    probs = {e: round(v, 4) for e, v in p_raw.items()}
    best, second = sorted(p_raw, key=lambda e: -p_raw[e])[:2]
    below, ratio = UNCERTAIN_BELOW, UNCERTAIN_RATIO
    if ev.reader is not None and "face" in dists:  # the learned reader's open-set rule, fitted on train (fusion.py)
        below, ratio = fusion.READER_UNCERTAIN_BELOW, fusion.READER_UNCERTAIN_RATIO
    stands_out = p_raw[best] >= below or p_raw[best] >= ratio * p_raw[second]
    window = _face_window(ev, 0.0, dur + 1e-6) if "face" in dists else None
    cov = fusion.prototype_coverage(window[1]) if window else {}
    # Open set, face side: a face that clearly moves (some AU at full activation) in a way no prototype covers
    # (best coverage under OPEN_SET_COVERAGE) is not forced into one of the labels when the face leads the fusion.
    face_unexplained = (
        window is not None
        and ev.reader is None  # the rule is for the prototype read; the learned reader was trained on real faces
        and weights.get("face", 0.0) >= 0.5
        and max(fusion.activation(v) for v in window[1].values()) >= 1.0
        and max(cov.values()) < OPEN_SET_COVERAGE
        and best != "neutral"
    )
    emotion = best if stands_out and weights and not face_unexplained else UNCERTAIN
    # the call must be borne out by the face it was read from: a happy call on a face without AU12 is not
    has_face = face_read(ev)
    present = present_aus(ev) if has_face else set()
    missing = [au for au in LABEL_REQUIRES.get(emotion, ()) if au not in present] if has_face else []
    if missing:
        emotion = UNCERTAIN
    read = set(ev.aus.intensities) if ev.aus is not None else set()
    compound, compound_score, secondary = _compound(p_raw, emotion, present, read)
    v, a, d = _vad(p_raw, arousal, weights.get("voice", 0.0))
    segments = [] if ev.media.still_image else _segments(ev, weights, arousal)  # a photo has no time axis
    micro = _micro(ev)
    smile = _smile(ev)
    amb = _ambivalence(dists, p_raw, segments)
    agreement = _agreement(dists, weights, arousal)
    event_aus = present
    aus = [au for au in PROTOTYPES.get(emotion, {}) if au in present] if emotion in PROTOTYPES else []

    # Interpretation
    interp: list[str] = []
    if "face" in dists:
        ranked = sorted(cov, key=lambda e: -cov[e])
        b = ranked[0]
        matched = [au for au in PROTOTYPES[b] if au in event_aus]
        via = f" ({_join(matched)})" if matched else ""
        interp.append(f"The facial actions{via} cover {cov[b]:.0%} of the {b} prototype, the best match "
                      f"(next: {ranked[1]} at {cov[ranked[1]]:.0%}).")  # fmt: skip
        if cov[b] < OPEN_SET_COVERAGE:
            interp.append("No emotion prototype fits the face well.")
    w_text = ", ".join(f"{m} {w:.2f}" for m, w in weights.items())
    if weights:
        interp.append(f"Modality weights: {w_text}; " + "; ".join(f"{m} alone suggests {_top(dd)}"
                                                                    for m, dd in dists.items()) + ".")  # fmt: skip
    interp += agreement
    if smile is not None:
        interp.append(smile.statement)
    if amb.flag:
        interp.append("Ambivalence: " + "; ".join(amb.reasons) + ".")
    doms = [s.dominant for s in segments]
    if len(set(doms)) > 1:
        changes = [s.dominant for i, s in enumerate(segments) if i == 0 or s.dominant != segments[i - 1].dominant]
        interp.append("Over time (window by window): " + ", then ".join(changes) + ".")

    top3 = sorted(p_raw, key=lambda e: -p_raw[e])[:3]
    concl = []
    if missing:
        concl.append(f"Uncertain: the fused read is {best} at {p_raw[best]:.2f}, but {_join(missing)}, which that "
                     "call needs, is not present in the face.")  # fmt: skip
    elif emotion == UNCERTAIN:
        concl.append(f"Uncertain: no emotion stands out (best {best} at {p_raw[best]:.2f}, next {second} at "
                     f"{p_raw[second]:.2f}).")  # fmt: skip
    else:
        concl.append(f"{emotion.capitalize()} (probability {p_raw[emotion]:.2f}; then "
                     + ", ".join(f"{e} {p_raw[e]:.2f}" for e in top3[1:]) + ").")  # fmt: skip
    if compound and secondary is not None:
        both = [au for au in PROTOTYPES[secondary] if au in present and au not in PROTOTYPES[emotion]]
        concl.append(f"Compound expression: {compound} ({emotion} {p_raw[emotion]:.2f} with {secondary} "
                     f"{p_raw[secondary]:.2f}" + (f"; {secondary} adds {_join(both)}" if both else "") + ").")  # fmt: skip
    concl.append(f"Valence {v.mean:+.2f} ± {v.std:.2f}, arousal {a.mean:+.2f} ± {a.std:.2f}.")
    if "face" not in dists:
        concl.append("This rests on the voice and words only; no face was found." if dists else
                     f"Nothing in the {'photo' if ev.media.still_image else 'clip'} can be read.")  # fmt: skip

    think = (f"Key observations: {_observations(ev, lex, arousal, micro)}\n"
             f"Overall emotional interpretation: {' '.join(interp) if interp else 'Nothing to interpret.'}\n"
             f"Conclusion: {' '.join(concl)}")  # fmt: skip
    return Analysis(
        emotion=emotion, probabilities=probs, compound=compound, compound_score=compound_score,
        valence=v, arousal=a, dominance=d, smile=smile, segments=segments, micro_expressions=micro,
        ambivalence=amb, modality_weights=weights, modality_emotions={m: _top(dd) for m, dd in dists.items()},
        voice_arousal=None if arousal is None else round(arousal, 3), agreement=agreement,
        caption=_caption(ev, emotion), think=think, aus=aus,
    )  # fmt: skip


def model_analysis(
    evidence: Evidence,
    *,
    reasoner: str,
    text: str,
    think: str,
    emotion: str,
    compound: str | None,
    aus: list[str],
    probabilities: dict[str, float],
) -> Analysis:
    """The analysis a model wrote: its reply (``text``, verbatim), parsed parts and label probabilities (its own
    scores), with valence/arousal/dominance and ambivalence computed from those probabilities alone. No segments or
    modality weights: the model reads the clip whole. The evidence cues in :data:`ENGINE_FIELDS` are the knowledge
    engine's and are named as such in ``engine_fields``."""
    base = analyze(evidence)
    p = {e: float(probabilities.get(e, 0.0)) for e in ALL_EMOTIONS} if probabilities else {}
    if p:
        v, a, d = _vad(p, None, 0.0)
    else:  # no scores (the reply had no answer to score): nothing to place on the VAD axes
        v = a = d = Distribution(mean=0.0, std=1.0)
    return Analysis(
        emotion=emotion, probabilities={e: round(q, 4) for e, q in p.items()}, compound=compound, compound_score=None,
        valence=v, arousal=a, dominance=d, smile=base.smile, segments=[], micro_expressions=base.micro_expressions,
        ambivalence=_ambivalence({}, p, []) if p else Ambivalence(flag=False, reasons=[]), modality_weights={},
        modality_emotions={}, voice_arousal=base.voice_arousal, agreement=base.agreement, caption=_caption(evidence, emotion),
        think=think, aus=aus, reasoner=reasoner, engine_fields=list(ENGINE_FIELDS), text=text,
    )  # fmt: skip
