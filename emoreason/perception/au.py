"""Action Unit intensities from face-mesh geometry, the neutral reference they are measured from, and AU events.

Pipeline, all vectorised over frames:

1. :func:`geometry_features` puts each ``(468, 3)`` mesh in the face's own frame (``face.face_frame``: head yaw, pitch and
   roll removed), centred between the eyes and divided by the inter-ocular distance (IOD, eye centre to eye centre, in
   3-D), and measures ``FEATURES``: brow heights over the eyes, brow gap, lid positions, cheek height, nose and lip
   distances, mouth-corner height and width, lip parting, jaw opening, chin height, mouth-corner depth.
2. :func:`neutral_reference` gives each feature's neutral value: the population prior ``NEUTRAL_PRIOR`` moved toward the
   clip's own resting value (a percentile on the feature's resting side) only as far as the clip's own variation
   justifies. A clip whose face never changes (a still photo, a smile held throughout) keeps the prior, so a lasting
   expression is measured, not erased; a lively clip adapts to the person's morphology, by at most ``MAX_SHIFT_SD`` population SDs.
3. :func:`au_intensities` maps signed deviations from neutral to the 0-5 FACS scale with ``AU_RULES`` (feature, sign,
   change per intensity point, weight), then smooths over time (0.2 s centred mean).
4. :func:`find_events` finds per-AU events (onset, apex, offset, peak, mean) by hysteresis on the smoothed series.

These are geometric estimates, not a trained AU detector. The rules' shapes and relative units were set by hand
(``AU_RULES``); the neutral prior and one scale per AU (``AU_SCALE``) were then fitted on real, human-labelled photos
(:func:`fit_readout`, the train split of ``muxspace/facial_expressions``; see ``data_cards/face_reader/``). AUs that
leave little trace in 468 points (AU5, AU9, AU17, AU20, AU23) stay weak: on those photos they barely separate the
expressions whose prototypes name them from neutral faces (the model card's prototype-AU table).
"""

from __future__ import annotations

import numpy as np

from emoreason.evidence import AUEvent, AUSeries
from emoreason.knowledge.facs import INTENSITY_MAX, OCCURRENCE_THRESHOLD, PERCEIVED_AUS
from emoreason.perception.face import face_frame

# Landmark groups (person's right side first, then left). Values are averaged over each group.
_R_EYE, _L_EYE = (33, 133), (263, 362)
_INNER_BROW = (107, 66, 55, 65, 336, 296, 285, 295)
_OUTER_BROW = (70, 63, 46, 53, 300, 293, 276, 283)
_UPPER_LID = (159, 158, 160, 386, 385, 387)
_LOWER_LID = (145, 144, 153, 374, 373, 380)
_EYE_CORNERS = (33, 133, 263, 362)
_CHEEK = (117, 118, 50, 346, 347, 280)
_NOSE_WING = (98, 64, 327, 294)
_SUBNASALE, _UPPER_LIP_TOP, _UPPER_LIP_IN, _LOWER_LIP_IN, _LOWER_LIP_BOTTOM, _CHIN = 2, 0, 13, 14, 17, 152
_CORNERS = (61, 291)

FEATURES: tuple[str, ...] = (
    "inner_brow_height",  # inner brow over the eye centre line
    "outer_brow_height",  # outer brow over the eye centre line
    "brow_gap",  # horizontal distance between the inner brow heads
    "eye_opening",  # upper lid to lower lid
    "upper_lid_height",  # upper lid over the eye-corner line
    "lower_lid_height",  # lower lid over the eye-corner line (negative: below)
    "cheek_height",  # cheek (infra-orbital) points over the eye centre line (negative)
    "nose_length",  # eye centre line down to the nose wings
    "nose_to_lip",  # subnasale down to the top of the upper lip
    "corner_height",  # mouth corners over the lip centre
    "mouth_width",  # corner to corner
    "lip_thickness",  # red of the upper lip + red of the lower lip, vertically
    "lip_gap",  # between the inner lip edges
    "jaw_opening",  # subnasale down to the chin
    "chin_height",  # lower lip bottom down to the chin
    "corner_depth",  # mouth corners behind the lip centre
)
_F = {name: i for i, name in enumerate(FEATURES)}

