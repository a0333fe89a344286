"""Compact text serialisation of :class:`~emoreason.evidence.Evidence` for LLM prompts.

Lines in priority order (clip, quality flags, face, AU events by peak, head pose, voice, transcript with word times);
when ``max_chars`` is exceeded, the lowest-priority detail (word times, then weaker AU events) is dropped first and the
text says what it left out. Times are written as ``1.20 s`` so :func:`emoreason.parsing.find_times` reads them back.
"""

from __future__ import annotations

from emoreason.evidence import Evidence
from emoreason.knowledge.facs import AUS

DEFAULT_MAX_CHARS = 3000


def _events(ev: Evidence, n: int) -> list[str]:
    events = sorted(ev.au_events, key=lambda e: -e.peak)[:n]
    return [f"- {e.au} ({AUS[e.au].name if e.au in AUS else '?'}): {e.onset:.2f}-{e.offset:.2f} s, apex {e.apex:.2f} s, "
            f"peak {e.peak:.1f}/5" for e in sorted(events, key=lambda e: e.onset)]  # fmt: skip


def _mean_top(cue, k: int = 3) -> tuple[list[tuple[str, float]], int]:
    """An expression cue's ``k`` most probable labels by their mean over the frames that have probabilities, and how
    many frames that is (([], 0) without a cue)."""
    rows = [r for r in cue.probs if r is not None] if cue is not None else []
    if not rows:
        return [], 0
    mean = {label: sum(r[i] for r in rows) / len(rows) for i, label in enumerate(cue.labels)}
    return [(label, mean[label]) for label in sorted(mean, key=lambda x: -mean[x])[:k]], len(rows)


def _parts(ev: Evidence, n_events: int, word_times: bool) -> list[str]:
    m = ev.media
    lines = [f"Clip: {m.duration_s:.2f} s, {'video' if m.has_video else 'no video'}, "
             f"{'audio' if m.has_audio else 'no audio'}."]  # fmt: skip
    if ev.flags:
        lines.append("Quality: " + "; ".join(f.message for f in ev.flags) + ".")
    if ev.face is None or ev.face.coverage == 0:
        lines.append("Face: none found.")
    else:
        lines.append(f"Face: visible in {ev.face.coverage:.0%} of {m.n_frames} frames analysed at {m.sample_fps} fps.")
        if ev.au_events:
            lines.append(f"Facial Action Unit events (intensity 0-5; {len(ev.au_events)} in all):")
            lines += _events(ev, n_events)
            if n_events < len(ev.au_events):
                lines.append(f"- ({len(ev.au_events) - n_events} weaker events left out)")
        else:
            lines.append("Facial Action Unit events: none above the resting face.")
        top, n = _mean_top(ev.expression)
        if top:
            lines.append(f"Expression classifier ({ev.expression.model}, {n} frames): "
                         + ", ".join(f"{k} {p:.2f}" for k, p in top) + ".")  # fmt: skip
        poses = [p for p in ev.face.poses if p is not None]
        if poses:
            yaw, pitch = [p.yaw for p in poses], [p.pitch for p in poses]
            lines.append(f"Head pose: yaw {round(min(yaw))} to {round(max(yaw))} deg, pitch {round(min(pitch))} to "
                         f"{round(max(pitch))} deg.")  # fmt: skip
    p = ev.prosody
    if p is not None and p.speech_ratio > 0:
        bits = [f"speech {p.speech_ratio:.0%} of the audio"]
        if p.f0_mean_hz:
            bits.append(f"pitch mean {p.f0_mean_hz:.0f} Hz, sd {p.f0_std_hz or 0:.0f} Hz, range "
                        f"{p.f0_range_semitones or 0:.1f} semitones")  # fmt: skip
        if p.energy_std_db is not None:
            bits.append(f"loudness variation {p.energy_std_db:.1f} dB")
        if p.speaking_rate_sps:
            bits.append(f"{p.speaking_rate_sps:.1f} syllables per second")
        lines.append("Voice: " + "; ".join(bits) + ".")
    elif m.has_audio:
        lines.append("Voice: no speech detected.")
    t = ev.transcript
    if t is not None and t.text.strip():
        lines.append(f'Transcript: "{t.text.strip()}"')
        if word_times and t.words:
            lines.append("Word times: " + " ".join(f"{w.word.strip('.,!?;:')}@{w.start:.2f}s" for w in t.words))
    return lines


def evidence_to_text(evidence: Evidence, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The evidence as a few lines of text, at most ``max_chars`` long.

    >>> from emoreason.evidence import MediaInfo
    >>> print(evidence_to_text(Evidence(media=MediaInfo(path="a.mp4", duration_s=2.0, has_video=True, has_audio=False))))
    Clip: 2.00 s, video, no audio.
    Face: none found.
    """
    n = len(evidence.au_events)
    for word_times in (True, False):
        for k in sorted({n, 12, 8, 4, 2, 0} & set(range(n + 1)), reverse=True):
            text = "\n".join(_parts(evidence, k, word_times))
            if len(text) <= max_chars:
                return text
    return text[: max(0, max_chars - 3)] + "..."


MAX_OBSERVED = 10  # AUs listed in the observations, strongest first


def strongest_present(ev: Evidence) -> list[tuple[str, float]]:
    """The AUs the evidence shows (:func:`emoreason.reasoning.faithfulness.present_aus`, the notion of present that
    the faithfulness check uses), strongest first, with their peak intensity; ties in AU-number order, so that text
    written from them is the same from one run to the next."""
    from emoreason.reasoning.faithfulness import present_aus

    present = present_aus(ev)
    series = ev.aus.intensities if ev.aus is not None else {}
    peaks = {au: max((v for v in vals if v is not None), default=0.0) for au, vals in series.items()}
    for e in ev.au_events:
        peaks[e.au] = max(peaks.get(e.au, 0.0), e.peak)
    return sorted(((au, peaks.get(au, 0.0)) for au in present), key=lambda x: (-x[1], int(x[0][2:])))


def observations_text(ev: Evidence) -> str:
    """What the perception stage observed, in two or three short lines for the multimodal model's prompt (beside its
    face tokens, when its config says ``prompt_observations``): the AUs present (strongest first, peak intensity, and
    when they happen in a clip), the face reader's top three, and the transcript.

    >>> from emoreason.evidence import MediaInfo
    >>> print(observations_text(Evidence(media=MediaInfo(path="a.mp4", duration_s=2.0, has_video=True, has_audio=False))))
    Facial actions seen: none.
    """
    aus = strongest_present(ev)[:MAX_OBSERVED]
    spans: dict[str, list[str]] = {}
    for e in sorted(ev.au_events, key=lambda e: e.onset):
        spans.setdefault(e.au, []).append(f"{e.onset:.2f}-{e.offset:.2f} s")
    parts = []
    for au, peak in aus:
        when = f" at {', '.join(spans[au][:2])}" if au in spans else ""
        parts.append(f"{au} ({AUS[au].name if au in AUS else '?'}) {peak:.1f}{when}")
    lines = ["Facial actions seen (peak intensity 0-5): " + ", ".join(parts) + "." if parts
             else "Facial actions seen: none."]  # fmt: skip
    top, _ = _mean_top(ev.reader)
    if top:
        lines.append("Face reader: " + ", ".join(f"{k} {p:.2f}" for k, p in top) + ".")
    t = ev.transcript
    if t is not None and t.text.strip():
        lines.append(f'Transcript: "{t.text.strip()}"')
    return "\n".join(lines)
