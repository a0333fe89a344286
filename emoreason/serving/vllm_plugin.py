"""vLLM general plugin: registers the EmoReason architecture with vLLM (idempotent).

vLLM calls :func:`register` in every process through the ``vllm.general_plugins`` entry point declared in
pyproject.toml. The model class is registered by its import path so nothing heavy is imported until vLLM needs it;
the transformers config class is registered with ``AutoConfig`` (no ``trust_remote_code``).
"""

from __future__ import annotations

import logging
import sys

ARCHITECTURE = "EmoReasonForConditionalGeneration"
MODEL_PATH = "emoreason.serving.vllm_model:EmoReasonVLLMForConditionalGeneration"
log = logging.getLogger(__name__)


def guard_llvmlite() -> None:
    """Let a vLLM engine start in a process that has imported librosa (→ numba → llvmlite), as the server has.

    vLLM 0.32's CPU Triton-kernel rebinding calls ``vars()`` on every module attribute; ``llvmlite.binding.ffi.lib``
    answers ``__dict__`` through its lazy ``__getattr__`` with a ctypes wrapper, and engine start-up fails with
    ``'_lib_fn_wrapper' object has no attribute 'get'``. Pre-seeding that lookup with an empty dict is harmless
    (nothing reads ``lib.__dict__``). llvmlite is imported here when installed, so one call (from :func:`register`,
    i.e. the first ``vllm.LLM(...)`` of the process) covers a librosa import that comes later."""
    import importlib
    import importlib.util

    if "llvmlite.binding.ffi" not in sys.modules and importlib.util.find_spec("llvmlite") is not None:
        importlib.import_module("llvmlite.binding.ffi")
    ffi = sys.modules.get("llvmlite.binding.ffi")
    fntab = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(fntab, dict):
        fntab.setdefault("__dict__", {})


def register() -> None:
    """Register EmoReason with vLLM's ModelRegistry once per process."""
    guard_llvmlite()
    from vllm import ModelRegistry

    import emoreason.models.emoreason  # noqa: F401  (AutoConfig/AutoModel registration for model_type "emoreason")

    if ARCHITECTURE in ModelRegistry.get_supported_archs():
        return
    ModelRegistry.register_model(ARCHITECTURE, MODEL_PATH)
    log.info("registered %s with vLLM", ARCHITECTURE)
