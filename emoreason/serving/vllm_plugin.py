"""vLLM general plugin: registers the EmoReason architecture with vLLM (idempotent).

vLLM calls :func:`register` in every process through the ``vllm.general_plugins`` entry point declared in
pyproject.toml. The model class is registered by its import path so nothing heavy is imported until vLLM needs it;
the transformers config class is registered with ``AutoConfig`` (no ``trust_remote_code``).
"""

from __future__ import annotations

import logging

ARCHITECTURE = "EmoReasonForConditionalGeneration"
MODEL_PATH = "emoreason.serving.vllm_model:EmoReasonVLLMForConditionalGeneration"
log = logging.getLogger(__name__)


def register() -> None:
    """Register EmoReason with vLLM's ModelRegistry once per process."""
    from vllm import ModelRegistry

    import emoreason.models.emoreason  # noqa: F401  (AutoConfig/AutoModel registration for model_type "emoreason")

    if ARCHITECTURE in ModelRegistry.get_supported_archs():
        return
    ModelRegistry.register_model(ARCHITECTURE, MODEL_PATH)
    log.info("registered %s with vLLM", ARCHITECTURE)
