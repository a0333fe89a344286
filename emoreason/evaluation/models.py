"""Model adapters for evaluation: one small class per kind of model, all answering :class:`Request` → :class:`Response`.

``--model`` spellings (:func:`make_model`):

- ``engine`` — the knowledge-based reasoner, ``emoreason.reasoning.engine.analyze(evidence)``; its ``answer_text()``
  is the output and its ``caption`` the temporal caption.
- ``checkpoint:PATH`` — a local transformers checkpoint trained by ``emoreason train`` (the serving engine's
  transformers path, with the training prompt).
- ``openai:URL`` — any OpenAI-compatible chat endpoint (vLLM, the project's server, hosted APIs); ``URL`` is the base
  ending in ``/v1``. By default the prompt carries a text rendering of the evidence (any text model can answer);
  ``--send-video`` attaches the clip itself for endpoints that take video (vLLM), ``--clip-only`` sends the clip
  alone (``emoreason serve``: its full analysis comes back in the shared answer format).

Those modules are imported lazily, so evaluation code loads without them; a missing one raises
:class:`~emoreason.errors.ModelError` with the reason.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from emoreason.errors import BackendError, ConfigError, MediaError, ModelError
from emoreason.evidence import Evidence

if TYPE_CHECKING:
    from emoreason.evaluation.loaders import Sample

log = logging.getLogger(__name__)


@dataclass
class Request:
    sample: Sample
    prompt: Any  # callable(evidence) -> prompt text, rendered only by adapters that need text
    generation: dict[str, Any] = field(default_factory=dict)


@dataclass
class Response:
    text: str  # the model's output, normally in the shared <think>/<answer> format
    caption: str | None = None  # a temporal caption, when the model writes one apart from ``text``


class Model(Protocol):
    name: str
    max_concurrency: int  # how many requests may run at once in threads

    def generate(self, request: Request) -> Response: ...


def load_evidence(sample: Sample) -> Evidence:
    """The sample's precomputed ``Evidence`` file, else perception run on its video."""
    if sample.evidence is not None:
        return Evidence.load(sample.evidence)
    assert sample.video is not None  # the loaders guarantee one of the two
    try:
        from emoreason.perception.pipeline import perceive
    except ImportError as e:
        raise ModelError(
            f"sample {sample.id} has only a video and perception is unavailable: {e}", sample.video
        ) from e
    return perceive(sample.video)


def evidence_text(ev: Evidence, max_events: int = 20) -> str:
    """A compact text rendering of evidence for text-only models.

    >>> from emoreason.evidence import MediaInfo
    >>> evidence_text(Evidence(media=MediaInfo(path="a.mp4", duration_s=2.0, has_video=True, has_audio=False)))
    'Clip: 2.0 s, video, no audio.\\nFacial Action Unit events: none detected.'
    """
    from emoreason.knowledge.facs import AUS

    m = ev.media
    lines = [f"Clip: {m.duration_s:.1f} s, {'video' if m.has_video else 'no video'}, "
             f"{'audio' if m.has_audio else 'no audio'}."]  # fmt: skip
    events = sorted(ev.au_events, key=lambda e: e.onset)[:max_events]
    if events:
        lines.append("Facial Action Unit events (intensity 0-5):")
        for e in events:
            name = AUS[e.au].name if e.au in AUS else e.au
            lines.append(f"- {e.au} ({name}) {e.onset:.1f}-{e.offset:.1f} s, apex {e.apex:.1f} s, peak {e.peak:.1f}")
    else:
        lines.append("Facial Action Unit events: none detected.")
    if ev.prosody is not None:
        p = ev.prosody
        parts = [f"speech ratio {p.speech_ratio:.2f}"]
        if p.f0_mean_hz is not None:
            parts.append(f"mean pitch {p.f0_mean_hz:.0f} Hz")
        if p.energy_mean_db is not None:
            parts.append(f"mean energy {p.energy_mean_db:.0f} dB")
        if p.words_per_minute is not None:
            parts.append(f"{p.words_per_minute:.0f} words/min")
        lines.append("Voice: " + ", ".join(parts) + ".")
    if ev.transcript is not None and ev.transcript.text.strip():
        lines.append(f'Transcript: "{ev.transcript.text.strip()}"')
    if ev.flags:
        lines.append("Quality flags: " + "; ".join(f.message for f in ev.flags))
    return "\n".join(lines)


_WARNED: list[str] = []


def prompt_evidence(ev: Evidence) -> str:
    """The evidence as text for a prompt: the shared renderer the training prompts use
    (``emoreason.evidence_text.evidence_to_text``), so a trained model sees the same text at evaluation; when that
    module is absent, :func:`evidence_text` (logged once)."""
    try:
        from emoreason.evidence_text import evidence_to_text
    except ImportError as e:
        if not _WARNED:
            _WARNED.append(str(e))
            log.warning("emoreason.evidence_text unavailable (%s); prompts use the evaluation's own evidence text", e)
        return evidence_text(ev)
    return evidence_to_text(ev)


