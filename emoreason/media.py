"""Reading clips: validation (:func:`probe`), streamed RGB frames (:func:`iter_frames`) and 16 kHz mono audio
(:func:`load_audio`).

Containers (MP4, MKV, MOV, WebM, AVI, ...) are read with PyAV; audio-only files (WAV, FLAC, OGG, MP3, ...) are read with
soundfile and resampled with librosa. Every problem a user can cause is a :class:`~emoreason.errors.MediaError` naming
the file and the cause, never a crash:

- missing path, a directory, a zero-byte file, a file over ``max_file_bytes``;
- a file FFmpeg cannot parse (text named ``.mp4``, an MP4 cut before its ``moov`` atom) or whose streams decode to no
  frame at all;
- no video and no audio stream;
- a picture smaller than ``MIN_SIDE`` pixels on a side (a 1x1 video cannot hold a face: an error, not a flag; pictures
  between ``MIN_SIDE`` and ``LOW_RES_SIDE`` are accepted and the pipeline flags them ``low_resolution``) or larger than
  ``MAX_SIDE`` (beyond 8K);
- a clip longer than ``max_duration_s`` (30 min by default; raise it with ``--max-duration`` or the keyword).

Photos (JPEG, PNG, BMP, WebP, TIFF, a one-frame GIF: an image demuxer whose stream decodes to one frame) are stills:
``MediaInfo.still_image`` is True, ``duration_s`` is 0 and ``native_fps`` None; :func:`iter_frames` gives their one frame
at t = 0. An animated GIF is a clip.

Frames are streamed one at a time (memory does not grow with clip length). A file whose video stops decoding before its
declared duration (with a decoder error, or silently more than 3 frames / 2 % early against the video stream's own
duration — 1 s / 10 % when only the container's duration is known) is an error naming the time reached, never a partial
result: evidence from a truncated file would silently describe only its beginning.

An audio-only file whose audio decodes to less than its declared duration (more than 0.25 s / 2 % short: an MP3 cut in
half keeps the full length in its header) is not silent either: :func:`audio_truncation` sets ``MediaInfo.duration_s``
to what was decoded and returns a ``truncated_audio`` quality flag naming both lengths, so the evidence says it covers
only the beginning. (A video's audio track may legitimately end before the picture; the video check above covers
containers.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from emoreason.errors import MediaError
from emoreason.evidence import MediaInfo, QualityFlag

log = logging.getLogger(__name__)

MIN_SIDE = 16  # px: below this on either side a clip is rejected
LOW_RES_SIDE = 64  # px: below this the pipeline flags low_resolution (a face would be tiny)
MAX_SIDE = 8192  # px: beyond 8K on the long side a clip is rejected
MAX_DURATION_S = 30 * 60.0
MAX_FILE_BYTES = 8 * 1024**3
AUDIO_ONLY_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                            ".wmv", ".flv", ".3gp", ".gif"})  # fmt: skip
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# what a folder input (``report DIR``) takes as clips; a single file is read whatever its name, if FFmpeg can open it
MEDIA_SUFFIXES = AUDIO_ONLY_SUFFIXES | VIDEO_SUFFIXES | IMAGE_SUFFIXES | {".m4a", ".aac"}
# decoding may end this much before the declared duration without being an error: 3 frames or 2 % of the video
# stream's own duration when the container states it, else 1 s or 10 % of the container's duration
_EARLY_END_FRACTION_STREAM = 0.02
_EARLY_END_S = 1.0
_EARLY_END_FRACTION = 0.1
# an audio-only file may decode this much shorter than it declares (codec padding, header rounding)
_AUDIO_SHORT_S = 0.25
_AUDIO_SHORT_FRACTION = 0.02


@dataclass(frozen=True)
class Limits:
    """What :func:`probe` accepts. The defaults suit a laptop; long recordings need ``max_duration_s`` raised."""

    max_duration_s: float = MAX_DURATION_S
    max_file_bytes: int = MAX_FILE_BYTES
    min_side: int = MIN_SIDE
    max_side: int = MAX_SIDE


def _why(e: Exception) -> str:
    """FFmpeg's reason without the errno and the C function name."""
    return getattr(e, "strerror", None) or str(e)


