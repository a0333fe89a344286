"""Geometric AU intensities, the neutral reference (population prior + per-clip adaptation) and AU events."""

from __future__ import annotations

import numpy as np
import pytest

from emoreason.knowledge.facs import PERCEIVED_AUS
from emoreason.perception import au
from emoreason.perception.face import FaceDetector, FaceMesh, roi_from_detection
from emoreason.perception.visual import analyze_frames
from tests import media_factory as mf


@pytest.fixture(scope="module")
def astronaut_mesh() -> np.ndarray:
    img = mf.astronaut()
    (det,) = FaceDetector().detect(img)
    lm, _ = FaceMesh().run(img, roi_from_detection(det))
    return lm


def test_rules_cover_the_perceived_aus_and_features():
    assert set(au.AU_RULES) == set(PERCEIVED_AUS)
    assert set(au.NEUTRAL_PRIOR) == set(au.FEATURES) == set(au.PRIOR_SPREAD) == set(au.RESTING_SIDE)
    for terms in au.AU_RULES.values():
        assert all(name in au.FEATURES and unit > 0 for name, _, unit, _ in terms)


def test_features_ignore_head_rotation_and_scale(astronaut_mesh):
    """Pose normalisation: a rotated (yaw 20, pitch 10, roll 15 deg), scaled, shifted mesh gives the same features."""
    a, b, c = np.radians([20.0, 10.0, 15.0])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    moved = (astronaut_mesh @ (rz @ rx @ ry).T) * 2.5 + [300.0, -40.0, 7.0]
    f0 = au.geometry_features(astronaut_mesh)
    f1 = au.geometry_features(moved)
    assert np.allclose(f0, f1, atol=1e-6)


def test_nan_landmarks_give_nan_features_and_none_intensities(astronaut_mesh):
    lm = np.stack([astronaut_mesh, np.full_like(astronaut_mesh, np.nan), astronaut_mesh])
    feats = au.geometry_features(lm)
    assert np.isnan(feats[1]).all() and not np.isnan(feats[0]).any()
    series = au.au_series([0.0, 0.04, 0.08], feats, fps=25)
    assert series.intensities["AU12"][1] is None and series.intensities["AU12"][0] is not None


def test_whole_clip_smile_is_not_erased(astronaut_mesh):
    """A still smiling face: the per-clip neutral stays at the prior, so AU12 and AU6 keep clear intensities."""
    feats = np.repeat(au.geometry_features(astronaut_mesh), 50, axis=0)
    feats += np.random.default_rng(0).normal(0, 0.002, feats.shape)  # mesh jitter
    ref = au.neutral_reference(feats)
    for name in au.FEATURES:
        assert abs(ref[name] - au.NEUTRAL_PRIOR[name]) < 0.35 * au.PRIOR_SPREAD[name]
    inten = au.au_intensities(feats, ref, fps=25)
    mean = dict(zip(PERCEIVED_AUS, inten.mean(0), strict=True))
    top = sorted(mean, key=mean.get, reverse=True)[:5]
    assert "AU12" in top and "AU6" in top
    assert mean["AU12"] >= 1.5 and mean["AU6"] >= 1.5
    assert mean["AU15"] == 0 and mean["AU43"] == 0 and mean["AU4"] < 0.5


def test_lively_clip_adapts_toward_its_own_neutral_within_bounds():
    """A clip that moves a lot earns its own resting value; the move from the prior is bounded."""
    j = au.FEATURES.index("corner_height")
    feats = np.tile(np.array([au.NEUTRAL_PRIOR[n] for n in au.FEATURES]), (200, 1))
    person_rest = au.NEUTRAL_PRIOR["corner_height"] + 0.03  # this person's mouth corners rest a little higher
    feats[:, j] = person_rest
    feats[100:, j] = person_rest + 0.12  # then smiles for half the clip
    ref = au.neutral_reference(feats)
    moved = ref["corner_height"] - au.NEUTRAL_PRIOR["corner_height"]
    assert 0.01 < moved <= au.MAX_SHIFT_SD * au.PRIOR_SPREAD["corner_height"] + 1e-9
    inten = au.au_intensities(feats, ref, fps=25)
    k = PERCEIVED_AUS.index("AU12")
    assert inten[150, k] > inten[50, k] + 1.0


def test_events_on_a_synthetic_series():
    t = np.arange(100) / 25.0
    v = np.zeros(100)
    v[25:50] = np.linspace(0.5, 4.0, 25)  # rises from t=1.0 to a peak at t=1.96
    v[50:75] = np.linspace(3.5, 0.0, 25)  # falls, below 1.0 from about t=2.72
    (ev,) = au.find_events(t, v, "AU12")
    assert ev.au == "AU12"
    assert ev.onset == pytest.approx(t[np.argmax(v >= 1.0)])
    assert ev.apex == pytest.approx(1.96) and ev.peak == pytest.approx(4.0)
    last = 50 + np.nonzero(v[50:75] >= 1.0)[0].max()
    assert ev.offset == pytest.approx(t[last])
    assert 2.0 < ev.mean < 3.0 and ev.duration == pytest.approx(ev.offset - ev.onset)


def test_events_need_the_on_threshold_and_break_at_missing_face():
    t = np.arange(60) / 25.0
    weak = np.full(60, 1.5)
    assert au.find_events(t, weak, "AU1") == []  # never reaches occurrence (2.0)
    v: list[float | None] = [3.0] * 60
    v[30] = None  # face lost for one frame
    events = au.find_events(t, v, "AU4")
    assert [(e.onset, e.offset) for e in events] == [(0.0, t[29]), (t[31], t[59])]
    with pytest.raises(ValueError, match="times but"):
        au.find_events(t, v[:10], "AU4")


