"""A model engine's answers are its own: the report and the analysis name the engine that wrote them, probabilities are
the model's label-token scores, replies stream token by token as they are generated (and add up to the non-streamed
reply), and an encoder that no training stage trained is never shown to the model."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from emoreason.knowledge.taxonomy import ALL_EMOTIONS
from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
from emoreason.models.emoreason.processing_emoreason import AUDIO_TOKEN, FACE_TOKEN
from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence, tiny_model_dir
from emoreason.reasoning.backends import StrippedStream
from emoreason.reasoning.engine import ENGINE_FIELDS, KNOWLEDGE_ENGINE, analyze
from emoreason.reasoning.label_scores import label_prefix, label_probabilities
from emoreason.report import build_report, render_html, render_markdown
from emoreason.serving.engines import ClipPrompts, KnowledgeEngine, TransformersEngine
from tests.test_server import chat, data_url
from tests.test_server_limits import live_server

QUESTION = "What emotion does the person express?"
REPLY = '<think>Key observations: AU12 at 0.5 s.</think><answer>{"emotion": "happiness", "compound": null}</answer>'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("answers"), text_config={"max_position_embeddings": 4096})


@pytest.fixture(scope="module")
def engine(tiny) -> TransformersEngine:
    return TransformersEngine(tiny, max_new_tokens=12)


@pytest.fixture()
def wav(tmp_path) -> Path:
    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, tiny_audio(2.0), 16000, subtype="FLOAT")
    return path


# --- which modalities reach the model --------------------------------------------------------------------------------


def test_audio_tokens_need_a_trained_audio_encoder(tmp_path, wav) -> None:
    """The checkpoint has an audio encoder but no training stage trained it: the clip has sound, and still no
    ``<|audio|>`` token and no audio inputs reach the model (before, the untrained encoder's tokens were served)."""
    face_only = tiny_model_dir(tmp_path / "face", trained_modalities=["face"])
    prompt, x = ClipPrompts(face_only).build(tiny_evidence(2.0), QUESTION, media=wav)
    assert AUDIO_TOKEN not in prompt and "audio_values" not in x
    assert FACE_TOKEN in prompt and "face_values" in x
    fresh = tiny_model_dir(tmp_path / "fresh", trained_modalities=[])  # as `emoreason model build` writes it
    prompt, x = ClipPrompts(fresh).build(tiny_evidence(2.0), QUESTION, media=wav)
    assert AUDIO_TOKEN not in prompt and FACE_TOKEN not in prompt and set(x) == {"input_ids", "attention_mask"}
    both = tiny_model_dir(tmp_path / "both", trained_modalities=["audio", "face"])
    prompt, x = ClipPrompts(both).build(tiny_evidence(2.0), QUESTION, media=wav)
    assert AUDIO_TOKEN in prompt and "audio_values" in x


def test_an_adapters_training_summary_adds_its_modalities(tmp_path, wav) -> None:
    base = tiny_model_dir(tmp_path / "base", trained_modalities=[])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "emoreason_train.json").write_text(json.dumps({"stage": "sft", "trained_modalities": ["face"]}))
    prompt, _ = ClipPrompts(base, lora=adapter).build(tiny_evidence(2.0), QUESTION, media=wav)
    assert FACE_TOKEN in prompt and AUDIO_TOKEN not in prompt


def test_unknown_trained_modalities_are_refused() -> None:
    from emoreason.models.emoreason import EmoReasonConfig

    with pytest.raises(ValueError, match="trained_modalities"):
        EmoReasonConfig(trained_modalities=["face", "video"])


# --- the analysis is the model's -------------------------------------------------------------------------------------


def test_label_prefix() -> None:
    assert label_prefix(REPLY).endswith('<answer>{"emotion": "')
    assert label_prefix("<think>x</think><answer>happiness</answer>") == '<think>x</think><answer>{"emotion": "'
    assert label_prefix("no answer at all") is None


def test_label_probabilities_are_the_models_scores(tiny) -> None:
    """The probabilities are the model's own: exp of each label's teacher-forced token log-probabilities after the
    answer's prefix, renormalised; checked against a direct per-label computation."""
    proc = EmoReasonProcessor.from_pretrained(tiny)
    model = EmoReasonForConditionalGeneration.from_pretrained(tiny).eval()
    from emoreason.data.builder import clip_messages

    ev = tiny_evidence(2.0)
    x = proc(messages=clip_messages(QUESTION, face=True), evidence=ev, padding=False)
    got = label_probabilities(model, proc.tokenizer, x, REPLY)
    assert set(got) == set(ALL_EMOTIONS) and math.isclose(sum(got.values()), 1.0, abs_tol=1e-5)
    tok = proc.tokenizer
    pre = tok(label_prefix(REPLY), add_special_tokens=False)["input_ids"]
    direct = {}
    for label in ALL_EMOTIONS:
        cont = tok(label + '"', add_special_tokens=False)["input_ids"]
        ids = torch.tensor([x["input_ids"][0].tolist() + pre + cont])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), face_values=x["face_values"],
                           face_mask=x["face_mask"]).logits[0]  # fmt: skip
        logp = torch.log_softmax(logits.float(), -1)
        start = ids.shape[1] - len(cont)
        direct[label] = float(sum(logp[start - 1 + i, t] for i, t in enumerate(cont)))
    z = max(direct.values())
    norm = sum(math.exp(v - z) for v in direct.values())
    for label in ALL_EMOTIONS:
        assert got[label] == pytest.approx(math.exp(direct[label] - z) / norm, abs=1e-4)
    assert label_probabilities(model, proc.tokenizer, x, "no answer") == {}


