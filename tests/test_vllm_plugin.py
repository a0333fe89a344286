"""vLLM plugin tests (marked ``vllm``; run inside .venv-vllm made by scripts/make_vllm_env.sh):
``.venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_plugin.py -p no:cacheprovider``.

A tiny random EmoReason checkpoint (head size 32) is served by vLLM through the plugin; greedy tokens must equal the
transformers implementation's for the same clip features, and the prompt token counts must agree."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_register_is_idempotent() -> None:
    from vllm import ModelRegistry

    from emoreason.serving.vllm_plugin import ARCHITECTURE, register

    register()
    register()
    assert ARCHITECTURE in ModelRegistry.get_supported_archs()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from emoreason.models.emoreason.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("vllm"))


# The transformers reference runs in a child process: the processor imports librosa → numba → llvmlite, and vLLM 0.32's
# kernel dispatcher scan fails on an llvmlite object when llvmlite is loaded in the process that builds the LLM.
_REFERENCE = """
import sys, torch
from transformers import AutoProcessor
from emoreason.models.emoreason import EmoReasonForConditionalGeneration
from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence
d, out = sys.argv[1], sys.argv[2]
proc = AutoProcessor.from_pretrained(d)
prompt = proc.render([{"role": "user", "content": "<|face|><|audio|>What emotion does the person show?"}])[0]
x = proc(text=[prompt], evidence=[tiny_evidence()], audio=[tiny_audio()], return_tensors="pt")
model = EmoReasonForConditionalGeneration.from_pretrained(d).eval()
with torch.no_grad():
    y = model.generate(**x, max_new_tokens=12, do_sample=False)
