"""vLLM implementation of the EmoReason architecture (face/AU + audio encoders spliced into a Qwen2 LM).

Owns the vLLM model class and its multimodal processor. Clip inputs arrive raw, as qwen2_audio's do, or as the
feature arrays :class:`~emoreason.models.emoreason.EmoReasonProcessor` makes from them::

    multi_modal_data = {"face": evidence,                       # an Evidence (perception's output for the clip)
                        "audio": waveform}                      # 16 kHz mono, or (waveform, sampling_rate), or
                                                                # {"waveform": w, "sampling_rate": sr, "evidence": ev}
    multi_modal_data = {"face": {"face_values": [T, F] tensor, "face_mask": [T] bool},
                        "audio": {"audio_values": [T, 83] tensor, "audio_mask": [T] bool}}

Raw inputs go through the checkpoint's own processor (``face_features``, ``audio_features``: Whisper's log-mel, and
the prosody channels from the Evidence when it comes with the waveform), so both forms give the same features.

A single ``<|face|>`` (``<|audio|>``) in the prompt is replaced by ``<|face_start|>`` + ``face_tokens`` ×
``<|face|>`` + ``<|face_end|>`` exactly as the transformers processor expands it; the encoder output of each clip
becomes the embeddings of those placeholder tokens. The encoders, compressors and projectors are the transformers
modules themselves, so checkpoint names load unchanged; the text model is vLLM's Qwen2 (fused qkv / gate_up), loaded
through its own ``load_weights``. Imported only inside an environment with vLLM (``.venv-vllm``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsLoRA, SupportsMultiModal
from vllm.model_executor.models.module_mapping import MultiModelKeys
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper, init_vllm_registered_model, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.parse import DictEmbeddingItems, MultiModalDataParser
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdateDetails,
)

from emoreason.evidence import Evidence
from emoreason.models.emoreason.configuration_emoreason import EmoReasonConfig
from emoreason.models.emoreason.modeling_emoreason import modality_towers

FACE_FIELDS = frozenset({"face_values", "face_mask"})
AUDIO_FIELDS = frozenset({"audio_values", "audio_mask"})


def _fields(hf_inputs: Mapping[str, torch.Tensor]) -> Mapping[str, MultiModalFieldConfig]:
    return {
        "face_values": MultiModalFieldConfig.batched("face"),
        "face_mask": MultiModalFieldConfig.batched("face"),
        "face_crops": MultiModalFieldConfig.batched("face"),
        "audio_values": MultiModalFieldConfig.batched("audio"),
        "audio_mask": MultiModalFieldConfig.batched("audio"),
    }


def _batched(d: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One clip's arrays → tensors with a leading clip axis (what ``batched`` fields expect)."""
    out = {}
    for k, v in d.items():
        t = torch.as_tensor(v)
        out[k] = t if (k.endswith("_mask") and t.ndim == 2) or (k.endswith("_values") and t.ndim == 3) else t[None]
    return out


@functools.lru_cache(maxsize=4)
def _processor(path: str) -> Any:
    from emoreason.models.emoreason import EmoReasonProcessor

    return EmoReasonProcessor.from_pretrained(path)


class EmoReasonDataParser(MultiModalDataParser):
    """Adds the ``face`` modality; each modality takes its raw input (see the module docstring) or a dict of feature
    tensors."""

    def __init__(self, model_path: str | None = None) -> None:
        super().__init__()
        self.model_path = model_path

    def _features(self) -> Any:
        if self.model_path is None:
            raise ValueError("raw clip inputs need the checkpoint's processor; pass feature arrays instead")
        return _processor(self.model_path)

    def _parse_face(self, data: Any) -> DictEmbeddingItems | None:
        if data is None:
            return None
        if isinstance(data, Evidence):
            feats, _ = self._features().face_features(data)
            data = {"face_values": feats, "face_mask": np.ones(len(feats), bool)}
        return DictEmbeddingItems(_batched(data), "face", set(FACE_FIELDS), _fields, optional_fields={"face_crops"})

    def _parse_audio_dict(self, data: Any) -> DictEmbeddingItems | None:
        if data is None:
            return None
        if not (isinstance(data, Mapping) and "audio_values" in data):
            data = self._raw_audio(data)
        return DictEmbeddingItems(_batched(data), "audio", set(AUDIO_FIELDS), _fields)

    def _raw_audio(self, data: Any) -> dict[str, np.ndarray]:
        evidence = None
        if isinstance(data, Mapping):
            wave, sr, evidence = data["waveform"], data.get("sampling_rate"), data.get("evidence")
        elif isinstance(data, tuple):
            wave, sr = data
        else:
            wave, sr = data, None
        proc = self._features()
        wave = np.asarray(wave.detach().cpu() if isinstance(wave, torch.Tensor) else wave, np.float32)
        if sr is not None and int(sr) != proc.sampling_rate:  # (librosa is safe in vLLM: vllm_plugin.guard_llvmlite)
            from emoreason.perception.audio import resample

            wave = resample(wave, int(sr), proc.sampling_rate).astype(np.float32)
        feats = proc.audio_features(wave, evidence)
        return {"audio_values": feats, "audio_mask": np.ones(len(feats), bool)}

    def _get_subparsers(self) -> Mapping[str, Any]:
        return {"face": self._parse_face, "audio": self._parse_audio_dict}


class EmoReasonProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> EmoReasonConfig:
        return self.ctx.get_hf_config(EmoReasonConfig)

    def get_data_parser(self) -> MultiModalDataParser:
        return EmoReasonDataParser(self.ctx.model_config.model)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        cfg = self.get_hf_config()
        return {"face": 1 if cfg.use_face else 0, "audio": 1 if cfg.use_audio else 0}

    def get_mm_max_tokens_per_item(
        self, seq_len: int, mm_counts: Mapping[str, int] | None = None
    ) -> Mapping[str, int]:
        cfg = self.get_hf_config()
        return {"face": cfg.face_tokens + 2, "audio": cfg.audio_tokens + 2}

    def special_ids(self) -> dict[str, int]:
        vocab = self.get_tokenizer().get_vocab()
        return {k: vocab[k] for k in ("<|face|>", "<|face_start|>", "<|face_end|>", "<|audio|>",
                                      "<|audio_start|>", "<|audio_end|>")}  # fmt: skip


class EmoReasonDummyInputsBuilder(BaseDummyInputsBuilder[EmoReasonProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return "<|face|>" * mm_counts.get("face", 0) + "<|audio|>" * mm_counts.get("audio", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Any = None) -> dict:
        cfg = self.info.get_hf_config()
        out: dict[str, Any] = {}
        if mm_counts.get("face", 0):
            out["face"] = {
                "face_values": torch.zeros(8, cfg.face_feature_size),
                "face_mask": torch.ones(8, dtype=torch.bool),
            }
        if mm_counts.get("audio", 0):
            out["audio"] = {"audio_values": torch.zeros(16, cfg.audio_feature_size),
                            "audio_mask": torch.ones(16, dtype=torch.bool)}  # fmt: skip
        return out


class EmoReasonMultiModalProcessor(BaseMultiModalProcessor[EmoReasonProcessingInfo]):
    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        # Features arrive precomputed (passthrough); only the text is tokenised here.
        text = hf_data.get("text", hf_data.get("prompt", ""))
        ids = self.info.get_tokenizer()(text, add_special_tokens=False)["input_ids"]
        return BatchFeature({"input_ids": [ids]}, tensor_type="pt")

    def _hf_processor_applies_updates(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        return _fields(hf_inputs)

    def _get_prompt_updates(self, mm_items: Any, hf_processor_mm_kwargs: Mapping[str, object], out_mm_kwargs: Any
                            ) -> Sequence[PromptReplacement]:  # fmt: skip
        cfg, ids = self.info.get_hf_config(), self.info.special_ids()
        updates = []
        for name, n in (("face", cfg.face_tokens), ("audio", cfg.audio_tokens)):
            tok, start, end = ids[f"<|{name}|>"], ids[f"<|{name}_start|>"], ids[f"<|{name}_end|>"]
            full = [start] + [tok] * n + [end]
            updates.append(
                PromptReplacement(
                    modality=name,
                    target=[tok],
                    replacement=lambda i, full=full, tok=tok: PromptUpdateDetails.select_token_id(full, tok),
                )
            )
        return updates


@MULTIMODAL_REGISTRY.register_processor(
    EmoReasonMultiModalProcessor, info=EmoReasonProcessingInfo, dummy_inputs=EmoReasonDummyInputsBuilder
)
class EmoReasonVLLMForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsLoRA):
    """vLLM model for ``EmoReasonForConditionalGeneration`` checkpoints (same weight names)."""

    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix={})  # checkpoint names are kept as-is
    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality in ("face", "audio"):
            return f"<|{modality}|>"
        raise ValueError(f"EmoReason takes face and audio inputs, not {modality!r}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config: EmoReasonConfig = vllm_config.model_config.hf_config
        self.config = config
        self.face, self.audio = modality_towers(config)  # the transformers model's towers, same weight names
        self.language_model = init_vllm_registered_model(
            vllm_config=vllm_config,
            hf_config=config.text_config,
            prefix=maybe_prefix(prefix, "language_model"),
            # the text model's own class: Qwen2 by default, Llama for SmolLM2-based builds
            architectures=list(getattr(config.text_config, "architectures", None) or [])
            or [type(config.text_config).__name__.removesuffix("Config") + "ForCausalLM"],
        )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors
        self._placeholders = [i for i in (config.face_token_id, config.audio_token_id) if i is not None]

    def get_language_model(self) -> nn.Module:
        return self.language_model

    def embed_multimodal(self, **kwargs: object) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        dtype = next(self.language_model.parameters()).dtype
        for name, mod in (("face", self.face), ("audio", self.audio)):
            values = kwargs.get(f"{name}_values")
            if values is None or mod is None:
                continue
            items = values if isinstance(values, (list, tuple)) else list(values)
            masks = kwargs.get(f"{name}_mask")
            masks = [None] * len(items) if masks is None else list(masks)
            for v, m in zip(items, masks, strict=True):
                v = v[None] if v.ndim == 2 else v
                m = torch.ones(v.shape[:2], dtype=torch.bool) if m is None else (m[None] if m.ndim == 1 else m).bool()
                args = (None,) if name == "face" else ()
                tokens = mod(v.to(dtype), m, *args)[0]
                out.append(tokens.reshape(-1, tokens.shape[-1]))
        return out

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: Any = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs: object) -> torch.Tensor:  # fmt: skip
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        logits = self.language_model.compute_logits(hidden_states)
        if logits is not None and self._placeholders:  # they stand for encoder outputs: never generated (as in HF)
            logits[..., self._placeholders] = float("-inf")
        return logits

    def get_mm_mapping(self) -> MultiModelKeys:
        """Module prefixes for LoRA: adapters apply to the text model; the encoders and compressors are towers."""
        return MultiModelKeys.from_string_field(language_model="language_model.", tower_model=["face.", "audio."])

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
