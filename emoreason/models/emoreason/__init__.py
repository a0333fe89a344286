"""The EmoReason multimodal model (transformers layout). Importing this package registers it with the Auto classes."""

from emoreason.models.auto import register

from .configuration_emoreason import EmoReasonConfig
from .modeling_emoreason import (
    EmoReasonCausalLMOutputWithPast,
    EmoReasonForConditionalGeneration,
    ModalityFeatures,
    ModalityTower,
)
from .processing_emoreason import EmoReasonProcessor

register()

__all__ = [
    "EmoReasonConfig",
    "EmoReasonForConditionalGeneration",
    "EmoReasonCausalLMOutputWithPast",
    "EmoReasonProcessor",
    "ModalityFeatures",
    "ModalityTower",
]
