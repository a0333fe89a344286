"""The HTTP server: an OpenAI-compatible API over perception + reasoning, a report endpoint, metrics and the web page.

Endpoints: ``POST /v1/chat/completions`` (the clip travels in a content part: ``video_url`` / ``input_audio`` /
``file`` as a base64 data URL, or a path / ``file://`` URL under the media root; the last user text is the question,
none asks for the full analysis; SSE streaming; ``response_format`` ``json_object`` = the answer JSON, ``json_schema``
= the :class:`~emoreason.report.Report` JSON), ``GET /v1/models``, ``POST /v1/reports`` (multipart ``file`` or form
``path`` → Report JSON), ``GET /v1/clips`` and ``GET /media/...`` (the media root, for the page), ``GET /health``,
``GET /metrics`` and ``GET /`` (the page). Every completion carries an ``emoreason`` field: chain of thought, basic and
compound labels, AUs, AU events with times, transcript, flags.

Limits: upload size (413, from Content-Length and from the bytes actually received), clip duration and unreadable media
(422, the one-line reason), unknown model (404), paths outside the media root (403, after resolving symlinks and
``..``), bounded concurrency with a bounded queue (503 when full), a per-request deadline (504), an optional bearer key
(401). Errors are OpenAI-style ``{"error": {"message", "type", "code"}}``. One JSON log line per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
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
from typing import Any
from urllib.parse import unquote, urlparse

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from emoreason import __version__
from emoreason.errors import BackendError, ConfigError, EmoReasonError, ModelError
from emoreason.evidence import Evidence
from emoreason.io import sha256_file
from emoreason.reasoning.engine import Analysis
from emoreason.reasoning.qa import QAAnswer
from emoreason.serving.cache import PerceptionCache, cache_key
from emoreason.serving.engines import Engine, make_engine
from emoreason.serving.settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("emoreason.serving.access")

STATIC_DIR = Path(__file__).parent / "static"
BODY_SLACK = 1 << 20  # bytes of JSON/multipart around the clip's base64
LATENCY_WINDOW = 2048  # requests the latency percentiles are taken over
MEDIA_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".wav", ".flac", ".mp3", ".ogg", ".m4a"})
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.-]+)*;base64,(?P<data>.*)$", re.DOTALL)
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 422: "invalid_media", 500: "server_error",
                502: "backend_error", 503: "overloaded", 504: "timeout"}  # fmt: skip


class HTTPError(Exception):
    """An error answered as OpenAI-style JSON with ``status``."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> JSONResponse:
        err = {"message": self.message, "type": _ERROR_TYPES.get(self.status, "error"), "code": self.code}
        return JSONResponse({"error": err}, status_code=self.status)


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


class Limiter:
    """At most ``concurrency`` jobs run (in threads), at most ``queue_size`` wait; a job past its deadline gets 504
    and keeps its slot until its thread really ends, so a stuck job cannot let more work in than configured."""

    def __init__(self, concurrency: int, queue_size: int) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue_size
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="emoreason-job")
        self._sem: asyncio.Semaphore | None = None
        self.pending = 0  # waiting + running
        self.running = 0

    @property
    def queue_depth(self) -> int:
        return self.pending - self.running

    async def run(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        if self.pending >= self.capacity:
            raise HTTPError(503, f"server busy: {self.running} requests running and {self.queue_depth} waiting; "
                            "retry later", "queue_full")  # fmt: skip
        self.pending += 1
        deadline = time.monotonic() + timeout_s
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout_s)
        except TimeoutError:
            self.pending -= 1
            raise HTTPError(504, f"timed out after {timeout_s:g} s waiting for a free slot", "timeout") from None
        self.running += 1
        fut = asyncio.get_running_loop().run_in_executor(self.executor, fn)

        def release(_: Any = None) -> None:
            self.running -= 1
            self.pending -= 1
            self._sem.release()

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


