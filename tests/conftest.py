"""Shared fixtures: every test makes the media it needs, once per session, under a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import media_factory as mf


@pytest.fixture(scope="session", autouse=True)
def _evidence_cache_in_tmp(tmp_path_factory):
    """``ask``/``report`` cache evidence under the user's cache folder; tests (and their subprocesses) use a temporary
    one instead."""
    import os

    old = os.environ.get("EMOREASON_CACHE_DIR")
    os.environ["EMOREASON_CACHE_DIR"] = str(tmp_path_factory.mktemp("evidence-cache"))
    yield
    if old is None:
        os.environ.pop("EMOREASON_CACHE_DIR", None)
    else:
        os.environ["EMOREASON_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def astronaut_clip(media_dir) -> Path:
    """3 s still clip of the smiling astronaut, 512x512, 25 fps, silent audio track absent."""
    return mf.write_clip(media_dir / "astronaut.mp4", mf.astronaut(), seconds=3.0, fps=25)


@pytest.fixture(scope="session")
def landscape_clip(media_dir) -> Path:
    """2 s still clip with no face."""
    return mf.write_clip(media_dir / "landscape.mp4", mf.landscape(), seconds=2.0, fps=25)


@pytest.fixture(scope="session")
def happy_speech_wav(media_dir) -> Path:
    return mf.speak("I am so happy today, this is wonderful news!", media_dir / "happy.wav")


@pytest.fixture(scope="session")
def angry_speech_wav(media_dir) -> Path:
    return mf.speak(
        "I am furious. This is completely unacceptable and I hate it!", media_dir / "angry.wav", rate=190, pitch=70
    )


@pytest.fixture(scope="session")
def angry_noface_clip(media_dir, angry_speech_wav) -> Path:
    """The landscape with an angry spoken sentence: voice and words, no face."""
    audio = mf.load_wav_16k(angry_speech_wav)
    seconds = len(audio) / 16000 + 0.2
    return mf.write_clip(media_dir / "angry_noface.mp4", mf.landscape(), seconds=seconds, fps=25, audio=audio)


@pytest.fixture(scope="session")
def astronaut_speech_clip(media_dir, happy_speech_wav) -> Path:
    """The smiling astronaut saying a happy sentence."""
    audio = mf.load_wav_16k(happy_speech_wav)
    seconds = len(audio) / 16000 + 0.2
    return mf.write_clip(media_dir / "astronaut_speech.mp4", mf.astronaut(), seconds=seconds, fps=25, audio=audio)


@pytest.fixture(scope="session")
def two_faces_clip(media_dir) -> Path:
    """A large astronaut face beside a small copy of it: the large one is the main face."""
    big = mf.astronaut()
    small = mf.resize(big, 192, 192)
    canvas = np.full((512, 768, 3), 40, dtype=np.uint8)
    canvas[:, :512] = big
    canvas[300:492, 560:752] = small
    return mf.write_clip(media_dir / "two_faces.mp4", canvas, seconds=2.0, fps=25)


@pytest.fixture(scope="session")
def broken_files(media_dir, astronaut_clip) -> dict[str, Path]:
    """A truncated MP4, a zero-byte file and a text file named .mp4."""
    zero = media_dir / "zero.mp4"
    zero.write_bytes(b"")
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video\n")
    return {
        "truncated": mf.truncate(astronaut_clip, media_dir / "truncated.mp4"),
        "zero_byte": zero,
        "text": text,
    }
