"""Builds the media the tests need: still-photo clips, spoken sentences (espeak-ng), broken files."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf


def astronaut() -> np.ndarray:
    """A real smiling face, 512x512 RGB."""
    from skimage import data

    return data.astronaut()


def landscape() -> np.ndarray:
    """A photo with no face in it (a cup of coffee), 400x600 RGB."""
    from skimage import data

    return data.coffee()


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=width, height=height).to_ndarray()


def speak(text: str, path: Path, *, rate: int = 150, pitch: int = 50, amplitude: int = 120) -> Path:
    """Speak ``text`` to a WAV file with espeak-ng (22.05 kHz mono)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(
        [exe, "-w", str(path), "-s", str(rate), "-p", str(pitch), "-a", str(amplitude), text],
        check=True,
        capture_output=True,
    )
    return path


def write_clip(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    *,
    fps: int = 25,
    seconds: float | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    codec: str = "libx264",
) -> Path:
    """Write an MP4 (H.264 + AAC). A single image with ``seconds`` makes a still clip of that length."""
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        n = int(round((seconds or 1.0) * fps))
        frames = [frames] * n
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height = w - w % 2, h - h % 2
        v.pix_fmt = "yuv420p"
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=audio_rate)
            a.layout = "mono"
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: v.height, : v.width]), format="rgb24")
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            chunk = 1024
            for i in range(0, samples.shape[1], chunk):
                af = av.AudioFrame.from_ndarray(samples[:, i : i + chunk], format="fltp", layout="mono")
                af.sample_rate = audio_rate
                af.time_base = Fraction(1, audio_rate)
                af.pts = i
                for packet in a.encode(af):
                    out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
    return path


def load_wav_16k(path: Path) -> np.ndarray:
    import librosa

    y, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if y.ndim > 1:
        y = y.mean(axis=1)
    return librosa.resample(y, orig_sr=sr, target_sr=16000) if sr != 16000 else y


def truncate(src: Path, dst: Path, fraction: float = 0.4) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
