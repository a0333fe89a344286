"""The HTTP server through FastAPI's TestClient: every endpoint and every error answer, the perception cache, the
queue and the deadline (with an engine that blocks until the test lets it go)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from emoreason.errors import ConfigError, ModelError
from emoreason.parsing import parse_output
from emoreason.report import Report
from emoreason.serving.cache import PerceptionCache, cache_key
from emoreason.serving.engines import KnowledgeEngine, TransformersEngine, make_engine
from emoreason.serving.server import create_app
from emoreason.serving.settings import Settings
from tests.test_backends import tiny_chat_model  # noqa: F401 (fixture)

FAST = {"asr": False, "fps": 5.0, "max_side": 360}


def client(**kw) -> TestClient:
    engine = kw.pop("engine", None)
    return TestClient(create_app(Settings(**{**FAST, **kw}), engine=engine))


def data_url(path: Path, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def chat(clip_url: str, question: str | None = None, **body) -> dict:
    content = [{"type": "video_url", "video_url": {"url": clip_url}}]
    if question:
        content.append({"type": "text", "text": question})
    return {"model": "emoreason", "messages": [{"role": "user", "content": content}], **body}


def error_of(r) -> dict:
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"}
    return err


@pytest.fixture(scope="module")
def clip(astronaut_clip) -> Path:
    return astronaut_clip


@pytest.fixture(scope="module")
def media_root(tmp_path_factory, astronaut_clip) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "sub").mkdir()
    (root / "sub" / "astronaut.mp4").write_bytes(astronaut_clip.read_bytes())
    outside = tmp_path_factory.mktemp("outside") / "secret.mp4"
    outside.write_bytes(astronaut_clip.read_bytes())
    (root / "link.mp4").symlink_to(outside)
    return root


class BlockingEngine(KnowledgeEngine):
    """The knowledge engine, held in ``analyze`` until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def analyze(self, evidence, media=None):
        self.entered.set()
        assert self.release.wait(30)
        return super().analyze(evidence, media)


def test_health_models_and_metrics():
    with client() as c:
        assert c.get("/health").json()["status"] == "ok"
        models = c.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["emoreason"]
        assert c.get("/v1/models/emoreason").json()["id"] == "emoreason"
        r = c.get("/v1/models/gpt-4")
        assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"
        m = c.get("/metrics").json()
        assert m["requests"] == 3 and m["errors"] == 1 and m["by_status"] == {"200": 2, "404": 1}
        assert m["latency_ms"]["p50"] is not None and m["queue_depth"] == 0
        assert "x-request-id" in c.get("/health").headers


def test_chat_analysis_carries_reasoning_labels_and_evidence(clip):
    with client() as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(clip)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == "emoreason"
        content = body["choices"][0]["message"]["content"]
        parsed = parse_output(content)
        assert parsed.format_ok and parsed.emotion == "happiness" and "AU12" in parsed.aus
        ext = body["emoreason"]
        assert ext["emotion"] == "happiness" and "compound" in ext and ext["think"] == parsed.think
        assert "AU12" in {e["au"] for e in ext["au_events"]} and ext["au_events"][0]["onset"] >= 0
        assert ext["clip"] == "upload.mp4" and ext["qa"] is None and ext["cache_hit"] is False
        # the same bytes again: perception comes from the cache
        again = c.post("/v1/chat/completions", json=chat(data_url(clip))).json()
        assert again["emoreason"]["cache_hit"] is True and again["choices"][0]["message"]["content"] == content
        cache = c.get("/metrics").json()["cache"]
        assert cache == {"hits": 1, "misses": 1, "size": 1}


def test_chat_question_gets_the_grounded_answer(clip):
    with client() as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(clip), "Is the smile genuine?"))
        body = r.json()
        answer = body["choices"][0]["message"]["content"]
        assert body["emoreason"]["qa"]["answer"] == answer and body["emoreason"]["qa"]["intent"] == "smile"
        assert "AU6" in answer and body["emoreason"]["emotion"] == "happiness"


