"""Reasoning engines behind one interface for the server: analyse a clip's evidence, answer a question about it.

``engine`` (:class:`KnowledgeEngine`) needs no weights. ``transformers`` (:class:`TransformersEngine`) runs a local
checkpoint and ``vllm`` (:class:`VLLMEngine`) runs the same checkpoint on vLLM (its own environment:
``scripts/make_vllm_env.sh``; EmoReason checkpoints load through the plugin in :mod:`emoreason.serving.vllm_plugin`).
Either takes two kinds of checkpoint:

* an **EmoReason checkpoint** (``model_type: emoreason``): the clip reaches the model as encoder inputs — the face/AU
  series (and landmarks) of the Evidence and the clip's 16 kHz audio, built by the checkpoint's own processor — behind
  ``<|face|>``/``<|audio|>`` placeholders in the prompt, for the modalities its training trained
  (``config.trained_modalities``; an untrained encoder's tokens are never shown to the model) (:func:`emoreason.data.builder.clip_messages`, the training
  prompt); on vLLM they travel as ``multi_modal_data`` arrays;
* a **text chat checkpoint** fine-tuned on the training prompts (``emoreason/prompts/train_*_v1.md``): the evidence is
  written into the prompt as text.

The model writes the analysis in the shared ``<think>/<answer>`` format. Its emotion, compound, AUs, chain of thought
and label probabilities (its own label-token scores, :mod:`emoreason.reasoning.label_scores`) make the analysis, which
names the model as its ``reasoner``; the evidence cues the reply does not give (smile cue, micro-expressions, voice
arousal, modality agreement, caption) are the knowledge engine's reading and are listed in ``Analysis.engine_fields``.

``on_text``: the model engines hand each piece of the reply to this callback as it is generated (transformers'
``TextStreamer``; on vLLM, each engine step's new text), for real streaming; the knowledge engine's answer is written
at once, and handed over whole.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from emoreason.errors import ConfigError, ModelError
from emoreason.evidence import Evidence
from emoreason.reasoning.backends import ChatBackend, Message
from emoreason.reasoning.engine import Analysis, analyze, model_analysis
from emoreason.reasoning.qa import QAAnswer, ask

log = logging.getLogger(__name__)

ANALYSIS_QUESTION = (
    "What emotion does the person in this clip express? Explain which facial actions, voice cues and words support it."
)


OnText = Callable[[str], None]


class Engine(Protocol):
    name: str

    def analyze(self, evidence: Evidence, media: Path | None = None, on_text: OnText | None = None) -> Analysis:
        """The explainable analysis of the clip (chain of thought, labels, AUs). ``media`` is the clip's file, for
        engines whose model hears the audio itself; ``on_text`` receives ``answer_text()`` as it is written."""

    def ask(
        self,
        evidence: Evidence,
        question: str,
        analysis: Analysis,
        history: list[dict] | None = None,
        media: Path | None = None,
        on_text: OnText | None = None,
    ) -> QAAnswer:
        """The answer to one question about the clip; ``on_text`` receives the answer as it is written."""


class KnowledgeEngine:
    """The knowledge-based engine: AU prototypes, lexicon and prosody fused by rules; every statement from evidence."""

    name = "engine"
    reasoner = "knowledge-engine"

    def analyze(self, evidence: Evidence, media: Path | None = None, on_text: OnText | None = None) -> Analysis:
        a = analyze(evidence)
        if on_text is not None:
            on_text(a.answer_text())  # written at once
        return a

    def ask(
        self,
        evidence: Evidence,
        question: str,
        analysis: Analysis,
        history: list[dict] | None = None,
        media: Path | None = None,
        on_text: OnText | None = None,
    ) -> QAAnswer:
        qa = ask(evidence, question, analysis=analysis)
        if on_text is not None:
            on_text(qa.answer)
        return qa


def checkpoint_type(path: str | Path) -> str:
    """The ``model_type`` of a checkpoint folder; a :class:`ModelError` when it is not one."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise ModelError("not a checkpoint folder (no config.json)", path)
    try:
        return str(json.loads(config.read_text()).get("model_type", ""))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ModelError(f"config.json is not a JSON object: {e}", config) from e


