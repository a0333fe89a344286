"""Offline transcription with the packaged Whisper tiny.en (one test loads it: a few seconds) and model-path errors."""

from __future__ import annotations

import pytest

from emoreason import media
from emoreason.errors import ConfigError, ModelError
from emoreason.perception import asr


def test_transcribe_happy_sentence(happy_speech_wav):
    samples = media.load_audio(happy_speech_wav)
    tr = asr.transcribe(samples)
    assert "happy" in tr.text.lower()
    assert "wonderful" in tr.text.lower()
    assert tr.language == "en"
    assert tr.model.startswith("whisper-tiny.en")
    duration = len(samples) / 16000
    starts = [w.start for w in tr.words]
    assert len(tr.words) >= 6
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= duration + 0.1 for w in tr.words)
    happy = next(w for w in tr.words if "happy" in w.word.lower())
    assert 0.3 < happy.start < 2.0  # "I am so happy ..." : the word comes early in the sentence
    # the loaded model is cached per folder
    path = asr.resolve_model_path(None)
    assert asr.load_model(path) is asr.load_model(path)


def test_model_version_names_the_model():
    v = asr.model_version()
    assert v.name.startswith("faster-whisper/whisper-tiny.en")
    assert v.sha256 is not None and len(v.sha256) == 64


def test_missing_model_folder(tmp_path):
    missing = tmp_path / "no_model"
    with pytest.raises(ModelError, match="not found") as err:
        asr.transcribe([0.0] * 1600, model_path=missing)
    assert err.value.path == str(missing)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="missing model.bin") as err:
        asr.transcribe([0.0] * 1600, model_path=tmp_path)
    assert err.value.path == str(tmp_path)


def test_corrupt_model_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load speech model") as err:
        asr.transcribe([0.0] * 1600, model_path=tmp_path)
    assert err.value.path == str(tmp_path.resolve())


def test_decoding_is_greedy_fixed_and_recorded(happy_speech_wav, monkeypatch):
    """Temperature 0 with no sampling fallback, greedy, no conditioning on earlier text: the same clip gives the same
    transcript every time; the settings are written into the transcript's model name; the caller may change them."""
    samples = media.load_audio(happy_speech_wav)
    real = asr.load_model(asr.resolve_model_path(None))
    calls: list[dict] = []

    class Spy:
        model = real.model

        def transcribe(self, audio, **kwargs):
            calls.append(kwargs)
            return real.transcribe(audio, **kwargs)

    monkeypatch.setattr(asr, "load_model", lambda path: Spy())
    first, second = asr.transcribe(samples), asr.transcribe(samples)
    for kw in calls:
        assert kw["temperature"] == 0.0 and isinstance(kw["temperature"], float)  # one temperature: no fallback
        assert (kw["beam_size"], kw["best_of"], kw["condition_on_previous_text"]) == (1, 1, False)
    assert first == second and "happy" in first.text.lower()
    assert "temperature=0.0" in first.model and "beam_size=1" in first.model
    beam = asr.transcribe(samples, decoding={"beam_size": 5})
    assert calls[-1]["beam_size"] == 5 and calls[-1]["temperature"] == 0.0 and "beam_size=5" in beam.model
    with pytest.raises(ConfigError, match="unknown decoding setting 'temprature'"):
        asr.transcribe(samples, decoding={"temprature": 0.2})
