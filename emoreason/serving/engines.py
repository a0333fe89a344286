"""Reasoning engines behind one interface for the server: analyse a clip's evidence, answer a question about it.

``engine`` (:class:`KnowledgeEngine`) needs no weights. ``transformers`` (:class:`TransformersEngine`) runs a local
chat checkpoint fine-tuned on the training prompts (``prompts/train_*_v1.md``): it writes the analysis in the shared
``<think>/<answer>`` format and answers questions from the evidence. ``vllm`` (:class:`VLLMEngine`) runs the same
checkpoint and prompts on vLLM (its own environment: ``scripts/make_vllm_env.sh``; EmoReason checkpoints load through
the plugin in :mod:`emoreason.serving.vllm_plugin`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol

from emoreason.errors import ConfigError, ModelError
from emoreason.evidence import Evidence
from emoreason.reasoning.backends import ChatBackend, Message
from emoreason.reasoning.engine import Analysis, analyze
from emoreason.reasoning.qa import QAAnswer, ask

log = logging.getLogger(__name__)

ANALYSIS_QUESTION = (
    "What emotion does the person in this clip express? Explain which facial actions, voice cues and words support it."
)


class Engine(Protocol):
    name: str

    def analyze(self, evidence: Evidence) -> Analysis:
        """The explainable analysis of the clip (chain of thought, labels, AUs)."""

    def ask(
        self, evidence: Evidence, question: str, analysis: Analysis, history: list[dict] | None = None
    ) -> QAAnswer:
        """The answer to one question about the clip."""


class KnowledgeEngine:
    """The knowledge-based engine: AU prototypes, lexicon and prosody fused by rules; every statement from evidence."""

    name = "engine"

    def analyze(self, evidence: Evidence) -> Analysis:
        return analyze(evidence)

    def ask(
        self, evidence: Evidence, question: str, analysis: Analysis, history: list[dict] | None = None
    ) -> QAAnswer:
        return ask(evidence, question, analysis=analysis)


class TransformersEngine:
    """A local transformers chat checkpoint (``save_pretrained`` folder, no ``trust_remote_code``), greedy decoding.

    The analysis is the model's own ``<think>/<answer>`` text parsed by :mod:`emoreason.parsing`; the probabilities,
    segments and evidence fields come from the knowledge engine, so the response keeps its evidence.
    """

    name = "transformers"

    def __init__(self, path: str | Path, max_new_tokens: int = 384) -> None:
        from emoreason.reasoning.backends import TransformersBackend

        self.backend = TransformersBackend(path, max_new_tokens=max_new_tokens)

    def messages(self, evidence: Evidence, question: str = ANALYSIS_QUESTION) -> list[dict[str, str]]:
        from emoreason.data.builder import system_prompt_text
        from emoreason.evidence_text import evidence_to_text
        from emoreason.prompts import load_prompt

        system = system_prompt_text()
        user = load_prompt("train_user_v1").format(evidence=evidence_to_text(evidence), question=question)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def analyze(self, evidence: Evidence) -> Analysis:
        from emoreason.parsing import parse_output

        base = analyze(evidence)
        text = self.backend.chat(self.messages(evidence))
        parsed = parse_output(text)
        if parsed.think is None or parsed.emotion is None:
            log.warning("model output not in the answer format (%s); keeping the raw text as the reasoning",
                        "; ".join(parsed.errors) or "no emotion")  # fmt: skip
        return base.model_copy(update={
            "think": parsed.think if parsed.think is not None else text,
            "emotion": parsed.emotion or "uncertain",
            "compound": parsed.compound,
            "aus": parsed.aus,
        })  # fmt: skip

    def ask(
        self, evidence: Evidence, question: str, analysis: Analysis, history: list[dict] | None = None
    ) -> QAAnswer:
        return ask(evidence, question, backend=self.backend, history=history, analysis=analysis)


class VLLMChat(ChatBackend):
    """A chat backend on an in-process ``vllm.LLM``: greedy decoding, one request at a time (the LLM is not
    thread-safe; the server's worker threads share it through a lock)."""

    name = "vllm"

    def __init__(self, llm: object, max_new_tokens: int) -> None:
        from vllm import SamplingParams

        self.llm = llm
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self._lock = threading.Lock()

    def chat(self, messages: list[Message]) -> str:
        with self._lock:
            out = self.llm.chat(messages, self.params, use_tqdm=False)
        return out[0].outputs[0].text.strip()


class VLLMEngine(TransformersEngine):
    """:class:`TransformersEngine`'s prompts and parsing with generation on vLLM (``vllm.LLM(model=DIR)``).

    ``llm_kwargs`` go to ``vllm.LLM`` (e.g. ``max_model_len``, ``dtype``). On the CPU build the KV cache defaults to
    1 GiB (``VLLM_CPU_KVCACHE_SPACE``) unless set in the environment.
    """

    name = "vllm"

    def __init__(self, path: str | Path | None, max_new_tokens: int = 384, **llm_kwargs: object) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise ModelError(
                "the vllm engine needs vLLM, which lives in its own environment: run scripts/make_vllm_env.sh and "
                "start the server with .venv-vllm/bin/emoreason serve --engine vllm --model DIR"
            ) from e
        if path is None:
            raise ConfigError("the vllm engine needs --model DIR (a local checkpoint folder)")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelError("not a checkpoint folder (no config.json)", path)
        from emoreason.serving.vllm_plugin import guard_llvmlite, register

        register()
        guard_llvmlite()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        try:
            llm = LLM(model=str(path), tokenizer=str(path), **llm_kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelError(f"vLLM cannot load the checkpoint: {e}", path) from e
        if not getattr(llm.get_tokenizer(), "chat_template", None):
            raise ModelError("the tokenizer has no chat template; a chat model is needed", path)
        self.backend = VLLMChat(llm, max_new_tokens)


def make_engine(kind: str, model: str | Path | None = None) -> Engine:
    """The engine named ``kind`` (``engine``, ``transformers`` or ``vllm``); raises a clear error when it cannot run."""
    if kind == "engine":
        return KnowledgeEngine()
    if kind == "transformers":
        if model is None:
            raise ConfigError("the transformers engine needs --model DIR (a local checkpoint folder)")
        return TransformersEngine(model)
    if kind == "vllm":
        return VLLMEngine(model)
    raise ConfigError(f"unknown engine {kind!r}; use engine, transformers or vllm")
