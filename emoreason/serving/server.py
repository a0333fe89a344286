"""The HTTP server: an OpenAI-compatible API over perception + reasoning, a report endpoint, metrics and the web page.

Endpoints: ``POST /v1/chat/completions`` (the clip travels in a content part: ``video_url`` / ``input_audio`` /
``file`` as a base64 data URL, or a path / ``file://`` URL under the media root; the last user text is the question,
none asks for the full analysis; SSE streaming; ``response_format`` ``json_object`` = the answer JSON, ``json_schema``
= the :class:`~emoreason.report.Report` JSON), ``GET /v1/models``, ``POST /v1/reports`` (multipart ``file`` or form
``path`` → Report JSON), ``GET /v1/clips`` and ``GET /media/...`` (the media root, for the page), ``GET /health``,
``GET /metrics`` and ``GET /`` (the page). Every completion carries an ``emoreason`` field: chain of thought, basic and
compound labels, AUs, AU events with times, transcript, flags.

Limits: upload size (413, from Content-Length before anything is read and from the bytes actually received), clip
duration and unreadable media (422, the one-line reason), unknown model (404), paths outside the media root (403, after
resolving symlinks and ``..``), bounded concurrency with a bounded queue (503 with Retry-After when full, answered
before the body is read: a request holds its place from its headers on), a per-request deadline (504), an optional
bearer key (401). Connections: headers must arrive within ``header_timeout_s`` and the body within ``body_timeout_s``
(408, then the connection is closed), at most ``max_connections`` are open (503 and closed above). Errors are
OpenAI-style ``{"error": {"message", "type", "code"}}``. One JSON log line per request; a client that leaves mid-request
is logged as ``client_disconnect`` and counted apart from the answered statuses.

Memory: bodies are never held whole. A chat body is parsed as it arrives with its long strings (the base64 clip) spilled
to disk (:mod:`emoreason.serving.bodies`), then decoded from disk in chunks; a multipart upload is spooled to disk by
the form parser. So the memory of a request is a few MB whatever the clip's size, and at most ``max_concurrency +
queue_size`` requests are in flight. Parsing, decoding, hashing and writing run in worker threads, off the event loop.

``usage`` counts words (whitespace-separated), not model tokens: ``prompt_tokens`` the words of the text turns sent
(the question and the history), ``completion_tokens`` the words of the reply; ``usage.counted`` is ``"words"``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import mimetypes
import re
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

import h11
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from emoreason import __version__
from emoreason.errors import BackendError, ConfigError, EmoReasonError, ModelError
from emoreason.evidence import Evidence
from emoreason.io import sha256_file
from emoreason.reasoning.engine import Analysis
from emoreason.reasoning.qa import QAAnswer
from emoreason.serving.bodies import BodyError, SpillingJSONReader, decode_base64_file
from emoreason.serving.cache import PerceptionCache, cache_key
from emoreason.serving.engines import Engine, make_engine
from emoreason.serving.settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("emoreason.serving.access")

STATIC_DIR = Path(__file__).parent / "static"
FEED_BYTES = 1 << 20  # body bytes gathered before they are handed to a worker thread
COPY_CHUNK = 1 << 20  # bytes per read when an upload is copied and hashed
LATENCY_WINDOW = 2048  # requests the latency percentiles are taken over
MEDIA_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".wav", ".flac", ".mp3", ".ogg", ".m4a"})
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.-]+)*;base64,(?P<data>.*)$", re.DOTALL)
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 408: "timeout", 413: "request_too_large", 422: "invalid_media",
                500: "server_error", 502: "backend_error", 503: "overloaded", 504: "timeout"}  # fmt: skip
_BODY_CODES = {400: "invalid_body", 408: "body_timeout", 413: "too_large"}


class HTTPError(Exception):
    """An error answered as OpenAI-style JSON with ``status`` (and extra ``headers``, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers

    @classmethod
    def of(cls, e: BodyError) -> HTTPError:
        return cls(e.status, e.message, _BODY_CODES.get(e.status))

    def response(self) -> JSONResponse:
        err = {"message": self.message, "type": _ERROR_TYPES.get(self.status, "error"), "code": self.code}
        return JSONResponse({"error": err}, status_code=self.status, headers=self.headers)


@dataclass
class Clip:
    path: Path
    name: str  # what messages and reports call it (never a server temp path)
    digest: str
    temp_dir: Path | None = None  # removed when the request's work ends


@dataclass
class Result:
    evidence: Evidence
    analysis: Analysis
    qa: QAAnswer | None
    cache_hit: bool
    clip: Clip


# --- metrics and the request limiter ----------------------------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests = 0
        self.errors = 0
        self.disconnects = 0  # clients that left before their answer; not in by_status
        self.by_status: dict[str, int] = {}
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record(self, status: int, latency_s: float) -> None:
        self.requests += 1
        self.errors += status >= 400
        self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1
        self.latencies.append(latency_s)

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


class Slot:
    """One request's place in the :class:`Limiter`, taken before its body is read (see :meth:`Limiter.slot`)."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.held = True
        self.handed_to_job = False  # a job past its deadline keeps the slot until its thread ends

    def release(self) -> None:
        if self.held:
            self.held = False
            self.limiter.pending -= 1

    async def __aenter__(self) -> Slot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.handed_to_job:
            self.release()

    async def run(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """Run ``fn`` in a worker thread once one of the ``concurrency`` slots is free; 504 past ``timeout_s``."""
        lim = self.limiter
        deadline = time.monotonic() + timeout_s
        try:
            await asyncio.wait_for(lim.sem.acquire(), timeout_s)
        except TimeoutError:
            raise HTTPError(504, f"timed out after {timeout_s:g} s waiting for a free slot", "timeout") from None
        lim.running += 1
        fut = asyncio.get_running_loop().run_in_executor(lim.executor, fn)

        def release(_: Any = None) -> None:
            lim.running -= 1
            lim.sem.release()
            self.release()

        self.handed_to_job = True
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            fut.add_done_callback(release)
            raise HTTPError(504, f"the request took longer than the {timeout_s:g} s limit", "timeout") from None
        except BaseException:
            if fut.done():
                release()
            else:
                fut.add_done_callback(release)
            raise
        release()
        return result


class Limiter:
    """At most ``concurrency`` jobs run (in threads), at most ``queue_size`` more requests are in flight (reading
    their body or waiting for a slot). A request takes its place before its body is read, so a full server answers
    503 without reading anything; a job past its deadline gets 504 and keeps its place until its thread really ends,
    so a stuck job cannot let more work in than configured."""

    def __init__(self, concurrency: int, queue_size: int) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue_size
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="emoreason-job")
        self._sem: asyncio.Semaphore | None = None
        self.pending = 0  # in flight: reading, waiting or running
        self.running = 0

    @property
    def sem(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._sem

    @property
    def queue_depth(self) -> int:
        return self.pending - self.running

    def slot(self, retry_after_s: int = 1) -> Slot:
        """A place for one request, or 503 (with Retry-After) when ``capacity`` requests are in flight."""
        if self.pending >= self.capacity:
            raise HTTPError(503, f"server busy: {self.running} requests running and {self.queue_depth} waiting; "
                            "retry later", "queue_full", {"Retry-After": str(retry_after_s)})  # fmt: skip
        self.pending += 1
        return Slot(self)


# --- reading requests -------------------------------------------------------------------------------------------------


def _limited_by_header(request: Request, limit: int) -> None:
    """413 when the announced Content-Length is over ``limit`` (before anything is read or admitted)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is {int(declared)} bytes, over the {limit}-byte limit", "too_large")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, stopped with 413 once more than ``limit`` bytes are announced or received."""
    _limited_by_header(request, limit)
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise HTTPError(413, f"request body is over the {limit}-byte limit", "too_large")
        yield chunk


async def read_json(request: Request, limit: int, reader: SpillingJSONReader) -> Any:
    """The JSON body (long strings spilled to disk by ``reader``), fed to ``reader`` in worker threads."""
    buf = bytearray()
    try:
        async for chunk in _limited(request, limit):
            if len(chunk) >= FEED_BYTES:  # a large chunk goes as it is (no copy)
                if buf:
                    await to_thread.run_sync(reader.feed, bytes(buf))
                    buf = bytearray()
                await to_thread.run_sync(reader.feed, chunk)
                continue
            buf += chunk
            if len(buf) >= FEED_BYTES:
                data, buf = bytes(buf), bytearray()
                await to_thread.run_sync(reader.feed, data)
        await to_thread.run_sync(reader.feed, bytes(buf))
        return await to_thread.run_sync(reader.finish)
    except BodyError as e:
        raise HTTPError.of(e) from None


CLIP_DATA_KEYS = frozenset({"video_url", "url", "data", "file_data"})  # where a spilled string may be a clip


def restore_strings(obj: Any, reader: SpillingJSONReader, budget: int) -> None:
    """Read back, in place, the spilled strings of ``obj`` that cannot be clip data (text, names, paths)."""
    stack, used = [obj], 0
    while stack:
        x = stack.pop()
        items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
        for k, v in list(items):
            if reader.spill_of(v) is not None and k not in CLIP_DATA_KEYS:
                x[k] = reader.restore(v)
                used += len(x[k])
                if used > budget:
                    raise HTTPError(413, f"the text of the request is over the {budget}-byte limit", "too_large")
            elif isinstance(v, dict | list):
                stack.append(v)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _suffix(mime: str | None, fallback: str) -> str:
    known = {"video/mp4": ".mp4", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
             "audio/mpeg": ".mp3", "video/webm": ".webm", "audio/webm": ".webm", "video/quicktime": ".mov"}  # fmt: skip
    if mime in known:
        return known[mime]
    return (mimetypes.guess_extension(mime) if mime else None) or fallback


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return ""
    texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    for t in texts:
        if not isinstance(t, str):
            raise HTTPError(400, f"a text content part needs a string 'text', got {json.dumps(t)[:40]}",
                            "invalid_messages")  # fmt: skip
    return " ".join(t.strip() for t in texts)


def _clip_part(content: Any) -> dict | None:
    if not isinstance(content, list):
        return None
    parts = [p for p in content if isinstance(p, dict) and p.get("type") in ("video_url", "input_audio", "file")]
    return parts[-1] if parts else None


def parse_messages(messages: Any) -> tuple[dict | None, str, list[dict[str, str]]]:
    """The last clip part, the last user text (the question, may be empty) and the earlier text turns."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise HTTPError(400, "messages must be a non-empty list of {role, content} objects", "invalid_messages")
    clip = None
    for m in messages:
        clip = _clip_part(m.get("content")) or clip
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise HTTPError(400, "messages hold no user message", "invalid_messages")
    last = users[-1]
    history = [{"role": m["role"], "content": _text_of(m.get("content"))} for m in messages[:last]
               if m.get("role") in ("user", "assistant") and _text_of(m.get("content"))]  # fmt: skip
    return clip, _text_of(messages[last].get("content")), history


# --- the service --------------------------------------------------------------------------------------------------------


class Service:
    """Perception (cached by content hash) and the engine, called from worker threads."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.cache: PerceptionCache[Evidence] = PerceptionCache(settings.cache_size)
        self.options = {"fps": settings.fps, "max_side": settings.max_side, "asr": settings.asr}

    def evidence(self, clip: Clip) -> tuple[Evidence, bool]:
        from emoreason.perception.pipeline import perceive

        def compute() -> Evidence:
            s = self.settings
            return perceive(  # fps 0: every frame
                clip.path, fps=s.fps or None, max_side=s.max_side, asr=s.asr, max_duration_s=s.max_duration_s
            )

        # the suffix is part of the key: perception treats a .wav and an .mp4 of the same bytes differently
        key = cache_key(clip.digest, {**self.options, "suffix": clip.path.suffix.lower()})
        ev, hit = self.cache.get_or_compute(key, compute)
        return ev.model_copy(update={"media": ev.media.model_copy(update={"path": clip.name})}), hit

    def run(self, clip: Clip, question: str, history: list[dict[str, str]],
            on_text: Callable[[str], None] | None = None) -> Result:  # fmt: skip
        """Perceive (or take from the cache), analyse and answer. ``on_text`` receives the reply the client reads (the
        answer to the question, else the analysis) as the engine writes it."""
        try:
            ev, hit = self.evidence(clip)
            stream = {"on_text": on_text} if on_text is not None else {}  # (an engine that cannot stream needs none)
            analysis = self.engine.analyze(ev, media=clip.path, **({} if question else stream))
            qa = self.engine.ask(ev, question, analysis, history, media=clip.path, **stream) if question else None
            return Result(ev, analysis, qa, hit, clip)
        except EmoReasonError as e:
            raise _http_error(e, clip.name) from None
        finally:
            if clip.temp_dir is not None:
                shutil.rmtree(clip.temp_dir, ignore_errors=True)

    # clips from requests

    def root(self) -> Path:
        if self.settings.media_root is None:
            raise HTTPError(403, "clips cannot be named by path on this server (no media root is configured); send "
                            "the clip as a base64 data URL", "path_not_allowed")  # fmt: skip
        return Path(self.settings.media_root)

    def local_path(self, ref: str) -> Path:
        """A path or file:// URL, allowed only when it resolves (symlinks and '..' followed) inside the media root."""
        root = self.root()
        raw = unquote(urlparse(ref).path) if ref.startswith("file://") else ref
        if "\x00" in raw:
            raise HTTPError(400, f"{raw!r}: a path cannot hold a NUL byte", "invalid_path")
        p = Path(raw).expanduser()
        resolved = (p if p.is_absolute() else root / p).resolve()
        if not resolved.is_relative_to(root):
            raise HTTPError(403, f"{raw}: outside the media root; only files under the media root can be named",
                            "path_not_allowed")  # fmt: skip
        if not resolved.is_file():
            raise HTTPError(422, f"{raw}: file not found under the media root", "invalid_media")
        return resolved

    # the clip_from_* methods read, decode, hash and write: call them in a worker thread, never on the event loop

    def _too_large(self, name: str, size: int) -> HTTPError:
        return HTTPError(413, f"{name}: clip is {_mb(size)}, over the {_mb(self.settings.max_upload_bytes)} limit",
                         "too_large")  # fmt: skip

    def clip_from_path(self, ref: str, folder: Path) -> Clip:
        p = self.local_path(ref)
        size = p.stat().st_size
        if size > self.settings.max_upload_bytes:
            raise self._too_large(p.name, size)
        return Clip(path=p, name=str(p.relative_to(self.root())), digest=sha256_file(p), temp_dir=folder)

    @staticmethod
    def _clip_path(folder: Path, suffix: str) -> Path:
        return folder / f"clip{suffix if suffix.lower() in MEDIA_SUFFIXES else '.mp4'}"

    def clip_from_bytes(self, data: bytes, name: str, suffix: str, folder: Path) -> Clip:
        if len(data) > self.settings.max_upload_bytes:
            raise self._too_large(name, len(data))
        if not data:
            raise HTTPError(422, f"{name}: file is empty (0 bytes)", "invalid_media")
        path = self._clip_path(folder, suffix)
        path.write_bytes(data)
        return Clip(path=path, name=name, digest=hashlib.sha256(data).hexdigest(), temp_dir=folder)

    def clip_from_file(self, f: IO[bytes], name: str, suffix: str, folder: Path) -> Clip:
        """The clip copied from an open (spooled) upload, hashed on the way, ``COPY_CHUNK`` at a time."""
        path, digest, size = self._clip_path(folder, suffix), hashlib.sha256(), 0
        f.seek(0)
        with path.open("wb") as out:
            while chunk := f.read(COPY_CHUNK):
                size += len(chunk)
                if size > self.settings.max_upload_bytes:
                    raise self._too_large(name, size)
                digest.update(chunk)
                out.write(chunk)
        if not size:
            raise HTTPError(422, f"{name}: file is empty (0 bytes)", "invalid_media")
        return Clip(path=path, name=name, digest=digest.hexdigest(), temp_dir=folder)

    def decode_b64(self, data: str, what: str) -> bytes:
        if len(data) * 3 // 4 > self.settings.max_upload_bytes + 3:
            raise HTTPError(413, f"{what}: clip is about {_mb(len(data) * 3 // 4)}, over the "
                            f"{_mb(self.settings.max_upload_bytes)} limit", "too_large")  # fmt: skip
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPError(400, f"{what}: not valid base64", "invalid_base64") from None

    def _base64_clip(self, value: str, reader: SpillingJSONReader | None, folder: Path, what: str,
                     name: str | None, suffix: str | None) -> Clip:  # fmt: skip
        """A clip from base64 (a data URL or bare): decoded from disk when the reader spilled it, else in memory.
        ``name``/``suffix`` None: taken from the data URL's media type."""
        spill = reader.spill_of(value) if reader is not None else None
        if spill is None:
            m = _DATA_URL.match(value)
            sfx = suffix or _suffix(m and m.group("mime"), ".mp4")
            raw = self.decode_b64(m.group("data") if m else value, what)
            return self.clip_from_bytes(raw, name or f"upload{sfx}", sfx, folder)
        tmp = folder / "decoded.bin"
        try:
            dec = decode_base64_file(spill, tmp, self.settings.max_upload_bytes, what)
        except BodyError as e:
            raise HTTPError(e.status, e.message, "invalid_base64" if e.status == 400 else "too_large") from None
        finally:
            spill.unlink(missing_ok=True)
        sfx = suffix or _suffix(dec.mime, ".mp4")
        name = name or f"upload{sfx}"
        if not dec.size:
            raise HTTPError(422, f"{name}: file is empty (0 bytes)", "invalid_media")
        path = tmp.rename(self._clip_path(folder, sfx))
        return Clip(path=path, name=name, digest=dec.sha256, temp_dir=folder)

    def clip_from_part(self, part: dict, folder: Path, reader: SpillingJSONReader | None = None) -> Clip:
        kind = part["type"]
        body = part.get(kind)
        if kind == "input_audio":
            if not isinstance(body, dict) or not isinstance(body.get("data"), str):
                raise HTTPError(400, "input_audio needs {data: base64, format}", "invalid_clip")
            fmt = str(body.get("format") or "wav").lower()
            return self._base64_clip(body["data"], reader, folder, "input_audio", f"upload.{fmt}", f".{fmt}")
        if kind == "file":
            if not isinstance(body, dict) or not isinstance(body.get("file_data"), str):
                raise HTTPError(400, "file needs {file_data: base64 data URL, filename}", "invalid_clip")
            name = Path(str(body.get("filename") or "upload.mp4")).name
            return self._base64_clip(body["file_data"], reader, folder, name, name, Path(name).suffix or None)
        url = body.get("url") if isinstance(body, dict) else body
        if not isinstance(url, str) or not url:
            raise HTTPError(400, "video_url needs {url: data URL, path or file:// URL}", "invalid_clip")
        if _DATA_URL.match(url) or (reader is not None and reader.spill_of(url) is not None):
            return self._base64_clip(url, reader, folder, "video_url", None, None)
        if urlparse(url).scheme in ("http", "https", "ftp"):
            raise HTTPError(422, "remote URLs are not fetched; send the clip as a base64 data URL or a path under "
                            "the media root", "remote_url")  # fmt: skip
        return self.clip_from_path(url, folder)


def _http_error(e: EmoReasonError, name: str) -> HTTPError:
    msg = f"{name}: {e.message}"
    if isinstance(e, ConfigError):
        return HTTPError(400, msg, "invalid_request")
    if isinstance(e, BackendError):
        return HTTPError(502, msg, "backend_error")
    if isinstance(e, ModelError):
        return HTTPError(500, msg, "model_error")
    return HTTPError(422, msg, "invalid_media")


# --- responses ----------------------------------------------------------------------------------------------------------


def evidence_field(r: Result, engine: str) -> dict[str, Any]:
    """The ``emoreason`` extension of every completion: reasoning, labels and the evidence it rests on."""
    a, ev = r.analysis, r.evidence
    return {
        "engine": engine,
        "clip": r.clip.name,
        "clip_sha256": r.clip.digest,
        "cache_hit": r.cache_hit,
        "emotion": a.emotion,
        "compound": a.compound,
        "aus": a.aus,
        "think": a.think,
        "caption": a.caption,
        "answer": a.answer_text(),
        "probabilities": a.probabilities,
        "au_events": [e.model_dump() for e in ev.au_events],
        "segments": [s.model_dump() for s in a.segments],
        "transcript": ev.transcript.text if ev.transcript is not None else None,
        "duration_s": ev.media.duration_s,
        "flags": [f.model_dump() for f in ev.flags],
        "qa": r.qa.model_dump() if r.qa is not None else None,
    }


def message_content(r: Result, response_format: str) -> str:
    a = r.analysis
    if response_format == "json_schema":
        from emoreason.report import build_report

        report = build_report(r.evidence, a).model_dump(mode="json")
        if r.qa is not None:
            report["qa"] = r.qa.model_dump()
        return json.dumps(report)
    if response_format == "json_object":
        obj: dict[str, Any] = {"emotion": a.emotion, "compound": a.compound, "aus": a.aus, "think": a.think,
                               "caption": a.caption}  # fmt: skip
        if r.qa is not None:
            obj.update(question=r.qa.question, answer=r.qa.answer, grounded=r.qa.grounded)
        return json.dumps(obj)
    return r.qa.answer if r.qa is not None else a.answer_text()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def usage_of(question: str, history: list[dict[str, str]], content: str) -> dict[str, Any]:
    """OpenAI's ``usage``, counted in words (see the module docstring): the text turns sent, and the reply."""
    prompt = sum(len(t.split()) for t in [*(h["content"] for h in history), question])
    completion = len(content.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "counted": "words"}  # fmt: skip


# --- connections: the ASGI guard and the uvicorn protocol ------------------------------------------------------------


class Guard:
    """ASGI middleware around the app: the bearer key, the request id, the body deadline, unhandled errors as 500
    JSON, client disconnects logged as such, the metrics and one JSON log line per request."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics, limiter: Limiter) -> None:
        self.app, self.settings, self.metrics, self.limiter = app, settings, metrics, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id") or uuid.uuid4().hex[:16]
        t0 = time.perf_counter()
        path, status, body_done = scope["path"], 0, False
        deadline = time.monotonic() + s.body_timeout_s

        async def receive_by_deadline() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HTTPError(408, f"the request body did not arrive within {s.body_timeout_s:g} s",
                                "body_timeout") from None  # fmt: skip
            body_done = msg["type"] != "http.request" or not msg.get("more_body", False)
            return msg

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode("latin-1"))]}
            await send(msg)

        event = "request"
        try:
            guarded = path.startswith(("/v1/", "/media/")) or path == "/metrics"
            sent = headers.get("authorization", "").encode("latin-1")
            if guarded and s.api_key and not hmac.compare_digest(sent, f"Bearer {s.api_key}".encode()):
                raise HTTPError(401, "missing or wrong API key (send Authorization: Bearer KEY)", "invalid_api_key")
            await self.app(scope, receive_by_deadline, send_with_id)
        except HTTPError as e:
            if not status:
                await e.response()(scope, receive, send_with_id)
        except ClientDisconnect:
            event = "client_disconnect"
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], path)
            if not status:
                await HTTPError(500, "internal server error (see the server log)", "internal").response()(
                    scope, receive, send_with_id
                )
        dt = time.perf_counter() - t0
        if event == "client_disconnect":
            self.metrics.disconnects += 1
        elif path.startswith("/v1/"):
            self.metrics.record(status, dt)
        client = scope.get("client")
        access_log.info(json.dumps({"event": event, "id": rid, "method": scope["method"], "path": path,
                                    "status": status or None, "latency_ms": round(dt * 1000, 1),
                                    "queue_depth": self.limiter.queue_depth, "client": client[0] if client else None}))  # fmt: skip


def _raw_response(status: int, reason: str, retry_after: bool = False) -> bytes:
    extra = b"Retry-After: 1\r\n" if retry_after else b""
    return f"HTTP/1.1 {status} {reason}\r\n".encode() + extra + b"Connection: close\r\nContent-Length: 0\r\n\r\n"


def protocol_class(settings: Settings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline, a connection limit, and a close after any answer sent before
    the request body was read (so a client cannot go on trickling a body nobody reads)."""
    header_timeout_s, max_connections = settings.header_timeout_s, settings.max_connections

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                log.warning("refused a connection: %d open, the limit is %d", len(self.connections) - 1,
                            max_connections)  # fmt: skip
                transport.write(_raw_response(503, "Service Unavailable", retry_after=True))
                transport.close()
                return
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:  # a request has begun or is awaited: its headers are not complete
                if self._header_timer is None and not self.transport.is_closing():
                    self._arm_header_timer()
            else:
                self._cancel_header_timer()

        def on_response_complete(self) -> None:
            body_unread = self.conn.their_state is h11.SEND_BODY
            super().on_response_complete()
            if body_unread and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            idle = self.cycle is None or self.cycle.response_complete
            if self.conn.their_state is h11.IDLE and idle and not self.transport.is_closing():
                log.info("closed a connection whose request headers did not arrive within %g s", header_timeout_s)
                self.transport.write(_raw_response(408, "Request Timeout"))
                self.transport.close()

    return GuardedH11Protocol


# --- the app ------------------------------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The FastAPI app for ``settings``; ``engine`` defaults to the one ``settings.engine`` names."""
    settings = (settings or Settings()).validate()
    engine = engine if engine is not None else make_engine(settings.engine, settings.model, lora=settings.lora)
    service = Service(settings, engine)
    limiter = Limiter(settings.max_concurrency, settings.queue_size)
    metrics = Metrics()
    app = FastAPI(title="EmoReason", version=__version__, docs_url=None, redoc_url=None)
    app.state.settings, app.state.service, app.state.limiter, app.state.metrics = settings, service, limiter, metrics
    app.add_middleware(Guard, settings=settings, metrics=metrics, limiter=limiter)
    text_limit = settings.max_text_bytes
    chat_limit = math.ceil(settings.max_upload_bytes / 3) * 4 + text_limit
    upload_limit = settings.max_upload_bytes + text_limit

    def slot() -> Slot:
        p50 = metrics.percentile(0.5)
        return limiter.slot(retry_after_s=max(1, math.ceil(p50 or 1)))

    async def run_clip(s: Slot, clip: Clip, question: str, history: list[dict[str, str]],
                       on_text: Callable[[str], None] | None = None) -> Result:  # fmt: skip
        started = False

        def job() -> Result:
            nonlocal started
            started = True
            return service.run(clip, question, history, on_text)  # removes the request's temp folder when done

        try:
            return await s.run(job, settings.timeout_s)
        finally:
            if not started and clip.temp_dir is not None:
                shutil.rmtree(clip.temp_dir, ignore_errors=True)

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, e: HTTPError) -> JSONResponse:
        return e.response()

    @app.exception_handler(BodyError)
    async def on_body_error(request: Request, e: BodyError) -> JSONResponse:
        return HTTPError.of(e).response()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "engine": engine.name, "model": settings.model_name}

    @app.get("/metrics")
    async def get_metrics() -> dict:
        p50, p95 = metrics.percentile(0.5), metrics.percentile(0.95)
        return {
            "uptime_s": round(time.time() - metrics.started, 1),
            "requests": metrics.requests,
            "errors": metrics.errors,
            "by_status": metrics.by_status,
            "client_disconnects": metrics.disconnects,
            "latency_ms": {
                "p50": None if p50 is None else round(p50 * 1000, 1),
                "p95": None if p95 is None else round(p95 * 1000, 1),
            },  # fmt: skip
            "queue_depth": limiter.queue_depth,
            "running": limiter.running,
            "cache": {"hits": service.cache.hits, "misses": service.cache.misses, "size": len(service.cache)},
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [_model_card(settings.model_name)]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict:
        if model_id != settings.model_name:
            raise HTTPError(404, f"model {model_id!r} not found; this server serves {settings.model_name!r}",
                            "model_not_found")  # fmt: skip
        return _model_card(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _limited_by_header(request, chat_limit)
        async with slot() as s:  # 503 here, before a byte of the body is read, when the server is full
            folder = Path(tempfile.mkdtemp(prefix="emoreason-upload-"))
            try:
                reader = SpillingJSONReader(folder, max_kept=text_limit)
                body = await read_json(request, chat_limit, reader)
                if not isinstance(body, dict):
                    raise HTTPError(400, "the request body must be a JSON object", "invalid_json")
                restore_strings(body, reader, text_limit)
                name = body.get("model")
                if name != settings.model_name:
                    raise HTTPError(404, f"model {name!r} not found; this server serves {settings.model_name!r}",
                                    "model_not_found")  # fmt: skip
                part, question, history = parse_messages(body.get("messages"))
                if part is None:
                    raise HTTPError(400, "no clip in the messages: add a video_url, input_audio or file content part",
                                    "missing_clip")  # fmt: skip
                rf = body.get("response_format") or {"type": "text"}
                fmt = rf.get("type") if isinstance(rf, dict) else None
                if fmt not in ("text", "json_object", "json_schema"):
                    raise HTTPError(400, "response_format.type must be text, json_object or json_schema",
                                    "invalid_format")  # fmt: skip
                clip = await to_thread.run_sync(service.clip_from_part, part, folder, reader)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            if body.get("stream"):
                return await stream_completion(s, clip, question, history, fmt)
            result = await run_clip(s, clip, question, history)
        content = message_content(result, fmt)
        ext = evidence_field(result, engine.name)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": settings.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage_of(question, history, content), "emoreason": ext,
        })  # fmt: skip

    async def stream_completion(s: Slot, clip: Clip, question: str, history: list[dict[str, str]], fmt: str
                                ) -> StreamingResponse:  # fmt: skip
        """SSE: the reply's pieces as the engine writes them (a model engine's tokens as they are generated; the
        knowledge engine's answer, written at once, in one piece; a JSON ``response_format`` once it is complete). An
        error before the first piece is an HTTP error; one after it is an ``error`` event."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        def on_text(piece: str) -> None:  # in the worker thread
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        task = asyncio.ensure_future(run_clip(s, clip, question, history, on_text if fmt == "text" else None))
        s.handed_to_job = True  # the task holds the place until it ends
        task.add_done_callback(lambda _: s.release())

        async def next_piece() -> str | None:
            """The next piece, or None once the job has ended and every piece is taken."""
            if not pieces.empty() or task.done():
                return pieces.get_nowait() if not pieces.empty() else None
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                return getter.result()
            getter.cancel()
            return pieces.get_nowait() if not pieces.empty() else None

        first = await next_piece()
        if first is None:
            task.result()  # an error before anything was sent: raised as the HTTP error it is
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": settings.model_name}

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        async def events() -> AsyncIterator[str]:
            sent: list[str] = []
            try:
                yield chunk({"role": "assistant", "content": ""})
                piece = first
                while piece is not None:
                    sent.append(piece)
                    yield chunk({"content": piece})
                    piece = await next_piece()
                try:
                    result = task.result()
                except HTTPError as e:
                    yield _sse({"error": {"message": e.message, "type": _ERROR_TYPES.get(e.status, "error"),
                                          "code": e.code}})  # fmt: skip
                    yield "data: [DONE]\n\n"
                    return
                content = message_content(result, fmt)
                done = "".join(sent)
                if content.startswith(done):
                    if rest := content[len(done) :]:
                        yield chunk({"content": rest})
                else:  # the engine's reply and its streamed pieces differ: a bug, said in the log
                    log.error(json.dumps({"event": "stream_mismatch", "streamed": len(done), "reply": len(content)}))
                yield chunk({}, "stop", usage=usage_of(question, history, content),
                            emoreason=evidence_field(result, engine.name))  # fmt: skip
                yield "data: [DONE]\n\n"
            finally:
                if not task.done():
                    task.cancel()  # the client left: the job's thread ends on its own and then frees the place

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/reports")
    async def reports(request: Request) -> JSONResponse:
        from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            limit = upload_limit
        elif ctype.startswith("application/x-www-form-urlencoded"):
            limit = text_limit
        else:
            raise HTTPError(400, "send the clip as multipart/form-data: a 'file' field or a 'path' field",
                            "invalid_form")  # fmt: skip
        _limited_by_header(request, limit)
        async with slot() as s:
            folder = Path(tempfile.mkdtemp(prefix="emoreason-upload-"))
            try:
                if limit == upload_limit:  # the parser spools file parts to disk past 1 MB
                    parser: Any = MultiPartParser(request.headers, _limited(request, limit), max_files=1,
                                                  max_fields=16)  # fmt: skip
                else:
                    parser = FormParser(request.headers, _limited(request, limit))
                try:
                    form = await parser.parse()
                except MultiPartException as e:
                    raise HTTPError(400, f"bad multipart body: {e.message}", "invalid_form") from None
                try:
                    upload, path = form.get("file"), form.get("path")
                    if upload is not None and not isinstance(upload, str):
                        name = Path(upload.filename or "upload.mp4").name
                        clip = await to_thread.run_sync(service.clip_from_file, upload.file, name, Path(name).suffix,
                                                        folder)  # fmt: skip
                    elif isinstance(path, str) and path:
                        clip = await to_thread.run_sync(service.clip_from_path, path, folder)
                    else:
                        raise HTTPError(400, "no clip: send a 'file' field (upload) or a 'path' field under the "
                                        "media root", "missing_clip")  # fmt: skip
                finally:
                    await form.close()
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            result = await run_clip(s, clip, "", [])
        from emoreason.report import build_report

        return JSONResponse(build_report(result.evidence, result.analysis).model_dump(mode="json"))

    @app.get("/v1/clips")
    async def clips() -> dict:
        if settings.media_root is None:
            return {"object": "list", "data": []}
        root = Path(settings.media_root)
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                       if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES and p.resolve().is_relative_to(root))  # fmt: skip
        return {"object": "list", "data": [{"name": n} for n in names]}

    @app.get("/media/{ref:path}")
    async def media_file(ref: str) -> FileResponse:
        return FileResponse(service.local_path(ref))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    return app


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "emoreason"}


def serve(settings: Settings, engine: Engine | None = None) -> None:
    """Run the server with uvicorn until interrupted."""
    import socket

    import uvicorn

    try:  # a port in use or a host that does not resolve is a one-line error, not a traceback from inside uvicorn
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((settings.host, settings.port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}") from None
    app = create_app(settings, engine)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the server is reachable from other machines%s", settings.host,
                    "" if settings.api_key else " and has no API key")  # fmt: skip
    uvicorn.Server(uvicorn_config(settings, app)).run()


def uvicorn_config(settings: Settings, app: FastAPI) -> Any:
    """uvicorn's configuration for ``app``: the guarded h11 protocol, the keep-alive and header-size limits."""
    import uvicorn

    level = "info" if logging.getLogger().getEffectiveLevel() <= logging.INFO else "warning"
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=level,
        access_log=False,
        http=protocol_class(settings),
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_s)),
        h11_max_incomplete_event_size=64 * 1024,
    )  # fmt: skip; one JSON access line per request
