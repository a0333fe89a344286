"""LLM backends: a tiny random chat model saved in the test (transformers) and an OpenAI-compatible endpoint (httpx
MockTransport at the HTTP boundary)."""

from __future__ import annotations

import json

import httpx
import pytest

from emoreason.errors import BackendError, ConfigError, ModelError
from emoreason.reasoning.backends import OpenAIBackend, TransformersBackend, make_backend
from emoreason.reasoning.qa import ask
from tests.test_reasoning import HAPPY, make_evidence

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    """A 2-layer random Llama with a WordLevel tokenizer and a chat template, saved like any local checkpoint."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [
        "happy",
        "sad",
        "smile",
        "face",
        "voice",
        "AU6",
        "AU12",
        "the",
        "is",
        "a",
        "I",
        "can't",
        "tell",
        "from",
        "this",
        "clip",
    ]
    special = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    vocab = {t: i for i, t in enumerate(special + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      pad_token_id=1, bos_token_id=2, eos_token_id=3)  # fmt: skip
    d = tmp_path_factory.mktemp("tiny_chat")
    LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return d


def test_transformers_backend_answers_with_the_evidence_in_the_prompt(tiny_chat_model):
    backend = TransformersBackend(tiny_chat_model, max_new_tokens=6)
    ev = make_evidence(HAPPY)
    seen = {}
    real_chat = backend.chat

    def spy(messages):
        seen["messages"] = messages
        return real_chat(messages)

    backend.chat = spy
    a = ask(ev, "Is the smile genuine?", backend=backend, history=[{"role": "user", "content": "hi"},
                                                                   {"role": "assistant", "content": "hello"}])  # fmt: skip
    assert a.intent == "llm" and a.backend == "transformers" and isinstance(a.answer, str)
    assert 0 < len(a.answer.split()) <= 6  # the random model babbles vocabulary words, at most 6 tokens
    system = seen["messages"][0]["content"]
    assert "AU12 (lip corner puller): 0.50-2.70 s" in system and "Key observations:" in system
    assert [m["role"] for m in seen["messages"]] == ["system", "user", "assistant", "user"]
    assert "Is the smile genuine?" in seen["messages"][-1]["content"]


def test_transformers_backend_errors(tmp_path, tiny_chat_model):
    with pytest.raises(ModelError, match="no config.json"):
        TransformersBackend(tmp_path)
    import shutil

    d = tmp_path / "nochat"
    shutil.copytree(tiny_chat_model, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in d.glob("chat_template.*"):
        f.unlink()
    with pytest.raises(ModelError, match="chat template"):
        TransformersBackend(d)


def _endpoint(status=200, reply=None, seen=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append((str(request.url), request.headers.get("authorization"), json.loads(request.content)))
        body = reply if reply is not None else {"choices": [{"message": {"role": "assistant", "content": " Yes. "}}]}
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


def test_openai_backend_posts_a_chat_completion():
    seen: list = []
    b = OpenAIBackend("http://127.0.0.1:9/v1/", model="m1", api_key="k", transport=_endpoint(seen=seen))
    a = ask(make_evidence(HAPPY), "Is the smile genuine?", backend=b)
    assert a.answer == "Yes." and a.backend == "openai"
    url, auth, body = seen[0]
    assert url == "http://127.0.0.1:9/v1/chat/completions" and auth == "Bearer k"
    assert body["model"] == "m1" and body["temperature"] == 0.0
    assert "AU6 (cheek raiser)" in body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("status", "reply", "match"),
    [(500, {"error": "boom"}, "HTTP 500"), (200, {"nope": 1}, "not a chat completion"),
     (200, {"choices": [{"message": {"content": None}}]}, "no text content")],
)  # fmt: skip
def test_openai_backend_errors(status, reply, match):
    b = OpenAIBackend("http://127.0.0.1:9/v1", transport=_endpoint(status, reply))
    with pytest.raises(BackendError, match=match):
        b.chat([{"role": "user", "content": "hi"}])


def test_openai_backend_unreachable():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    b = OpenAIBackend("http://127.0.0.1:9/v1", transport=httpx.MockTransport(refuse))
    with pytest.raises(BackendError, match="did not answer"):
        b.chat([{"role": "user", "content": "hi"}])


def test_make_backend_specs():
    assert make_backend("engine") is None
    assert isinstance(make_backend("openai:http://localhost:8000/v1"), OpenAIBackend)
    for bad in ("gpt", "openai:", "transformers:", "engine:x"):
        with pytest.raises(ConfigError, match="--model"):
            make_backend(bad)
    with pytest.raises(ConfigError, match="http"):
        make_backend("openai:localhost:8000")


class _FakeChatServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers every chat with a fixed text and records requests."""

    def __init__(self, reply: str = "The smile looks genuine: AU6 with AU12.") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, **body})
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _ask_cli(*args, stdin: str | None = None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "emoreason", "-q", "ask", *map(str, args)], capture_output=True,
                          text=True, input=stdin, timeout=300)  # fmt: skip


def test_ask_command_with_an_openai_endpoint_chat_keeps_history(tmp_path):
    path = make_evidence(HAPPY).save(tmp_path / "c.evidence.json")
    with _FakeChatServer() as server:
        r = _ask_cli(
            path, "--model", f"openai:{server.url}", "--api-model", "m", stdin="Is the smile genuine?\nWhy?\n"
        )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("The smile looks genuine") == 2
    first, second = server.requests
    assert first["path"] == "/v1/chat/completions" and first["model"] == "m"
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]  # history kept
    assert second["messages"][2]["content"].startswith("The smile looks genuine")


def test_ask_command_with_a_local_transformers_model(tmp_path, tiny_chat_model):
    path = make_evidence(HAPPY).save(tmp_path / "c.evidence.json")
    r = _ask_cli(path, "Is the smile genuine?", "--model", f"transformers:{tiny_chat_model}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()  # the random model's words
    bad = _ask_cli(path, "hi", "--model", f"transformers:{tmp_path}")
    assert bad.returncode == 1 and "no config.json" in bad.stderr
