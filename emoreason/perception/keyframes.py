"""Key-frame thumbnails, kept during the perception pass so that a report never decodes the clip a second time.

:meth:`ThumbnailSampler.wrap` wraps the stream of analysed frames and keeps a small JPEG of an evenly spaced subset: at most
``2 * keep`` at any time (when full it drops every other one and doubles its stride), so memory stays bounded on long
clips and short clips keep every frame. Once the AU events are known, :meth:`ThumbnailSampler.pick` returns the kept
thumbnails nearest :func:`key_times`: the first and last face frames, the middle one and the apexes of the two strongest
AU events. A photo has one frame, its own thumbnail.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from emoreason.evidence import Evidence, KeyFrame

THUMB_SIDE = 240  # long side of a thumbnail, pixels (the HTML shows them 240 px wide)
JPEG_QUALITY = 70  # ~15 kB of base64 per thumbnail
KEEP = 32  # thumbnails kept at least (up to twice this between two decimations)
MAX_KEY_FRAMES = 4
MIN_GAP_S = 0.3  # key instants closer than this show the same moment


def thumbnail(t: float, frame: np.ndarray, side: int = THUMB_SIDE) -> KeyFrame:
    """An RGB uint8 frame as a :class:`KeyFrame`, downscaled so its long side is at most ``side``."""
    h, w = frame.shape[:2]
    s = min(1.0, side / max(h, w))
    small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # cv2 fails only on an empty or malformed array, which the decoder never yields
        raise ValueError(f"cannot encode a {w}x{h} frame as JPEG")
    return KeyFrame(time=round(float(t), 3), jpeg=base64.b64encode(jpg.tobytes()).decode("ascii"),
                    width=small.shape[1], height=small.shape[0])  # fmt: skip


def key_times(evidence: Evidence, frame_times: list[float]) -> list[float]:
    """2-4 instants worth showing: first, middle and last face frame (all frames without a face) and the apexes of the
    two strongest AU events, at least ``MIN_GAP_S`` apart, in time order."""
    face = evidence.face
    times = frame_times
    if face is not None and face.coverage > 0:
        times = [t for t, p in zip(face.times, face.present, strict=True) if p]
    if not times:
        return []
    picks = [times[0]]
    picks += [e.apex for e in sorted(evidence.au_events, key=lambda e: -e.peak)[:2]]
    picks += [times[len(times) // 2], times[-1]]
    out: list[float] = []
    for t in picks:
        if all(abs(t - u) > MIN_GAP_S for u in out):
            out.append(t)
    return sorted(out[:MAX_KEY_FRAMES])


class ThumbnailSampler:
    """Keeps thumbnails of an evenly spaced subset of the frames that :meth:`wrap` passes through unchanged."""

    def __init__(self, *, keep: int = KEEP, side: int = THUMB_SIDE):
        self.keep, self.side = keep, side
        self.stride = 1
        self.kept: list[tuple[int, KeyFrame]] = []

    def wrap(self, frames: Iterable[tuple[float, np.ndarray]]) -> Iterator[tuple[float, np.ndarray]]:
        for i, (t, frame) in enumerate(frames):
            if i % self.stride == 0:
                self.kept.append((i, thumbnail(t, frame, self.side)))
                if len(self.kept) > 2 * self.keep:
                    self.stride *= 2
                    self.kept = [(j, k) for j, k in self.kept if j % self.stride == 0]
            yield t, frame

    def pick(self, evidence: Evidence) -> list[KeyFrame]:
        """The kept thumbnails nearest the evidence's :func:`key_times`, each once, in time order."""
        if not self.kept:
            return []
        kept = [k for _, k in self.kept]
        out: list[KeyFrame] = []
        for t in key_times(evidence, [k.time for k in kept]):
            best = min(kept, key=lambda k: abs(k.time - t))
            if best not in out:
                out.append(best)
        return sorted(out, key=lambda k: k.time)
