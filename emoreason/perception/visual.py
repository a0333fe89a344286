"""The visual half of perception as one streaming call: frames in, main-face track, AU series, AU events, flags out.

:func:`analyze_frames` consumes ``(time_s, RGB uint8 HxWx3)`` pairs one at a time and keeps only small per-frame arrays
(pose, geometry features, box; optionally the mesh and a small grey crop), so memory stays bounded for long clips.
Meshes are turned into pose and AU features in chunks of ``_CHUNK`` frames with vectorised numpy.
With ``expression=True`` the optional expression classifier (:mod:`emoreason.perception.expression`) reads the aligned
face crop of every frame with the main face (about 0.3 ms each). The learned face reader
(:mod:`emoreason.perception.reader`; ``reader=True``, the default) reads every frame with the main face from its mesh,
geometry features and aligned grey crop, batched per chunk, into ``VisualResult.reader``.

``FaceTrack.scores`` holds the face mesh's presence probability for the main face on each frame (the detector only runs
every few frames, so its score is not available on all of them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from emoreason.errors import MediaError
from emoreason.evidence import AUEvent, AUSeries, ExpressionCue, FaceTrack, HeadPose, ModelVersion, QualityFlag
from emoreason.perception import au as au_mod
from emoreason.perception.face import FaceTracker, face_frame, model_versions, pose_angles, roi_from_landmarks

log = logging.getLogger(__name__)

_CHUNK = 64  # meshes turned into features per batch (bounds the transient arrays to a few MB)
LOW_COVERAGE = 0.5  # below this fraction of frames with the main face: flag low_face_coverage
MULTI_FACE_FRACTION = 0.1  # two or more faces on at least this fraction of detector passes: flag multiple_faces
EXTREME_YAW, EXTREME_PITCH = 45.0, 30.0  # degrees
EXTREME_FRACTION = 0.2  # of face frames beyond those angles: flag extreme_head_pose


@dataclass
class VisualResult:
    face: FaceTrack | None  # None when no face at all
    aus: AUSeries | None
    au_events: list[AUEvent]
    flags: list[QualityFlag]
    models: list[ModelVersion]
    landmarks: np.ndarray | None = None  # (T, 468, 3) float32, NaN where no face; only with keep_landmarks
    crops: np.ndarray | None = None  # (T, size, size) uint8 grey upright face crops, 0 where no face; keep_crops
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent per stage
    expression: ExpressionCue | None = None  # only with expression=True and a face on at least one frame
    reader: ExpressionCue | None = None  # the learned face reader, with reader=True and a face on at least one frame


def _check_frame(i: int, frame: object) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise MediaError(f"frame {i} is not an RGB uint8 HxWx3 image ({desc})")
    return frame


def analyze_frames(
    frames: Iterable[tuple[float, np.ndarray]],
    *,
    fps: float,
    keep_landmarks: bool = False,
    keep_crops: bool = False,
    crop_size: int = 64,
    num_threads: int = 1,
    progress: bool = False,
    total: int | None = None,
    detect_every: int | None = None,
    expression: bool = False,
    expression_model: str | Path | None = None,
    reader: bool = True,
) -> VisualResult:
    """Track the main face, estimate head pose and AU intensities, and find AU events in a stream of frames.

    ``fps`` is the rate of the frames given (it sets the smoothing window, the detector period — by default about every
    0.2 s — and how many frames a track survives without a face, about 0.25 s and at least 3).

    ``expression`` adds the optional expression cue (``expression_model``: a TFLite file, default the one in the
    installed ``fer`` package; a missing or unusable model raises :class:`~emoreason.errors.ModelError` before any frame
    is read).

    ``reader`` runs the learned face reader (shipped weights, hash-checked when loaded) on every frame with the face.
    """
    import time

    from tqdm import tqdm

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    tracker = FaceTracker(num_threads=num_threads, detect_every=detect_every or max(1, round(fps / 5)),
                          max_missed=max(3, round(fps / 4)))  # fmt: skip
    times: list[float] = []
    boxes: list[list[float] | None] = []
    scores: list[float | None] = []
    n_faces: list[int] = []
    feats: list[np.ndarray] = []  # per chunk (k, F)
    angles: list[np.ndarray] = []  # per chunk (k, 3)
    present_idx: list[int] = []
    pending: list[np.ndarray] = []
    kept_lm: list[np.ndarray] = []
    crops: list[np.ndarray] = []
    blank_crop = np.zeros((crop_size, crop_size), np.uint8)
    t_track = t_geom = t_expr = 0.0
    classifier = None
    expr_probs: list[list[float] | None] = []
    face_reader = None
    reader_crops: list[np.ndarray] = []  # per pending frame, the reader's 64x64 grey crop
    reader_probs: list[np.ndarray] = []  # per chunk (k, 7)
    t_reader = 0.0
    if reader:
        from emoreason.perception.reader import CROP_SCALE, CROP_SIZE, shared_reader

        face_reader = shared_reader()
    if expression:
        from emoreason.perception.expression import ExpressionClassifier, face_crop

        classifier = ExpressionClassifier(expression_model, num_threads=num_threads)

    def flush() -> None:
        nonlocal t_geom, t_reader
        if pending:
            t0 = time.perf_counter()
            lm = np.stack(pending)
            feats.append(au_mod.geometry_features(lm))
            angles.append(pose_angles(face_frame(lm)))
            pending.clear()
            t_geom += time.perf_counter() - t0
            if face_reader is not None:
                t0 = time.perf_counter()
                reader_probs.append(face_reader.predict(lm, feats[-1], np.stack(reader_crops)))
                reader_crops.clear()
                t_reader += time.perf_counter() - t0

    bar = tqdm(frames, total=total, disable=not progress, unit="frame", desc="face")
    for i, (t, frame) in enumerate(bar):
        frame = _check_frame(i, frame)
        t0 = time.perf_counter()
        ff = tracker.step(frame)
        t_track += time.perf_counter() - t0
        times.append(float(t))
        if ff.n_faces is not None:
            n_faces.append(ff.n_faces)
        if ff.present:
            boxes.append([round(float(v), 1) for v in ff.box])
            scores.append(round(ff.score, 4))
            present_idx.append(i)
            pending.append(ff.landmarks)
            if face_reader is not None:
                rgb = roi_from_landmarks(ff.landmarks, scale=CROP_SCALE).crop(frame, CROP_SIZE)
                reader_crops.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
            if len(pending) >= _CHUNK:
                flush()
            if keep_crops:
                grey = roi_from_landmarks(ff.landmarks, scale=1.2).crop(frame, crop_size)
                crops.append(cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY))
            if classifier is not None:
                t0 = time.perf_counter()
                p = classifier.predict(face_crop(frame, ff.landmarks))
                expr_probs.append([round(float(v), 4) for v in p])
                t_expr += time.perf_counter() - t0
        else:
            boxes.append(None)
            scores.append(None)
            if keep_crops:
                crops.append(blank_crop)
            if classifier is not None:
                expr_probs.append(None)
        if keep_landmarks:
            kept_lm.append(ff.landmarks.astype(np.float32) if ff.present else np.full((468, 3), np.nan, np.float32))
    flush()
    bar.close()

    n = len(times)
    present = np.zeros(n, bool)
    present[present_idx] = True
    feat_all = np.full((n, len(au_mod.FEATURES)), np.nan)
    pose_all = np.full((n, 3), np.nan)
    if present_idx:
        feat_all[present_idx] = np.concatenate(feats)
        pose_all[present_idx] = np.concatenate(angles)

    models = model_versions()
    cue = None
    if classifier is not None:
        models.append(classifier.version())
        if present_idx:
            from emoreason.perception.expression import LABELS

            cue = ExpressionCue(model=models[-1].name, labels=list(LABELS), times=times, probs=expr_probs)

    reader_cue = None
    if face_reader is not None:
        models.append(face_reader.version())
        if present_idx:
            from emoreason.perception.reader import LABELS as READER_LABELS

            rows: list[list[float] | None] = [None] * n
            for i, p in zip(present_idx, np.concatenate(reader_probs), strict=True):
                rows[i] = [round(float(v), 4) for v in p]
            reader_cue = ExpressionCue(model=models[-1].name, labels=list(READER_LABELS), times=times, probs=rows)

    flags: list[QualityFlag] = []
    coverage = float(present.mean()) if n else 0.0
    face = aus = None
    events: list[AUEvent] = []
    if not present_idx:
        msg = f"no face found in any of the {n} analysed frames" if n else "no frames to analyse"
        flags.append(QualityFlag(code="no_face", message=msg))
    else:
        poses = [HeadPose(yaw=round(float(p[0]), 2), pitch=round(float(p[1]), 2), roll=round(float(p[2]), 2))
                 if ok else None for p, ok in zip(pose_all, present, strict=True)]  # fmt: skip
        face = FaceTrack(times=times, present=present.tolist(), boxes=boxes, scores=scores, poses=poses,
                         coverage=round(coverage, 4), max_faces=max(n_faces, default=1),
                         track_switches=tracker.switches)  # fmt: skip
        t0 = time.perf_counter()
        aus = au_mod.au_series(times, feat_all, fps=fps)
        events = au_mod.au_events(aus)
        t_geom += time.perf_counter() - t0
        if coverage < LOW_COVERAGE:
            flags.append(QualityFlag(code="low_face_coverage",
                                     message=f"the main face is visible in {coverage:.0%} of frames"))  # fmt: skip
        multi = sum(k >= 2 for k in n_faces)
        if n_faces and multi / len(n_faces) >= MULTI_FACE_FRACTION:
            flags.append(QualityFlag(code="multiple_faces", message=f"up to {max(n_faces)} faces seen; "
                                     f"the largest, most central, most persistent one is analysed"))  # fmt: skip
        p = pose_all[present]
        extreme = (np.abs(p[:, 0]) > EXTREME_YAW) | (np.abs(p[:, 1]) > EXTREME_PITCH)
        if extreme.mean() >= EXTREME_FRACTION:
            flags.append(QualityFlag(code="extreme_head_pose", message=f"head turned beyond {EXTREME_YAW:.0f} deg yaw "
                                     f"or {EXTREME_PITCH:.0f} deg pitch in {extreme.mean():.0%} of face frames; "
                                     "AU estimates there are less reliable"))  # fmt: skip
    return VisualResult(
        face=face,
        aus=aus,
        au_events=events,
        flags=flags,
        models=models,
        landmarks=np.stack(kept_lm)
        if keep_landmarks and kept_lm
        else (np.zeros((0, 468, 3), np.float32) if keep_landmarks else None),  # fmt: skip
        crops=np.stack(crops)
        if keep_crops and crops
        else (np.zeros((0, crop_size, crop_size), np.uint8) if keep_crops else None),  # fmt: skip
        timings={"track_s": t_track, "geometry_au_s": t_geom}
        | ({"expression_s": t_expr} if expression else {})
        | ({"reader_s": t_reader} if reader else {}),
        expression=cue,
        reader=reader_cue,
    )