def check_adapter(path: str | Path) -> tuple[Path, int]:
    """A peft LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``; pickled ``.bin`` adapters
    are refused) and its rank; a :class:`ModelError` naming the folder otherwise."""
    path = Path(path)
    config = path / "adapter_config.json"
    if not config.is_file():
        raise ModelError("not a LoRA adapter folder (no adapter_config.json)", path)
    if not (path / "adapter_model.safetensors").is_file():
        raise ModelError("the adapter has no adapter_model.safetensors (only safetensors adapters are loaded)", path)
    try:
        cfg = json.loads(config.read_text())
        return path, int(cfg["r"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"adapter_config.json is not a LoRA config: {e}", config) from e


def adapter_modalities(path: str | Path) -> list[str]:
    """The modalities the training stage that wrote the adapter at ``path`` trained (its ``emoreason_train.json``
    summary); none when it has no summary."""
    summary = Path(path) / "emoreason_train.json"
    try:
        got = json.loads(summary.read_text()).get("trained_modalities", []) if summary.is_file() else []
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ModelError(f"the adapter's training summary is not JSON: {e}", summary) from e
    return [m for m in got if m in ("face", "audio")] if isinstance(got, list) else []


def merge_adapter(model: Any, path: str | Path) -> Any:
    """``model`` with the LoRA adapter at ``path`` merged into its weights (greedy outputs equal the adapted model's)."""
    from peft import PeftModel

    path, _ = check_adapter(path)
    try:
        return PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot apply the LoRA adapter: {e}", path) from e


def _stat(path: Path) -> os.stat_result | None:
    try:
        return Path(path).stat()
    except OSError:
        return None


@functools.lru_cache(maxsize=4)
def _clip_audio(path: str, size: int, mtime_ns: int, sr: int) -> Any:
    """The clip's audio at ``sr`` Hz (``None`` when it has none), decoded once per file version: a request's analysis
    and its question both need it."""
    from emoreason import media

    wav = media.load_audio(path, sr)
    return wav if wav is not None and wav.size else None


class ClipPrompts:
    """Builds an EmoReason checkpoint's inputs for one clip and one question: the rendered prompt with the face/audio
    placeholders the clip supports, and the processor's encoder inputs (face/AU series; log-mel + prosody audio)."""

    def __init__(self, path: str | Path, lora: str | Path | None = None) -> None:
        from transformers import AutoConfig, AutoProcessor

        import emoreason.models.emoreason  # noqa: F401  (registers the Auto classes)

        try:
            self.config = AutoConfig.from_pretrained(path)
            self.processor = AutoProcessor.from_pretrained(path)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the EmoReason processor: {e}", path) from e
        if not getattr(self.processor, "chat_template", None):
            raise ModelError("the processor has no chat template; an instruction-tuned checkpoint is needed", path)
        if lora is not None:  # an adapter's training (modules_to_save) may have trained encoders the base has not
            self.config.trained_modalities = sorted({*self.config.trained_modalities, *adapter_modalities(lora)})
        for m in ("face", "audio"):
            if getattr(self.config, f"use_{m}") and not self.serves(m):
                log.warning("%s: the %s encoder was never trained (config.trained_modalities: %s), so the clip's %s "
                            "is not given to the model", path, m, self.config.trained_modalities, m)  # fmt: skip

    def serves(self, modality: str) -> bool:
        """Whether the clip's ``modality`` (face or audio) goes to the model: the checkpoint has that encoder and a
        training stage trained it (``config.trained_modalities``)."""
        return bool(getattr(self.config, f"use_{modality}") and modality in self.config.trained_modalities)

    def build(
        self, evidence: Evidence, question: str, media: Path | None = None, history: list[dict] | None = None
    ) -> tuple[str, Any]:
        from emoreason.data.builder import clip_messages

        face = bool(self.serves("face") and evidence.aus is not None and evidence.aus.times)
        wav = None
        if self.serves("audio") and media is not None and evidence.media.has_audio:
            version = (st.st_size, st.st_mtime_ns) if (st := _stat(media)) else (-1, -1)  # missing: load_audio says so
            wav = _clip_audio(str(media), *version, self.processor.sampling_rate)
        turns = [{"role": t["role"], "content": t["content"]} for t in history or []]
        obs = None
        if getattr(self.config, "prompt_observations", False):
            from emoreason.evidence_text import observations_text

            obs = observations_text(evidence)
        messages = clip_messages(question, face=face, audio=wav is not None, history=turns, observations=obs)
        prompt = self.processor.render(messages)[0]
        inputs = self.processor(text=prompt, evidence=evidence if face or wav is not None else None, audio=wav,
                                padding=False)  # fmt: skip
        return prompt, inputs


class TransformersClipModel:
    """An EmoReason checkpoint on transformers: greedy ``generate`` from the processor's inputs."""

    name = "transformers"

    def __init__(self, path: str | Path, max_new_tokens: int, lora: str | Path | None = None, device: str = "cpu"
                 ) -> None:  # fmt: skip
        from emoreason.models.emoreason import EmoReasonForConditionalGeneration

        try:
            model = EmoReasonForConditionalGeneration.from_pretrained(path)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the checkpoint: {e}", path) from e
        self.model = (merge_adapter(model, lora) if lora is not None else model).to(device).eval()
        self.max_new_tokens, self.device = max_new_tokens, device

    def generate(self, prompt: str, inputs: Any, tokenizer: Any, on_text: OnText | None = None) -> str:
        from emoreason.reasoning.backends import greedy_reply

        return greedy_reply(self.model, tokenizer, inputs, self.max_new_tokens, self.device, on_text)

    def label_scores(self, prompt: str, inputs: Any, tokenizer: Any, reply: str) -> dict[str, float]:
        from emoreason.reasoning.label_scores import label_probabilities

        return label_probabilities(self.model, tokenizer, inputs, reply, device=self.device)


# The questions an EmoReason checkpoint was trained to answer (which emotion, why, which AUs, a compound): its
# training rows ask these and its replies carry the chain of thought and the answer. Other questions (time ranges,
# change over time, yes/no about a named emotion, the voice, what was said, instructions) go to the rule QA, which
# answers them from the evidence and says when it cannot.
MODEL_INTENTS = frozenset({"emotion", "why", "aus", "compound"})


@functools.cache
def _training_questions() -> frozenset[str]:
    """The questions an EmoReason checkpoint's training rows ask (read once)."""
    from emoreason.data.builder import question_templates

    return frozenset({ANALYSIS_QUESTION, *question_templates()})


def rule_question(evidence: Evidence, question: str) -> str | None:
    """The rule QA's intent for a question an EmoReason checkpoint was not trained on, else None (the model answers:
    one of its training questions, or a question of the kinds in ``MODEL_INTENTS``)."""
    from emoreason.parsing import find_times
    from emoreason.reasoning.qa import find_span, is_yes_no, match_intent, named_emotion

    if question.strip() in _training_questions():
        return None
    intent = match_intent(question)
    if intent not in MODEL_INTENTS:
        return intent or "unknown"
    if find_times(question) or find_span(question, evidence.media.duration_s):
        return "time_range"
    if is_yes_no(question) and named_emotion(question):
        return "yes_no"
    return None


class TransformersEngine:
    """A local transformers checkpoint (``save_pretrained`` folder, no ``trust_remote_code``), greedy decoding.

    An EmoReason checkpoint reads the clip through its encoders (:class:`ClipPrompts`); a text chat checkpoint reads the
    evidence as text. The analysis is the model's own ``<think>/<answer>`` text parsed by :mod:`emoreason.parsing`.
    """

    name = "transformers"

    def __init__(self, path: str | Path, max_new_tokens: int = 384, lora: str | Path | None = None) -> None:
        from emoreason.models.packaged import resolve_checkpoint

        self.reasoner = f"{self.name}:{path}" + (f" + LoRA {lora}" if lora is not None else "")
        path = resolve_checkpoint(path)
        self.clip: ClipPrompts | None = None
        self.clip_model: Any = None
        if checkpoint_type(path) == "emoreason":
            self.clip = ClipPrompts(path, lora)
            self.clip_model = TransformersClipModel(path, max_new_tokens, lora)
        else:
            from emoreason.reasoning.backends import TransformersBackend

            self.backend = TransformersBackend(path, max_new_tokens=max_new_tokens)
            if lora is not None:
                self.backend.model = merge_adapter(self.backend.model, lora).eval()

    @property
    def max_new_tokens(self) -> int:
        """The reply length limit of whichever generator this checkpoint runs on (settable, e.g. per eval task)."""
        return (self.clip_model if self.clip is not None else self.backend).max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, n: int) -> None:
        (self.clip_model if self.clip is not None else self.backend).max_new_tokens = n

    def messages(self, evidence: Evidence, question: str = ANALYSIS_QUESTION) -> list[dict[str, str]]:
        from emoreason.data.builder import system_prompt_text
        from emoreason.evidence_text import evidence_to_text
        from emoreason.prompts import load_prompt

        system = system_prompt_text()
        user = load_prompt("train_user_v1").format(evidence=evidence_to_text(evidence), question=question)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def reply(
        self,
        evidence: Evidence,
        question: str,
        media: Path | None = None,
        history: list[dict] | None = None,
        on_text: OnText | None = None,
    ) -> str:
        """The model's reply to ``question`` about the clip (the clip as encoder inputs, or the evidence as text)."""
        return self.scored_reply(evidence, question, media, history, on_text, scores=False)[0]

    def scored_reply(
        self,
        evidence: Evidence,
        question: str,
        media: Path | None = None,
        history: list[dict] | None = None,
        on_text: OnText | None = None,
        scores: bool = True,
    ) -> tuple[str, dict[str, float]]:
        """:meth:`reply` and, with ``scores``, the model's label probabilities at the emotion of its answer (empty when
        the reply has no answer or the generator cannot score)."""
        if self.clip is not None:
            prompt, inputs = self.clip.build(evidence, question, media, history)
            tok = self.clip.processor.tokenizer
            text = self.clip_model.generate(prompt, inputs, tok, on_text)
            return text, self.clip_model.label_scores(prompt, inputs, tok, text) if scores else {}
        messages = self.messages(evidence, question)
        messages = [messages[0], *(history or []), messages[1]]
        text = self.backend.chat(messages, on_text)
        return text, self.backend_scores(messages, text) if scores else {}

    def backend_scores(self, messages: list[dict[str, str]], reply: str) -> dict[str, float]:
        """A text checkpoint's label probabilities for ``reply`` (see :mod:`emoreason.reasoning.label_scores`)."""
        from emoreason.reasoning.label_scores import label_probabilities

        b = self.backend
        return label_probabilities(b.model, b.tokenizer, b.encode(messages), reply, device=b.device)

    def analyze(self, evidence: Evidence, media: Path | None = None, on_text: OnText | None = None) -> Analysis:
        from emoreason.parsing import parse_output

        text, probs = self.scored_reply(evidence, ANALYSIS_QUESTION, media, on_text=on_text)
        parsed = parse_output(text)
        if parsed.think is None or parsed.emotion is None:
            log.warning("model output not in the answer format (%s); keeping the raw text as the reasoning",
                        "; ".join(parsed.errors) or "no emotion")  # fmt: skip
        return model_analysis(
            evidence, reasoner=self.reasoner, text=text, think=parsed.think if parsed.think is not None else text,
            emotion=parsed.emotion or "uncertain", compound=parsed.compound, aus=parsed.aus, probabilities=probs,
        )  # fmt: skip

    def ask(
        self,
        evidence: Evidence,
        question: str,
        analysis: Analysis,
        history: list[dict] | None = None,
        media: Path | None = None,
        on_text: OnText | None = None,
    ) -> QAAnswer:
        if not question.strip() or (self.clip is not None and rule_question(evidence, question) is not None):
            # the rule QA, under its own name ("engine"): an empty question, or one the checkpoint was not trained on
            qa = ask(evidence, question, analysis=analysis)
            if on_text is not None:
                on_text(qa.answer)
            return qa
        if self.clip is None:
            return ask(evidence, question, backend=self.backend, history=history, analysis=analysis, on_text=on_text)
        from emoreason.parsing import parse_output
        from emoreason.reasoning.faithfulness import check_faithfulness

        text = self.reply(evidence, question, media, history, on_text)
        check = check_faithfulness(text, evidence)
        grounded = parse_output(text).format_ok and check.cites_only_evidence
        return QAAnswer(question=question, answer=text, intent="llm", grounded=grounded, backend=self.name)


