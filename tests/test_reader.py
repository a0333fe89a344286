"""The learned face reader: weights checked by hash, a forward on the astronaut, and its place in perception/fusion."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from emoreason.errors import ModelError
from emoreason.evidence import ExpressionCue
from emoreason.perception import reader as rd
from emoreason.perception.visual import analyze_frames
from emoreason.reasoning import fusion
from tests import media_factory as mf


@pytest.fixture(scope="module")
def astronaut_visual():
    return analyze_frames([(i / 10, mf.astronaut()) for i in range(5)], fps=10, keep_landmarks=True)


def test_shipped_weights_match_the_recorded_hash():
    r = rd.FaceReader()
    assert r.sha256 == rd.WEIGHTS_SHA256
    assert r.version().name == rd.MODEL_NAME and r.version().sha256 == rd.WEIGHTS_SHA256
    assert (rd.ASSET_DIR / rd.WEIGHTS_FILE).stat().st_size < 2_000_000


def test_weight_file_with_the_wrong_hash_is_rejected(tmp_path):
    bad = tmp_path / rd.WEIGHTS_FILE
    shutil.copy(rd.ASSET_DIR / rd.WEIGHTS_FILE, bad)
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256 [0-9a-f]{64}, expected " + rd.WEIGHTS_SHA256) as e:
        rd.FaceReader(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(ModelError, match="weights not found"):
        rd.FaceReader(tmp_path / "missing.safetensors")


def test_garbage_file_with_its_own_hash_accepted_is_still_a_model_error(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot read face reader weights"):
        rd.FaceReader(bad, expected_sha256=None)


def test_astronaut_reads_as_happiness_with_au12_in_the_evidence(astronaut_visual):
    v = astronaut_visual
    assert v.reader is not None and v.reader.model == rd.MODEL_NAME
    assert v.reader.labels == list(rd.LABELS)
    rows = [r for r in v.reader.probs if r is not None]
    assert len(rows) == 5
    for r in rows:
        assert abs(sum(r) - 1) < 1e-3
        assert rd.LABELS[int(np.argmax(r))] == "happiness"
    assert any(e.au == "AU12" for e in v.au_events)
    assert rd.ModelVersion  # the reader's version is recorded with the other models
    assert rd.MODEL_NAME in [m.name for m in v.models]


def test_reader_forward_is_batched_and_deterministic(astronaut_visual):
    from emoreason.perception.au import geometry_features
    from emoreason.perception.expression import face_crop

    lm = astronaut_visual.landmarks[[0, 0]].astype(np.float64)
    crop = face_crop(mf.astronaut(), lm[0])
    r = rd.shared_reader()
    p = r.predict(lm, geometry_features(lm), np.stack([crop, crop]))
    assert p.shape == (2, len(rd.LABELS))
    np.testing.assert_allclose(p[0], p[1], atol=1e-6)
    assert r.predict(lm[:0], geometry_features(lm)[:0], np.zeros((0, 64, 64), np.uint8)).shape == (0, 7)


def test_no_face_gives_no_reader_cue_and_off_costs_nothing():
    scene = mf.resize(mf.landscape(), 320, 240)
    v = analyze_frames([(i / 10, scene) for i in range(3)], fps=10)
    assert v.reader is None and v.aus is None and v.au_events == []
    off = analyze_frames([(0.0, mf.astronaut())], fps=10, reader=False)
    assert off.reader is None and "reader_s" not in off.timings


def test_reader_distribution_reads_the_window_at_its_apex():
    labels = list(rd.LABELS)
    idle = [0.9 if lab == "neutral" else 0.1 / 6 for lab in labels]
    sad = [0.7 if lab == "sadness" else (0.2 if lab == "neutral" else 0.1 / 5) for lab in labels]
    d = fusion.reader_distribution(labels, [idle, idle, sad, idle])
    assert max(d, key=d.get) == "sadness"  # the expressive frame decides, as annotators label a clip
    assert abs(sum(d.values()) - 1) < 1e-9 and d["contempt"] > 0
    still = fusion.reader_distribution(labels, [idle, idle])
    assert max(still, key=still.get) == "neutral"
    with pytest.raises(ValueError):
        fusion.reader_distribution(labels, [])


def test_engine_fuses_the_reader_not_the_prototypes():
    from emoreason.evidence import AUSeries, Evidence, FaceTrack, MediaInfo
    from emoreason.reasoning.engine import analyze

    t = [i / 10 for i in range(10)]
    labels = list(rd.LABELS)
    sad = [0.8 if lab == "sadness" else 0.2 / 6 for lab in labels]
    ev = Evidence(media=MediaInfo(path="x.mp4", duration_s=1.0, has_video=True, has_audio=False))
    ev.face = FaceTrack(times=t, present=[True] * 10, boxes=[[0, 0, 10, 10]] * 10, scores=[1.0] * 10,
                        poses=[None] * 10, coverage=1.0)  # fmt: skip
    ev.aus = AUSeries(times=t, intensities={"AU12": [0.0] * 10, "AU4": [0.0] * 10}, baseline={})
    assert analyze(ev).emotion == "neutral"  # the AU prototypes alone: an idle face
    ev.reader = ExpressionCue(model=rd.MODEL_NAME, labels=labels, times=t, probs=[sad] * 10)
    a = analyze(ev)
    assert a.emotion == "sadness" and a.probabilities["sadness"] > 0.5


def test_a_happiness_call_comes_with_au12_in_the_evidence():
    from emoreason.evidence import AUSeries, Evidence, FaceTrack, MediaInfo
    from emoreason.reasoning.engine import analyze

    t = [i / 10 for i in range(10)]
    labels = list(rd.LABELS)
    happy = [0.7 if lab == "happiness" else (0.2 if lab == "neutral" else 0.1 / 5) for lab in labels]

    def ev_with(au12: float) -> Evidence:
        ev = Evidence(media=MediaInfo(path="x.mp4", duration_s=1.0, has_video=True, has_audio=False))
        ev.face = FaceTrack(times=t, present=[True] * 10, boxes=[[0, 0, 10, 10]] * 10, scores=[1.0] * 10,
                            poses=[None] * 10, coverage=1.0)  # fmt: skip
        ev.aus = AUSeries(times=t, intensities={"AU12": [au12] * 10, "AU6": [0.0] * 10}, baseline={})
        ev.reader = ExpressionCue(model=rd.MODEL_NAME, labels=labels, times=t, probs=[happy] * 10)
        return ev

    assert analyze(ev_with(3.0)).emotion == "happiness"
    without = analyze(ev_with(0.5))
    assert without.emotion != "happiness" and without.probabilities["happiness"] == 0.0


def test_a_smile_without_au12_falls_back_to_neutral_not_the_runner_up():
    d = {e: 0.0 for e in fusion.ALL_EMOTIONS} | {"happiness": 0.6, "disgust": 0.3, "neutral": 0.1}
    g = fusion.gate_happiness(d, 1.0)
    assert g["happiness"] == 0.0 and abs(g["neutral"] - 0.7) < 1e-9 and g["disgust"] == 0.3
    assert fusion.gate_happiness(d, 2.5) == d and fusion.gate_happiness(d, None)["happiness"] == 0.0