torch.save({"prompt": prompt, "inputs": dict(x), "tokens": y[0, x["input_ids"].shape[1]:].tolist()}, out)
"""


def test_greedy_parity_and_token_counts(tiny, tmp_path) -> None:
    import subprocess
    import sys

    import torch
    from vllm import LLM, SamplingParams

    ref_path = tmp_path / "ref.pt"
    subprocess.run([sys.executable, "-c", _REFERENCE, str(tiny), str(ref_path)], check=True)
    ref = torch.load(ref_path)
    x, prompt = ref["inputs"], ref["prompt"]

    llm = LLM(
        model=str(tiny), dtype="float32", max_model_len=256, enforce_eager=True, max_num_seqs=4, enable_mm_embeds=True
    )
    mm = {"face": {"face_values": x["face_values"][0], "face_mask": x["face_mask"][0]},
          "audio": {"audio_values": x["audio_values"][0], "audio_mask": x["audio_mask"][0]}}  # fmt: skip
    out = llm.generate({"prompt": prompt, "multi_modal_data": mm}, SamplingParams(max_tokens=12, temperature=0))
    assert list(out[0].prompt_token_ids) == x["input_ids"][0].tolist()  # processor token counts and ids agree
    got = list(out[0].outputs[0].token_ids)
    assert got and got == ref["tokens"][: len(got)]


def test_vllm_engine_chat_matches_transformers_backend(tiny, tmp_path) -> None:
    import librosa  # noqa: F401  (the server has it loaded; the engine must still start: see guard_llvmlite)

    from emoreason.errors import ConfigError, ModelError
    from emoreason.reasoning.backends import TransformersBackend
    from emoreason.serving.engines import VLLMEngine, make_engine

    with pytest.raises(ConfigError, match="--model"):
        make_engine("vllm")
    with pytest.raises(ModelError, match="config.json"):
        make_engine("vllm", tmp_path)
    # a text chat checkpoint (no encoders): the tiny model's own Qwen2 text model and tokenizer
    from transformers import AutoTokenizer

    from emoreason.models.emoreason import EmoReasonForConditionalGeneration

    text = tmp_path / "text-chat"
    EmoReasonForConditionalGeneration.from_pretrained(tiny).language_model.save_pretrained(text)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(text)
    messages = [{"role": "system", "content": "What emotion?"}, {"role": "user", "content": "The person smiles."}]
    want = TransformersBackend(text, max_new_tokens=12).chat(messages)
    assert want  # a non-empty reply, so the comparison below means something
    engine = VLLMEngine(text, max_new_tokens=12, dtype="float32", max_model_len=256, enforce_eager=True)
    assert engine.name == "vllm" and engine.backend.name == "vllm" and engine.clip is None
    assert engine.backend.chat(messages) == want
    assert engine.backend.chat(messages) == want  # reusable
    pieces, running = [], []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        running.append(engine.backend.llm.llm_engine.has_unfinished_requests())

    assert engine.backend.chat(messages, on_text) == want  # streamed: the same reply
    assert "".join(pieces) == want and len(pieces) > 1 and running[0]  # in pieces, the first while generating


# (face clip?, audio clip?, seconds): several clip lengths in one vLLM batch, so the batched encoders pad and mask.
_CASES = [(True, True, 2.0), (True, False, 3.0), (False, True, 1.5), (False, False, 0.0), (True, True, 4.0)]


def test_batched_parity_across_modalities_and_lengths(tiny) -> None:
    """Face+audio, face only, audio only and text only prompts, different clip lengths, one vLLM batch: the greedy
    tokens equal transformers' and the first token's log-probability agrees to 1e-3 (fp32 both sides)."""
    import torch
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from emoreason.models.emoreason import EmoReasonForConditionalGeneration
    from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence

    proc = AutoProcessor.from_pretrained(tiny)
    model = EmoReasonForConditionalGeneration.from_pretrained(tiny).eval()
    eos = proc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    reqs, want, first_lp, ids = [], [], [], []
    for i, (face, audio, seconds) in enumerate(_CASES):
        content = ("<|face|>" if face else "") + ("<|audio|>" if audio else "") + "What emotion does the person show?"
        prompt = proc.render([{"role": "user", "content": content}])[0]
        ev, wav = tiny_evidence(duration_s=max(seconds, 1.0), seed=i), tiny_audio(duration_s=max(seconds, 1.0), seed=i)
        x = proc(text=[prompt], evidence=[ev if face or audio else None], audio=[wav if audio else None])
        with torch.no_grad():
            y = model.generate(
                **x, max_new_tokens=12, do_sample=False, output_scores=True, return_dict_in_generate=True
            )
        new = y.sequences[0, x["input_ids"].shape[1] :].tolist()
        want.append(new[: new.index(eos) + 1] if eos in new else new)
        first_lp.append(float(y.scores[0][0].log_softmax(-1)[new[0]]))
        ids.append(x["input_ids"][0].tolist())
        mm = {m: {f"{m}_values": x[f"{m}_values"][0], f"{m}_mask": x[f"{m}_mask"][0]} for m in ("face", "audio")
              if f"{m}_values" in x}  # fmt: skip
        reqs.append({"prompt": prompt, "multi_modal_data": mm} if mm else {"prompt": prompt})

    llm = LLM(model=str(tiny), dtype="float32", max_model_len=256, enforce_eager=True, enable_mm_embeds=True)
    outs = llm.generate(reqs, SamplingParams(max_tokens=12, temperature=0, logprobs=0))
    for i, out in enumerate(outs):
        got = out.outputs[0]
        assert list(out.prompt_token_ids) == ids[i], f"case {_CASES[i]}: prompt tokens"
        assert list(got.token_ids) == want[i], f"case {_CASES[i]}: greedy tokens"
        assert got.logprobs[0][got.token_ids[0]].logprob == pytest.approx(first_lp[i], abs=1e-3)


def test_parity_with_a_llama_text_model(tmp_path) -> None:
    """The text model is not always Qwen2 (SmolLM2 bases are Llama): vLLM builds the text config's own class."""
    import torch
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from emoreason.models.emoreason import EmoReasonForConditionalGeneration
    from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence, tiny_model_dir

    d = tiny_model_dir(tmp_path, text_config={"model_type": "llama"})
    proc = AutoProcessor.from_pretrained(d)
    model = EmoReasonForConditionalGeneration.from_pretrained(d).eval()
    assert model.config.text_config.model_type == "llama"
    prompt = proc.render([{"role": "user", "content": "<|face|><|audio|>What emotion does the person show?"}])[0]
    x = proc(text=[prompt], evidence=[tiny_evidence()], audio=[tiny_audio()])
    with torch.no_grad():
        y = model.generate(**x, max_new_tokens=12, do_sample=False)
    want = y[0, x["input_ids"].shape[1] :].tolist()
    mm = {m: {f"{m}_values": x[f"{m}_values"][0], f"{m}_mask": x[f"{m}_mask"][0]} for m in ("face", "audio")}
    llm = LLM(model=str(d), dtype="float32", max_model_len=256, enforce_eager=True, enable_mm_embeds=True)
    out = llm.generate({"prompt": prompt, "multi_modal_data": mm}, SamplingParams(max_tokens=12, temperature=0))
    got = list(out[0].outputs[0].token_ids)
    eos = proc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert got == (want[: want.index(eos) + 1] if eos in want else want)