class _VLLMGreedy:
    """Greedy decoding on an in-process ``vllm.LLM``, one request at a time (the LLM is not thread-safe; the server's
    worker threads share it through a lock), with an optional LoRA request applied to every call."""

    name = "vllm"

    def __init__(self, llm: Any, max_new_tokens: int, lora_request: Any = None) -> None:
        self.llm = llm
        self.max_new_tokens = max_new_tokens
        self.lora_request = lora_request
        self._lock = threading.Lock()
        self._ids = itertools.count()

    @property
    def max_new_tokens(self) -> int:
        return self.params.max_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, n: int) -> None:
        from vllm import SamplingParams

        self.params = SamplingParams(temperature=0.0, max_tokens=n)

    def _run(self, method: str, request: Any, on_text: OnText | None = None) -> str:
        with self._lock:
            if on_text is not None:
                return self._stream(method, request, on_text)
            out = getattr(self.llm, method)(request, self.params, use_tqdm=False, lora_request=self.lora_request)
        return out[0].outputs[0].text.strip()

    def _stream(self, method: str, request: Any, on_text: OnText) -> str:
        """The reply token by token: ``LLM.generate``/``chat`` report only finished requests, so the request goes to
        the ``LLM``'s engine itself with delta outputs, and each step's new text is handed on as the engine makes it
        (the same greedy sampling, so the same tokens). A chat is rendered with the tokenizer's chat template first."""
        from vllm.sampling_params import RequestOutputKind

        from emoreason.reasoning.backends import StrippedStream

        if method == "chat":
            tok = self.llm.get_tokenizer()
            request = {"prompt": tok.apply_chat_template(request, tokenize=False, add_generation_prompt=True)}
        params = self.params.clone()
        params.output_kind = RequestOutputKind.DELTA
        engine = self.llm.llm_engine
        rid = f"emoreason-stream-{next(self._ids)}"
        engine.add_request(rid, request, params, lora_request=self.lora_request)
        stream, pieces = StrippedStream(on_text), []
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    if out.request_id == rid and out.outputs:
                        pieces.append(out.outputs[0].text)
                        stream(pieces[-1])
        except BaseException:
            engine.abort_request([rid])
            raise
        return "".join(pieces).strip()

    def label_scores(self, prompt: str, inputs: Any, tokenizer: Any, reply: str) -> dict[str, float]:
        """A text chat checkpoint on vLLM gives no label scores (EmoReason checkpoints do: :class:`VLLMClipModel`):
        its analysis then carries no probabilities rather than another engine's."""
        return {}