# Population neutral prior, in IOD units: the median of each feature over the 4,992 train photos of
# muxspace/facial_expressions labelled neutral in which the mesh found a face (``fit_readout`` below, 2026-12-02;
# before, 98 LFW thumbnails of 25x25 px). ``PRIOR_SPREAD`` is their robust SD (1.4826 x median absolute deviation);
# it bounds per-clip adaptation and sets the scale of the adaptation weight.
NEUTRAL_PRIOR: dict[str, float] = {
    "inner_brow_height": 0.286, "outer_brow_height": 0.240, "brow_gap": 0.398, "eye_opening": 0.124,
    "upper_lid_height": 0.075, "lower_lid_height": -0.048, "cheek_height": -0.364, "nose_length": 0.675,
    "nose_to_lip": 0.251, "corner_height": 0.000, "mouth_width": 0.801, "lip_thickness": 0.251, "lip_gap": 0.041,
    "jaw_opening": 1.022, "chin_height": 0.469, "corner_depth": 0.257,
}  # fmt: skip
PRIOR_SPREAD: dict[str, float] = {
    "inner_brow_height": 0.042, "outer_brow_height": 0.037, "brow_gap": 0.021, "eye_opening": 0.022,
    "upper_lid_height": 0.021, "lower_lid_height": 0.012, "cheek_height": 0.023, "nose_length": 0.044,
    "nose_to_lip": 0.024, "corner_height": 0.019, "mouth_width": 0.058, "lip_thickness": 0.026, "lip_gap": 0.035,
    "jaw_opening": 0.072, "chin_height": 0.072, "corner_depth": 0.024,
}  # fmt: skip
_SMILE_SENSITIVE = ("corner_height", "mouth_width", "cheek_height", "lower_lid_height", "lip_gap", "jaw_opening")

# Resting side of each feature: "low" = AUs raise it (the neutral is a low percentile of a clip), "high" = AUs lower it,
# "mid" = AUs move it both ways.
RESTING_SIDE: dict[str, str] = {
    "inner_brow_height": "mid", "outer_brow_height": "low", "brow_gap": "high", "eye_opening": "mid",
    "upper_lid_height": "mid", "lower_lid_height": "low", "cheek_height": "low", "nose_length": "high",
    "nose_to_lip": "high", "corner_height": "mid", "mouth_width": "mid", "lip_thickness": "high",
    "lip_gap": "low", "jaw_opening": "low", "chin_height": "high", "corner_depth": "low",
}  # fmt: skip
_REST_PERCENTILE = {"low": 10.0, "high": 90.0, "mid": 30.0}
NOISE_SD = 0.5  # 10-90 % range of a still face's features (mesh jitter) stays below this many population SDs
MAX_SHIFT_SD = 1.5  # per-clip adaptation moves the neutral at most this many population SDs from the prior