class EngineModel:
    """The knowledge-based reasoner (no weights)."""

    name = "engine"
    max_concurrency = 1  # pure Python, CPU-bound: threads would not help

    def __init__(self) -> None:
        try:
            from emoreason.reasoning import engine
        except ImportError as e:
            raise ModelError(f"the reasoning engine is not available: {e}") from e
        self._analyze = engine.analyze

    def generate(self, request: Request) -> Response:
        analysis = self._analyze(load_evidence(request.sample))
        return Response(text=analysis.answer_text(), caption=getattr(analysis, "caption", None))


class OpenAIModel:
    """An OpenAI-compatible ``/chat/completions`` endpoint, called with httpx (thread-safe client, bounded retries)."""

    max_concurrency = 64

    def __init__(self, base_url: str, model: str = "emoreason", api_key: str | None = None, timeout_s: float = 120.0,
                 retries: int = 2, client: Any = None, send_video: bool = False,
                 clip_only: bool = False) -> None:  # fmt: skip
        """``send_video``: attach the clip itself (a base64 ``video_url`` content part, as the project's server and
        vLLM accept) to samples that have one, and tell the prompt so, instead of sending the evidence as text.
        ``clip_only``: send the clip with no prompt text at all (``emoreason serve`` then runs its full analysis and
        answers in the shared format; a text question would get a free-text answer)."""
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"openai:URL needs an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.name = f"openai:{self.base_url}#{model}"
        self.model = model
        self.retries = retries
        self.send_video = send_video or clip_only
        self.clip_only = clip_only
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would drown the progress bar
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def _content(self, request: Request) -> str | list[dict[str, Any]]:
        video = request.sample.video
        if not (self.send_video and video is not None):
            return request.prompt(prompt_evidence(load_evidence(request.sample)))
        mime = mimetypes.guess_type(video.name)[0] or "video/mp4"
        try:
            data = base64.b64encode(video.read_bytes()).decode("ascii")
        except OSError as e:
            raise MediaError(f"cannot read the clip: {e}", video) from e
        part = {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{data}"}}
        if self.clip_only:
            return [part]
        return [{"type": "text", "text": request.prompt("(The clip is attached: analyse it directly.)")}, part]

    def _payload(self, content: str | list[dict[str, Any]], gen: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": content}]}
        for ours, theirs in (("max_new_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                             ("seed", "seed"), ("stop", "stop")):  # fmt: skip
            if ours in gen:
                payload[theirs] = gen[ours]
        return payload

    def generate(self, request: Request) -> Response:
        import httpx

        content = self._content(request)
        url = f"{self.base_url}/chat/completions"
        last: str = ""
        for attempt in range(self.retries + 1):
            try:
                r = self._client.post(url, json=self._payload(content, request.generation))
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code < 500:
                    break
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            if attempt < self.retries:
                time.sleep(0.5 * 2**attempt)
        else:
            raise BackendError(f"endpoint failed after {self.retries + 1} tries: {last}", url)
        if r.status_code != 200:
            raise BackendError(f"HTTP {r.status_code}: {r.text[:200]}", url)
        try:
            return Response(text=r.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise BackendError(f"not a chat completion response ({type(e).__name__}: {e}): {r.text[:200]}", url) from e


class CheckpointModel:
    """A local checkpoint (``emoreason train`` output): an EmoReason model, or a text chat model fine-tuned on the
    training prompts.

    It runs through the server's :class:`emoreason.serving.engines.TransformersEngine`, so the model sees exactly the
    prompt it was trained on (the clip through its encoders, or the ``train_*_v1`` prompts with the shared evidence
    text), not the evaluation prompt; the output is its own ``<think>/<answer>`` text. ``max_new_tokens`` of the task's
    generation kwargs applies.
    """

    max_concurrency = 1

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise ModelError("checkpoint not found", path)
        try:
            from emoreason.serving.engines import TransformersEngine
        except ImportError as e:
            raise ModelError(f"checkpoint support is not available: {e}", path) from e
        self.name = f"checkpoint:{path}"
        self._engine = TransformersEngine(path)  # raises ModelError naming the folder when it cannot load
        self._default_tokens = self._engine.max_new_tokens

    def generate(self, request: Request) -> Response:
        self._engine.max_new_tokens = int(request.generation.get("max_new_tokens", self._default_tokens))
        analysis = self._engine.analyze(load_evidence(request.sample))
        return Response(text=analysis.answer_text())


def make_model(
    spec: str,
    *,
    endpoint_model: str = "emoreason",
    api_key: str | None = None,
    send_video: bool = False,
    clip_only: bool = False,
) -> Model:
    """Build the adapter named by ``spec``: ``engine``, ``checkpoint:PATH`` or ``openai:URL``."""
    kind, _, rest = spec.partition(":")
    if kind == "engine" and not rest:
        return EngineModel()
    if kind == "checkpoint" and rest:
        return CheckpointModel(rest)
    if kind == "openai" and rest:
        return OpenAIModel(rest, model=endpoint_model, api_key=api_key, send_video=send_video, clip_only=clip_only)
    raise ConfigError(f"unknown model {spec!r}; use engine, checkpoint:PATH or openai:URL")