def test_chat_streaming_matches_non_streaming(clip):
    with client() as c:
        plain = c.post("/v1/chat/completions", json=chat(data_url(clip))).json()
        r = c.post("/v1/chat/completions", json=chat(data_url(clip), stream=True))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [e.removeprefix("data: ") for e in r.text.strip().split("\n\n")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
        text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks)
        assert text == plain["choices"][0]["message"]["content"]
        # the knowledge engine writes its answer at once: one content piece, not a finished answer cut into pieces
        assert [bool(ch["choices"][0]["delta"].get("content")) for ch in chunks] == [False, True, False]
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["emoreason"]["emotion"] == plain["emoreason"]["emotion"]


def test_response_formats(clip):
    with client() as c:
        obj = c.post("/v1/chat/completions", json=chat(data_url(clip), response_format={"type": "json_object"}))
        answer = json.loads(obj.json()["choices"][0]["message"]["content"])
        assert answer["emotion"] == "happiness" and "AU12" in answer["aus"] and answer["think"]
        schema = {"type": "json_schema", "json_schema": {"name": "report", "schema": Report.model_json_schema()}}
        rep = c.post("/v1/chat/completions", json=chat(data_url(clip), "What AUs are active?", response_format=schema))
        content = json.loads(rep.json()["choices"][0]["message"]["content"])
        assert content.pop("qa")["intent"] == "aus"
        assert Report.model_validate(content).analysis.emotion == "happiness"
        bad = c.post("/v1/chat/completions", json=chat(data_url(clip), response_format={"type": "yaml"}))
        assert bad.status_code == 400


def test_audio_input_part(happy_speech_wav):
    b64 = base64.b64encode(happy_speech_wav.read_bytes()).decode()
    body = {"model": "emoreason", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]}]}  # fmt: skip
    with client() as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        ext = r.json()["emoreason"]
        assert ext["clip"] == "upload.wav" and ext["au_events"] == [] and ext["duration_s"] > 1
        assert "no_video" in {f["code"] for f in ext["flags"]}


def test_paths_under_the_media_root_only(media_root, tmp_path):
    with client(media_root=media_root) as c:
        ok = c.post("/v1/chat/completions", json=chat("sub/astronaut.mp4"))
        assert ok.status_code == 200 and ok.json()["emoreason"]["clip"] == "sub/astronaut.mp4"
        uri = c.post("/v1/chat/completions", json=chat(f"file://{media_root}/sub/astronaut.mp4"))
        assert uri.status_code == 200
        for ref in ("../outside/secret.mp4", "sub/../../x.mp4", "link.mp4", "/etc/passwd", "file:///etc/passwd"):
            r = c.post("/v1/chat/completions", json=chat(ref))
            assert r.status_code == 403 and error_of(r)["code"] == "path_not_allowed", ref
        missing = c.post("/v1/chat/completions", json=chat("sub/none.mp4"))
        assert missing.status_code == 422
        assert c.get("/v1/clips").json()["data"] == [{"name": "sub/astronaut.mp4"}]
        assert c.get("/media/sub/astronaut.mp4").status_code == 200
        assert c.get("/media/link.mp4").status_code == 403
    with client() as c:  # no media root: no path is allowed
        r = c.post("/v1/chat/completions", json=chat(str(media_root / "sub" / "astronaut.mp4")))
        assert r.status_code == 403 and "media root" in error_of(r)["message"]
        assert c.get("/v1/clips").json()["data"] == []


def test_oversized_uploads_get_413(clip):
    limit_mb = clip.stat().st_size / 2 / 1024 / 1024
    with client(max_upload_mb=limit_mb) as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(clip)))
        assert r.status_code == 413 and error_of(r)["code"] == "too_large"
        files = {"file": ("a.mp4", clip.read_bytes(), "video/mp4")}
        assert c.post("/v1/reports", files=files).status_code == 413
    with client(max_upload_mb=0.01) as c:
        # announced size over the body limit
        big = b"{" + b" " * 3_000_000 + b"}"
        r = c.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in error_of(r)["message"]
        # no Content-Length (chunked): the bytes received are counted

        def chunks():
            for _ in range(40):
                yield b" " * 100_000

        r = c.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_bad_media_and_long_clips_get_422(clip, broken_files):
    with client(max_duration_s=1.0) as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(clip)))
        assert r.status_code == 422 and "limit" in error_of(r)["message"]
    with client() as c:
        for kind in ("truncated", "text"):
            r = c.post("/v1/chat/completions", json=chat(data_url(broken_files[kind])))
            assert r.status_code == 422, kind
            msg = error_of(r)["message"]
            assert msg.startswith("upload.mp4: ") and "\n" not in msg and "/tmp" not in msg
        empty = c.post("/v1/chat/completions", json=chat("data:video/mp4;base64,"))
        assert empty.status_code == 422
        r = c.post("/v1/reports", files={"file": ("notes.mp4", b"not a video", "video/mp4")})
        assert r.status_code == 422 and error_of(r)["message"].startswith("notes.mp4: ")
        assert c.get("/metrics").json()["by_status"]["422"] == 4


