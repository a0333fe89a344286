"""Face detection, main-face tracking, mesh and head pose on real photos (skimage) and clips made by the fixtures."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from emoreason.errors import MediaError
from emoreason.perception.face import (
    FaceDetector,
    FaceMesh,
    FaceTracker,
    box_iou,
    head_pose,
    roi_from_detection,
    ssd_anchors,
    weighted_nms,
)
from emoreason.perception.visual import analyze_frames
from tests import media_factory as mf


def decode(path):
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield float(frame.time), frame.to_ndarray(format="rgb24")


def still(image: np.ndarray, n: int, fps: float = 25.0):
    return [(i / fps, image) for i in range(n)]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh()


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise (as displayed) about the centre."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h))


def pose_of(image: np.ndarray, detector: FaceDetector, mesh: FaceMesh) -> tuple[float, float, float]:
    (det,) = detector.detect(image)
    lm, presence = mesh.run(image, roi_from_detection(det))
    assert presence > 0.9
    return head_pose(lm)


def test_anchors_layout():
    a = ssd_anchors()
    assert a.shape == (896, 2)
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], [1 / 32, 1 / 32])  # 2 anchors per cell at stride 8
    assert np.allclose(a[512], [1 / 16, 1 / 16]) and np.allclose(a[512:518], a[512])  # 6 per cell at stride 16


def test_box_iou_and_weighted_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    assert box_iou(boxes[0], boxes).round(3).tolist() == [1.0, 0.681, 0.0]
    kept = weighted_nms(boxes, np.array([0.9, 0.6, 0.8]), np.zeros((3, 6, 2)), 0.3)
    assert len(kept) == 2 and kept[0][2] == pytest.approx(0.9)
    assert kept[0][0][0] == pytest.approx(0.6 / 1.5)  # score-weighted mean of the two overlapping boxes


def test_detector_on_photos(detector):
    from skimage import data

    faces = detector.detect(data.astronaut())
    assert len(faces) == 1 and 0.85 < faces[0].score < 0.99
    x0, y0, x1, y1 = faces[0].box
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # her face, upper middle of the photo
    assert detector.detect(data.coffee()) == []


def test_letterbox_keeps_aspect(detector):
    """The same face on a wide canvas is found at the same place (offset), not squashed."""
    img = mf.astronaut()
    wide = np.zeros((512, 640, 3), np.uint8)
    wide[:, 64:576] = img
    (a,) = detector.detect(img)
    (b,) = detector.detect(wide)
    assert np.allclose(b.box - [64, 0, 64, 0], a.box, atol=8)


def test_small_face_in_a_wide_frame_is_found_by_tiles(detector):
    """A 720p frame whose face is too small for the letterboxed pass is searched in square tiles."""
    frame = np.full((720, 1280, 3), 30, np.uint8)
    frame[100:612, 700:1212] = mf.astronaut()
    assert detector._detect_region(frame, 0, 0) == []  # the face is ~12 px in the letterboxed 128x128 input
    faces = detector.detect(frame)
    assert len(faces) == 1 and faces[0].score > 0.5
    assert np.allclose(faces[0].box - [700, 100, 700, 100], detector.detect(mf.astronaut())[0].box, atol=12)


def test_mesh_presence_separates_face_from_not_face(detector, mesh):
    from skimage import data

    img = data.astronaut()
    (det,) = detector.detect(img)
    lm, p_face = mesh.run(img, roi_from_detection(det))
    assert lm.shape == (468, 3) and p_face > 0.99
    assert lm[61, 1] < lm[14, 1] and lm[291, 1] < lm[14, 1]  # smiling: mouth corners above the lower lip centre
    _, p_none = mesh.run(data.coffee(), roi_from_detection(det))
    assert p_none < 0.5


def test_cat_is_not_a_face():
    from skimage import data

    tracker = FaceTracker()
    assert not tracker.step(data.chelsea()).present


def test_head_pose_frontal_flip_rotate(detector, mesh):
    img = mf.astronaut()
    yaw, pitch, roll = pose_of(img, detector, mesh)
    assert abs(yaw) < 10 and abs(pitch) < 15 and abs(roll) < 10
    f_yaw, _, f_roll = pose_of(np.ascontiguousarray(img[:, ::-1]), detector, mesh)
    assert f_roll == pytest.approx(-roll, abs=3) and f_yaw == pytest.approx(-yaw, abs=4)
    _, _, ccw = pose_of(rotate(img, 20), detector, mesh)  # head top to image left = toward the person's right
    _, _, cw = pose_of(rotate(img, -20), detector, mesh)
    assert ccw == pytest.approx(roll - 20, abs=5) and cw == pytest.approx(roll + 20, abs=5)
    assert ccw < 0 < cw


def test_astronaut_clip_face_on_every_frame(astronaut_clip):
    r = analyze_frames(decode(astronaut_clip), fps=25, keep_landmarks=True, keep_crops=True, crop_size=48)
    assert r.face is not None and r.face.coverage >= 0.95
    assert r.face.track_switches == 0 and r.face.max_faces == 1
    assert not any(f.code in ("no_face", "multiple_faces", "low_face_coverage") for f in r.flags)
    n = len(r.face.times)
    assert n == 75 and r.landmarks.shape == (n, 468, 3) and r.crops.shape == (n, 48, 48)
    assert r.crops.dtype == np.uint8 and r.crops.std() > 10
    assert {m.name for m in r.models} == {
        "mediapipe/face_detection_short_range.tflite",
        "mediapipe/face_landmark.tflite",
        "emoreason/face_reader",  # the learned face reader runs by default
    }
    assert all(abs(p.yaw) < 10 for p in r.face.poses)


def test_landscape_clip_has_no_face_no_au(landscape_clip):
    r = analyze_frames(decode(landscape_clip), fps=25, keep_landmarks=True)
    assert r.face is None and r.aus is None and r.au_events == []
    assert [f.code for f in r.flags] == ["no_face"]
    assert np.isnan(r.landmarks).all()


def _no_faces() -> dict[str, np.ndarray]:
    from skimage import data

    return {"landscape": mf.landscape(), "rocket": data.rocket(), "chelsea cat": data.chelsea(),
            "smiley logo": mf.smiley_logo(), "drawn face": mf.drawn_face(),
            "drawn face, title, JPEG 30": mf.drawn_face(skin=(255, 220, 0), title="CARTOON TIME", quality=30),
            "drawn face, JPEG 60": mf.drawn_face(quality=60)}  # fmt: skip


@pytest.mark.parametrize("name", list(_no_faces()))
def test_non_faces_get_no_face_and_no_au(name):
    """Face or not: photos, an animal, a logo and flat-shaded cartoon faces (which the detector and the mesh take for
    faces) get no face track, no AUs and no key frame material."""
    img = np.ascontiguousarray(_no_faces()[name])
    r = analyze_frames([(0.0, img), (0.04, img)], fps=25, reader=False)
    assert r.face is None and r.aus is None and r.au_events == [], name
    assert [f.code for f in r.flags] == ["no_face"]


def test_flat_fraction_separates_photographed_and_drawn_faces():
    from emoreason.perception.face import FLAT_MAX, flat_fraction

    crop = lambda img: cv2.resize(img, (192, 192))  # noqa: E731
    assert flat_fraction(crop(mf.astronaut()[20:260, 130:350])) < 0.1 < FLAT_MAX < flat_fraction(crop(mf.drawn_face()))
    assert flat_fraction(np.zeros((30, 30), np.uint8)) == 1.0


def test_two_faces_main_is_the_large_one(two_faces_clip):
    r = analyze_frames(decode(two_faces_clip), fps=25)
    assert r.face.coverage == 1.0 and r.face.track_switches == 0
    for box in r.face.boxes:
        assert box[2] < 512 and box[2] - box[0] > 80  # inside the large copy, large-face size


def test_track_survives_a_brief_miss():
    img = mf.astronaut()
    blank = np.full_like(img, 90)
    frames = [(i / 25, blank if i in (10, 11) else img) for i in range(30)]
    r = analyze_frames(frames, fps=25)
    assert r.face.present[10] is False and r.face.present[11] is False
    assert r.face.track_switches == 0
    assert r.face.coverage == pytest.approx(28 / 30, abs=1e-3)
    assert r.aus.intensities["AU12"][10] is None and r.aus.intensities["AU12"][12] is not None


def _two_faces(with_big: bool) -> np.ndarray:
    face = mf.astronaut()[30:230, 130:320]  # the face region of the photo, 190x200
    canvas = np.full((512, 768, 3), 40, np.uint8)
    canvas[300:500, 560:750] = face
    if with_big:
        canvas[60:376, 40:340] = mf.resize(face, 300, 316)
    return canvas


def test_two_faces_are_counted_and_flagged():
    r = analyze_frames(still(_two_faces(True), 10), fps=25)
    assert r.face.max_faces == 2 and any(f.code == "multiple_faces" for f in r.flags)
    assert all(box[2] < 400 for box in r.face.boxes)


def test_a_larger_face_takes_over_after_a_few_detector_passes():
    """The track starts on a small face; a clearly larger one that persists becomes the main face (one switch)."""
    frames = [(i / 25, _two_faces(i >= 5)) for i in range(30)]
    r = analyze_frames(frames, fps=25, detect_every=2)
    assert r.face.coverage == 1.0
    assert r.face.boxes[0][0] > 500  # the small face first
    assert r.face.boxes[-1][2] < 400  # the large face at the end
    assert r.face.track_switches == 1


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 8, 3), (5, 300, 3)])
def test_tiny_frames_do_not_crash(shape):
    r = analyze_frames(still(np.zeros(shape, np.uint8), 3), fps=25)
    assert r.face is None and [f.code for f in r.flags] == ["no_face"]


def test_bad_frame_is_a_clear_error():
    with pytest.raises(MediaError, match="frame 1 is not an RGB uint8"):
        analyze_frames([(0.0, mf.astronaut()), (0.04, np.zeros((10, 10), np.float32))], fps=25)


def test_yaw_sign_on_a_turned_face(detector, mesh, monkeypatch):
    """The cameraman of skimage.data.camera() turns toward image right (his left): yaw > 0; mirrored: yaw < 0."""
    from skimage import data

    from emoreason.perception import visual

    img = np.dstack([data.camera()] * 3)
    lm, _ = mesh.run(img, roi_from_detection(FaceDetector(score_threshold=0.3).detect(img)[0]))
    yaw, _, _ = head_pose(lm)
    assert yaw > 30 and lm[1, 0] > (lm[234, 0] + lm[454, 0]) / 2  # nose tip right of the face's middle
    flipped = np.ascontiguousarray(img[:, ::-1])
    lm_f, _ = mesh.run(flipped, roi_from_detection(FaceDetector(score_threshold=0.3).detect(flipped)[0]))
    assert head_pose(lm_f)[0] == pytest.approx(-yaw, abs=6)
    monkeypatch.setattr(visual, "EXTREME_YAW", 30.0)
    r = analyze_frames(still(img, 5), fps=25)
    assert r.face.coverage == 1.0 and any(f.code == "extreme_head_pose" for f in r.flags)


def test_a_cat_beside_a_person_is_not_counted():
    from skimage import data

    canvas = np.zeros((512, 963, 3), np.uint8)
    canvas[:, :512] = data.astronaut()
    canvas[100:400, 512:963] = data.chelsea()  # the detector scores the cat ~0.5 on a tile; the mesh rejects it
    r = analyze_frames(still(canvas, 10), fps=25)
    assert r.face.coverage == 1.0 and r.face.max_faces == 1
    assert not any(f.code == "multiple_faces" for f in r.flags)
    assert all(box[2] < 512 for box in r.face.boxes)


def test_memory_stays_bounded_on_long_hd_streams():
    """Only small per-frame arrays are kept: 160 more 1080p frames (1 GB of pixels) must grow the peak by < 1 MB."""
    import tracemalloc

    frame = np.full((1080, 1920, 3), 50, np.uint8)
    frame[200:968, 576:1344] = cv2.resize(mf.astronaut(), (768, 768))

    def peak(n: int) -> int:
        tracemalloc.start()
        analyze_frames(((i / 25, frame) for i in range(n)), fps=25)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(80), peak(240)
    assert large - small < 2**20, (small, large)


def test_fast_moving_face_is_followed():
    """40 px per frame (~half a face width): velocity prediction and re-centring keep the mesh on the face."""
    img = mf.astronaut()
    frames = []
    for i in range(20):
        canvas = np.full((512, 1400, 3), 40, np.uint8)
        canvas[:, i * 40 : i * 40 + 512] = img
        frames.append((i / 25, canvas))
    r = analyze_frames(frames, fps=25)
    assert r.face.coverage == 1.0 and r.face.track_switches == 0
    x0 = [box[0] - 40 * i for i, box in enumerate(r.face.boxes)]
    assert max(x0) - min(x0) < 12  # the box moves with the face
