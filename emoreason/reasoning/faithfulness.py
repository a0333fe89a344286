"""Faithfulness of a reasoning text to the evidence: every AU and time it cites must be in the evidence.

An AU is supported when the evidence has an event for it (or its series reaches the occurrence threshold). A time is
supported when it lies within a tolerance of an AU event's onset, apex or offset, or of a transcript word's start or
end. The parsing is :mod:`emoreason.parsing`'s (``find_aus``, ``find_times``), the same that rewards and metrics use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emoreason.evidence import Evidence
from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD
from emoreason.parsing import find_aus, find_times, parse_output

TIME_TOLERANCE_S = 0.25  # at least this; widened to two analysed frames for low frame rates


@dataclass
class FaithfulnessResult:
    unsupported_aus: list[str] = field(default_factory=list)
    unsupported_times: list[float] = field(default_factory=list)
    n_claims: int = 0
    score: float = 1.0  # supported claims / claims; 1.0 when nothing is claimed

    @property
    def ok(self) -> bool:
        return not self.unsupported_aus and not self.unsupported_times


def supported_aus(ev: Evidence) -> set[str]:
    aus = {e.au for e in ev.au_events}
    if ev.aus is not None:
        for au, vals in ev.aus.intensities.items():
            if any(v is not None and v >= OCCURRENCE_THRESHOLD for v in vals):
                aus.add(au)
    return aus


def anchor_times(ev: Evidence) -> list[float]:
    times = [t for e in ev.au_events for t in (e.onset, e.apex, e.offset)]
    if ev.transcript is not None:
        times += [t for w in ev.transcript.words for t in (w.start, w.end)]
    return times


def check_faithfulness(text: str, evidence: Evidence) -> FaithfulnessResult:
    """Check the reasoning in ``text`` (its ``<think>`` block when there is one, else the whole text).

    >>> from emoreason.evidence import AUEvent, MediaInfo
    >>> ev = Evidence(media=MediaInfo(path="a.mp4", duration_s=3, has_video=True, has_audio=False),
    ...               au_events=[AUEvent(au="AU12", onset=0.5, apex=1.0, offset=2.0, peak=3.0, mean=2.5)])
    >>> r = check_faithfulness("AU12 from 0.5 s to 2.0 s; AU4 at 2.8 s", ev)
    >>> (r.unsupported_aus, r.unsupported_times, r.score)
    (['AU4'], [2.8], 0.6)
    """
    p = parse_output(text)
    think = p.think if p.think is not None else text
    aus = find_aus(think)
    times = list(dict.fromkeys(find_times(think)))
    ok_aus = supported_aus(evidence)
    anchors = anchor_times(evidence)
    tol = max(TIME_TOLERANCE_S, 2.0 / evidence.media.sample_fps) if evidence.media.sample_fps else TIME_TOLERANCE_S
    bad_aus = [a for a in aus if a not in ok_aus]
    bad_times = [t for t in times if not any(abs(t - a) <= tol for a in anchors)]
    n = len(aus) + len(times)
    score = 1.0 - (len(bad_aus) + len(bad_times)) / n if n else 1.0
    return FaithfulnessResult(bad_aus, bad_times, n, round(score, 4))