class VLLMChat(_VLLMGreedy, ChatBackend):
    """A chat backend on vLLM (text chat checkpoints)."""

    def chat(self, messages: list[Message], on_text: OnText | None = None) -> str:
        return self._run("chat", messages, on_text)


class VLLMClipModel(_VLLMGreedy):
    """An EmoReason checkpoint on vLLM: the processor's encoder inputs go to vLLM as ``multi_modal_data`` arrays (the
    plugin's processor expands the placeholders, its model runs the encoders)."""

    @staticmethod
    def request(prompt: str, inputs: Any) -> dict[str, Any]:
        """The vLLM prompt dict for one clip: the text and the face/audio arrays (batch axis dropped)."""
        mm = {m: {f"{m}_values": inputs[f"{m}_values"][0], f"{m}_mask": inputs[f"{m}_mask"][0]}
              for m in ("face", "audio") if f"{m}_values" in inputs}  # fmt: skip
        if "face_crops" in inputs:
            mm["face"]["face_crops"] = inputs["face_crops"][0]
        return {"prompt": prompt, "multi_modal_data": mm} if mm else {"prompt": prompt}

    def generate(self, prompt: str, inputs: Any, tokenizer: Any, on_text: OnText | None = None) -> str:
        return self._run("generate", self.request(prompt, inputs), on_text)

    def label_scores(self, prompt: str, inputs: Any, tokenizer: Any, reply: str) -> dict[str, float]:
        """The model's own label probabilities, as :func:`emoreason.reasoning.label_scores.label_probabilities`
        computes them in transformers: one request per label (the prompt's tokens, the reply up to the label, the
        label's tokens; the same clip arrays), scored with vLLM's prompt log-probabilities (the prefix cache holds the
        shared part)."""
        from vllm import SamplingParams

        from emoreason.knowledge.taxonomy import ALL_EMOTIONS
        from emoreason.reasoning.label_scores import label_continuations, normalised

        parts = label_continuations(tokenizer, reply, ALL_EMOTIONS)
        if parts is None:
            return {}
        pre, conts = parts
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"] + pre  # placeholders unexpanded, as vLLM wants
        mm = self.request(prompt, inputs).get("multi_modal_data")
        reqs = [{"prompt_token_ids": head + c, **({"multi_modal_data": mm} if mm else {})} for c in conts]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        with self._lock:
            outs = self.llm.generate(reqs, params, use_tqdm=False, lora_request=self.lora_request)
        scores = []
        for out, c in zip(outs, conts, strict=True):
            ids, lps = out.prompt_token_ids, out.prompt_logprobs
            scores.append(sum(lps[j][ids[j]].logprob for j in range(len(ids) - len(c), len(ids))))
        return normalised(ALL_EMOTIONS, scores)