# AU -> terms (feature, sign, change in IOD units per intensity point, weight). A term's activation is
# sign * (feature - neutral) / unit, clipped at 0; the AU intensity is the weighted sum of activations divided by the sum
# of the positive weights, clipped to 0-5. A negative weight inhibits: a smile's corner raise cancels the mouth widening
# that would otherwise read as AU20 and part of the corner retraction that would read as AU14.
# Units were set by hand at about 0.8 population SD per point (so ~2.5 SD from neutral reads as intensity 3), wider for
# AU5/AU9/AU10 whose features a broad smile or wide-open eyes also move, and at the full eye opening for AU43. Lowered
# mouth corners inhibit AU12, so a widened frown does not read as a smile.
AU_RULES: dict[str, tuple[tuple[str, int, float, float], ...]] = {
    "AU1": (("inner_brow_height", +1, 0.030, 1.0),),
    "AU2": (("outer_brow_height", +1, 0.024, 1.0),),
    "AU4": (("inner_brow_height", -1, 0.025, 1.0), ("brow_gap", -1, 0.014, 1.0)),
    "AU5": (("upper_lid_height", +1, 0.025, 1.0),),
    "AU6": (("cheek_height", +1, 0.024, 1.0), ("lower_lid_height", +1, 0.009, 1.0)),
    "AU7": (("lower_lid_height", +1, 0.009, 1.0), ("eye_opening", -1, 0.018, 1.0)),
    "AU9": (("nose_length", -1, 0.060, 1.0),),
    "AU10": (("nose_to_lip", -1, 0.035, 1.0),),
    "AU12": (("corner_height", +1, 0.022, 1.0), ("mouth_width", +1, 0.072, 1.0), ("corner_height", -1, 0.022, -0.5)),
    "AU14": (("corner_depth", +1, 0.026, 1.0), ("corner_height", +1, 0.022, -0.5)),
    "AU15": (("corner_height", -1, 0.022, 1.0),),
    "AU17": (("chin_height", -1, 0.057, 1.0),),
    "AU20": (("mouth_width", +1, 0.072, 1.0), ("corner_height", +1, 0.022, -1.0)),
    "AU23": (("lip_thickness", -1, 0.024, 1.0), ("mouth_width", -1, 0.072, 1.0)),
    "AU25": (("lip_gap", +1, 0.054, 1.0),),
    "AU26": (("jaw_opening", +1, 0.075, 1.0),),
    "AU43": (("eye_opening", -1, 0.107 / INTENSITY_MAX, 1.0),),
}
assert set(AU_RULES) == set(PERCEIVED_AUS), "AU_RULES must cover exactly facs.PERCEIVED_AUS"

# Per-AU multiplier of the units above, fitted by ``fit_readout`` on the train photos: for each AU, the scale (0.3-3)
# that best separates the photos of the expressions whose EMFACS prototype names it (weight >= 0.5) from the photos of
# every expression whose prototype lacks it (mean occurrence rate, "intensity >= OCCURRENCE_THRESHOLD", on its own expressions minus the
# highest rate on any other one), with the AU present on at most ``MAX_NEUTRAL_RATE`` of neutral photos. An AU that no
# scale separates by ``MIN_SEPARATION`` keeps its hand unit (1.0). AU14, AU43 (in no basic prototype) and AU20 (only in
# fear, 17 train photos) take the scale that keeps them on 5 % of
MAX_NEUTRAL_RATE = 0.10
MIN_SEPARATION = 0.1  # below this best separation an AU keeps its hand-set unit (scale 1)
MIN_CLASS_PHOTOS = 50  # classes with fewer train photos (fear: 17) take no part in the fit
AU_SCALE: dict[str, float] = {
    "AU1": 1.0, "AU2": 1.15, "AU4": 1.0, "AU5": 1.0, "AU6": 0.60, "AU7": 1.0, "AU9": 1.0, "AU10": 1.0, "AU12": 0.62,
    "AU14": 0.60, "AU15": 0.49, "AU17": 1.0, "AU20": 0.40, "AU23": 1.0, "AU25": 1.0, "AU26": 1.0, "AU43": 0.93,
}  # fmt: skip


