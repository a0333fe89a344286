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


def drawn_face(skin: tuple[int, int, int] = (240, 200, 160), title: str | None = None, quality: int | None = None):
    """A flat-shaded cartoon face (head, eyes, brows, nose, mouth; optionally a title above it), 640x480 RGB;
    ``quality`` passes it through JPEG. The face detector and the mesh both take it for a face."""
    import cv2

    img = np.full((480, 640, 3), 255, np.uint8)
    cv2.ellipse(img, (320, 240), (120, 150), 0, 0, 360, skin, -1)
    cv2.ellipse(img, (320, 240), (120, 150), 0, 0, 360, (0, 0, 0), 3)
    for dx in (-45, 45):
        cv2.ellipse(img, (320 + dx, 210), (22, 12), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (320 + dx, 210), 14, (40, 30, 20), -1)
        cv2.line(img, (295 + dx, 180), (345 + dx, 178), (60, 40, 20), 6)
    cv2.line(img, (320, 220), (312, 265), (150, 100, 80), 4)
    cv2.ellipse(img, (320, 295), (45, 18), 0, 0, 180, (150, 40, 40), -1)
    if title:
        cv2.putText(img, title, (30, 60), cv2.FONT_HERSHEY_DUPLEX, 1.8, (200, 30, 30), 5)
    if quality is not None:
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return img


def smiley_logo() -> np.ndarray:
    """A title logo: a yellow smiley (circle, two dots, an arc) under a line of text, 640x360 RGB."""
    import cv2

    img = np.full((360, 640, 3), (30, 30, 120), np.uint8)
    cv2.putText(img, "FUNNY TOONS", (40, 120), cv2.FONT_HERSHEY_DUPLEX, 2.2, (255, 230, 0), 6)
    cv2.circle(img, (320, 250), 80, (255, 220, 0), -1)
    cv2.circle(img, (292, 228), 10, (0, 0, 0), -1)
    cv2.circle(img, (348, 228), 10, (0, 0, 0), -1)
    cv2.ellipse(img, (320, 262), (40, 24), 0, 20, 160, (0, 0, 0), 5)
    return img
