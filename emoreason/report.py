"""The emotion report: one pydantic :class:`Report` schema, rendered as JSON, Markdown or one self-contained HTML file.

:func:`build_report` runs the reasoning engine (unless given an analysis) and adds an evidence summary, quality flags,
versions, the faithfulness check of the chain of thought, the key-frame thumbnails perception kept and the AU intensities
over time (pooled to at most ``MAX_TIMELINE_POINTS``). The report JSON is therefore self-contained: :func:`render_html`
needs nothing else (no clip, no Evidence), so ``emoreason report X.report.json -o X.html`` works after the clip is gone.
The HTML draws, with matplotlib, an AU intensity heatmap over time and the emotion probabilities over time (for a photo:
an AU intensity bar chart and no time axis anywhere), shows the key frames with the face box, and inlines every image.

Every value that comes from the clip, the evidence or a model (file names, transcript, AU names, model names, flag
messages, reasoning text) is escaped for HTML in :func:`render_html` and for Markdown in :func:`render_markdown`. Report
JSON is strict: a NaN or Infinity anywhere is refused, never written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, Field, ValidationError, model_validator

from emoreason import __version__
from emoreason.errors import ConfigError, DataError
from emoreason.evidence import AUEvent, Evidence, KeyFrame, ModelVersion, QualityFlag, Word, first_error
from emoreason.io import atomic_write_text, read_json
from emoreason.knowledge.facs import AUS, INTENSITY_MAX
from emoreason.knowledge.taxonomy import ALL_EMOTIONS
from emoreason.reasoning.engine import KNOWLEDGE_ENGINE, Analysis, analyze
from emoreason.reasoning.faithfulness import check_analysis

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = "1.1"  # 1.1: key_frames, evidence.still_image / transcript_words / au_timeline
REPORT_FORMATS = (".json", ".md", ".html")
HTML_MARKER = "<!-- emoreason-report -->"  # lets a batch run recognise a finished HTML report
MAX_TIMELINE_POINTS = 400  # the AU series is max-pooled to this many instants for the heatmap
DEFAULT_REASONER = KNOWLEDGE_ENGINE


def non_finite(obj: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN or Infinity in a JSON-like ``obj``, or None when every number is finite."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(value)"
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        if (bad := non_finite(v, f"{where}.{k}" if where else str(k))) is not None:
            return bad
    return None


class AUTimeline(BaseModel):
    """AU intensities (0-5) over time, max-pooled to at most ``MAX_TIMELINE_POINTS`` instants; one instant for a photo."""

    times: list[float]
    intensities: dict[str, list[float | None]]


class ReportFrame(KeyFrame):
    """A key frame with the main face's box as fractions of the frame ([x0, y0, x1, y1] in 0-1), when there is one."""

    box: list[float] | None = None


class EvidenceSummary(BaseModel):
    face_found: bool
    face_coverage: float
    frames_analysed: int
    au_events: list[AUEvent] = Field(default_factory=list)
    has_audio: bool
    speech_ratio: float | None = None
    transcript: str | None = None
    transcript_words: list[Word] = Field(default_factory=list)
    still_image: bool = Field(False, description="the input is a photo: no time axis")
    au_timeline: AUTimeline | None = None


class Faithfulness(BaseModel):
    score: float
    unsupported_aus: list[str] = Field(default_factory=list)
    unsupported_times: list[float] = Field(default_factory=list)
    contradictions: list[str] = Field(default_factory=list, description="claims the evidence or the call contradicts")


