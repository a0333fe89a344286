"""Media probing, streamed frames and audio loading on generated clips; every kind of bad input gives a MediaError."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from emoreason import media
from emoreason.errors import MediaError
from tests import media_factory as mf


def write_tiny(path: Path, width: int, height: int, n: int = 10) -> Path:
    """A lossless clip of any size (H.264 needs even sizes; FFV1 takes 1x1)."""
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "bgr0"
        for _ in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 128, np.uint8), format="rgb24")
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


def faststart_cut(src: Path, dst: Path, fraction: float) -> Path:
    """Move the index to the front (as phones and web encoders do), then cut the file: the container opens, but the
    frames stop early."""
    full = dst.with_suffix(".full.mp4")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart",
                    str(full)], check=True)  # fmt: skip
    data = full.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture(scope="module")
def moving_clip(media_dir) -> Path:
    img = mf.astronaut()
    return mf.write_clip(media_dir / "moving.mp4", [np.roll(img, 4 * i, axis=1) for i in range(75)], fps=25)


# ------------------------------------------------------------------------------------------------------------- probe
def test_probe_video_without_audio(astronaut_clip):
    info = media.probe(astronaut_clip)
    assert info.has_video and not info.has_audio
    assert (info.width, info.height) == (512, 512)
    assert info.native_fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.path == str(astronaut_clip)


def test_probe_video_with_audio(astronaut_speech_clip, happy_speech_wav):
    info = media.probe(astronaut_speech_clip)
    assert info.has_video and info.has_audio
    speech_s = len(mf.load_wav_16k(happy_speech_wav)) / 16000
    assert info.duration_s == pytest.approx(speech_s + 0.2, abs=0.15)


def test_probe_audio_only(happy_speech_wav):
    info = media.probe(happy_speech_wav)
    assert info.has_audio and not info.has_video
    assert info.width is None and info.native_fps is None
    assert info.duration_s > 1.0


def test_cover_art_is_not_video(media_dir, happy_speech_wav):
    cover = media_dir / "cover.png"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=64x64:d=1",
                    "-frames:v", "1", str(cover)], check=True)  # fmt: skip
    song = media_dir / "with_cover.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(happy_speech_wav), "-i", str(cover), "-map", "0",
                    "-map", "1", "-c:a", "libmp3lame", "-c:v", "png", "-disposition:v", "attached_pic", str(song)],
                   check=True)  # fmt: skip
    info = media.probe(song)
    assert info.has_audio and not info.has_video
    assert len(media.load_audio(song)) / 16000 == pytest.approx(info.duration_s, abs=0.1)
    with pytest.raises(MediaError, match="audio-only"):
        next(media.iter_frames(song))


def test_probe_low_but_accepted_resolution(media_dir):
    info = media.probe(write_tiny(media_dir / "tiny32.mkv", 32, 24))
    assert (info.width, info.height) == (32, 24)
    assert min(info.width, info.height) < media.LOW_RES_SIDE  # the pipeline flags it low_resolution


# --------------------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_paths(media_dir, broken_files, moving_clip) -> dict[str, Path]:
    folder = media_dir / "a_folder.mp4"
    folder.mkdir(exist_ok=True)
    return {
        **broken_files,
        "missing": media_dir / "does_not_exist.mp4",
        "directory": folder,
        "one_pixel": write_tiny(media_dir / "one_pixel.mkv", 1, 1),
        "cut_index_first": faststart_cut(moving_clip, media_dir / "cut_index_first.mp4", 0.9),
    }


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("truncated", "truncated"),
        ("zero_byte", "empty"),
        ("text", "not a readable media file"),
        ("missing", "not found"),
        ("directory", "directory"),
        ("one_pixel", "1x1"),
    ],
)
def test_probe_rejects_bad_input(bad_paths, kind, words):
    path = bad_paths[kind]
    with pytest.raises(MediaError) as err:
        media.probe(path)
    assert err.value.path == str(path)
    assert path.name in str(err.value)
    assert words in err.value.message


@pytest.mark.parametrize("kind", ["truncated", "zero_byte", "text", "missing", "directory", "cut_index_first"])
def test_iter_frames_and_load_audio_reject_bad_input(bad_paths, kind):
    path = bad_paths[kind]
    with pytest.raises(MediaError, match=path.name):
        list(media.iter_frames(path))
    if kind != "cut_index_first":
        with pytest.raises(MediaError, match=path.name):
            media.load_audio(path)


def test_index_first_cut_opens_but_stops_early(bad_paths):
    path = bad_paths["cut_index_first"]
    assert media.probe(path).duration_s == pytest.approx(3.0, abs=0.05)  # the index still promises 3 s
    with pytest.raises(MediaError, match=r"video stops at [\d.]+ s of the declared 3\.00 s"):
        for _ in media.iter_frames(path):
            pass


def test_audio_only_file_into_iter_frames(happy_speech_wav):
    with pytest.raises(MediaError, match="no video stream: this is an audio-only file") as err:
        next(media.iter_frames(happy_speech_wav))
    assert err.value.path == str(happy_speech_wav)


def test_limits_name_the_limit_and_how_to_raise_it(astronaut_clip):
    with pytest.raises(MediaError, match=r"over the 0 min limit.*--max-duration"):
        media.probe(astronaut_clip, max_duration_s=2.0)
    assert media.probe(astronaut_clip, max_duration_s=10.0).duration_s == pytest.approx(3.0, abs=0.05)
    with pytest.raises(MediaError, match="over the 256-pixel maximum side"):
        media.probe(astronaut_clip, limits=media.Limits(max_side=256))
    with pytest.raises(MediaError, match="below the 600-pixel minimum side"):
        media.probe(astronaut_clip, limits=media.Limits(min_side=600))
    with pytest.raises(MediaError, match="GiB limit"):
        media.probe(astronaut_clip, limits=media.Limits(max_file_bytes=1000))


def test_file_with_only_subtitles(media_dir):
    srt = media_dir / "only.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    path = media_dir / "subtitles_only.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(srt), str(path)], check=True)
    with pytest.raises(MediaError, match="no video or audio stream") as err:
        media.probe(path)
    assert err.value.path == str(path)
    assert media.load_audio(path) is None
    with pytest.raises(MediaError, match="no video stream: this is a file without"):
        next(media.iter_frames(path))


# -------------------------------------------------------------------------------------------------------- iter_frames
def test_iter_frames_is_a_lazy_generator(astronaut_clip):
    frames = media.iter_frames(astronaut_clip)
    assert inspect.isgenerator(frames)
    t, rgb = next(frames)
    frames.close()
    assert t == 0.0 and rgb.dtype == np.uint8 and rgb.shape == (512, 512, 3)


def test_iter_frames_every_frame(astronaut_clip):
    frames = list(media.iter_frames(astronaut_clip))
    times = np.array([t for t, _ in frames])
    assert len(frames) == 75
    np.testing.assert_allclose(np.diff(times), 0.04, atol=1e-6)
    # the decoded picture is the astronaut (H.264 is lossy: compare loosely)
    assert np.abs(frames[10][1].astype(int) - mf.astronaut().astype(int)).mean() < 6


def test_iter_frames_sampling(astronaut_clip):
    times = np.array([t for t, _ in media.iter_frames(astronaut_clip, fps=10)])
    assert len(times) == 30
    assert times[0] == 0.0
    # each kept frame is a real 25 fps frame, the nearest to k/10 s (ties go to the earlier frame)
    np.testing.assert_allclose(times * 25, np.round(times * 25), atol=1e-6)
    assert np.all(np.abs(times - np.arange(30) / 10) <= 0.02 + 1e-9)
    assert len(list(media.iter_frames(astronaut_clip, fps=50))) == 75  # above the native rate: every frame
    assert len(list(media.iter_frames(astronaut_clip, fps=1))) == 3
    with pytest.raises(ValueError):
        next(media.iter_frames(astronaut_clip, fps=0))


def test_iter_frames_downscale(astronaut_clip, landscape_clip):
    _, rgb = next(media.iter_frames(astronaut_clip, max_side=256))
    assert rgb.shape == (256, 256, 3)
    _, rgb = next(media.iter_frames(landscape_clip, max_side=300))  # 600x400 -> 300x200, aspect kept
    assert rgb.shape == (200, 300, 3)
    _, rgb = next(media.iter_frames(landscape_clip, max_side=2000))  # never upscaled
    assert rgb.shape == (400, 600, 3)


def test_prefetch_keeps_order_and_errors(astronaut_clip, bad_paths):
    plain = [t for t, _ in media.iter_frames(astronaut_clip, fps=5)]
    assert [t for t, _ in media.prefetch(media.iter_frames(astronaut_clip, fps=5), size=2)] == plain
    with pytest.raises(MediaError, match="video stops at"):
        list(media.prefetch(media.iter_frames(bad_paths["cut_index_first"])))


def test_prefetch_stops_its_thread_when_closed(astronaut_clip):
    import threading

    frames = media.prefetch(media.iter_frames(astronaut_clip), size=2)
    next(frames)
    assert any(t.name == "frame-prefetch" for t in threading.enumerate())
    frames.close()
    assert not any(t.name == "frame-prefetch" for t in threading.enumerate())


def test_sideways_phone_clip_is_turned_upright(landscape_clip, media_dir):
    """A display rotation (what phones write for portrait video) is applied, as FFmpeg's own autorotate does."""
    rotated = media_dir / "rotated.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(landscape_clip), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)  # fmt: skip
    info = media.probe(rotated)
    assert (info.width, info.height) == (400, 600)  # displayed size; stored 600x400
    _, upright = next(media.iter_frames(rotated))
    _, stored = next(media.iter_frames(landscape_clip))
    assert upright.shape == (600, 400, 3)
    np.testing.assert_array_equal(upright, np.rot90(stored, 1))
    _, small = next(media.iter_frames(rotated, max_side=300))
    assert small.shape == (300, 200, 3)


