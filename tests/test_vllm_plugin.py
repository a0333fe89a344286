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
    messages = [{"role": "system", "content": "What emotion?"}, {"role": "user", "content": "The person smiles."}]
    want = TransformersBackend(tiny, max_new_tokens=12).chat(messages)
    assert want  # a non-empty reply, so the comparison below means something
    engine = VLLMEngine(tiny, max_new_tokens=12, dtype="float32", max_model_len=256, enforce_eager=True)
    assert engine.name == "vllm" and engine.backend.name == "vllm"
    assert engine.backend.chat(messages) == want
    assert engine.backend.chat(messages) == want  # reusable