class Report(BaseModel):
    schema_version: str = REPORT_SCHEMA_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    clip: str
    duration_s: float
    reasoner: str = Field(DEFAULT_REASONER, description="the engine or model that wrote the analysis")
    analysis: Analysis
    answer: str = Field(description="the analysis in the shared <think>/<answer> format")
    evidence: EvidenceSummary
    faithfulness: Faithfulness
    flags: list[QualityFlag] = Field(default_factory=list)
    versions: list[ModelVersion] = Field(default_factory=list)
    key_frames: list[ReportFrame] = Field(default_factory=list)

    @model_validator(mode="after")
    def _finite(self) -> Self:
        if (where := non_finite(self.model_dump())) is not None:
            raise ValueError(f"{where} is not a finite number")
        return self

    @classmethod
    def load(cls, path: str | Path) -> Report:
        data = read_json(path)
        if (where := non_finite(data)) is not None:
            raise DataError(f"not a report file: {where} is not a finite number (NaN or Infinity)", path)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise DataError(f"not a report file: {first_error(e)}", path) from None

    def to_json(self) -> str:
        """Strict JSON (no NaN or Infinity), as written to ``.json`` reports."""
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False)


def is_report_file(path: str | Path) -> bool:
    """Whether ``path`` is a report JSON (rather than an Evidence JSON or a clip)."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    data = read_json(p)
    return isinstance(data, dict) and "analysis" in data and "answer" in data


def _timeline(evidence: Evidence) -> AUTimeline | None:
    s = evidence.aus
    if s is None or not s.times:
        return None
    n = len(s.times)
    bins = [(i * n // MAX_TIMELINE_POINTS, (i + 1) * n // MAX_TIMELINE_POINTS) for i in range(MAX_TIMELINE_POINTS)]
    bins = [(a, b) for a, b in bins if b > a] if n > MAX_TIMELINE_POINTS else [(i, i + 1) for i in range(n)]

    def pool(values: list[float | None], a: int, b: int) -> float | None:
        got = [v for v in values[a:b] if v is not None]
        return max(got) if got else None

    return AUTimeline(times=[s.times[a] for a, _ in bins],
                      intensities={au: [pool(v, a, b) for a, b in bins] for au, v in s.intensities.items()})  # fmt: skip


def _report_frames(evidence: Evidence) -> list[ReportFrame]:
    face, w, h = evidence.face, evidence.media.width, evidence.media.height
    out = []
    for k in evidence.key_frames:
        box = None
        if face is not None and face.times and w and h:
            i = min(range(len(face.times)), key=lambda j: abs(face.times[j] - k.time))
            b = face.boxes[i]
            if b is not None:
                box = [round(min(1.0, max(0.0, v / d)), 4) for v, d in zip(b, (w, h, w, h), strict=True)]
        out.append(ReportFrame(**k.model_dump(), box=box))
    return out


def build_report(evidence: Evidence, analysis: Analysis | None = None, *, reasoner: str | None = None) -> Report:
    """Analyse (unless ``analysis`` is given) and assemble the report. ``reasoner`` names the engine or model that wrote
    ``analysis`` (default: the one the analysis names, ``Analysis.reasoner``).

    Raises :class:`DataError` naming the clip when a number in the analysis or the evidence is NaN or Infinity."""
    a = analysis if analysis is not None else analyze(evidence)
    f = check_analysis(a, evidence)  # the think block, the answer and the caption, against the fused probabilities too
    face = evidence.face
    try:
        return Report(
            clip=evidence.media.path,
            duration_s=evidence.media.duration_s,
            reasoner=reasoner or a.reasoner,
            analysis=a,
            answer=a.answer_text(),
            evidence=EvidenceSummary(
                face_found=face is not None and face.coverage > 0,
                face_coverage=face.coverage if face is not None else 0.0,
                frames_analysed=evidence.media.n_frames,
                au_events=evidence.au_events,
                has_audio=evidence.media.has_audio,
                speech_ratio=evidence.prosody.speech_ratio if evidence.prosody is not None else None,
                transcript=evidence.transcript.text if evidence.transcript is not None else None,
                transcript_words=evidence.transcript.words if evidence.transcript is not None else [],
                still_image=evidence.media.still_image,
                au_timeline=_timeline(evidence),
            ),
            faithfulness=Faithfulness(
                score=f.score,
                unsupported_aus=f.unsupported_aus,
                unsupported_times=f.unsupported_times,
                contradictions=f.contradictions,
            ),
            flags=evidence.flags,
            versions=[ModelVersion(name="emoreason", version=__version__), *evidence.models],
            key_frames=_report_frames(evidence),
        )
    except ValidationError as e:
        raise DataError(f"cannot build the report: {first_error(e)}", evidence.media.path) from None


def headline(a: Analysis) -> str:
    """``happiness (0.92)``, or ``uncertain (best: anger 0.30)`` for the open-set answer."""
    if a.emotion in a.probabilities:
        return f"{a.emotion} ({a.probabilities[a.emotion]:.2f})"
    best = max(a.probabilities, key=lambda e: a.probabilities[e])
    return f"{a.emotion} (best: {best} {a.probabilities[best]:.2f})"


# --- Markdown ---------------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]|!])")


def md(value: object) -> str:
    """``value`` as Markdown text that renders as itself: HTML is escaped (no raw tag reaches a Markdown viewer), the
    punctuation that could start a link, an image, code, emphasis or a table cell is backslash-escaped, a leading ``#``
    too (no heading), and newlines become spaces."""
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return "\\" + text if text.startswith("#") else text


def _prob_table(p: dict[str, float]) -> list[str]:
    rows = ["| emotion | probability |", "|---|---|"]
    rows += [f"| {md(e)} | {p[e]:.2f} |" for e in sorted(p, key=lambda e: -p[e])]
    return rows


def engine_fields_note(a: Analysis) -> str:
    """What of a model's analysis is the knowledge engine's (``Analysis.engine_fields``), in words."""
    names = {"smile": "the smile cue", "micro_expressions": "micro-expressions", "voice_arousal": "voice arousal",
             "agreement": "modality agreement", "caption": "the caption"}  # fmt: skip
    return (
        "the emotion, compound, AUs, chain of thought and probabilities are the model's; "
        + ", ".join(names.get(f, f) for f in a.engine_fields)
        + " are the knowledge engine's reading of the evidence."
    )


def headline_md(a: Analysis) -> str:
    return md(headline(a)) + (f" · compound: {md(a.compound)} ({a.compound_score or 0:.2f})" if a.compound else "")


def _photo_intensities(report: Report) -> dict[str, float]:
    """A photo's AU intensities (its one instant), strongest first; empty without a face."""
    tl = report.evidence.au_timeline
    if tl is None or not tl.times:
        return {}
    vals = {au: v[0] for au, v in tl.intensities.items() if v and v[0] is not None}
    return dict(sorted(vals.items(), key=lambda kv: -kv[1]))


