"""The emotion report: one pydantic :class:`Report` schema, rendered as JSON, Markdown or one self-contained HTML file.

:func:`build_report` runs the reasoning engine (unless given an analysis) and adds an evidence summary, quality flags,
versions and the faithfulness check of the chain of thought. :func:`render_html` draws, with matplotlib, an AU intensity
heatmap over time, the emotion probabilities over time and key frames with the face box, and inlines them as base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from emoreason import __version__
from emoreason.errors import ConfigError, DataError
from emoreason.evidence import AUEvent, Evidence, ModelVersion, QualityFlag
from emoreason.io import atomic_write_text, read_json
from emoreason.knowledge.taxonomy import ALL_EMOTIONS
from emoreason.reasoning.engine import Analysis, analyze
from emoreason.reasoning.faithfulness import check_faithfulness

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = "1.0"
REPORT_FORMATS = (".json", ".md", ".html")
HTML_MARKER = "<!-- emoreason-report -->"  # lets a batch run recognise a finished HTML report
MAX_KEY_FRAMES = 4


class EvidenceSummary(BaseModel):
    face_found: bool
    face_coverage: float
    frames_analysed: int
    au_events: list[AUEvent] = Field(default_factory=list)
    has_audio: bool
    speech_ratio: float | None = None
    transcript: str | None = None


class Faithfulness(BaseModel):
    score: float
    unsupported_aus: list[str] = Field(default_factory=list)
    unsupported_times: list[float] = Field(default_factory=list)


class Report(BaseModel):
    schema_version: str = REPORT_SCHEMA_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    clip: str
    duration_s: float
    reasoner: str = "knowledge-engine"
    analysis: Analysis
    answer: str = Field(description="the analysis in the shared <think>/<answer> format")
    evidence: EvidenceSummary
    faithfulness: Faithfulness
    flags: list[QualityFlag] = Field(default_factory=list)
    versions: list[ModelVersion] = Field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> Report:
        try:
            return cls.model_validate(read_json(path))
        except ValidationError as e:
            raise DataError(f"not a report file: {e.errors()[0]['msg']}", path) from None


def build_report(evidence: Evidence, analysis: Analysis | None = None) -> Report:
    """Analyse (unless ``analysis`` is given) and assemble the report."""
    a = analysis if analysis is not None else analyze(evidence)
    f = check_faithfulness(a.think, evidence)
    face = evidence.face
    return Report(
        clip=evidence.media.path,
        duration_s=evidence.media.duration_s,
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
        ),
        faithfulness=Faithfulness(
            score=f.score, unsupported_aus=f.unsupported_aus, unsupported_times=f.unsupported_times
        ),  # fmt: skip
        flags=evidence.flags,
        versions=[ModelVersion(name="emoreason", version=__version__), *evidence.models],
    )


def headline(a: Analysis) -> str:
    """``happiness (0.92)``, or ``uncertain (best: anger 0.30)`` for the open-set answer."""
    if a.emotion in a.probabilities:
        return f"{a.emotion} ({a.probabilities[a.emotion]:.2f})"
    best = max(a.probabilities, key=lambda e: a.probabilities[e])
    return f"{a.emotion} (best: {best} {a.probabilities[best]:.2f})"


# --- Markdown ---------------------------------------------------------------------------------------------------------


def _prob_table(p: dict[str, float]) -> list[str]:
    rows = ["| emotion | probability |", "|---|---|"]
    rows += [f"| {e} | {p[e]:.2f} |" for e in sorted(p, key=lambda e: -p[e])]
    return rows


def render_markdown(report: Report) -> str:
    a = report.analysis
    md = [f"# Emotion report: {Path(report.clip).name}", "",
          f"**Emotion: {headline(a)}**" + (f" · compound: {a.compound} ({a.compound_score:.2f})" if a.compound else ""),
          "", f"Clip {report.duration_s:.2f} s · {report.created_at} · reasoner {report.reasoner}", ""]  # fmt: skip
    if not report.evidence.face_found:
        md += ["> No face was found in the clip: the report rests on the voice and the words.", ""]
    md += ["## Probabilities", "", *_prob_table(a.probabilities), ""]
    md += ["## Dimensions", "", "| | mean | spread (sd) |", "|---|---|---|"]
    md += [f"| {k} | {d.mean:+.2f} | {d.std:.2f} |" for k, d in (("valence", a.valence), ("arousal", a.arousal),
                                                                   ("dominance", a.dominance))]  # fmt: skip
    md += ["", "## Modalities", ""]
    md += [f"- {m}: weight {w:.2f}, suggests {a.modality_emotions.get(m, '?')}" for m, w in a.modality_weights.items()]
    md += [f"- {s}" for s in a.agreement]
    if a.smile:
        md += ["", "## Smile", "", f"{a.smile.kind}: {a.smile.statement}"]
    if a.micro_expressions:
        md += ["", "## Micro-expressions", ""]
        md += [f"- {m.au} {m.onset:.2f}–{m.offset:.2f} s (peak {m.peak:.1f})" for m in a.micro_expressions]
    if a.ambivalence.flag:
        md += ["", "## Ambivalence", ""] + [f"- {r}" for r in a.ambivalence.reasons]
    md += ["", "## What the face did", "", a.caption, "", "## Reasoning", ""]
    md += [line for line in a.think.splitlines()]
    md += ["", f"Faithfulness of the reasoning to the evidence: {report.faithfulness.score:.2f}"]
    if a.segments:
        md += ["", "## Over time", "", "| start | end | dominant | p |", "|---|---|---|---|"]
        md += [
            f"| {s.start:.2f} | {s.end:.2f} | {s.dominant} | {s.probabilities[s.dominant]:.2f} |" for s in a.segments
        ]
    if report.evidence.transcript:
        md += ["", "## Transcript", "", f"> {report.evidence.transcript}"]
    if report.flags:
        md += ["", "## Quality", ""] + [f"- {f.code}: {f.message}" for f in report.flags]
    md += ["", "## Versions", ""] + [f"- {v.name} {v.version}" for v in report.versions]
    return "\n".join(md) + "\n"


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


def plot_au_heatmap(evidence: Evidence) -> str | None:
    """AU intensity over time as a heatmap (base64 PNG), or None without AU series."""
    import numpy as np

    s = evidence.aus
    if s is None or not s.times:
        return None
    aus = list(s.intensities)
    grid = np.array([[np.nan if v is None else v for v in s.intensities[a]] for a in aus], dtype=float)
    fig, ax = _figure(9, 0.28 * len(aus) + 1.2)
    t0, t1 = s.times[0], s.times[-1] if len(s.times) > 1 else s.times[0] + 0.1
    im = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0, vmax=5, interpolation="nearest",
                   extent=(t0, t1, len(aus) - 0.5, -0.5))  # fmt: skip
    ax.set_yticks(range(len(aus)), aus)
    ax.set_xlabel("time (s)")
    ax.set_title("Action Unit intensity (0-5)")
    fig.colorbar(im, ax=ax, pad=0.01)
    return _png(fig)


def plot_probabilities(analysis: Analysis) -> str | None:
    if not analysis.segments:
        return None
    fig, ax = _figure(9, 3)
    mids = [(s.start + s.end) / 2 for s in analysis.segments]
    for e in ALL_EMOTIONS:
        ys = [s.probabilities[e] for s in analysis.segments]
        if max(ys) >= 0.05:
            ax.plot(mids, ys, marker="o", label=e)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title("Emotion probabilities over time")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def _key_times(evidence: Evidence) -> list[float]:
    face = evidence.face
    if face is None or face.coverage == 0:
        return []
    times = [t for t, p in zip(face.times, face.present, strict=False) if p]
    picks = [times[0]]
    picks += [e.apex for e in sorted(evidence.au_events, key=lambda e: -e.peak)[:2]]
    picks += [times[len(times) // 2], times[-1]]
    out: list[float] = []
    for t in picks:
        if all(abs(t - u) > 0.3 for u in out):
            out.append(t)
    return sorted(out)[:MAX_KEY_FRAMES]


def key_frames(evidence: Evidence, max_side: int = 360) -> list[tuple[float, str]]:
    """2-4 frames (time, base64 PNG) with the face box drawn; empty if the clip cannot be read or shows no face."""
    from emoreason import media
    from emoreason.errors import EmoReasonError

    wanted = _key_times(evidence)
    face = evidence.face
    if not wanted or face is None:
        return []
    grabbed: dict[float, tuple[float, object]] = {}
    try:
        for t, frame in media.iter_frames(evidence.media.path, fps=evidence.media.sample_fps, max_side=max_side):
            for w in wanted:
                if w not in grabbed or abs(t - w) < abs(grabbed[w][0] - w):
                    grabbed[w] = (t, frame)
    except (EmoReasonError, OSError) as e:
        log.warning("key frames unavailable: %s", e)
        return []
    out = []
    for w in wanted:
        if w not in grabbed:
            continue
        t, frame = grabbed[w]
        i = min(range(len(face.times)), key=lambda k: abs(face.times[k] - t))
        box = face.boxes[i]
        fig, ax = _figure(3, 3)
        ax.imshow(frame)
        if box is not None and evidence.media.width:
            from matplotlib.patches import Rectangle

            sc = frame.shape[1] / evidence.media.width
            x0, y0, x1, y1 = (v * sc for v in box)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=2))
        ax.set_axis_off()
        ax.set_title(f"{t:.2f} s", fontsize=9)
        out.append((t, _png(fig)))
    return out


# --- HTML -------------------------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.big{font-size:1.4em;font-weight:600}.note{background:#fff4d6;border-left:4px solid #e0a800;padding:8px 12px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
.bar{display:inline-block;height:10px;background:#4a7bd0}.frames img{width:240px;margin-right:8px}
.think p{margin:6px 0}img{max-width:100%}"""


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def render_html(report: Report, evidence: Evidence) -> str:
    """One self-contained HTML page (images inline as base64 PNG)."""
    a = report.analysis
    esc = html.escape
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>EmoReason: {esc(Path(report.clip).name)}</title>",
         f"<style>{_CSS}</style></head><body>{HTML_MARKER}", f"<h1>Emotion report: {esc(Path(report.clip).name)}</h1>",
         f"<p class='big'>{esc(headline(a))}"
         + (f" · {esc(a.compound)}" if a.compound else "") + "</p>",
         f"<p>{report.duration_s:.2f} s clip · {esc(report.created_at)} · {esc(report.reasoner)}</p>"]  # fmt: skip
    if not report.evidence.face_found:
        h.append("<p class='note'>No face was found in the clip: this report rests on the voice and the words.</p>")
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
    if a.micro_expressions:
        h.append("<h2>Micro-expressions</h2><ul>" + "".join(
            f"<li>{m.au} {m.onset:.2f}–{m.offset:.2f} s</li>" for m in a.micro_expressions) + "</ul>")  # fmt: skip
    if a.ambivalence.flag:
        h.append("<h2>Ambivalence</h2><ul>" + "".join(f"<li>{esc(r)}</li>" for r in a.ambivalence.reasons) + "</ul>")
    frames = key_frames(evidence)
    if frames:
        h.append("<h2>Key frames</h2><div class='frames'>" + "".join(_img(b, f"frame at {t:.2f} s") for t, b in frames)
                 + "</div>")  # fmt: skip
    heat, probs = plot_au_heatmap(evidence), plot_probabilities(a)
    if heat or probs:
        h.append("<h2>Timeline</h2>" + _img(heat, "AU intensity heatmap") + _img(probs, "emotion probabilities"))
    h.append(f"<h2>What the face did</h2><p>{esc(a.caption)}</p>")
    h.append("<h2>Reasoning</h2><div class='think'>" + "".join(f"<p>{esc(x)}</p>" for x in a.think.splitlines())
             + f"</div><p>Faithfulness to the evidence: {report.faithfulness.score:.2f}</p>")  # fmt: skip
    if evidence.transcript is not None and evidence.transcript.text.strip():
        words = evidence.transcript.words
        body = " ".join(f"<span title='{w.start:.2f} s'>{esc(w.word)}</span>" for w in words) if words else esc(
            evidence.transcript.text)  # fmt: skip
        h.append(f"<h2>Transcript</h2><blockquote>{body}</blockquote>")
    if report.flags:
        h.append("<h2>Quality</h2><ul>" + "".join(f"<li>{esc(f.code)}: {esc(f.message)}</li>" for f in report.flags)
                 + "</ul>")  # fmt: skip
    h.append("<h2>Versions</h2><p>" + esc(", ".join(f"{v.name} {v.version}" for v in report.versions)) + "</p>")
    h.append(
        "<details><summary>Report JSON</summary><pre>" + esc(report.model_dump_json(indent=1)) + "</pre></details>"
    )
    h.append("</body></html>")
    return "\n".join(h)


def write_report(report: Report, evidence: Evidence, path: str | Path) -> Path:
    """Write the report in the format named by the suffix of ``path`` (.json, .md or .html)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = json.dumps(report.model_dump(mode="json"), indent=1, ensure_ascii=False)
    elif suffix == ".md":
        text = render_markdown(report)
    elif suffix in (".html", ".htm"):
        text = render_html(report, evidence)
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
