"""Assemble a fresh EmoReason checkpoint around a local causal LM: special tokens, resized embeddings, new encoders
and compressors, config + safetensors + processor files in one folder.

After ``import emoreason.models.emoreason`` (which registers the Auto classes) the folder loads with
``AutoModelForCausalLM.from_pretrained(out)`` and ``AutoProcessor.from_pretrained(out)``, no ``trust_remote_code``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from emoreason.errors import ModelError

log = logging.getLogger(__name__)


def resolve_base(base: str | Path, cache_dir: Path | None = None) -> Path:
    """A local HF folder, or a packaged base name from :data:`emoreason.models.gguf.BASES` (converted once)."""
    from emoreason.models.gguf import BASES, converted_base

    if str(base) in BASES and not Path(base).exists():
        return converted_base(str(base), cache_dir)
    path = Path(base)
    if not (path / "config.json").is_file():
        raise ModelError(f"not a model folder (no config.json); packaged bases: {sorted(BASES)}", path)
    return path


def build(
    base: str | Path,
    out: str | Path,
    face_tokens: int = 8,
    audio_tokens: int = 8,
    num_experts: int = 2,
    use_compressor: bool = True,
    routing: str = "soft",
    whisper_path: str | None = None,
    seed: int = 0,
    **config_kw: Any,
) -> Path:
    """Build and save; returns ``out``. ``config_kw`` go to :class:`EmoReasonConfig` (e.g. ``face_config``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emoreason.models.emoreason import EmoReasonConfig, EmoReasonForConditionalGeneration, EmoReasonProcessor
    from emoreason.models.emoreason.processing_emoreason import SPECIAL_TOKENS

    path, out = resolve_base(base), Path(out)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the base model: {e}", path) from None
    if lm.config.model_type == EmoReasonConfig.model_type:
        raise ModelError("the base is already an EmoReason checkpoint; give the text model it was built on", path)
    if tokenizer.chat_template is None:
        raise ModelError("the base tokenizer has no chat template", path)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    vocab = tokenizer.get_vocab()
    audio_config = {"whisper_path": whisper_path} if whisper_path else {}
    audio_config.update(config_kw.pop("audio_config", {}))
    config = EmoReasonConfig(
        text_config=lm.config.to_dict(),
        face_token_id=vocab["<|face|>"],
        audio_token_id=vocab["<|audio|>"],
        face_tokens=face_tokens,
        audio_tokens=audio_tokens,
        num_experts=num_experts,
        use_compressor=use_compressor,
        routing=routing,
        audio_config=audio_config,
        **config_kw,
    )
    torch.manual_seed(seed)
    model = EmoReasonForConditionalGeneration(config)
    missing, unexpected = model.language_model.load_state_dict(lm.state_dict(), strict=False)
    missing = [k for k in missing if k not in lm.all_tied_weights_keys]
    if missing or unexpected:
        raise ModelError(f"base weights do not fit the text model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if whisper_path:
        model.audio.encoder.load_whisper(whisper_path)
    model.generation_config = lm.generation_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    EmoReasonProcessor.from_model_config(tokenizer, config).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    n_lm = sum(p.numel() for p in model.language_model.parameters())
    log.info("built %s: %.1fM parameters (%.1fM new) around %s", out, n / 1e6, (n - n_lm) / 1e6, path)
    return out