def render_markdown(report: Report) -> str:
    a = report.analysis
    photo = report.evidence.still_image
    what = "Photo" if photo else f"Clip {report.duration_s:.2f} s"
    md_ = [f"# Emotion report: {md(Path(report.clip).name)}", "", f"**Emotion: {headline_md(a)}**", "",
           f"{what} · {md(report.created_at)} · reasoner {md(report.reasoner)}", ""]  # fmt: skip
    if a.engine_fields:
        md_ += [f"> Written by {md(report.reasoner)}; {md(engine_fields_note(a))}", ""]
    if not report.evidence.face_found:
        where = "photo" if photo else "clip"
        md_ += [f"> No face was found in the {where}: the report rests on the voice and the words.", ""]
    md_ += ["## Probabilities", "", *_prob_table(a.probabilities), ""]
    md_ += ["## Dimensions", "", "| | mean | spread (sd) |", "|---|---|---|"]
    md_ += [f"| {k} | {d.mean:+.2f} | {d.std:.2f} |" for k, d in (("valence", a.valence), ("arousal", a.arousal),
                                                                    ("dominance", a.dominance))]  # fmt: skip
    md_ += ["", "## Modalities", ""]
    md_ += [f"- {md(m)}: weight {w:.2f}, suggests {md(a.modality_emotions.get(m, '?'))}"
            for m, w in a.modality_weights.items()]  # fmt: skip
    md_ += [f"- {md(s)}" for s in a.agreement]
    if photo and (inten := _photo_intensities(report)):
        md_ += ["", "## Action Units", "", "| AU | name | intensity (0-5) |", "|---|---|---|"]
        md_ += [f"| {md(au)} | {md(AUS[au].name) if au in AUS else ''} | {v:.1f} |" for au, v in inten.items()]
    if a.smile:
        md_ += ["", "## Smile", "", f"{md(a.smile.kind)}: {md(a.smile.statement)}"]
    if a.micro_expressions and not photo:
        md_ += ["", "## Micro-expressions", ""]
        md_ += [f"- {md(m.au)} {m.onset:.2f}–{m.offset:.2f} s (peak {m.peak:.1f})" for m in a.micro_expressions]
    if a.ambivalence.flag:
        md_ += ["", "## Ambivalence", ""] + [f"- {md(r)}" for r in a.ambivalence.reasons]
    md_ += ["", "## What the face did", "", md(a.caption), "", "## Reasoning", ""]
    md_ += [md(line) for line in a.think.splitlines()]
    md_ += ["", f"Faithfulness of the reasoning to the evidence: {report.faithfulness.score:.2f}"]
    if a.segments and not photo:
        md_ += ["", "## Over time", "", "| start | end | dominant | p |", "|---|---|---|---|"]
        md_ += [f"| {s.start:.2f} | {s.end:.2f} | {md(s.dominant)} | {s.probabilities.get(s.dominant, 0.0):.2f} |"
                for s in a.segments]  # fmt: skip
    if report.evidence.transcript:
        md_ += ["", "## Transcript", "", f"> {md(report.evidence.transcript)}"]
    if report.flags:
        md_ += ["", "## Quality", ""] + [f"- {f.code}: {md(f.message)}" for f in report.flags]
    md_ += ["", "## Versions", ""] + [f"- {md(v.name)} {md(v.version)}" for v in report.versions]
    return "\n".join(md_) + "\n"


