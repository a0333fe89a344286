"""Face detection, main-face tracking, the 468-point face mesh and head pose.

Owns the two shipped TensorFlow Lite models (``emoreason/assets/face``), run through ``ai-edge-litert``:

- **BlazeFace short range** (``face_detection_short_range.tflite``): the frame is letterboxed to a square (aspect kept),
  resized to 128x128 in [-1, 1]; 896 SSD anchors (16x16x2 at stride 8, 8x8x6 at stride 16, fixed size 1, offset 0.5);
  box and 6 keypoints regressed in units of 1/128; sigmoid scores; weighted non-maximum suppression.
- **Face mesh** (``face_landmark.tflite``): a 192x192 crop in [0, 1] of a square region around the face, enlarged 1.5x and
  rotated upright by the eye line; outputs 468 (x, y, z) points in crop pixels and a face-presence logit.

:class:`FaceTracker` follows one MAIN face the way MediaPipe does it cheaply: the detector runs every ``detect_every``
frames (and whenever the track is in doubt); between, the mesh runs on the region found from the previous frame's
landmarks, moved by the face's velocity (and run a second time, re-centred, when the face sits far off the crop centre).
The main face is chosen by size and centrality, kept by continuity (IoU with, or nearness to, the previous box), survives
a few missed frames, and is only replaced by a clearly larger/more central face seen on several detector passes.

Head pose is solvePnP-free: :func:`face_frame` builds the face's own orthonormal axes from the mesh (left-right from six
bilateral landmark pairs, down from the forehead-to-nose-base midline), which gives a rotation matrix, yaw/pitch/roll,
and the pose-normalised landmarks the AU step uses. Zero pitch = the forehead-to-nose-base line parallel to the image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from emoreason.assets import FACE_MODELS, face_model_path
from emoreason.errors import ModelError
from emoreason.evidence import ModelVersion

log = logging.getLogger(__name__)

DETECTOR_FILE = "face_detection_short_range.tflite"
MESH_FILE = "face_landmark.tflite"
N_LANDMARKS = 468

# Landmark indices of the 468-point topology used here (the person's right side is on the image left).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER = 33, 133, 362, 263
FOREHEAD, CHIN = 10, 152
# Bilateral pairs (person's right, person's left) on rigid parts of the face: eye corners, temples, cheekbones, jaw.
BILATERAL_PAIRS = np.array([(33, 263), (133, 362), (234, 454), (127, 356), (93, 323), (132, 361)])
# Midline: forehead points and the nose base (subnasale, both alar bases). Rigid: the jaw, lips and nose tip are left out,
# so opening the mouth does not read as pitch. Zero pitch = this forehead-to-nose-base line parallel to the image plane.
MIDLINE_TOP = np.array([10, 151, 9])
MIDLINE_BOTTOM = np.array([2, 98, 327])
MAX_COUNTED = 64  # faces counted per frame at most (one mesh run each, ~1.5 ms, only on detector passes)
# Face or not. A new face (a track's start, or another face counted) needs the detector score (``main_score`` /
# ``other_score``), the mesh's presence logit >= 0, and a face region that is not flat-shaded: drawn faces (cartoons,
# logos, emoji) pass the detector and the mesh (a drawn face with eyes, brows, nose and mouth: detector 0.84, presence
# logit 9.7, while the 5th percentile of real dev photos is 8.5), but their fills are flat. FLAT_MAX bounds the fraction
# of the face region (the central 2/3 of the mesh crop, grey) whose 3x3 neighbourhood varies by under FLAT_SD grey
# levels: on the 1,049 real-faces dev photos it is at most 0.31 (99th percentile 0.19); on drawn faces 0.85-0.92, and
# 0.58-0.72 after JPEG at quality 30-60 or a blur (bench/face_gate.py measures both).
FLAT_SD = 0.5
FLAT_MAX = 0.45


def model_versions() -> list[ModelVersion]:
    """The two face models with their hashes, for ``Evidence.models``."""
    return [ModelVersion(name=f"mediapipe/{name}", version=FACE_MODELS[name][0], sha256=FACE_MODELS[name][2])
            for name in (DETECTOR_FILE, MESH_FILE)]  # fmt: skip


def _interpreter(name: str, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    path = face_model_path(name)
    try:
        interp = Interpreter(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"cannot load face model: {e}", path) from e
    return interp


# ----------------------------------------------------------------------------------------------------------- detection
@dataclass
class Detection:
    """One detected face: box ``[x0, y0, x1, y1]`` and 6 keypoints ``(x, y)`` in frame pixels, score in [0, 1].

    Keypoints: right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion (person's sides).
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


def ssd_anchors() -> np.ndarray:
    """The 896 anchor centres (x, y) in [0, 1] of BlazeFace short range, in the model's output order."""
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float) -> list[tuple]:
    """MediaPipe-style weighted NMS: each kept face is the score-weighted mean of the boxes overlapping it.

    Returns ``(box, points, score)`` tuples, best first.
    """
    order = np.argsort(-scores)
    remaining = list(order)
    kept = []
    while remaining:
        top = remaining[0]
        ious = box_iou(boxes[top], boxes[remaining])
        group = [remaining[i] for i in np.nonzero(ious > iou_threshold)[0]] or [top]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        pts = (points[group] * w[:, :, None]).sum(0) / w.sum()
        kept.append((box, pts, float(scores[top])))
        gset = set(group)
        remaining = [r for r in remaining if r not in gset]
    return kept


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box with each row of ``boxes``."""
    boxes = np.atleast_2d(boxes)
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class FaceDetector:
    """BlazeFace short range on a letterboxed frame."""

    SIZE = 128
    TILE_BELOW = 0.5

    def __init__(self, *, num_threads: int = 1, score_threshold: float = 0.5, iou_threshold: float = 0.3):
        self.interp = _interpreter(DETECTOR_FILE, num_threads)
        self._in = self.interp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.interp.get_output_details()}
        self._reg, self._cls = outs["regressors"], outs["classificators"]
        self.anchors = ssd_anchors()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self._canvas = np.zeros((self.SIZE, self.SIZE, 3), np.float32)

    def detect(self, rgb: np.ndarray, *, tiles: bool = True) -> list[Detection]:
        """All faces in an RGB uint8 frame, best first.

        The whole frame is letterboxed first. Short-range BlazeFace misses faces under ~1/8 of the long side, so when a
        wide or tall frame gives no confident face (score >= ``TILE_BELOW``) and ``tiles`` is set, overlapping square
        tiles along its long side are searched too (one detector run per tile, only on such frames).
        """
        h, w = rgb.shape[:2]
        found = self._detect_region(rgb, 0, 0)
        short, long_ = min(h, w), max(h, w)
        if not tiles or long_ < 1.25 * short or any(d.score >= self.TILE_BELOW for d in found):
            return found
        n_tiles = int(np.ceil(long_ / short)) + 1
        for s0 in np.linspace(0, long_ - short, n_tiles).round().astype(int):
            tile = rgb[:, s0 : s0 + short] if w > h else rgb[s0 : s0 + short]
            for d in self._detect_region(tile, s0 if w > h else 0, 0 if w > h else s0):
                same = [k for k, f in enumerate(found) if box_iou(d.box, f.box[None])[0] >= self.iou_threshold]
                if not same:
                    found.append(d)
                elif d.score > found[same[0]].score:
                    found[same[0]] = d
        return sorted(found, key=lambda d: -d.score)

    def _detect_region(self, rgb: np.ndarray, ox: int, oy: int) -> list[Detection]:
        h, w = rgb.shape[:2]
        s = self.SIZE / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        px, py = (self.SIZE - nw) // 2, (self.SIZE - nh) // 2
        canvas = self._canvas
        canvas.fill(-1.0)  # letterbox padding is black in [-1, 1]
        canvas[py : py + nh, px : px + nw] = small * (2.0 / 255.0) - 1.0
        self.interp.set_tensor(self._in, canvas[None])
        self.interp.invoke()
        logits = self.interp.get_tensor(self._cls)[0, :, 0]
        keep = np.nonzero(logits > -np.log(1.0 / self.score_threshold - 1.0))[0]
        if keep.size == 0:
            return []
        raw = self.interp.get_tensor(self._reg)[0, keep] / self.SIZE
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -100, 100)))
        anchors = self.anchors[keep]
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        boxes = np.stack([cx - raw[:, 2] / 2, cy - raw[:, 3] / 2, cx + raw[:, 2] / 2, cy + raw[:, 3] / 2], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        dets = []
        for box, pts, score in weighted_nms(boxes, scores, points, self.iou_threshold):
            # canvas units [0, 1] -> frame pixels
            box = (box * self.SIZE - [px, py, px, py]) / s + [ox, oy, ox, oy]
            pts = (pts * self.SIZE - [px, py]) / s + [ox, oy]
            dets.append(Detection(box=box.astype(np.float32), keypoints=pts.astype(np.float32), score=score))
        return dets


# ------------------------------------------------------------------------------------------------------------------ mesh
@dataclass
class Roi:
    """A square, rotated region of the frame: centre, side (pixels) and angle (radians, of the face's eye line)."""

    cx: float
    cy: float
    size: float
    angle: float

    def crop_to_frame(self, out_size: int) -> np.ndarray:
        """2x3 affine map from crop pixels (``out_size`` square) to frame pixels."""
        k = self.size / out_size
        c, s = np.cos(self.angle) * k, np.sin(self.angle) * k
        half = out_size / 2.0
        return np.array([[c, -s, self.cx - c * half + s * half], [s, c, self.cy - s * half - c * half]], np.float32)

    def crop(self, image: np.ndarray, out_size: int) -> np.ndarray:
        """The upright square crop of ``image`` (zero outside the frame)."""
        m = self.crop_to_frame(out_size)
        return cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)  # fmt: skip