def geometry_features(landmarks: np.ndarray) -> np.ndarray:
    """``(T, 468, 3)`` meshes (frame pixels) -> ``(T, len(FEATURES))`` pose- and size-normalised features.

    Frames with NaN landmarks give NaN features.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    rot = face_frame(lm)  # (T, 3, 3), columns = face axes in camera coordinates
    eye_r, eye_l = lm[:, _R_EYE].mean(1), lm[:, _L_EYE].mean(1)
    iod = np.linalg.norm(eye_l - eye_r, axis=-1)
    origin = (eye_r + eye_l) / 2
    p = np.einsum("tnc,tcd->tnd", lm - origin[:, None], rot) / iod[:, None, None]  # face frame, IOD units
    x, up, z = p[..., 0], -p[..., 1], p[..., 2]

    def m(a: np.ndarray, idx) -> np.ndarray:
        return a[:, list(idx)].mean(1) if isinstance(idx, tuple) else a[:, idx]

    lip_centre = (m(up, _UPPER_LIP_IN) + m(up, _LOWER_LIP_IN)) / 2
    out = np.empty((lm.shape[0], len(FEATURES)))
    out[:, _F["inner_brow_height"]] = m(up, _INNER_BROW)  # the eye centre line is up = 0
    out[:, _F["outer_brow_height"]] = m(up, _OUTER_BROW)
    out[:, _F["brow_gap"]] = x[:, 285] - x[:, 55]
    out[:, _F["eye_opening"]] = m(up, _UPPER_LID) - m(up, _LOWER_LID)
    corners_up = m(up, _EYE_CORNERS)
    out[:, _F["upper_lid_height"]] = m(up, _UPPER_LID) - corners_up
    out[:, _F["lower_lid_height"]] = m(up, _LOWER_LID) - corners_up
    out[:, _F["cheek_height"]] = m(up, _CHEEK)
    out[:, _F["nose_length"]] = -m(up, _NOSE_WING)
    out[:, _F["nose_to_lip"]] = up[:, _SUBNASALE] - up[:, _UPPER_LIP_TOP]
    out[:, _F["corner_height"]] = m(up, _CORNERS) - lip_centre
    out[:, _F["mouth_width"]] = x[:, _CORNERS[1]] - x[:, _CORNERS[0]]
    out[:, _F["lip_thickness"]] = (up[:, _UPPER_LIP_TOP] - up[:, _UPPER_LIP_IN]) + (
        up[:, _LOWER_LIP_IN] - up[:, _LOWER_LIP_BOTTOM]
    )
    out[:, _F["lip_gap"]] = up[:, _UPPER_LIP_IN] - up[:, _LOWER_LIP_IN]
    out[:, _F["jaw_opening"]] = up[:, _SUBNASALE] - up[:, _CHIN]
    out[:, _F["chin_height"]] = up[:, _LOWER_LIP_BOTTOM] - up[:, _CHIN]
    out[:, _F["corner_depth"]] = m(z, _CORNERS) - (z[:, _UPPER_LIP_TOP] + z[:, _LOWER_LIP_BOTTOM]) / 2
    return out


def neutral_reference(features: np.ndarray) -> dict[str, float]:
    """Per-feature neutral values for one clip: the prior, moved toward the clip's resting value by the clip's variation.

    For each feature, ``rest`` is a percentile of the clip on the feature's resting side and ``excess`` its 10-90 %
    range beyond mesh jitter (``NOISE_SD`` population SDs). The neutral is ``prior + w * (rest - prior)`` with
    ``w = excess / (excess + population SD)``, the move clipped to ``MAX_SHIFT_SD`` population SDs. A face that never
    changes has ``excess`` = 0, so its neutral is the prior and an expression held all along keeps its intensity; a clip
    that moves a lot earns most of its own resting value.
    """
    feats = np.asarray(features, dtype=np.float64)
    ok = ~np.isnan(feats).any(axis=1)
    ref = dict(NEUTRAL_PRIOR)
    if ok.sum() < 5:
        return ref
    feats = feats[ok]
    for name, j in _F.items():
        prior, sd = NEUTRAL_PRIOR[name], PRIOR_SPREAD[name]
        col = feats[:, j]
        rest = float(np.percentile(col, _REST_PERCENTILE[RESTING_SIDE[name]]))
        excess = max(float(np.percentile(col, 90) - np.percentile(col, 10)) - NOISE_SD * sd, 0.0)
        w = excess / (excess + sd)
        ref[name] = prior + float(np.clip(w * (rest - prior), -MAX_SHIFT_SD * sd, MAX_SHIFT_SD * sd))
    return ref


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 that ignores NaN (NaN stays NaN where the input is NaN)."""
    window = min(window, x.shape[0] - 1 + x.shape[0] % 2)  # odd and no longer than the series
    if window <= 1:
        return x.copy()
    valid = ~np.isnan(x)
    filled = np.where(valid, x, 0.0)
    kernel = np.ones(window)
    num = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, filled)
    den = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, valid.astype(float))
    out = num / np.maximum(den, 1e-9)
    out[~valid] = np.nan
    return out