# --- plots ------------------------------------------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def plot_au_heatmap(timeline: AUTimeline | None) -> str | None:
    """AU intensity over time as a heatmap (base64 PNG), or None without AU series."""
    import numpy as np

    if timeline is None or not timeline.times:
        return None
    aus = list(timeline.intensities)
    grid = np.array([[np.nan if v is None else v for v in timeline.intensities[a]] for a in aus], dtype=float)
    fig, ax = _figure(9, 0.28 * len(aus) + 1.2)
    t0 = timeline.times[0]
    t1 = timeline.times[-1] if len(timeline.times) > 1 else t0 + 0.1
    im = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0, vmax=INTENSITY_MAX, interpolation="nearest",
                   extent=(t0, t1, len(aus) - 0.5, -0.5))  # fmt: skip
    ax.set_yticks(range(len(aus)), aus)
    ax.set_xlabel("time (s)")
    ax.set_title("Action Unit intensity (0-5)")
    fig.colorbar(im, ax=ax, pad=0.01)
    return _png(fig)


def plot_au_bars(intensities: dict[str, float]) -> str | None:
    """A photo's AU intensities as horizontal bars (base64 PNG), strongest on top; None without AUs."""
    if not intensities:
        return None
    aus = list(intensities)[::-1]
    fig, ax = _figure(6, 0.26 * len(aus) + 1.0)
    ax.barh(range(len(aus)), [intensities[a] for a in aus], color="#4a7bd0")
    ax.set_yticks(range(len(aus)), [f"{a} {AUS[a].name}" if a in AUS else a for a in aus], fontsize=8)
    ax.set_xlim(0, INTENSITY_MAX)
    ax.set_xlabel("intensity (0-5)")
    ax.set_title("Action Unit intensities")
    return _png(fig)


