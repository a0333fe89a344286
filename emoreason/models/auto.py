"""Registers EmoReason with the transformers Auto classes (idempotent), so that ``AutoConfig``,
``AutoModelForCausalLM``, ``AutoModelForImageTextToText`` and ``AutoProcessor`` load an EmoReason directory without
``trust_remote_code`` once ``emoreason.models.emoreason`` (or this module) has been imported."""

from __future__ import annotations


def register() -> None:
    """Register config, model and processor classes; calling it again does nothing."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from emoreason.models.emoreason.configuration_emoreason import EmoReasonConfig
    from emoreason.models.emoreason.modeling_emoreason import EmoReasonForConditionalGeneration
    from emoreason.models.emoreason.processing_emoreason import EmoReasonProcessor

    if EmoReasonConfig.model_type not in CONFIG_MAPPING:
        AutoConfig.register(EmoReasonConfig.model_type, EmoReasonConfig)
    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        if EmoReasonConfig not in auto._model_mapping._extra_content:
            auto.register(EmoReasonConfig, EmoReasonForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(EmoReasonConfig, EmoReasonProcessor, exist_ok=True)