QUESTION = "What emotion does the person express?"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny EmoReason checkpoint with room for the training system prompt, a random LoRA adapter for it, a clip's
    audio as a float WAV, and the evidence."""
    import soundfile as sf

    from emoreason.models.emoreason.testing import tiny_adapter_dir, tiny_audio, tiny_evidence, tiny_model_dir

    root = tmp_path_factory.mktemp("served")
    d = tiny_model_dir(root, text_config={"max_position_embeddings": 4096})
    wav = root / "clip.wav"
    sf.write(wav, tiny_audio(2.0), 16000, subtype="FLOAT")
    return {"model": d, "adapter": tiny_adapter_dir(d, root / "adapter"), "wav": wav, "evidence": tiny_evidence(2.0)}


def test_vllm_engine_reads_the_clip_with_and_without_a_lora_adapter(served) -> None:
    """The serving engine on vLLM: the clip's face/AU series and audio go in as arrays (not as text) and the reply is
    the transformers engine's, with the LoRA adapter served by vLLM's LoRA path equal to the adapter merged in
    transformers; without the adapter, the base model's reply."""
    from emoreason.serving.engines import TransformersEngine, VLLMClipModel, VLLMEngine

    d, adapter, wav, ev = served["model"], served["adapter"], served["wav"], served["evidence"]
    want_lora = TransformersEngine(d, max_new_tokens=8, lora=adapter).reply(ev, QUESTION, media=wav)
    want_base = TransformersEngine(d, max_new_tokens=8).reply(ev, QUESTION, media=wav)
    assert want_lora != want_base  # the adapter matters, so the comparisons below mean something
    engine = VLLMEngine(d, max_new_tokens=8, lora=adapter, dtype="float32", max_model_len=4096, enforce_eager=True)
    assert engine.clip is not None and engine.clip_model.lora_request is not None
    prompt, x = engine.clip.build(ev, QUESTION, media=wav)
    request = VLLMClipModel.request(prompt, x)
    assert set(request["multi_modal_data"]) == {"face", "audio"} and "Evidence from the clip" not in prompt
    assert engine.reply(ev, QUESTION, media=wav) == want_lora
    pieces, running = [], []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        running.append(engine.clip_model.llm.llm_engine.has_unfinished_requests())

    assert engine.reply(ev, QUESTION, media=wav, on_text=on_text) == want_lora  # streamed: the same reply
    assert "".join(pieces) == want_lora and len(pieces) > 1 and all(running[:-1]) and running[0]
    base = VLLMClipModel(engine.clip_model.llm, 8)  # same engine, no adapter
    assert base.generate(prompt, x, engine.clip.processor.tokenizer) == want_base
    # raw inputs, as qwen2_audio takes them: the Evidence and the waveform (with the evidence for the prosody
    # channels, or at another sampling rate) go through the checkpoint's processor in vLLM: the same reply
    import soundfile as sf

    wave, sr = sf.read(wav, dtype="float32")
    llm, params = engine.clip_model.llm, base.params
    audio = {"waveform": wave, "sampling_rate": sr, "evidence": ev}
    raw = llm.generate({"prompt": prompt, "multi_modal_data": {"face": ev, "audio": audio}}, params, use_tqdm=False)
    assert raw[0].outputs[0].text.strip() == want_base
    arrays = VLLMClipModel.request(prompt, x)["multi_modal_data"]
    alone = {"prompt": prompt, "multi_modal_data": {"face": arrays["face"], "audio": (wave, sr)}}  # no prosody
    assert llm.generate(alone, params, use_tqdm=False)[0].outputs[0].token_ids
    analysis = engine.analyze(ev, media=wav)
    assert engine.ask(ev, QUESTION, analysis, media=wav).answer == want_lora
    # the model's own label probabilities, scored by vLLM as transformers scores them (for a reply with an answer)
    from emoreason.reasoning.label_scores import label_probabilities

    reply = '<think>x</think><answer>{"emotion": "happiness", "compound": null, "aus": []}</answer>'
    hf = TransformersEngine(d, max_new_tokens=8, lora=adapter)
    want = label_probabilities(hf.clip_model.model, hf.clip.processor.tokenizer, x, reply)
    got = engine.clip_model.label_scores(prompt, x, engine.clip.processor.tokenizer, reply)
    assert set(got) == set(want) and len(want) > 3 and max(want.values()) - min(want.values()) > 0.01  # not flat
    assert all(abs(got[k] - want[k]) < 1e-3 for k in want), (got, want)
    assert engine.clip_model.label_scores(prompt, x, engine.clip.processor.tokenizer, "no answer") == {}


