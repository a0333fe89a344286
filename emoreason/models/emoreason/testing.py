"""Tiny random EmoReason pieces for tests (importable by other test modules): a small byte-level BPE tokenizer with
the ChatML template and all special tokens, a tiny Qwen2-based config, synthetic Evidence/audio, a saved model dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emoreason.evidence import AUSeries, Evidence, FaceTrack, HeadPose, MediaInfo, Prosody
from emoreason.knowledge.facs import PERCEIVED_AUS

from .configuration_emoreason import EmoReasonConfig
from .processing_emoreason import SPECIAL_TOKENS

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CORPUS = [
    "<think>Key observations: AU6 and AU12 rise together at 1.2 s; the voice is bright.</think>",
    '<answer>{"emotion": "happiness", "compound": "happily surprised", "aus": ["AU6", "AU12"]}</answer>',
    "What emotion does the person show? Overall emotional interpretation: sadness, anger, fear, disgust, surprise.",
    "The person smiles broadly, brows raised, jaw drops; neutral face, lip corner depressor, nose wrinkler.",
]


def tiny_tokenizer(special_tokens: bool = True) -> Any:
    """A byte-level BPE (~400 tokens) trained on a few sentences, ChatML template, EmoReason special tokens (unless
    ``special_tokens`` is False: then it stands for a plain base model's tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(_CHAT_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE
    )
    if special_tokens:
        fast.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return fast


def tiny_config(head_dim: int = 32, tokenizer: Any = None, **kw: Any) -> EmoReasonConfig:
    """Qwen2 text model hidden 64 / 2 layers / 2 heads of ``head_dim``; small encoders; ``kw`` overrides any field."""
    tok = tokenizer if tokenizer is not None else tiny_tokenizer()
    vocab = tok.get_vocab()
    heads = 64 // head_dim
    text = {
        "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": head_dim, "vocab_size": len(tok),
        "max_position_embeddings": 512, "tie_word_embeddings": False,
        "eos_token_id": vocab["<|im_end|>"], "pad_token_id": vocab["<|endoftext|>"], "bos_token_id": None,
    }  # fmt: skip
    args: dict[str, Any] = {
        "text_config": text,
        "face_config": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "audio_config": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "compressor_config": {"num_heads": 2},
        "face_token_id": vocab["<|face|>"],
        "audio_token_id": vocab["<|audio|>"],
        "face_tokens": 4,
        "audio_tokens": 4,
    }
    for key in ("text_config", "face_config", "audio_config", "compressor_config"):
        if isinstance(kw.get(key), dict):
            args[key] = {**args[key], **kw.pop(key)}
    return EmoReasonConfig(**{**args, **kw})


def tiny_evidence(duration_s: float = 2.0, fps: float = 10.0, landmarks: bool = True, seed: int = 0) -> Evidence:
    """Synthetic Evidence with an AU series, head poses, an optional 468-point mesh and prosody."""
    rng = np.random.default_rng(seed)
    times = [round(i / fps, 4) for i in range(max(1, int(duration_s * fps)))]
    n = len(times)
    present = [i % 7 != 3 for i in range(n)]  # a few frames without the face
    inten = {c: [float(rng.uniform(0, 5)) if p else None for p in present] for c in PERCEIVED_AUS}
    mesh = [rng.uniform(100, 300, (468, 3)).tolist() if p else None for p in present] if landmarks else None
    hop = 0.01
    pt = [round(i * hop, 3) for i in range(int(duration_s / hop))]
    return Evidence(
        media=MediaInfo(path="synthetic.mp4", duration_s=duration_s, has_video=True, has_audio=True),
        face=FaceTrack(
            times=times,
            present=present,
            boxes=[[0, 0, 10, 10] if p else None for p in present],
            scores=[0.9 if p else None for p in present],
            poses=[HeadPose(yaw=5.0, pitch=-3.0, roll=2.0) if p else None for p in present],
            coverage=sum(present) / n,
            landmarks=mesh,
        ),
        aus=AUSeries(times=times, intensities=inten),
        prosody=Prosody(
            hop_s=hop,
            times=pt,
            f0_hz=[150.0 + 20 * np.sin(t) if i % 5 else None for i, t in enumerate(pt)],
            energy_db=[-30.0 + 5 * np.cos(t) for t in pt],
            voiced=[bool(i % 5) for i in range(len(pt))],
        ),
    )


def tiny_audio(duration_s: float = 2.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A 220 Hz tone plus a little noise, float32 mono."""
    t = np.arange(int(duration_s * sr)) / sr
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.3 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32)


def tiny_base_dir(tmp_path: Path, tie_word_embeddings: bool = True) -> Path:
    """Save a tiny random Qwen2 causal LM + tokenizer without the EmoReason tokens (a base for ``build``)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer(special_tokens=False)
    cfg = Qwen2Config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=len(tok), tie_word_embeddings=tie_word_embeddings, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    out = Path(tmp_path) / "tiny-base"
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_model_dir(tmp_path: Path, **kw: Any) -> Path:
    """Save a tiny random model + processor under ``tmp_path / "tiny-emoreason"`` and return the dir. It stands in for
    a trained checkpoint: ``trained_modalities`` defaults to both (pass ``trained_modalities=[...]`` to say otherwise).
    """
    import torch

    kw.setdefault("trained_modalities", ["face", "audio"])

    from .modeling_emoreason import EmoReasonForConditionalGeneration
    from .processing_emoreason import EmoReasonProcessor

    tok = tiny_tokenizer()
    config = tiny_config(tokenizer=tok, **kw)
    torch.manual_seed(0)
    model = EmoReasonForConditionalGeneration(config)
    out = Path(tmp_path) / "tiny-emoreason"
    model.save_pretrained(out)
    EmoReasonProcessor.from_model_config(tok, config).save_pretrained(out)
    return out


def tiny_adapter_dir(model_dir: Path, out: Path, r: int = 8, seed: int = 1) -> Path:
    """Save a random (non-zero) peft LoRA adapter on the text model's attention projections of ``model_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from .modeling_emoreason import EmoReasonForConditionalGeneration

    model = EmoReasonForConditionalGeneration.from_pretrained(model_dir)
    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=r".*language_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        init_lora_weights=False,  # random A and B: the adapter changes the outputs
    )
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(4.0)
    out = Path(out)
    peft_model.save_pretrained(out)
    return out
