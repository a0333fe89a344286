"""The server under hostile or unlucky clients, on a real uvicorn server on 127.0.0.1 (raw sockets where the client
misbehaves): admission before the body is read, bounded memory per upload, header and body timeouts, the connection
limit, client disconnects, malformed bodies answered 4xx, the event loop kept free during a large upload, usage."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from emoreason.serving.bodies import SpillingJSONReader, decode_base64_file
from emoreason.serving.cache import PerceptionCache
from emoreason.serving.server import create_app, uvicorn_config
from emoreason.serving.settings import Settings
from tests.test_server import FAST, BlockingEngine, chat, data_url, error_of


@contextmanager
def live_server(engine=None, **kw) -> Iterator[tuple[str, int, object]]:
    """A real uvicorn server for ``Settings(**kw)`` in a thread, on a free loopback port; yields (host, port, app)."""
    settings = Settings(**{**FAST, **kw})
    app = create_app(settings, engine=engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(settings, app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield "127.0.0.1", sock.getsockname()[1], app
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def read_until_closed(s: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took (at most ``limit_s``)."""
    t0, got = time.monotonic(), b""
    s.settimeout(0.2)
    while time.monotonic() - t0 < limit_s:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return got, time.monotonic() - t0


def post_head(path: str, length: int, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()  # fmt: skip


# --- malformed bodies are 4xx, not 500 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [1, None, ["x"]])
def test_a_text_part_that_is_not_a_string_is_400(astronaut_clip, text):
    body = chat(data_url(astronaut_clip))
    body["messages"][0]["content"].append({"type": "text", "text": text})
    with TestClient(create_app(Settings(**FAST))) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 400 and "text" in error_of(r)["message"]


def test_deeply_nested_json_is_400():
    with TestClient(create_app(Settings(**FAST))) as c:
        for depth in (100_000, 500):
            deep = b'{"model": "emoreason", "x": ' + b"[" * depth + b"]" * depth + b"}"
            r = c.post("/v1/chat/completions", content=deep, headers={"content-type": "application/json"})
            assert r.status_code == 400 and "nested" in error_of(r)["message"], depth


def test_a_nul_byte_in_a_path_is_400(tmp_path):
    with TestClient(create_app(Settings(**FAST, media_root=tmp_path))) as c:
        r = c.post("/v1/chat/completions", json=chat("sub/a\x00.mp4"))
        assert r.status_code == 400 and "NUL" in error_of(r)["message"]
        assert c.post("/v1/reports", data={"path": "a\x00.mp4"}).status_code == 400
        assert c.get("/media/a%00.mp4").status_code == 400


def test_a_client_that_leaves_mid_body_is_logged_as_a_disconnect_not_a_500(caplog):
    with live_server() as (host, port, app), caplog.at_level(logging.INFO):
        with socket.create_connection((host, port)) as s:
            s.sendall(post_head("/v1/chat/completions", 1_000_000) + b'{"model": "emoreason", "messages": [')
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while not app.state.metrics.disconnects and time.monotonic() < deadline:
            time.sleep(0.02)
        m = httpx.get(f"http://{host}:{port}/metrics").json()
    assert m["client_disconnects"] == 1 and "500" not in m["by_status"], m
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "emoreason.serving.access"]
    assert [ln["event"] for ln in lines if ln["path"] == "/v1/chat/completions"] == ["client_disconnect"]


# --- admission before the body, and bounded memory ------------------------------------------------------------------


def test_a_full_server_refuses_before_reading_the_body(astronaut_clip):
    engine = BlockingEngine()
    with live_server(engine=engine, max_concurrency=1, queue_size=0) as (host, port, _app):
        first: dict = {}
        url = f"http://{host}:{port}/v1/chat/completions"
        t = threading.Thread(target=lambda: first.update(r=httpx.post(url, json=chat(data_url(astronaut_clip)),
                                                                     timeout=30)))  # fmt: skip
        t.start()
        assert engine.entered.wait(30)
        with socket.create_connection((host, port)) as s:  # announces 50 MB and sends none of it
            s.sendall(post_head("/v1/chat/completions", 50_000_000))
            got, took = read_until_closed(s, 5)
        assert got.startswith(b"HTTP/1.1 503") and b"retry-after: " in got.lower() and took < 3, got[:300]
        with socket.create_connection((host, port)) as s:  # over the size limit: 413 at once, body unread
            s.sendall(post_head("/v1/chat/completions", 10**12))
            got, took = read_until_closed(s, 5)
        assert got.startswith(b"HTTP/1.1 413") and took < 3
        engine.release.set()
        t.join(30)
        assert first["r"].status_code == 200