def test_the_analysis_and_report_name_the_model(engine, tiny, monkeypatch) -> None:
    """The model's analysis carries its reasoner, its raw reply, its own label probabilities (not the knowledge
    engine's fused ones), no engine segments or modality weights, and lists the fields that are the engine's; the
    report says which engine wrote it, in JSON, Markdown and HTML."""
    ev = tiny_evidence(2.0)
    monkeypatch.setattr(engine.clip_model, "generate", lambda prompt, inputs, tok, on_text=None: REPLY)
    a = engine.analyze(ev)
    rule = analyze(ev)
    assert a.reasoner == f"transformers:{tiny}" and rule.reasoner == KNOWLEDGE_ENGINE
    assert a.emotion == "happiness" and a.text == REPLY and a.answer_text() == REPLY
    assert set(a.probabilities) == set(ALL_EMOTIONS) and a.probabilities != rule.probabilities
    assert a.segments == [] and a.modality_weights == {} and a.engine_fields == list(ENGINE_FIELDS)
    report = build_report(ev, a)
    assert report.reasoner == f"transformers:{tiny}" and report.answer == REPLY
    assert f"reasoner transformers:{tiny}" in render_markdown(report)
    assert "are the knowledge engine&#x27;s reading of the evidence" in render_html(report)
    assert build_report(ev).reasoner == KNOWLEDGE_ENGINE and rule.engine_fields == []


def test_the_servers_reports_name_the_engine(engine, astronaut_clip, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from emoreason.serving.server import create_app
    from emoreason.serving.settings import Settings
    from tests.test_server import FAST

    monkeypatch.setattr(engine.clip_model, "generate", lambda prompt, inputs, tok, on_text=None: REPLY)
    with TestClient(create_app(Settings(**FAST), engine=engine)) as c:
        with astronaut_clip.open("rb") as f:
            r = c.post("/v1/reports", files={"file": ("clip.mp4", f, "video/mp4")})
        assert r.status_code == 200, r.text
        assert r.json()["reasoner"] == engine.reasoner and r.json()["analysis"]["engine_fields"]
        schema = c.post("/v1/chat/completions", json=chat(data_url(astronaut_clip),
                                                          response_format={"type": "json_schema"}))  # fmt: skip
        assert json.loads(schema.json()["choices"][0]["message"]["content"])["reasoner"] == engine.reasoner
    with TestClient(create_app(Settings(**FAST), engine=KnowledgeEngine())) as c:
        with astronaut_clip.open("rb") as f:
            r = c.post("/v1/reports", files={"file": ("clip.mp4", f, "video/mp4")})
        assert r.json()["reasoner"] == KNOWLEDGE_ENGINE


# --- streaming --------------------------------------------------------------------------------------------------------


def test_stripped_stream_adds_up_to_the_stripped_text() -> None:
    for pieces in (["  \n", " Hello", " wor", "ld  ", "\n", " again ", " "], ["x"], ["   "], ["a ", " ", "b"]):
        got: list[str] = []
        stream = StrippedStream(got.append)
        for p in pieces:
            stream(p)
        assert "".join(got) == "".join(pieces).strip() and all(got)


class Slow(LogitsProcessor):
    """Makes each generation step take ``delay`` seconds, so that streaming can be seen to be streaming."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, input_ids, scores):
        time.sleep(self.delay)
        return scores


def slow_generation(engine: TransformersEngine, monkeypatch, delay: float) -> threading.Event:
    """Slow the engine's model down and return an event set when its ``generate`` returns."""
    model = engine.clip_model.model
    original = model.generate
    done = threading.Event()

    def generate(*args, **kwargs):
        done.clear()
        try:
            return original(*args, logits_processor=LogitsProcessorList([Slow(delay)]), **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(model, "generate", generate)
    return done


def test_streamed_tokens_equal_the_reply(engine, wav) -> None:
    ev = tiny_evidence(2.0)
    pieces: list[str] = []
    streamed = engine.reply(ev, QUESTION, media=wav, on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == streamed == engine.reply(ev, QUESTION, media=wav)


def test_sse_chunks_arrive_before_generation_ends(engine, astronaut_clip, monkeypatch) -> None:
    """Through a real server: content chunks reach the client while the model is still generating, and the streamed
    text is token-identical to the non-streamed reply."""
    done = slow_generation(engine, monkeypatch, delay=0.15)
    with live_server(engine=engine) as (host, port, _):
        base = f"http://{host}:{port}"
        body = chat(data_url(astronaut_clip), "Which emotion does the person show?")  # a question the model answers
        with httpx.Client(timeout=60) as c:
            plain = c.post(f"{base}/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
            pieces, early = [], []
            with c.stream("POST", f"{base}/v1/chat/completions", json={**body, "stream": True}) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        pieces.append(delta)
                        early.append(not done.is_set())
    assert "".join(pieces) == plain and len(pieces) > 1
    assert early[0] and sum(early) >= 2  # the first chunks came while generate was still running