_SERVE_REFERENCE = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoTokenizer
from emoreason.models.emoreason import EmoReasonForConditionalGeneration
d, adapter, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
tok = AutoTokenizer.from_pretrained(d)
x = tok(prompt, return_tensors="pt", add_special_tokens=False)
out = {}
for name in ("base", "lora"):
    model = EmoReasonForConditionalGeneration.from_pretrained(d)
    model = (PeftModel.from_pretrained(model, adapter) if name == "lora" else model).eval()
    with torch.no_grad():
        y = model.generate(**x, max_new_tokens=8, do_sample=False)
    out[name] = tok.decode(y[0, x["input_ids"].shape[1]:], skip_special_tokens=True)
print(json.dumps(out))
"""


# The `vllm` console script, run as is: vLLM's CLI asks for the version of the distribution named "vllm", and the CPU
# build installs as "vllm-cpu" (same package), so its `vllm` script fails at start-up; answer as vllm.platforms does.
_VLLM_CLI = """
import importlib.metadata as md, sys
_version = md.version
def version(name):
    try:
        return _version(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"  # as vllm.platforms reads it
        raise
md.version = version
from vllm.entrypoints.cli.main import main
sys.argv = ["vllm", *sys.argv[1:]]
main()
"""


def test_vllm_serve_loads_the_checkpoint_through_the_plugin(served, tmp_path) -> None:
    """`vllm serve DIR` (vLLM's own OpenAI server, our plugin found through its entry point) serves the EmoReason
    checkpoint and a LoRA module; greedy completions equal transformers' (base and adapter)."""
    import json
    import socket
    import subprocess
    import sys
    import time

    import httpx

    d, adapter = served["model"], served["adapter"]
    prompt = "<|im_start|>user\nWhat emotion does the person show?<|im_end|>\n<|im_start|>assistant\n"
    ref = subprocess.run([sys.executable, "-c", _SERVE_REFERENCE, str(d), str(adapter), prompt], check=True,
                         capture_output=True, text=True)  # fmt: skip
    want = json.loads(ref.stdout.strip().splitlines()[-1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", _VLLM_CLI, "serve", str(d), "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "512", "--enforce-eager", "--enable-lora", "--max-lora-rank", "8",
           "--lora-modules", f"tiny-lora={adapter}"]  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 240
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        else:
            raise AssertionError(
                "vllm serve did not come up in 240 s:\n" + (tmp_path / "serve.log").read_text()[-3000:]
            )
        models = {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
        assert {str(d), "tiny-lora"} <= models
        for name, model in (("base", str(d)), ("lora", "tiny-lora")):
            body = {"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0}
            r = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["text"] == want[name], name
        assert "Resolved architecture: EmoReasonForConditionalGeneration" in (tmp_path / "serve.log").read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_throughput_benchmark_runs_both_sides_on_the_served_prompts(capsys) -> None:
    """bench/bench_vllm.py end to end on the tiny model (eager, two prompts): both sides answer the server's prompts
    with the same greedy tokens, and the report counts them."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_vllm

    assert bench_vllm.main(["--prompts", "2", "--max-tokens", "4", "--hf-batch", "2", "--eager"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["identical_answers"] == 2
    assert res["answer_tokens_min_mean_max"] == [4, 4.0, 4]
    assert res["transformers_tok_s"] > 0 and res["vllm_tok_s"] > 0
    assert res["prompt_tokens_min_max"][0] > 100  # the system prompt is in


def test_throughput_benchmark_on_a_trained_checkpoint_and_real_evidence(tmp_path, capsys) -> None:
    """``--model DIR --evidence INDEX``: the server's prompts for the indexed evidence files (the observations text,
    face inputs only for a face-trained checkpoint) on both sides, with the same greedy tokens."""
    import json
    import sys
    from pathlib import Path

    from emoreason.models.emoreason.testing import tiny_evidence, tiny_model_dir

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_vllm

    d = tiny_model_dir(tmp_path, text_config={"max_position_embeddings": 2048}, trained_modalities=["face"],
                       prompt_observations=True)  # fmt: skip
    index = tmp_path / "index.jsonl"
    rows = []
    for i in range(2):
        tiny_evidence(2.0, seed=i).save(tmp_path / f"e{i}.json")
        rows.append(json.dumps({"id": f"e{i}", "evidence": str(tmp_path / f"e{i}.json")}))
    index.write_text("\n".join(rows) + "\n")
    argv = ["--model", str(d), "--evidence", str(index), "--prompts", "2", "--max-tokens", "4", "--hf-batch", "2"]
    assert bench_vllm.main([*argv, "--eager"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["model"] == str(d) and res["identical_answers"] == 2 and res["prompt_tokens_min_max"][0] > 100


def test_raw_audio_at_another_rate_is_resampled_as_media_loading_does(served) -> None:
    """A raw waveform at another sampling rate reaches the processor resampled to its rate by the project's resampler
    (the one media loading uses), so the features equal those of the served path."""
    import numpy as np

    from emoreason.models.emoreason import EmoReasonProcessor
    from emoreason.models.emoreason.testing import tiny_audio
    from emoreason.perception.audio import resample
    from emoreason.serving.vllm_model import EmoReasonDataParser

    d, ev = served["model"], served["evidence"]
    wave8k = resample(tiny_audio(2.0), 16000, 8000).astype(np.float32)
    got = EmoReasonDataParser(str(d))._raw_audio({"waveform": wave8k, "sampling_rate": 8000, "evidence": ev})
    want = EmoReasonProcessor.from_pretrained(d).audio_features(resample(wave8k, 8000, 16000).astype(np.float32), ev)
    np.testing.assert_array_equal(got["audio_values"], want)
    assert got["audio_mask"].all() and len(got["audio_mask"]) == len(want)