async def call_asgi(app, path: str, body: bytes, chunk: int = 65536) -> tuple[int, bytes]:
    """POST ``body`` to ``app`` in ``chunk``-byte messages, as a server would (the test client would copy it whole)."""
    pos, status, out = 0, 0, b""

    async def receive() -> dict:
        nonlocal pos
        if pos >= len(body):
            return {"type": "http.disconnect"}
        piece, pos = body[pos : pos + chunk], pos + chunk
        return {"type": "http.request", "body": piece, "more_body": pos < len(body)}

    async def send(msg: dict) -> None:
        nonlocal status, out
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            out += msg.get("body", b"")

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "scheme": "http", "root_path": ""}  # fmt: skip
    await app(scope, receive, send)
    return status, out


def test_memory_per_upload_is_bounded_not_the_body_size(tmp_path):
    """A 24 MB clip as a data URL: the server holds a few MB of it at a time (traced Python allocations)."""
    import asyncio

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(24 * 1024 * 1024))
    body = json.dumps(chat(data_url(junk))).encode()
    app = create_app(Settings(**FAST, max_upload_mb=30))
    tracemalloc.start()
    try:
        status, out = asyncio.run(call_asgi(app, "/v1/chat/completions", body))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 422, out  # random bytes are not a video; the upload path ran to the end
    print(f"traced peak {peak / 1e6:.1f} MB for a {len(body) / 1e6:.0f} MB body")
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB body"


def test_the_spilling_reader_matches_json_and_decodes_in_chunks(tmp_path):
    payload = os.urandom(300_000)
    doc = {"a": "x" * 10, "esc": 'quote " and \\ slash / é' * 5000, "clip": r"data:video\/mp4;base64,"}
    raw = json.dumps(doc).replace("data:video\\\\/mp4;base64,", "data:video\\/mp4;base64,"
                                  + base64.b64encode(payload).decode().replace("/", "\\/")).encode()  # fmt: skip
    reader = SpillingJSONReader(tmp_path, spill_at=1000, max_kept=200_000)
    for i in range(0, len(raw), 777):  # odd chunk sizes split escapes and the header
        reader.feed(raw[i : i + 777])
    obj = reader.finish()
    assert obj["a"] == "x" * 10 and reader.restore(obj["esc"]) == doc["esc"]
    out = tmp_path / "out.bin"
    dec = decode_base64_file(reader.spill_of(obj["clip"]), out, max_bytes=len(payload))
    assert out.read_bytes() == payload and dec.mime == "video/mp4" and dec.size == len(payload)
    with pytest.raises(Exception, match="limit"):
        decode_base64_file(reader.spill_of(obj["clip"]), out, max_bytes=len(payload) - 1)


def test_health_answers_promptly_during_a_large_upload(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(60 * 1024 * 1024))
    body = json.dumps(chat(data_url(junk))).encode()
    with live_server(max_upload_mb=70) as (host, port, _app):
        done = threading.Event()
        out: dict = {}

        def upload() -> None:
            with socket.create_connection((host, port)) as s:
                s.sendall(post_head("/v1/chat/completions", len(body)) + body)
                out["reply"], _ = read_until_closed(s, 60)
            done.set()

        t = threading.Thread(target=upload)
        t.start()
        worst = 0.0
        with httpx.Client(base_url=f"http://{host}:{port}") as c:
            while not done.is_set():
                t0 = time.perf_counter()
                assert c.get("/health", timeout=30).status_code == 200
                worst = max(worst, time.perf_counter() - t0)
                time.sleep(0.01)
        t.join(60)
    assert b" 422 " in out["reply"].split(b"\r\n", 1)[0]
    print(f"slowest /health during the upload: {worst:.3f} s")
    assert worst < 0.5, f"/health took {worst:.2f} s while the upload was processed"


# --- timeouts and the connection limit ----------------------------------------------------------------------------------


def test_a_client_trickling_headers_is_closed_after_the_header_timeout():
    with live_server(header_timeout_s=1.0) as (host, port, _app), socket.create_connection((host, port)) as s:
        t0 = time.monotonic()
        s.settimeout(0.05)
        closed = False
        for b in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:  # one byte every 0.2 s
            if time.monotonic() - t0 > 4:
                break
            try:
                s.sendall(bytes([b]))
                if s.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
        took = time.monotonic() - t0
    assert closed and took < 1.0 + 1.5, took


def test_a_client_trickling_the_body_gets_408_and_is_closed():
    with live_server(body_timeout_s=1.0) as (host, port, _app), socket.create_connection((host, port)) as s:
        s.sendall(post_head("/v1/chat/completions", 1000) + b"{")
        t0 = time.monotonic()
        s.settimeout(0.05)
        got = b""
        for _ in range(40):  # one byte every 0.2 s, for at most 8 s
            try:
                s.sendall(b" ")
                chunk = s.recv(65536)
                got += chunk
                if not chunk:
                    break
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408") and took < 1.0 + 1.5, (got[:200], took)