def plot_probabilities(analysis: Analysis) -> str | None:
    if not analysis.segments:
        return None
    fig, ax = _figure(9, 3)
    mids = [(s.start + s.end) / 2 for s in analysis.segments]
    for e in ALL_EMOTIONS:
        ys = [s.probabilities.get(e, 0.0) for s in analysis.segments]
        if max(ys) >= 0.05:
            ax.plot(mids, ys, marker="o", label=e)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title("Emotion probabilities over time")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


# --- HTML -------------------------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.big{font-size:1.4em;font-weight:600}.note{background:#fff4d6;border-left:4px solid #e0a800;padding:8px 12px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
.bar{display:inline-block;height:10px;background:#4a7bd0}
.frames{display:flex;flex-wrap:wrap;gap:8px}.frame{margin:0}.frame figcaption{font-size:.85em;color:#555}
.shot{position:relative;display:inline-block;line-height:0}.shot img{width:240px;max-width:100%}
.box{position:absolute;border:2px solid lime;box-sizing:border-box}
.think p{margin:6px 0}img{max-width:100%}"""


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def _frame_html(k: ReportFrame, caption: str) -> str:
    """A key frame with the face box drawn over it in CSS (percentages of the thumbnail), and its caption."""
    box = ""
    if k.box is not None:
        x0, y0, x1, y1 = (100 * v for v in k.box)
        box = (f"<div class='box' style='left:{x0:.2f}%;top:{y0:.2f}%;width:{x1 - x0:.2f}%;"
               f"height:{y1 - y0:.2f}%'></div>")  # fmt: skip
    # k.data_url() is validated base64 (KeyFrame), so it cannot leave the attribute
    return (f"<figure class='frame'><div class='shot'><img alt='{html.escape(caption)}' src=\"{k.data_url()}\">{box}"
            f"</div><figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def render_html(report: Report) -> str:
    """One self-contained HTML page (images inline), from the report alone; every untrusted value is escaped."""
    a = report.analysis
    esc = html.escape
    photo = report.evidence.still_image
    name = esc(Path(report.clip).name)
    what = "Photo" if photo else f"{report.duration_s:.2f} s clip"
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>EmoReason: {name}</title>",
         f"<style>{_CSS}</style></head><body>{HTML_MARKER}", f"<h1>Emotion report: {name}</h1>",
         f"<p class='big'>{esc(headline(a))}" + (f" · {esc(a.compound)}" if a.compound else "") + "</p>",
         f"<p>{what} · {esc(report.created_at)} · reasoner {esc(report.reasoner)}</p>"]  # fmt: skip
    if a.engine_fields:
        h.append(f"<p class='note'>Written by {esc(report.reasoner)}; {esc(engine_fields_note(a))}</p>")
    if not report.evidence.face_found:
        where = "photo" if photo else "clip"
        h.append(
            f"<p class='note'>No face was found in the {where}: this report rests on the voice and the words.</p>"
        )
    h.append("<h2>Probabilities</h2><table>")
    for e in sorted(a.probabilities, key=lambda e: -a.probabilities[e]):
        p = a.probabilities[e]
        h.append(f"<tr><td>{esc(e)}</td><td>{p:.2f}</td><td><span class='bar' style='width:{p * 300:.0f}px'></span>"
                 "</td></tr>")  # fmt: skip
    h.append("</table>")
    h.append("<p>" + " · ".join(f"{k} {d.mean:+.2f} ± {d.std:.2f}" for k, d in
                                (("valence", a.valence), ("arousal", a.arousal), ("dominance", a.dominance))) + "</p>")  # fmt: skip
    h.append("<h2>Modalities</h2><ul>")
    h += [f"<li>{esc(m)}: weight {w:.2f}, suggests {esc(a.modality_emotions.get(m, '?'))}</li>"
          for m, w in a.modality_weights.items()]  # fmt: skip
    h += [f"<li>{esc(s)}</li>" for s in a.agreement] + ["</ul>"]
    if a.smile:
        h.append(f"<h2>Smile</h2><p><b>{esc(a.smile.kind)}</b>: {esc(a.smile.statement)}</p>")
    if a.micro_expressions and not photo:
        h.append("<h2>Micro-expressions</h2><ul>" + "".join(
            f"<li>{esc(m.au)} {m.onset:.2f}–{m.offset:.2f} s</li>" for m in a.micro_expressions) + "</ul>")  # fmt: skip
    if a.ambivalence.flag:
        h.append("<h2>Ambivalence</h2><ul>" + "".join(f"<li>{esc(r)}</li>" for r in a.ambivalence.reasons) + "</ul>")
    if report.key_frames:
        if photo:
            frames = "".join(_frame_html(k, "the photo") for k in report.key_frames)
        else:
            frames = "".join(_frame_html(k, f"frame at {k.time:.2f} s") for k in report.key_frames)
        h.append(f"<h2>{'Photo' if photo else 'Key frames'}</h2><div class='frames'>{frames}</div>")
    if photo:
        bars = plot_au_bars(_photo_intensities(report))
        if bars:
            h.append("<h2>Action Units</h2>" + _img(bars, "Action Unit intensities"))
    else:
        heat, probs = plot_au_heatmap(report.evidence.au_timeline), plot_probabilities(a)
        if heat or probs:
            h.append("<h2>Timeline</h2>" + _img(heat, "AU intensity heatmap") + _img(probs, "emotion probabilities"))
    h.append(f"<h2>What the face did</h2><p>{esc(a.caption)}</p>")
    h.append("<h2>Reasoning</h2><div class='think'>" + "".join(f"<p>{esc(x)}</p>" for x in a.think.splitlines())
             + f"</div><p>Faithfulness to the evidence: {report.faithfulness.score:.2f}</p>")  # fmt: skip
    text = report.evidence.transcript
    if text is not None and text.strip():
        words = report.evidence.transcript_words
        body = " ".join(f"<span title='{w.start:.2f} s'>{esc(w.word)}</span>" for w in words) if words else esc(
            text)  # fmt: skip
        h.append(f"<h2>Transcript</h2><blockquote>{body}</blockquote>")
    if report.flags:
        h.append("<h2>Quality</h2><ul>" + "".join(f"<li>{esc(f.code)}: {esc(f.message)}</li>" for f in report.flags)
                 + "</ul>")  # fmt: skip
    h.append("<h2>Versions</h2><p>" + esc(", ".join(f"{v.name} {v.version}" for v in report.versions)) + "</p>")
    summary = report.model_dump(mode="json", exclude={"key_frames"})  # the thumbnails are on the page already
    h.append("<details><summary>Report JSON</summary><pre>" + esc(json.dumps(summary, indent=1, ensure_ascii=False))
             + "</pre></details>")  # fmt: skip
    h.append("</body></html>")
    return "\n".join(h)


def write_report(report: Report, path: str | Path) -> Path:
    """Write the report in the format named by the suffix of ``path`` (.json, .md or .html)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = report.to_json()
    elif suffix == ".md":
        text = render_markdown(report)
    elif suffix in (".html", ".htm"):
        text = render_html(report)
    else:
        raise ConfigError(f"unknown report format {suffix or '(none)'!r}; use one of {', '.join(REPORT_FORMATS)}", p)
    return atomic_write_text(p, text)


def is_valid_report(path: str | Path) -> bool:
    """Whether ``path`` holds a finished report (used to resume batch runs)."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return False
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            Report.load(p)
            return True
        text = p.read_text(encoding="utf-8")
    except (DataError, OSError, UnicodeDecodeError):
        return False
    if suffix in (".html", ".htm"):
        return HTML_MARKER in text and text.rstrip().endswith("</html>")
    return text.startswith("# Emotion report")