# --------------------------------------------------------------------------------------------------------- load_audio
def test_load_audio_from_container_matches_the_wav(astronaut_speech_clip, happy_speech_wav):
    from_clip = media.load_audio(astronaut_speech_clip)
    from_wav = media.load_audio(happy_speech_wav)
    assert from_clip.dtype == np.float32 and from_clip.ndim == 1
    assert from_wav.dtype == np.float32 and from_wav.ndim == 1
    assert abs(len(from_clip) - len(from_wav)) < 0.1 * 16000  # AAC pads up to a frame and a little more
    n = min(len(from_clip), len(from_wav))
    # same sound: the AAC round trip keeps the waveform close (align on the cross-correlation peak first)
    lag = int(np.argmax(np.correlate(from_clip[:16000], from_wav[:16000], mode="full"))) - 15999
    a, b = (from_clip[lag:n], from_wav[: n - lag]) if lag >= 0 else (from_clip[: n + lag], from_wav[-lag:n])
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_load_audio_rates_and_absence(happy_speech_wav, astronaut_clip):
    y16 = media.load_audio(happy_speech_wav)
    y8 = media.load_audio(happy_speech_wav, sr=8000)
    assert len(y8) == pytest.approx(len(y16) / 2, abs=2)
    assert media.load_audio(astronaut_clip) is None  # no audio stream