def test_an_idle_connection_that_sends_nothing_is_closed():
    with live_server(header_timeout_s=1.0) as (host, port, _app), socket.create_connection((host, port)) as s:
        got, took = read_until_closed(s, 5)
    assert took < 2.5 and (got == b"" or got.startswith(b"HTTP/1.1 408"))


def test_connections_over_the_limit_are_refused():
    with live_server(max_connections=2, header_timeout_s=5.0) as (host, port, _app):
        a, b = socket.create_connection((host, port)), socket.create_connection((host, port))
        try:
            time.sleep(0.2)
            with socket.create_connection((host, port)) as extra:
                got, took = read_until_closed(extra, 3)
            assert got.startswith(b"HTTP/1.1 503") and took < 2
        finally:
            a.close(), b.close()
        time.sleep(0.2)
        assert httpx.get(f"http://{host}:{port}/health").status_code == 200  # a freed slot is usable again


def test_serve_help_shows_the_new_limits_and_their_defaults():
    import argparse

    from emoreason.cli import build_parser
    from emoreason.serving import commands

    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    text = " ".join(sub.format_help().split())
    d = Settings()
    for flag, default in (("--header-timeout", d.header_timeout_s), ("--body-timeout", d.body_timeout_s),
                          ("--keep-alive", d.keep_alive_s), ("--max-connections", d.max_connections),
                          ("--max-text-kb", d.max_text_kb)):  # fmt: skip
        assert flag in text and f"(default: {default})" in text.split(flag, 2)[-1][:200], flag
    args = p.parse_args(["serve", "--header-timeout", "3", "--max-connections", "7", "--body-timeout", "9"])
    s = commands.settings_from_args(args)
    assert (s.header_timeout_s, s.max_connections, s.body_timeout_s, s.host) == (3.0, 7, 9.0, "127.0.0.1")


# --- the cache's lock table and usage -----------------------------------------------------------------------------------


def test_the_cache_lock_table_empties_when_nobody_holds_a_key():
    cache: PerceptionCache[int] = PerceptionCache(max_items=2)

    def boom() -> int:
        raise ValueError("no")

    for i in range(50):
        cache.get_or_compute(f"k{i}", lambda: 1)
        cache.get_or_compute(f"k{i}", lambda: 1)  # a hit
        with pytest.raises(ValueError):
            cache.get_or_compute(f"e{i}", boom)
    assert cache.lock_count == 0
    gate, entered = threading.Event(), threading.Event()

    def slow() -> int:
        entered.set()
        gate.wait(5)
        return 2

    t = threading.Thread(target=cache.get_or_compute, args=("s", slow))
    t.start()
    assert entered.wait(5) and cache.lock_count == 1
    gate.set()
    t.join(5)
    assert cache.lock_count == 0


def test_completions_report_usage_in_words(astronaut_clip):
    with TestClient(create_app(Settings(**FAST))) as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(astronaut_clip), "Is the smile genuine?")).json()
        usage, content = r["usage"], r["choices"][0]["message"]["content"]
        assert usage["prompt_tokens"] == 4 and usage["completion_tokens"] == len(content.split()) > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["counted"] == "words"
        s = c.post("/v1/chat/completions", json=chat(data_url(astronaut_clip), "Is the smile genuine?", stream=True))
        last = json.loads(s.text.strip().split("\n\n")[-2].removeprefix("data: "))
        assert last["usage"] == usage


def test_long_text_is_read_back_and_text_over_the_limit_is_413(astronaut_clip):
    question = "Is the smile genuine? " + "very " * 30_000  # 150 KB: spilled to disk, then read back
    with TestClient(create_app(Settings(**FAST, max_text_kb=256))) as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(astronaut_clip), question))
        assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 30_004
        r = c.post("/v1/chat/completions", json=chat(data_url(astronaut_clip), question * 2))
        assert r.status_code == 413 and error_of(r)["code"] == "too_large"


def test_new_settings_are_validated():
    from emoreason.errors import ConfigError

    for bad in ({"header_timeout_s": 0}, {"body_timeout_s": -1}, {"max_connections": 0}, {"max_text_kb": 0}):
        with pytest.raises(ConfigError):
            Settings(**bad).validate()


def test_spill_names_stay_inside_the_folder(tmp_path: Path):
    reader = SpillingJSONReader(tmp_path, spill_at=4)
    reader.feed(b'{"a": "0123456789", "b": "abcdefghij"}')
    obj = reader.finish()
    assert {reader.spill_of(v).parent for v in obj.values()} == {tmp_path}