def _check_path(path: str | Path, limits: Limits) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError("file not found", p)
    if p.is_dir():
        raise MediaError("is a directory, not a media file", p)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise MediaError(f"cannot read file: {e.strerror or e}", p) from None
    if size == 0:
        raise MediaError("file is empty (0 bytes)", p)
    if size > limits.max_file_bytes:
        raise MediaError(
            f"file is {size / 1024**3:.1f} GiB, over the {limits.max_file_bytes / 1024**3:.1f} GiB limit", p
        )
    return p


def _open(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p), mode="r")
    except av.error.InvalidDataError:
        raise MediaError("not a readable media file (unknown format, or truncated/corrupt container)", p) from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(f"cannot open media file: {_why(e)}", p) from None


def _is_audio_only_file(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_ONLY_SUFFIXES


def _stream_time0(stream: av.stream.Stream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _duration(container: av.container.InputContainer) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = 0.0
    for s in container.streams:
        if s.duration is not None and s.time_base is not None:
            best = max(best, float(s.duration * s.time_base))
    return best


def _video_streams(container: av.container.InputContainer) -> list[av.video.stream.VideoStream]:
    """Video streams that are moving pictures: cover art in music files (an attached picture) is not video."""
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def _first_frame(container: av.container.InputContainer, stream: av.stream.Stream, p: Path):
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise MediaError(
            f"the {stream.type} stream cannot be decoded: {_why(e)} (truncated or corrupt file)", p
        ) from None
    raise MediaError(f"the {stream.type} stream decodes to no frames (truncated or corrupt file)", p)


def _is_still(container: av.container.InputContainer, p: Path) -> bool:
    """A photo: an image demuxer (``image2`` for JPEG and the like, ``*_pipe`` for PNG/BMP/WebP/TIFF/..., ``gif``) whose
    video stream decodes to exactly one frame (an animated GIF is a clip)."""
    names = set(container.format.name.split(","))
    if not (names & {"image2", "gif"} or any(n.endswith("_pipe") for n in names)):
        return False
    with _open(p) as again:
        frames = 0
        try:
            for _ in again.decode(_video_streams(again)[0]):
                frames += 1
                if frames > 1:
                    break
        except av.error.FFmpegError as e:
            raise MediaError(f"the image cannot be decoded: {_why(e)} (truncated or corrupt file)", p) from None
    return frames == 1


def probe(
    path: str | Path,
    *,
    limits: Limits | None = None,
    max_duration_s: float | None = None,
) -> MediaInfo:
    """Validate a clip and describe it. Decodes the first video and audio frame to make sure the streams are readable.

    ``max_duration_s`` overrides ``limits.max_duration_s``. ``sample_fps``/``n_frames``/``audio_sample_rate`` of the
    returned :class:`MediaInfo` are left for the pipeline to fill in.
    """
    limits = limits or Limits()
    if max_duration_s is not None:
        limits = Limits(max_duration_s, limits.max_file_bytes, limits.min_side, limits.max_side)
    p = _check_path(path, limits)
    with _open(p) as container:
        vstreams = _video_streams(container)
        astreams = list(container.streams.audio)
        if not vstreams and not astreams:
            raise MediaError("no video or audio stream in the file", p)
        duration = _duration(container)
        width = height = None
        native_fps = None
        still = False
        if vstreams:
            vs = vstreams[0]
            frame = _first_frame(container, vs, p)
            width, height = frame.width, frame.height
            if _quarter_turns(frame) % 2:  # phone clips stored sideways: report the size as displayed
                width, height = height, width
            if min(width, height) < limits.min_side:
                raise MediaError(
                    f"video is {width}x{height} pixels, below the {limits.min_side}-pixel minimum side: too small to "
                    "analyse a face", p)  # fmt: skip
            if max(width, height) > limits.max_side:
                raise MediaError(
                    f"video is {width}x{height} pixels, over the {limits.max_side}-pixel maximum side (8K); "
                    "downscale it first (e.g. ffmpeg -vf scale=-2:1080)", p)  # fmt: skip
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            native_fps = float(rate) if rate else None
            still = not astreams and _is_still(container, p)
            if still:  # a photo: one frame, no time axis (duration 0, no frame rate)
                duration, native_fps = 0.0, None
            container.seek(0)
        if astreams:
            _first_frame(container, astreams[0], p)
        if duration <= 0 and not still:
            raise MediaError("the file declares no duration (empty or corrupt stream)", p)
        if duration > limits.max_duration_s:
            raise MediaError(
                f"clip is {duration / 60:.1f} min long, over the {limits.max_duration_s / 60:.0f} min limit; cut it "
                "or raise the limit (emoreason perceive --max-duration SECONDS, or max_duration_s=)", p)  # fmt: skip
        return MediaInfo(
            path=str(p),
            container=container.format.name,
            duration_s=round(duration, 4),
            has_video=bool(vstreams),
            has_audio=bool(astreams),
            width=width,
            height=height,
            native_fps=round(native_fps, 4) if native_fps else None,
            still_image=still,
        )


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that display the frame upright (its display-matrix rotation, as FFmpeg's
    autorotate applies it)."""
    return int(round((frame.rotation or 0) / 90)) % 4


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size :func:`iter_frames` gives a ``width`` x ``height`` picture under ``max_side``."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    # even sizes keep swscale on its fast paths; never below 2 px
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def iter_frames(
    path: str | Path,
    fps: float | None = None,
    max_side: int | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(time_s, RGB uint8 HxWx3)`` frames of the first video stream.

    ``fps``: sample rate (``None`` = every decoded frame); a frame is kept when its presentation time reaches the next
    sampling instant ``k / fps``, so the kept times are real frame times from the stream's pts (relative to the stream
    start). Frames that are not kept are decoded (the codec needs them) but not converted to RGB. ``max_side``: the long
    side is downscaled to at most this many pixels (aspect kept; never upscaled). Frames stored sideways (a display
    rotation, as phones write) are turned upright. Decoding runs on FFmpeg's threads.
    """
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive or None, got {fps}")
    p = _check_path(path, Limits(max_file_bytes=2**63))
    with _open(p) as container:
        vstreams = _video_streams(container)
        if not vstreams:
            kind = "an audio-only file" if container.streams.audio else "a file without audio or video"
            raise MediaError(f"no video stream: this is {kind}", p)
        stream = vstreams[0]
        stream.thread_type = "AUTO"
        t0 = _stream_time0(stream)
        rate = stream.average_rate or stream.guessed_rate
        frame_dt = 1.0 / float(rate) if rate else 0.04
        if stream.duration and stream.time_base:  # the video stream's own length (MP4, MOV): a tight check
            declared = float(stream.duration * stream.time_base)
            slack = max(3 * frame_dt, _EARLY_END_FRACTION_STREAM * declared)
        else:  # only the container's length, which may include a longer audio track: a loose check
            declared = _duration(container)
            slack = max(_EARLY_END_S, _EARLY_END_FRACTION * declared)
        tol = 0.49 * frame_dt  # just under half a frame: the frame nearest each sampling instant, earlier on ties
        k = 0  # next sampling instant index
        n_decoded = 0
        t = 0.0
        size: tuple[int, int] | None = None
        turns = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) - t0 if frame.time is not None else n_decoded * frame_dt
                t = max(0.0, t)
                n_decoded += 1
                if fps is not None:
                    if t + tol < k / fps:
                        continue
                    while k / fps <= t + tol:
                        k += 1
                if size is None:
                    size = scaled_size(frame.width, frame.height, max_side)
                    turns = _quarter_turns(frame)
                w, h = size
                if (w, h) == (frame.width, frame.height):
                    rgb = frame.to_ndarray(format="rgb24")
                else:
                    rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
                if turns:
                    rgb = np.ascontiguousarray(np.rot90(rgb, turns))
                yield round(t, 6), rgb
        except av.error.FFmpegError as e:
            raise MediaError(
                f"video decoding failed at {t:.2f} s of {declared:.2f} s: {_why(e)} (truncated or corrupt file)", p
            ) from None
        if n_decoded == 0:
            raise MediaError("the video stream decodes to no frames (truncated or corrupt file)", p)
        end = t + frame_dt
        if declared > 0 and end < declared - slack:
            raise MediaError(
                f"video stops at {end:.2f} s of the declared {declared:.2f} s: the file is truncated or corrupt", p
            )


def _load_audio_file(p: Path, sr: int) -> np.ndarray:
    import librosa
    import soundfile as sf

    try:
        y, native = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MediaError(f"cannot read audio file: {e}", p) from None
    if len(y) == 0:
        raise MediaError("the audio file holds no samples", p)
    y = y.mean(axis=1)
    if native != sr:
        y = librosa.resample(y, orig_sr=native, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def load_audio(path: str | Path, sr: int = 16000) -> np.ndarray | None:
    """The first audio stream as mono float32 in [-1, 1] at ``sr`` Hz; ``None`` when the file has no audio stream.

    Audio-only files (by suffix) are read with soundfile and resampled with librosa (soxr); containers are decoded and
    resampled by PyAV (FFmpeg's swresample). The whole track is returned at once: 30 min at 16 kHz is 115 MB.
    """
    p = _check_path(path, Limits(max_file_bytes=2**63))
    if _is_audio_only_file(p):
        import soundfile as sf

        try:
            sf.info(str(p))
        except (sf.LibsndfileError, RuntimeError) as e:
            # not a format this libsndfile knows (e.g. MP3 with an old libsndfile): FFmpeg below reads it or says why
            log.debug("soundfile cannot read %s (%s); decoding with PyAV", p, e)
        else:
            return _load_audio_file(p, sr)
    with _open(p) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks: list[np.ndarray] = []
        t = 0.0
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    t = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:
            raise MediaError(f"audio decoding failed at {t:.2f} s: {_why(e)} (truncated or corrupt file)", p) from None
    if not chunks:
        raise MediaError("the audio stream decodes to no samples (truncated or corrupt file)", p)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def audio_truncation(info: MediaInfo, n_samples: int, sr: int) -> QualityFlag | None:
    """Compare the decoded audio (``n_samples`` at ``sr`` Hz) of an audio-only file with its declared duration.

    When it is shorter than ``info.duration_s`` by more than 0.25 s or 2 %, ``info.duration_s`` is set to the decoded
    length and a ``truncated_audio`` flag naming both lengths is returned; otherwise ``None``. Files with a video stream
    are left alone (their audio may end before the picture; :func:`iter_frames` checks the video itself)."""
    if info.has_video or sr <= 0:
        return None
    declared, decoded = info.duration_s, n_samples / sr
    if declared - decoded <= max(_AUDIO_SHORT_S, _AUDIO_SHORT_FRACTION * declared):
        return None
    info.duration_s = round(decoded, 4)
    log.warning(
        "%s: the audio decodes to %.2f s of the declared %.2f s (truncated file)", info.path, decoded, declared
    )
    return QualityFlag(
        code="truncated_audio",
        message=f"the audio decodes to {decoded:.2f} s of the declared {declared:.2f} s: the file is truncated or "
        f"corrupt, and the evidence covers only its first {decoded:.2f} s",
    )


def prefetch(items: Iterator[tuple[float, np.ndarray]], size: int = 4) -> Iterator[tuple[float, np.ndarray]]:
    """Run a frame iterator on a background thread, at most ``size`` frames ahead (memory stays bounded).

    FFmpeg decoding and the face models both release the GIL, so on two or more cores decoding the next frames overlaps
    with analysing the current one. Errors from the iterator are raised here; closing this generator stops the thread.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()
    done = object()

    def worker() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None and stop.is_set():
                close()
        q.put(done)

    thread = threading.Thread(target=worker, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