def test_request_errors(clip):
    with client() as c:
        post = c.post
        assert (
            post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}).status_code
            == 400
        )
        r = post("/v1/chat/completions", json={**chat(data_url(clip)), "model": "gpt-4o"})
        assert r.status_code == 404 and "gpt-4o" in error_of(r)["message"]
        r = post("/v1/chat/completions", json={"model": "emoreason", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and error_of(r)["code"] == "missing_clip"
        assert post("/v1/chat/completions", json={"model": "emoreason", "messages": []}).status_code == 400
        assert post("/v1/chat/completions", json=chat("data:video/mp4;base64,@@@")).status_code == 400
        r = post("/v1/chat/completions", json=chat("https://example.com/clip.mp4"))
        assert r.status_code == 422 and error_of(r)["code"] == "remote_url"
        assert post("/v1/reports", data={"x": "1"}).status_code == 400
        assert post("/v1/reports", json={}).status_code == 400


def test_reports_endpoint(clip, media_root):
    with client(media_root=media_root) as c:
        r = c.post("/v1/reports", files={"file": ("astronaut.mp4", clip.read_bytes(), "video/mp4")})
        assert r.status_code == 200, r.text
        rep = Report.model_validate(r.json())
        assert rep.clip == "astronaut.mp4" and rep.analysis.emotion == "happiness" and rep.evidence.au_events
        by_path = c.post("/v1/reports", data={"path": "sub/astronaut.mp4"})
        assert by_path.status_code == 200 and by_path.json()["clip"] == "sub/astronaut.mp4"
        assert c.post("/v1/reports", data={"path": "link.mp4"}).status_code == 403
        assert c.get("/metrics").json()["cache"]["hits"] == 1  # same bytes by upload and by path


def test_api_key(clip):
    with client(api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200
        r = c.get("/v1/models")
        assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        ok = c.post("/v1/chat/completions", json=chat(data_url(clip)), headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_queue_full_gets_503_and_the_server_recovers(clip):
    engine = BlockingEngine()
    with client(engine=engine, max_concurrency=1, queue_size=0) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.post("/v1/chat/completions", json=chat(data_url(clip)))))
        t.start()
        assert engine.entered.wait(30)
        r = c.post("/v1/chat/completions", json=chat(data_url(clip)))
        assert r.status_code == 503 and error_of(r)["code"] == "queue_full"
        assert c.get("/metrics").json()["running"] == 1
        engine.release.set()
        t.join(30)
        assert first["r"].status_code == 200
        assert c.post("/v1/chat/completions", json=chat(data_url(clip))).status_code == 200
        m = c.get("/metrics").json()
        assert m["by_status"] == {"200": 2, "503": 1} and m["running"] == 0 and m["queue_depth"] == 0


def test_a_waiting_request_is_queued_not_refused(clip):
    engine = BlockingEngine()
    with client(engine=engine, max_concurrency=1, queue_size=1) as c:
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(c.post("/v1/chat/completions",
                                                                          json=chat(data_url(clip)))))
                   for _ in range(2)]  # fmt: skip
        for t in threads:
            t.start()
        assert engine.entered.wait(30)
        deadline = time.monotonic() + 30
        while c.app.state.limiter.queue_depth < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.get("/metrics").json()["queue_depth"] == 1
        assert c.post("/v1/chat/completions", json=chat(data_url(clip))).status_code == 503
        engine.release.set()
        for t in threads:
            t.join(30)
        assert [r.status_code for r in results] == [200, 200]


def test_timeout_gets_504(clip):
    engine = BlockingEngine()
    with client(engine=engine, timeout_s=0.5, max_concurrency=1) as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(clip)))
        assert r.status_code == 504 and error_of(r)["code"] == "timeout"
        # the stuck job keeps its slot until it really ends
        assert c.app.state.limiter.running == 1
        engine.release.set()
        deadline = time.monotonic() + 30
        while c.app.state.limiter.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.app.state.limiter.running == 0


