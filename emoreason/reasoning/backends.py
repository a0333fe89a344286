"""Chat LLM backends behind one interface: a local transformers checkpoint or any OpenAI-compatible endpoint.

A backend takes chat messages (``[{"role": ..., "content": ...}]``) and returns the assistant's reply. The knowledge
engine is not a chat backend: :func:`emoreason.reasoning.qa.ask` uses it when no backend is given.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emoreason.errors import BackendError, ConfigError, ModelError

log = logging.getLogger(__name__)

Message = dict[str, str]


class StrippedStream:
    """Hands text pieces on as they come, as ``"".join(pieces).strip()`` would end: leading whitespace is dropped and
    trailing whitespace is held back until more text follows it, so the pieces a client receives add up to exactly the
    stripped reply."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.started = False
        self.held = ""

    def __call__(self, piece: str) -> None:
        if not self.started:
            piece = piece.lstrip()
            if not piece:
                return
            self.started = True
        text = self.held + piece
        body = text.rstrip()
        self.held = text[len(body) :]
        if body:
            self.on_text(body)


def _streamer(tokenizer: Any, on_text: Callable[[str], None]) -> Any:
    """A transformers ``TextStreamer`` that hands each finished piece of new text to ``on_text`` (in the generating
    thread, while ``generate`` runs) instead of printing it."""
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def greedy_ids(model: Any, tokenizer: Any, inputs: Any, max_new_tokens: int, device: str = "cpu",
               on_text: Callable[[str], None] | None = None) -> Any:  # fmt: skip
    """The new token ids of a greedy ``generate`` from tokenised ``inputs`` (one prompt; encoder inputs ride along for
    multimodal models). ``on_text``: called with each piece of decoded text as it is generated."""
    import torch

    x = {k: v.to(device) for k, v in inputs.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    streamer = _streamer(tokenizer, on_text) if on_text is not None else None
    with torch.inference_mode():
        out = model.generate(**x, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                             streamer=streamer)  # fmt: skip
    return out[0, x["input_ids"].shape[1] :]


def greedy_reply(model: Any, tokenizer: Any, inputs: Any, max_new_tokens: int, device: str = "cpu",
                 on_text: Callable[[str], None] | None = None) -> str:  # fmt: skip
    """Greedy ``generate`` from tokenised ``inputs`` and the decoded new text, special tokens dropped, stripped.
    ``on_text`` receives the reply as it is generated, in pieces that add up to exactly the returned text."""
    stream = StrippedStream(on_text) if on_text is not None else None
    ids = greedy_ids(model, tokenizer, inputs, max_new_tokens, device, stream)
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


class ChatBackend(ABC):
    """Anything that answers a chat."""

    name: str = "backend"

    @abstractmethod
    def chat(self, messages: list[Message], on_text: Callable[[str], None] | None = None) -> str:
        """The assistant's reply to ``messages``; raises :class:`BackendError` when it cannot answer. ``on_text``
        receives the reply in pieces as it is generated (or whole, by a backend that gets it whole)."""


class TransformersBackend(ChatBackend):
    """Any local chat LLM saved with ``save_pretrained`` (weights, tokenizer with a chat template), greedy decoding."""

    name = "transformers"

    def __init__(self, path: str | Path, max_new_tokens: int = 256, device: str = "cpu") -> None:
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ModelError("not a transformers checkpoint (no config.json)", self.path)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the checkpoint: {e}", self.path) from e
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError("the tokenizer has no chat template; a chat model is needed", self.path)
        self.max_new_tokens = max_new_tokens
        self.device = device

    def encode(self, messages: list[Message]) -> Any:
        """The tokenised prompt of ``messages`` (chat template, generation prompt added)."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)  # fmt: skip

    def chat(self, messages: list[Message], on_text: Callable[[str], None] | None = None) -> str:
        ids = self.encode(messages)
        return greedy_reply(self.model, self.tokenizer, ids, self.max_new_tokens, self.device, on_text)


class OpenAIBackend(ChatBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, the project's server, hosted APIs).

    ``base_url`` ends in ``/v1``. ``transport`` is for tests (an ``httpx`` transport).
    """

    name = "openai"

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0,
                 max_tokens: int = 512, transport: Any = None) -> None:  # fmt: skip
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the endpoint URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def chat(self, messages: list[Message], on_text: Callable[[str], None] | None = None) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0.0}
        try:
            r = self._client.post(url, json=body)
        except httpx.HTTPError as e:
            raise BackendError(f"the endpoint did not answer: {e}", url) from e
        if r.status_code != 200:
            raise BackendError(f"the endpoint answered HTTP {r.status_code}: {r.text[:200]}", url)
        try:
            content = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise BackendError(f"the endpoint's reply is not a chat completion: {r.text[:200]}", url) from e
        if not isinstance(content, str):
            raise BackendError("the endpoint's reply has no text content", url)
        if on_text is not None:
            on_text(content.strip())  # asked without stream: the reply comes whole
        return content.strip()


def make_backend(spec: str, model: str = "emoreason", api_key: str | None = None) -> ChatBackend | None:
    """The chat backend of a ``--model`` spec (:mod:`emoreason.modelspec`): ``engine`` (None: the knowledge engine
    answers), ``transformers:PATH`` (a local text chat model) or ``openai:URL``; ``model`` is the id sent to an
    endpoint."""
    from emoreason.modelspec import parse_model_spec

    spec_ = parse_model_spec(spec, ("engine", "transformers", "openai"), "a chat backend")
    if spec_.kind == "engine":
        return None
    if spec_.kind == "transformers":
        return TransformersBackend(spec_.target or "")
    return OpenAIBackend(spec_.target or "", model=model, api_key=api_key)
