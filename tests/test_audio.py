"""Prosody on espeak-ng speech, silence and noise: speech found where there is speech, plausible pitch, flags."""

from __future__ import annotations

import numpy as np
import pytest

from emoreason import media
from emoreason.errors import MediaError
from emoreason.perception.audio import analyze_prosody, audio_flags, speech_segments


@pytest.fixture(scope="module")
def happy(happy_speech_wav):
    return media.load_audio(happy_speech_wav)


@pytest.fixture(scope="module")
def happy_prosody(happy):
    return analyze_prosody(happy)


def test_speech_prosody(happy, happy_prosody):
    p = happy_prosody
    n = len(p.times)
    assert n == pytest.approx(len(happy) / 160, abs=2)
    assert len(p.f0_hz) == len(p.energy_db) == len(p.voiced) == n
    assert p.hop_s == 0.01
    duration = len(happy) / 16000
    assert p.speech_segments and p.speech_segments[0][0] < 0.5 and p.speech_segments[-1][1] <= duration + 0.01
    assert 0.6 < p.speech_ratio <= 1.0
    assert 0.3 < np.mean(p.voiced) < 0.95  # speech has unvoiced consonants and pauses
    assert all((f is not None) == v for f, v in zip(p.f0_hz, p.voiced, strict=True))
    assert 70 < p.f0_mean_hz < 250  # espeak's default male voice is about 100-120 Hz
    assert 0 < p.f0_std_hz < 40
    assert 1 < p.f0_range_semitones < 14
    assert 0 < p.jitter_local < 0.05
    assert 0 < p.shimmer_local < 0.5
    assert 2 < p.speaking_rate_sps < 7  # 13 syllables in about 3 s
    assert p.energy_mean_db > -45
    assert audio_flags(p) == []


def test_pitch_follows_the_voice(happy_prosody, angry_speech_wav, happy_speech_wav):
    """espeak's -p 70 voice (angry fixture) is higher than its default -p 50 (happy fixture)."""
    angry = analyze_prosody(media.load_audio(angry_speech_wav))
    assert angry.f0_mean_hz > happy_prosody.f0_mean_hz + 5


def test_other_sample_rates_agree(happy_speech_wav, happy_prosody):
    import soundfile as sf

    raw, sr = sf.read(str(happy_speech_wav), dtype="float32")
    assert sr != 16000
    p = analyze_prosody(raw, sr)
    assert p.f0_mean_hz == pytest.approx(happy_prosody.f0_mean_hz, rel=0.05)
    assert len(p.times) == pytest.approx(len(happy_prosody.times), abs=2)


def test_silence():
    p = analyze_prosody(np.zeros(32000, np.float32))
    assert [f.code for f in audio_flags(p)] == ["silent_audio", "no_speech"]
    assert p.speech_segments == [] and p.speech_ratio == 0.0 and not any(p.voiced)
    for name in ("f0_mean_hz", "f0_std_hz", "f0_range_semitones", "energy_mean_db", "jitter_local", "shimmer_local",
                 "speaking_rate_sps"):  # fmt: skip
        assert getattr(p, name) is None, name


def test_noise_is_not_speech():
    noise = np.random.default_rng(0).normal(0, 0.05, 48000).astype(np.float32)
    p = analyze_prosody(noise)
    assert [f.code for f in audio_flags(p)] == ["no_speech"]
    assert p.f0_mean_hz is None


def test_speech_between_silences(happy):
    pad = np.zeros(32000, np.float32)
    y = np.concatenate([pad, happy, pad])
    (start, end), *_ = speech_segments(y)
    assert 1.7 < start < 2.2
    p = analyze_prosody(y)
    assert p.speech_segments[-1][1] < len(y) / 16000 - 1.5
    assert not any(p.voiced[: int(1.5 / p.hop_s)])


def test_very_short_audio():
    p = analyze_prosody(np.zeros(100, np.float32))
    assert len(p.times) >= 1 and p.speech_segments == []


def test_bad_samples():
    with pytest.raises(MediaError, match="mono"):
        analyze_prosody(np.zeros((2, 1000), np.float32))
    y = np.zeros(1000, np.float32)
    y[3] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        analyze_prosody(y)