# --- reading requests -------------------------------------------------------------------------------------------------


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, stopped with 413 once more than ``limit`` bytes are announced or received."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is {int(declared)} bytes, over the {limit}-byte limit", "too_large")
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise HTTPError(413, f"request body is over the {limit}-byte limit", "too_large")
        yield chunk


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
    if isinstance(content, list):
        return " ".join(p.get("text", "").strip() for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


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

    def run(self, clip: Clip, question: str, history: list[dict[str, str]]) -> Result:
        try:
            ev, hit = self.evidence(clip)
            analysis = self.engine.analyze(ev, media=clip.path)
            qa = self.engine.ask(ev, question, analysis, history, media=clip.path) if question else None
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
        p = Path(raw).expanduser()
        resolved = (p if p.is_absolute() else root / p).resolve()
        if not resolved.is_relative_to(root):
            raise HTTPError(403, f"{raw}: outside the media root; only files under the media root can be named",
                            "path_not_allowed")  # fmt: skip
        if not resolved.is_file():
            raise HTTPError(422, f"{raw}: file not found under the media root", "invalid_media")
        return resolved

    def clip_from_path(self, ref: str) -> Clip:
        p = self.local_path(ref)
        size = p.stat().st_size
        if size > self.settings.max_upload_bytes:
            raise HTTPError(413, f"{p.name}: clip is {_mb(size)}, over the {_mb(self.settings.max_upload_bytes)} "
                            "limit", "too_large")  # fmt: skip
        return Clip(path=p, name=str(p.relative_to(self.root())), digest=sha256_file(p))

    def clip_from_bytes(self, data: bytes, name: str, suffix: str) -> Clip:
        if len(data) > self.settings.max_upload_bytes:
            raise HTTPError(413, f"{name}: clip is {_mb(len(data))}, over the {_mb(self.settings.max_upload_bytes)} "
                            "limit", "too_large")  # fmt: skip
        if not data:
            raise HTTPError(422, f"{name}: file is empty (0 bytes)", "invalid_media")
        tmp = Path(tempfile.mkdtemp(prefix="emoreason-upload-"))
        path = tmp / f"clip{suffix if suffix.lower() in MEDIA_SUFFIXES else '.mp4'}"
        path.write_bytes(data)
        return Clip(path=path, name=name, digest=hashlib.sha256(data).hexdigest(), temp_dir=tmp)

    def decode_b64(self, data: str, what: str) -> bytes:
        if len(data) * 3 // 4 > self.settings.max_upload_bytes + 3:
            raise HTTPError(413, f"{what}: clip is about {_mb(len(data) * 3 // 4)}, over the "
                            f"{_mb(self.settings.max_upload_bytes)} limit", "too_large")  # fmt: skip
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPError(400, f"{what}: not valid base64", "invalid_base64") from None

    def clip_from_part(self, part: dict) -> Clip:
        kind = part["type"]
        body = part.get(kind)
        if kind == "input_audio":
            if not isinstance(body, dict) or not isinstance(body.get("data"), str):
                raise HTTPError(400, "input_audio needs {data: base64, format}", "invalid_clip")
            fmt = str(body.get("format") or "wav").lower()
            data = body["data"]
            m = _DATA_URL.match(data)
            raw = self.decode_b64(m.group("data") if m else data, "input_audio")
            return self.clip_from_bytes(raw, f"upload.{fmt}", f".{fmt}")
        if kind == "file":
            if not isinstance(body, dict) or not isinstance(body.get("file_data"), str):
                raise HTTPError(400, "file needs {file_data: base64 data URL, filename}", "invalid_clip")
            name = Path(str(body.get("filename") or "upload.mp4")).name
            m = _DATA_URL.match(body["file_data"])
            raw = self.decode_b64(m.group("data") if m else body["file_data"], name)
            return self.clip_from_bytes(raw, name, Path(name).suffix or _suffix(m and m.group("mime"), ".mp4"))
        url = body.get("url") if isinstance(body, dict) else body
        if not isinstance(url, str) or not url:
            raise HTTPError(400, "video_url needs {url: data URL, path or file:// URL}", "invalid_clip")
        m = _DATA_URL.match(url)
        if m:
            mime = m.group("mime")
            suffix = _suffix(mime, ".mp4")
            return self.clip_from_bytes(self.decode_b64(m.group("data"), "video_url"), f"upload{suffix}", suffix)
        if urlparse(url).scheme in ("http", "https", "ftp"):
            raise HTTPError(422, "remote URLs are not fetched; send the clip as a base64 data URL or a path under "
                            "the media root", "remote_url")  # fmt: skip
        return self.clip_from_path(url)


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


def _pieces(text: str, words: int = 6) -> list[str]:
    toks = re.findall(r"\S+\s*|\s+", text)
    return ["".join(toks[i : i + words]) for i in range(0, len(toks), words)] or [""]


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


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
    chat_limit = settings.max_upload_bytes * 4 // 3 + BODY_SLACK
    upload_limit = settings.max_upload_bytes + BODY_SLACK

    async def run_clip(clip: Clip, question: str, history: list[dict[str, str]]) -> Result:
        started = False

        def job() -> Result:
            nonlocal started
            started = True
            return service.run(clip, question, history)  # removes the upload's temp folder when done

        try:
            return await limiter.run(job, settings.timeout_s)
        finally:
            if not started and clip.temp_dir is not None:
                shutil.rmtree(clip.temp_dir, ignore_errors=True)

    @app.middleware("http")
    async def access(request: Request, call_next: Callable) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        t0 = time.perf_counter()
        path = request.url.path
        try:
            guarded = path.startswith(("/v1/", "/media/")) or path == "/metrics"
            sent = request.headers.get("authorization", "").encode()
            if guarded and settings.api_key and not hmac.compare_digest(sent, f"Bearer {settings.api_key}".encode()):
                raise HTTPError(401, "missing or wrong API key (send Authorization: Bearer KEY)", "invalid_api_key")
            response = await call_next(request)
        except HTTPError as e:
            response = e.response()
        except Exception:
            log.exception("unhandled error on %s %s", request.method, path)
            response = HTTPError(500, "internal server error (see the server log)", "internal").response()
        dt = time.perf_counter() - t0
        if path.startswith("/v1/"):
            metrics.record(response.status_code, dt)
        response.headers["x-request-id"] = rid
        access_log.info(json.dumps({"event": "request", "id": rid, "method": request.method, "path": path,
                                    "status": response.status_code, "latency_ms": round(dt * 1000, 1),
                                    "queue_depth": limiter.queue_depth, "client": request.client.host if request.client else None}))  # fmt: skip
        return response

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, e: HTTPError) -> JSONResponse:
        return e.response()

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
        raw = b"".join([c async for c in _limited(request, chat_limit)])
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPError(400, "the request body is not JSON", "invalid_json") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object", "invalid_json")
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
            raise HTTPError(400, "response_format.type must be text, json_object or json_schema", "invalid_format")
        result = await run_clip(service.clip_from_part(part), question, history)
        content = message_content(result, fmt)
        ext = evidence_field(result, engine.name)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.get("stream"):
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": settings.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "emoreason": ext,
            })  # fmt: skip
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": settings.model_name}

        def events() -> Any:
            yield _sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}]})  # fmt: skip
            for piece in _pieces(content):
                yield _sse({**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            yield _sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "emoreason": ext})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/reports")
    async def reports(request: Request) -> JSONResponse:
        from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            parser: Any = MultiPartParser(request.headers, _limited(request, upload_limit))
        elif ctype.startswith("application/x-www-form-urlencoded"):
            parser = FormParser(request.headers, _limited(request, BODY_SLACK))
        else:
            raise HTTPError(400, "send the clip as multipart/form-data: a 'file' field or a 'path' field",
                            "invalid_form")  # fmt: skip
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise HTTPError(400, f"bad multipart body: {e.message}", "invalid_form") from None
        upload, path = form.get("file"), form.get("path")
        if upload is not None and not isinstance(upload, str):
            name = Path(upload.filename or "upload.mp4").name
            clip = service.clip_from_bytes(await upload.read(), name, Path(name).suffix)
        elif isinstance(path, str) and path:
            clip = service.clip_from_path(path)
        else:
            raise HTTPError(400, "no clip: send a 'file' field (upload) or a 'path' field under the media root",
                            "missing_clip")  # fmt: skip
        result = await run_clip(clip, "", [])
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
    level = "info" if logging.getLogger().getEffectiveLevel() <= logging.INFO else "warning"
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=level, access_log=False)  # one JSON line each