def roi_from_detection(det: Detection, scale: float = 1.5) -> Roi:
    """MediaPipe's detection-to-ROI: the box centre, its long side times ``scale``, rotated by the eye line."""
    (x0, y0, x1, y1), (re, le) = det.box, det.keypoints[:2]
    angle = float(np.arctan2(le[1] - re[1], le[0] - re[0]))
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale, angle)


def roi_from_landmarks(lm: np.ndarray, scale: float = 1.5) -> Roi:
    """MediaPipe's landmarks-to-ROI: the landmarks' box in the eye-line frame, long side times ``scale``."""
    d = lm[LEFT_EYE_OUTER, :2] - lm[RIGHT_EYE_OUTER, :2]
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(angle), np.sin(angle)
    xy = lm[:, :2]
    u = xy[:, 0] * c + xy[:, 1] * s  # coordinates in the rotated frame
    v = -xy[:, 0] * s + xy[:, 1] * c
    uc, vc = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    size = max(u.max() - u.min(), v.max() - v.min()) * scale
    return Roi(float(uc * c - vc * s), float(uc * s + vc * c), float(size), angle)


def landmarks_box(lm: np.ndarray) -> np.ndarray:
    return np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()], np.float32)


class FaceMesh:
    """The 468-point face mesh on a rotated square ROI."""

    SIZE = 192

    def __init__(self, *, num_threads: int = 1, presence_threshold: float = 0.5):
        self.interp = _interpreter(MESH_FILE, num_threads)
        self._in = self.interp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.interp.get_output_details()}
        self._lm, self._presence = outs["conv2d_21"], outs["conv2d_31"]
        self.presence_threshold = presence_threshold
        self.last_crop = np.zeros((self.SIZE, self.SIZE, 3), np.uint8)  # the crop of the latest run

    def run(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Landmarks ``(468, 3)`` in frame pixels (z in pixels, relative depth) and the face-presence probability."""
        crop = roi.crop(rgb, self.SIZE)
        self.last_crop = crop
        self.interp.set_tensor(self._in, (crop[None].astype(np.float32) * (1.0 / 255.0)))
        self.interp.invoke()
        logit = float(self.interp.get_tensor(self._presence).reshape(-1)[0])
        raw = self.interp.get_tensor(self._lm).reshape(N_LANDMARKS, 3)
        m = roi.crop_to_frame(self.SIZE)
        lm = np.empty_like(raw)
        lm[:, :2] = raw[:, :2] @ m[:, :2].T + m[:, 2]
        lm[:, 2] = raw[:, 2] * (roi.size / self.SIZE)
        return lm, float(1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50))))


def flat_fraction(crop: np.ndarray) -> float:
    """Fraction of a face crop's central 2/3 (RGB or grey uint8) whose 3x3 neighbourhood has a grey-level standard
    deviation under ``FLAT_SD``: near 0 on photographed skin, high on flat-shaded drawings."""
    g = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    h, w = g.shape[:2]
    g = g[h // 6 : h - h // 6, w // 6 : w - w // 6].astype(np.float32)
    m = cv2.blur(g, (3, 3))
    sd = np.sqrt(np.maximum(cv2.blur(g * g, (3, 3)) - m * m, 0.0))
    return float((sd < FLAT_SD).mean())


# ------------------------------------------------------------------------------------------------------------ head pose
def face_frame(lm: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` whose columns are the face's right-to-left, down and backward axes in camera
    coordinates (x right, y down, z away from the camera). Works on ``(468, 3)`` or ``(T, 468, 3)``.
    """
    lm = np.asarray(lm, dtype=np.float64)
    ex = (lm[..., BILATERAL_PAIRS[:, 1], :] - lm[..., BILATERAL_PAIRS[:, 0], :]).sum(-2)
    ex /= np.linalg.norm(ex, axis=-1, keepdims=True)
    down = lm[..., MIDLINE_BOTTOM, :].mean(-2) - lm[..., MIDLINE_TOP, :].mean(-2)
    ey = down - (down * ex).sum(-1, keepdims=True) * ex
    ey /= np.linalg.norm(ey, axis=-1, keepdims=True)
    ez = np.cross(ex, ey)
    return np.stack([ex, ey, ez], axis=-1)


def pose_angles(rot: np.ndarray) -> np.ndarray:
    """``(..., 3)`` yaw, pitch, roll in degrees from :func:`face_frame` rotations.

    Signs follow ``evidence.HeadPose``: yaw + = the person turns to their left (nose toward image right), pitch + =
    head up, roll + = head tilts to their left (their left eye lower in the image).
    """
    ex, ez = rot[..., :, 0], rot[..., :, 2]
    yaw = np.degrees(np.arctan2(-ez[..., 0], ez[..., 2]))
    pitch = np.degrees(np.arctan2(ez[..., 1], np.hypot(ez[..., 0], ez[..., 2])))
    roll = np.degrees(np.arctan2(ex[..., 1], ex[..., 0]))
    return np.stack([yaw, pitch, roll], axis=-1)


def head_pose(lm: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) of one ``(468, 3)`` mesh."""
    yaw, pitch, roll = pose_angles(face_frame(lm))
    return float(yaw), float(pitch), float(roll)


# ------------------------------------------------------------------------------------------------------------- tracking
@dataclass
class FrameFace:
    """What the tracker found in one frame about the main face."""

    present: bool
    n_faces: int | None = None  # faces counted this frame; None when the detector did not run
    box: np.ndarray | None = None
    score: float | None = None  # mesh face-presence probability
    landmarks: np.ndarray | None = None
    roi: Roi | None = None


@dataclass
class _Track:
    roi: Roi  # where the mesh looks on the next frame (last landmarks' region, moved by the velocity)
    box: np.ndarray
    missed: int = 0
    challenger_hits: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre motion, pixels per frame


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _priority(box: np.ndarray, shape: tuple[int, ...]) -> float:
    """Main-face priority: relative size, discounted by distance from the frame centre."""
    h, w = shape[:2]
    size = np.sqrt(max(box[2] - box[0], 0) * max(box[3] - box[1], 0)) / np.sqrt(w * h)
    cx, cy = (box[0] + box[2]) / 2 / w - 0.5, (box[1] + box[3]) / 2 / h - 0.5
    return float(size * (1.0 - 0.5 * min(np.hypot(cx, cy) / 0.7071, 1.0)))


@dataclass
class FaceTracker:
    """Follows one main face through a stream of frames. Call :meth:`step` once per frame, in order.

    ``detect_every``: detector period in frames while the mesh keeps the track (1 = every frame).
    ``max_missed``: frames a track survives without a face before it is dropped.
    ``switch_after``: detector passes on which another face must clearly outrank the main one before it takes over.
    """

    num_threads: int = 1
    detect_every: int = 5
    max_missed: int = 10
    switch_after: int = 3
    iou_same: float = 0.3
    recentre: float = 0.05  # re-run the mesh when the face sits this far (fraction of the crop) off the crop centre
    near: float = 1.5  # a detection this many face sizes from the track still continues it (fast motion)
    main_score: float = 0.4  # detector score needed to start a track (the mesh must confirm it too)
    other_score: float = 0.3  # lower score at which another face counts, once the mesh confirms it
    flat_max: float | None = FLAT_MAX  # a new face's flat-shaded fraction must not exceed this (None: no check)
    detector: FaceDetector = field(init=False)
    mesh: FaceMesh = field(init=False)
    track: _Track | None = field(init=False, default=None)
    switches: int = field(init=False, default=0)
    acquired: int = field(init=False, default=0)
    _i: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.detect_every < 1 or self.max_missed < 0:
            raise ValueError("detect_every must be >= 1 and max_missed >= 0")
        self.detector = FaceDetector(num_threads=self.num_threads, score_threshold=self.other_score)
        self.mesh = FaceMesh(num_threads=self.num_threads)

    def _same(self, box: np.ndarray, other: np.ndarray) -> bool:
        """Continuity: the boxes overlap (IoU) or ``other``'s centre is within ``near`` face sizes of ``box``'s."""
        if box_iou(box, other[None])[0] >= self.iou_same:
            return True
        size = max(box[2] - box[0], box[3] - box[1])
        return bool(np.linalg.norm(_centre(other) - _centre(box)) <= self.near * size)

    def _mesh_on(self, rgb: np.ndarray, roi: Roi, new: bool = False) -> tuple[np.ndarray, float] | None:
        """The mesh on ``roi`` when it confirms a face; a ``new`` face (not the one tracked) must also not be flat-shaded
        (:func:`flat_fraction`, see ``FLAT_MAX``)."""
        lm, presence = self.mesh.run(rgb, roi)
        if presence < self.mesh.presence_threshold:
            return None
        if new and self.flat_max is not None and flat_fraction(self.mesh.last_crop) > self.flat_max:
            return None
        return lm, presence

    def step(self, rgb: np.ndarray) -> FrameFace:
        i, self._i = self._i, self._i + 1
        if rgb.ndim != 3 or rgb.shape[0] < 8 or rgb.shape[1] < 8:
            return self._miss(None)
        tr = self.track
        hit = self._mesh_on(rgb, tr.roi) if tr is not None else None
        if hit is not None:
            # a face far off the crop centre (fast motion) gets biased landmarks: look again, centred on them
            shift = np.hypot(*(_centre(landmarks_box(hit[0])) - [tr.roi.cx, tr.roi.cy]))
            if shift > self.recentre * tr.roi.size:
                hit = self._mesh_on(rgb, roi_from_landmarks(hit[0])) or hit
        dets, n = None, None
        if tr is None or hit is None or i % self.detect_every == 0:
            # tiles (small faces in wide frames) on the periodic passes and while the track is lost; a face-less
            # stretch stays cheap
            dets = self.detector.detect(rgb, tiles=i % self.detect_every == 0 or tr is not None)
            n = self._count_faces(rgb, dets, landmarks_box(hit[0]) if hit is not None else tr.box if tr else None)
            dets = [d for d in dets if d.score >= self.main_score]
        if hit is not None:
            box = landmarks_box(hit[0])
            if dets:
                self._challenge(rgb, box, dets)
                if self.track is not tr:  # a clearly better face took over
                    return self._from_detection(rgb, dets, n)
            return self._keep(hit, box, n)
        if not dets:
            return self._miss(n)
        return self._from_detection(rgb, dets, n)

    def _count_faces(self, rgb: np.ndarray, dets: list[Detection], known: np.ndarray | None) -> int:
        """Faces in the frame that the mesh confirms. A detection on the main face (``known`` box) needs no new mesh run;
        others, down to ``other_score`` (a second face in the frame lowers the detector's score for the smaller one),
        are checked with the mesh, so an animal or a pattern is not counted as a person. Every detection is checked (a
        group photo counts all its faces); ``MAX_COUNTED`` only bounds the mesh runs on a frame full of false hits."""
        n = 0
        if known is not None and any(self._same(known, d.box) for d in dets):
            n, dets = 1, [d for d in dets if not self._same(known, d.box)]
        return n + sum(self._mesh_on(rgb, roi_from_detection(d), new=True) is not None for d in dets[:MAX_COUNTED])

    def _challenge(self, rgb: np.ndarray, box: np.ndarray, dets: list[Detection]) -> None:
        """Count detector passes on which another face clearly outranks the main one; replace the track after enough."""
        tr = self.track
        own = _priority(box, rgb.shape)
        others = [d for d in dets if not self._same(box, d.box)]
        if others and max(_priority(d.box, rgb.shape) for d in others) > 1.5 * own:
            tr.challenger_hits += 1
            if tr.challenger_hits >= self.switch_after:
                log.debug("main face replaced by a larger/more central face at frame %d", self._i - 1)
                self.track = None
        else:
            tr.challenger_hits = 0

    def _from_detection(self, rgb: np.ndarray, dets: list[Detection], n: int | None) -> FrameFace:
        """Start or re-find the main face from detections; a live track only accepts a face where it was (or near)."""
        tr = self.track
        ranked = sorted(dets, key=lambda d: -_priority(d.box, rgb.shape))
        if tr is not None:
            ranked = [d for d in ranked if self._same(tr.box, d.box)]
        for det in ranked:
            hit = self._mesh_on(rgb, roi_from_detection(det), new=tr is None)
            if hit is None:
                continue  # a detection the mesh does not confirm (e.g. an animal face)
            box = landmarks_box(hit[0])
            if tr is None:
                self.switches += self.acquired > 0
                self.acquired += 1
                self.track = _Track(roi=roi_from_landmarks(hit[0]), box=box)
            else:
                tr.missed = 1  # re-found from a detection: no velocity from a stale box
            return self._keep(hit, box, n)
        return self._miss(n)

    def _keep(self, hit: tuple[np.ndarray, float], box: np.ndarray, n: int | None) -> FrameFace:
        lm, presence = hit
        tr = self.track
        roi = roi_from_landmarks(lm)
        # constant-velocity prediction keeps a moving face centred in the next crop (the mesh lags off-centre faces)
        tr.velocity = _centre(box) - _centre(tr.box) if tr.missed == 0 else np.zeros(2)
        tr.roi = Roi(roi.cx + tr.velocity[0], roi.cy + tr.velocity[1], roi.size, roi.angle)
        tr.box, tr.missed = box, 0
        return FrameFace(True, n, box, presence, lm, roi)

    def _miss(self, n: int | None) -> FrameFace:
        if self.track is not None:
            tr = self.track
            tr.box = tr.box + np.tile(tr.velocity, 2)  # keep predicting where a moving face went
            tr.roi = Roi(tr.roi.cx + tr.velocity[0], tr.roi.cy + tr.velocity[1], tr.roi.size, tr.roi.angle)
            tr.missed += 1
            if self.track.missed > self.max_missed:
                self.track = None
        return FrameFace(False, n)