def test_still_expression_gives_one_event_spanning_the_clip():
    r = analyze_frames([(i / 25, mf.astronaut()) for i in range(40)], fps=25)
    au12 = [e for e in r.au_events if e.au == "AU12"]
    assert len(au12) == 1 and au12[0].onset == 0.0 and au12[0].offset == pytest.approx(39 / 25)
    assert au12[0].peak >= 1.5
    assert r.aus.baseline and set(r.aus.baseline) == set(au.FEATURES)


def _edit(mesh: np.ndarray, idx, dy: float = 0.0, dx_inward: float = 0.0) -> np.ndarray:
    """Move landmarks ``idx`` by ``dy`` IOD units upward (image y is down) and ``dx_inward`` toward the midline."""
    out = mesh.copy()
    iod = np.linalg.norm(mesh[[263, 362]].mean(0) - mesh[[33, 133]].mean(0))
    mid_x = mesh[[33, 133, 263, 362], 0].mean()
    idx = list(idx)
    out[idx, 1] -= dy * iod
    out[idx, 0] -= np.sign(out[idx, 0] - mid_x) * dx_inward * iod
    return out


@pytest.mark.parametrize(
    "target, idx, dy, dx_inward",
    [
        ("AU1", au._INNER_BROW, 0.10, 0.0),
        ("AU2", au._OUTER_BROW, 0.10, 0.0),
        ("AU4", au._INNER_BROW, -0.08, 0.04),
        ("AU5", au._UPPER_LID, 0.06, 0.0),
        ("AU43", au._UPPER_LID, -0.14, 0.0),
        ("AU9", au._NOSE_WING, 0.15, 0.0),
        ("AU15", au._CORNERS, -0.20, 0.0),
        ("AU17", (au._CHIN,), 0.20, 0.0),
        ("AU25", (au._LOWER_LIP_IN,), -0.15, 0.0),
        ("AU26", (au._CHIN, au._LOWER_LIP_IN, au._LOWER_LIP_BOTTOM), -0.30, 0.0),
    ],
)
def test_each_rule_responds_to_its_movement(astronaut_mesh, target, idx, dy, dx_inward):
    """Moving the landmarks an AU moves raises that AU's intensity (checks each rule's feature and sign)."""
    k = PERCEIVED_AUS.index(target)
    ref = dict(au.NEUTRAL_PRIOR)
    before = au.au_intensities(au.geometry_features(astronaut_mesh), ref, fps=25)[0, k]
    after = au.au_intensities(au.geometry_features(_edit(astronaut_mesh, idx, dy, dx_inward)), ref, fps=25)[0, k]
    assert after >= before + 1.5, (target, before, after)


def test_lowered_mouth_corners_turn_a_smile_into_au15(astronaut_mesh):
    feats = au.geometry_features(_edit(astronaut_mesh, au._CORNERS, -0.25))
    inten = dict(zip(PERCEIVED_AUS, au.au_intensities(feats, dict(au.NEUTRAL_PRIOR), fps=25)[0], strict=True))
    assert inten["AU15"] >= 2 and inten["AU12"] < 2.5


def _pull_corners_in(image: np.ndarray, mesh: np.ndarray, px: float = 10.0, sigma: float = 8.0) -> np.ndarray:
    """Image warp that drags the mouth corners down and inward: the smile fades (a pixel edit, not a mesh edit)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.zeros_like(xx), np.zeros_like(yy)
    for (cx, cy), sx in ((mesh[61, :2], px / 2), (mesh[291, :2], -px / 2)):
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        dx += sx * g
        dy += px * g
    import cv2

    return cv2.remap(image, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_smile_episode_in_a_clip_gives_one_timed_au12_event(astronaut_mesh):
    """Faded smile 0-0.8 s, full smile 0.8-2.0 s, faded again: the clip adapts its neutral and times the AU12 event."""
    full = mf.astronaut()
    faded = _pull_corners_in(full, astronaut_mesh)
    frames = [(i / 25, full if 20 <= i < 50 else faded) for i in range(70)]
    r = analyze_frames(frames, fps=25)
    au12 = np.array(r.aus.intensities["AU12"])
    assert au12[:15].max() < 1.0 and au12[55:].max() < 1.0 and au12[25:45].min() > 2.5
    (event,) = [e for e in r.au_events if e.au == "AU12"]
    assert event.onset == pytest.approx(0.8, abs=0.12) and event.offset == pytest.approx(1.96, abs=0.12)
    assert 0.8 <= event.apex <= 1.96 and event.peak > 2.5


def test_a_slight_closed_mouth_smile_reads_weaker_than_a_broad_one():
    """Grace Hopper's portrait (matplotlib sample data): a faint closed-mouth smile, no mouth opening, no brow action."""
    from pathlib import Path

    import matplotlib
    from matplotlib import image

    photo = np.asarray(image.imread(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    hopper = analyze_frames([(i / 25, photo) for i in range(5)], fps=25)
    astronaut = analyze_frames([(i / 25, mf.astronaut()) for i in range(5)], fps=25)

    def mean(r, code: str) -> float:
        return float(np.mean(r.aus.intensities[code]))

    assert hopper.face.coverage == 1.0
    assert mean(hopper, "AU12") < mean(astronaut, "AU12") - 2
    for code in ("AU1", "AU2", "AU4", "AU15", "AU25", "AU26", "AU43"):
        assert mean(hopper, code) < 1.0, code
    assert mean(astronaut, "AU25") >= 2  # the astronaut's lips are parted over her teeth
    assert max(mean(hopper, code) for code in PERCEIVED_AUS) < 2.5