def au_intensities(
    features: np.ndarray, reference: dict[str, float], *, fps: float, smooth_s: float = 0.2
) -> np.ndarray:
    """``(T, F)`` features -> ``(T, len(PERCEIVED_AUS))`` intensities on 0-5, smoothed over ``smooth_s`` seconds."""
    feats = np.asarray(features, dtype=np.float64)
    neutral = np.array([reference[name] for name in FEATURES])
    dev = feats - neutral
    out = np.zeros((feats.shape[0], len(PERCEIVED_AUS)))
    for k, au in enumerate(PERCEIVED_AUS):
        terms = AU_RULES[au]
        total = sum(w for *_, w in terms if w > 0)
        for name, sign, unit, w in terms:
            out[:, k] += w * np.clip(sign * dev[:, _F[name]] / (unit * AU_SCALE[au]), 0.0, None)
        out[:, k] /= total
    out = np.clip(out, 0.0, INTENSITY_MAX)
    out[np.isnan(feats).any(axis=1)] = np.nan
    return _smooth(out, max(1, int(round(smooth_s * fps)) | 1))


def au_series(times: list[float], features: np.ndarray, *, fps: float) -> AUSeries:
    """The clip's :class:`AUSeries` (``None`` values where no face) with the neutral reference used."""
    ref = neutral_reference(features)
    inten = au_intensities(features, ref, fps=fps)
    intensities = {
        au: [None if np.isnan(v) else round(float(v), 3) for v in inten[:, k]] for k, au in enumerate(PERCEIVED_AUS)
    }
    return AUSeries(times=list(times), intensities=intensities, baseline={k: round(v, 4) for k, v in ref.items()})