class VLLMEngine(TransformersEngine):
    """:class:`TransformersEngine`'s prompts and parsing with generation on vLLM (``vllm.LLM(model=DIR)``).

    ``llm_kwargs`` go to ``vllm.LLM`` (e.g. ``max_model_len``, ``dtype``). On the CPU build the KV cache defaults to
    1 GiB (``VLLM_CPU_KVCACHE_SPACE``) unless set in the environment. ``lora``: a peft adapter folder served with
    every request (vLLM's LoRA kernels; the base weights stay as they are).
    """

    name = "vllm"

    def __init__(
        self, path: str | Path | None, max_new_tokens: int = 384, lora: str | Path | None = None, **llm_kwargs: object
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise ModelError(
                "the vllm engine needs vLLM, which lives in its own environment: run scripts/make_vllm_env.sh and "
                "start the server with .venv-vllm/bin/emoreason serve --engine vllm --model DIR"
            ) from e
        if path is None:
            raise ConfigError("the vllm engine needs --model DIR (a local checkpoint folder)")
        from emoreason.models.packaged import resolve_checkpoint

        self.reasoner = f"{self.name}:{path}" + (f" + LoRA {lora}" if lora is not None else "")
        path = resolve_checkpoint(path)
        multimodal = checkpoint_type(path) == "emoreason"
        from emoreason.serving.vllm_plugin import guard_llvmlite, register

        register()
        guard_llvmlite()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if multimodal:
            llm_kwargs.setdefault("enable_mm_embeds", True)  # the clip arrives as precomputed encoder inputs
        lora_request = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            adapter, rank = check_adapter(lora)
            llm_kwargs.setdefault("enable_lora", True)
            llm_kwargs.setdefault("max_lora_rank", 1 << max(3, (rank - 1).bit_length()))  # vLLM takes powers of 2
            lora_request = LoRARequest(adapter.name or "adapter", 1, str(adapter.resolve()))
        try:
            llm = LLM(model=str(path), tokenizer=str(path), **llm_kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelError(f"vLLM cannot load the checkpoint: {e}", path) from e
        self.clip: ClipPrompts | None = None
        self.clip_model: Any = None
        if multimodal:
            self.clip = ClipPrompts(path, lora)
            self.clip_model = VLLMClipModel(llm, max_new_tokens, lora_request)
            return
        if not getattr(llm.get_tokenizer(), "chat_template", None):
            raise ModelError("the tokenizer has no chat template; a chat model is needed", path)
        self.backend = VLLMChat(llm, max_new_tokens, lora_request)

    def backend_scores(self, messages: list[dict[str, str]], reply: str) -> dict[str, float]:
        return {}  # a text chat checkpoint on vLLM gives no label scores (see _VLLMGreedy.label_scores)


def make_engine(kind: str, model: str | Path | None = None, lora: str | Path | None = None) -> Engine:
    """The engine named ``kind`` (``engine``, ``transformers`` or ``vllm``); raises a clear error when it cannot run."""
    if kind == "engine":
        if lora is not None:
            raise ConfigError("--lora needs a model engine (transformers or vllm) and --model")
        return KnowledgeEngine()
    if kind == "transformers":
        if model is None:
            raise ConfigError("the transformers engine needs --model DIR (a local checkpoint folder)")
        return TransformersEngine(model, lora=lora)
    if kind == "vllm":
        return VLLMEngine(model, lora=lora)
    raise ConfigError(f"unknown engine {kind!r}; use engine, transformers or vllm")
