"""The official OpenAI Python client, unchanged, against the server running under uvicorn on a loopback port."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from emoreason.parsing import parse_output
from emoreason.serving.server import create_app
from emoreason.serving.settings import Settings

openai = pytest.importorskip("openai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(**settings: Any) -> Iterator[str]:
    """The server for ``Settings(**settings)`` under uvicorn on a free loopback port, in a thread; yields its URL."""
    port = free_port()
    app = create_app(Settings(port=port, **settings))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        t.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(asr=False, fps=5.0, max_side=360, api_key="test-key") as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def clip_part(astronaut_clip) -> dict:
    url = "data:video/mp4;base64," + base64.b64encode(astronaut_clip.read_bytes()).decode()
    return {"type": "video_url", "video_url": {"url": url}}


def test_models_and_analysis(server, clip_part):
    client = openai.OpenAI(base_url=server, api_key="test-key")
    assert [m.id for m in client.models.list()] == ["emoreason"]
    resp = client.chat.completions.create(model="emoreason", messages=[{"role": "user", "content": [clip_part]}])
    content = resp.choices[0].message.content
    parsed = parse_output(content)
    assert parsed.format_ok and parsed.emotion == "happiness"
    ext = resp.model_extra["emoreason"]
    assert ext["emotion"] == "happiness" and ext["au_events"] and ext["think"] == parsed.think


def test_question_streaming_and_json(server, clip_part):
    client = openai.OpenAI(base_url=server, api_key="test-key")
    messages = [{"role": "user", "content": [clip_part, {"type": "text", "text": "Which action units are active?"}]}]
    plain = client.chat.completions.create(model="emoreason", messages=messages)
    stream = client.chat.completions.create(model="emoreason", messages=messages, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content and "AU12" in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    js = client.chat.completions.create(model="emoreason", messages=messages, response_format={"type": "json_object"})
    obj = json.loads(js.choices[0].message.content)
    assert obj["emotion"] == "happiness" and obj["answer"] == plain.choices[0].message.content


def test_client_sees_errors(server, clip_part):
    client = openai.OpenAI(base_url=server, api_key="test-key", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [clip_part]}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server, api_key="wrong", max_retries=0).models.list()