def find_events(
    times: list[float] | np.ndarray,
    values: list[float | None] | np.ndarray,
    au: str,
    *,
    on: float = OCCURRENCE_THRESHOLD,
    off: float = OCCURRENCE_THRESHOLD / 2,
    min_duration_s: float = 0.1,
) -> list[AUEvent]:
    """Events of one AU by hysteresis: an event starts where the series rises above ``off`` before reaching ``on`` and
    ends where it falls back below ``off`` (or the face is lost). Apex = time of the maximum.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    if len(t) != len(v):
        raise ValueError(f"{au}: {len(t)} times but {len(v)} values")
    above_off = np.nan_to_num(v, nan=-1.0) >= off
    events: list[AUEvent] = []
    i, n = 0, len(v)
    while i < n:
        if not above_off[i]:
            i += 1
            continue
        j = i
        while j < n and above_off[j]:
            j += 1
        seg = v[i:j]
        if np.nanmax(seg) >= on:
            frame_dt = float(np.median(np.diff(t))) if n > 1 else 0.0
            onset, offset = float(t[i]), float(t[j - 1])
            if offset - onset + frame_dt >= min_duration_s:
                k = int(np.nanargmax(seg))
                events.append(AUEvent(au=au, onset=onset, apex=float(t[i + k]), offset=offset,
                                      peak=round(float(seg[k]), 3), mean=round(float(np.nanmean(seg)), 3)))  # fmt: skip
        i = j
    return events


def au_events(series: AUSeries) -> list[AUEvent]:
    """Events of every AU in ``series``, ordered by onset."""
    events = [e for au, vals in series.intensities.items() for e in find_events(series.times, vals, au)]
    return sorted(events, key=lambda e: (e.onset, e.au))


def fit_readout(features: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Fit ``NEUTRAL_PRIOR``, ``PRIOR_SPREAD`` and ``AU_SCALE`` on labelled still photos (how the constants were set).

    ``features``: ``(N, len(FEATURES))`` geometry features of photos with a face; ``labels``: their expression names.
    The prior and spread are the median and robust SD of the neutral photos; each AU's scale is the one (on a grid of
    0.3-3) that best separates the photos of its prototype expressions from those whose prototype lacks it (mean
    occurrence rate on its own expressions minus the highest on any other), among the scales that keep it present on
    at most ``MAX_NEUTRAL_RATE`` of the neutral photos.
    """
    from emoreason.knowledge.prototypes import PROTOTYPES

    feats, labels = np.asarray(features, np.float64), np.asarray(labels)
    neutral = feats[labels == "neutral"]
    prior = {n: float(np.median(neutral[:, j])) for n, j in _F.items()}
    spread = {n: float(1.4826 * np.median(np.abs(neutral[:, j] - prior[n]))) for n, j in _F.items()}
    dev = feats - np.array([prior[n] for n in FEATURES])
    is_neutral = labels == "neutral"
    grid = np.geomspace(0.3, 3.0, 80)
    scale: dict[str, float] = {}
    separation: dict[str, float | None] = {}
    for au in PERCEIVED_AUS:
        terms = AU_RULES[au]
        raw = sum(w * np.clip(sg * dev[:, _F[n]] / u, 0.0, None) for n, sg, u, w in terms) / sum(
            w for *_, w in terms if w > 0
        )
        classes = [e for e, proto in PROTOTYPES.items() if proto.get(au, 0.0) >= 0.5 and e != "contempt"]
        others = [e for e in set(labels.tolist()) if au not in PROTOTYPES.get(e, {}) and
                  (labels == e).sum() >= MIN_CLASS_PHOTOS]  # fmt: skip
        pos = [labels == e for e in classes if (labels == e).sum() >= MIN_CLASS_PHOTOS]
        best, best_j = None, -np.inf
        for s in grid:
            on = raw / s >= OCCURRENCE_THRESHOLD
            fpr = on[is_neutral].mean()
            if not pos:
                j = -abs(fpr - 0.05)
            elif fpr > MAX_NEUTRAL_RATE:
                continue
            else:  # mean rate on its expressions minus the worst rate on any other expression (a smile lifts the lip)
                j = float(np.mean([on[m].mean() for m in pos])) - max(on[labels == e].mean() for e in others)
            if j > best_j:
                best, best_j = float(s), j
        # Where no scale separates the expressions (best J under MIN_SEPARATION), the labelled photos do not bear the
        # AU out either way, and its hand-set unit stays.
        weak = pos and best_j < MIN_SEPARATION
        scale[au] = 1.0 if weak or best is None else round(best, 2)
        separation[au] = round(float(best_j), 3) if pos else None
    return {"prior": {k: round(v, 3) for k, v in prior.items()}, "spread": {k: round(v, 3) for k, v in spread.items()},
            "scale": scale, "separation": separation}  # fmt: skip


def calibrate_prior() -> dict[str, tuple[float, float]]:
    """The former ``NEUTRAL_PRIOR`` / ``PRIOR_SPREAD`` from ``skimage.data.lfw_subset()`` (replaced by
    :func:`fit_readout` on real labelled photos; kept to compare)."""
    import cv2
    from skimage import data

    from emoreason.perception.face import FaceDetector, FaceMesh, roi_from_detection

    det, mesh = FaceDetector(), FaceMesh()
    meshes = []
    for face in data.lfw_subset()[:100]:  # the first 100 images are faces
        grey = cv2.resize((face * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
        img = cv2.copyMakeBorder(np.dstack([grey] * 3), 100, 100, 100, 100, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        dets = det.detect(img)
        if dets:
            lm, presence = mesh.run(img, roi_from_detection(dets[0]))
            if presence >= mesh.presence_threshold:
                meshes.append(lm)
    feats = geometry_features(np.array(meshes))
    out = {}
    for name, j in _F.items():
        col = feats[:, j]
        side = RESTING_SIDE[name]
        q = 50.0 if name not in _SMILE_SENSITIVE else {"low": 25.0, "high": 75.0, "mid": 25.0}[side]
        out[name] = (round(float(np.percentile(col, q)), 3), round(float(col.std()), 3))
    return out


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--calibrate"]:
        for name, (prior, sd) in calibrate_prior().items():
            print(f"{name:20s} prior {prior:7.3f}  sd {sd:6.3f}")
    else:
        print("usage: python -m emoreason.perception.au --calibrate")