def test_structured_log_line_per_request(caplog):
    with client() as c, caplog.at_level("INFO", logger="emoreason.serving.access"):
        c.get("/v1/models")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "emoreason.serving.access"]
    assert len(lines) == 1 and lines[0]["path"] == "/v1/models" and lines[0]["status"] == 200
    assert {"id", "method", "latency_ms", "queue_depth"} <= set(lines[0])


def test_index_page_is_served():
    with client() as c:
        r = c.get("/")
        assert r.status_code == 200 and '<canvas id="timeline"' in r.text and "/v1/chat/completions" in r.text


def test_settings_and_engines(tmp_path):
    with pytest.raises(ConfigError, match="unknown engine"):
        Settings(engine="gpt").validate()
    with pytest.raises(ConfigError, match="media root"):
        Settings(media_root=tmp_path / "none").validate()
    with pytest.raises(ConfigError, match="positive"):
        Settings(max_upload_mb=0).validate()
    assert Settings().host == "127.0.0.1"
    with pytest.raises(ConfigError, match="--model"):
        make_engine("transformers")
    with pytest.raises(ModelError, match="vllm"):
        make_engine("vllm")
    with pytest.raises(ModelError, match="config.json"):
        make_engine("transformers", tmp_path)


def assert_model_engine_answers(engine, clip: Path, question: str = "Is the smile genuine?") -> None:
    """A question about the clip through the API is answered by the model engine, with the evidence attached."""
    with client(engine=engine) as c:
        r = c.post("/v1/chat/completions", json=chat(data_url(clip), question))
        assert r.status_code == 200, r.text
        ext = r.json()["emoreason"]
        assert ext["engine"] == "transformers" and ext["qa"]["backend"] == "transformers"
        assert ext["au_events"] and r.json()["choices"][0]["message"]["content"] == ext["qa"]["answer"]


def test_transformers_engine_behind_the_same_api(clip, tiny_chat_model):  # noqa: F811
    assert_model_engine_answers(TransformersEngine(tiny_chat_model, max_new_tokens=8), clip)


def test_cache_is_bounded_and_computes_once_per_key():
    cache: PerceptionCache[int] = PerceptionCache(max_items=2)
    calls: list[str] = []
    gate = threading.Event()

    def slow() -> int:
        calls.append("a")
        gate.wait(5)
        return 1

    threads = [threading.Thread(target=cache.get_or_compute, args=("a", slow)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join()
    assert calls == ["a"] and (cache.hits, cache.misses) == (3, 1)
    cache.get_or_compute("b", lambda: 2)
    cache.get("a")  # a is now the most recent
    cache.get_or_compute("c", lambda: 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    assert cache_key("x", {"fps": 5, "asr": False}) == "x|asr=False|fps=5"


def test_serve_command_parses_its_options(tmp_path):
    import argparse

    from emoreason.cli import build_parser
    from emoreason.serving import commands

    p = argparse.ArgumentParser()
    commands.add_parser(p.add_subparsers())
    args = p.parse_args(["serve", "--port", "9001", "--media-root", str(tmp_path), "--api-key", "k", "--no-asr"])
    s = commands.settings_from_args(args)
    assert (s.host, s.port, s.api_key, s.asr, s.media_root) == ("127.0.0.1", 9001, "k", False, tmp_path.resolve())
    assert build_parser() is not None


def test_waiting_past_the_deadline_gets_504(clip):
    engine = BlockingEngine()
    with client(engine=engine, timeout_s=0.5, max_concurrency=1, queue_size=1) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.post("/v1/chat/completions", json=chat(data_url(clip)))))
        t.start()
        assert engine.entered.wait(30)
        r = c.post("/v1/chat/completions", json=chat(data_url(clip)))  # waits for the held slot, then gives up
        assert r.status_code == 504 and "free slot" in error_of(r)["message"]
        t.join(30)
        assert first["r"].status_code == 504
        engine.release.set()


def test_serve_command_bad_port_and_port_in_use_are_one_line_errors():
    import socket
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "emoreason", "serve", "--port", "99999"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip() == "emoreason: error: port must be between 0 and 65535, got 99999"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "emoreason", "serve", "--port", str(port)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2
    assert (
        r.stderr.strip().splitlines()[-1]
        == f"emoreason: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in r.stderr