def test_load_audio_container_resampling(media_dir):
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
    path = media_dir / "tone44k.mkv"
    with av.open(str(path), mode="w") as out:
        a = out.add_stream("flac", rate=44100)
        a.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.time_base, frame.pts = 44100, Fraction(1, 44100), 0
        for packet in a.encode(frame):
            out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    y = media.load_audio(path)
    assert len(y) == pytest.approx(16000, abs=40)
    spectrum = np.abs(np.fft.rfft(y[1000:15000]))
    assert np.argmax(spectrum) * 16000 / 14000 == pytest.approx(440, abs=3)


# ------------------------------------------------------------------------------------------------------------ memory
@pytest.mark.slow
def test_streaming_memory_is_bounded(tmp_path):
    """A 10-minute clip streams in bounded memory: peak RSS grows by far less than the decoded frames would take.
    (slow: encodes 15,000 frames first)"""
    n, w, h = 15000, 320, 240
    path = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate=25",
                    "-t", str(n / 25), "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)  # fmt: skip
    script = textwrap.dedent(f"""
        import resource, sys
        from emoreason.media import iter_frames
        frames = iter_frames({str(path)!r}, fps=None)
        next(frames)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        count = 1 + sum(1 for _ in frames)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(count, (peak - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.split()
    count, grew_mb = int(out[0]), int(out[1])
    assert count == n
    held_mb = n * w * h * 3 / 2**20  # 3.3 GB if the frames were kept
    assert grew_mb < 100 < held_mb


# ------------------------------------------------------------------------------------------------ truncated audio
@pytest.fixture(scope="module")
def speech_mp3(media_dir, happy_speech_wav) -> Path:
    dst = media_dir / "happy.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(happy_speech_wav), "-codec:a", "libmp3lame",
                    "-q:a", "4", str(dst)], check=True)  # fmt: skip
    return dst


def test_truncated_audio_only_file_is_flagged_with_both_durations(speech_mp3, tmp_path):
    """Half an MP3 still declares the whole length in its header: the evidence says what was decoded, and flags it."""
    from emoreason.perception.pipeline import perceive

    full = perceive(speech_mp3, asr=False)
    assert not full.has_flag("truncated_audio")
    assert full.media.duration_s == pytest.approx(media.probe(speech_mp3).duration_s)
    half = mf.truncate(speech_mp3, tmp_path / "half.mp3", 0.5)
    declared = media.probe(half).duration_s
    decoded = len(media.load_audio(half)) / 16000
    assert declared == pytest.approx(full.media.duration_s, abs=0.05) and decoded < 0.7 * declared
    ev = perceive(half, asr=False)
    (flag,) = [f for f in ev.flags if f.code == "truncated_audio"]
    assert f"{decoded:.2f} s" in flag.message and f"{declared:.2f} s" in flag.message
    assert ev.media.duration_s == pytest.approx(decoded, abs=0.001)
    assert ev.prosody is not None and ev.prosody.times[-1] <= decoded
