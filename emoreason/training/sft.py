"""Supervised fine-tuning on chain-of-thought rows with TRL's ``SFTTrainer``; also the model loading shared by GRPO and
synthesis.

Text path (any causal LM): the clip's evidence is rendered as text in the prompt
(:func:`emoreason.data.builder.prompt_messages`) and the answer is the completion, so the loss covers the answer only.
LoRA adapters go on the LLM (``lora_target_modules``); ``lora_modules_to_save`` trains named modules in full (the
multimodal model's encoders and compressor). ``load_in_4bit`` loads the LLM in 4-bit NF4 for QLoRA (CUDA only).
Training resumes from the last checkpoint in ``output_dir`` unless told otherwise.

Model path (an EmoReason checkpoint, ``evidence_mode: model``): :class:`EvidenceCollator` builds each batch with the
model's processor from the row's Evidence (a face placeholder + the question; the loss covers the answer), with
LoRA on the LLM and ``lora_modules_to_save: [face]`` training the face encoder and compressor in full. The rows carry
no audio, so the audio encoder gets no gradient here; the saved config's ``trained_modalities`` records what was
trained (face only), and serving shows the model only those modalities' tokens; the
recipe's ``use_compressor``/``num_experts`` override the checkpoint's config (the ablation switches). GRPO
(:mod:`emoreason.training.grpo`), held-out evaluation and synthesis use the same prompt and processor inputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from emoreason.data.builder import load_rows, prompt_messages
from emoreason.errors import ConfigError, ModelError
from emoreason.io import atomic_write_text
from emoreason.training.config import EmoArguments, EmoSFTConfig

log = logging.getLogger(__name__)

MULTIMODAL_MODEL_TYPE = "emoreason"


def quantization_config(args: EmoArguments) -> Any:
    """The bitsandbytes config for QLoRA (TRL's ``get_quantization_config`` of the recipe's ``load_in_4bit``,
    ``bnb_4bit_quant_type``, ``use_bnb_nested_quant`` and ``dtype``), or ``None``; a clear error where it cannot run."""
    if not (args.load_in_4bit or args.load_in_8bit):
        return None
    key = "load_in_4bit" if args.load_in_4bit else "load_in_8bit"
    if not torch.cuda.is_available():
        raise ConfigError(f"{key} (QLoRA) needs a CUDA GPU; this machine has none. Set {key}: false.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(f"{key} needs bitsandbytes: pip install 'emoreason[qlora]'") from None
    from trl import get_quantization_config

    return get_quantization_config(args)


def resolve_evidence_mode(args: EmoArguments, model_type: str) -> str:
    multimodal = model_type == MULTIMODAL_MODEL_TYPE
    if args.evidence_mode == "auto":
        return "model" if multimodal else "text"
    if args.evidence_mode == "model" and not multimodal:
        raise ConfigError(f"evidence_mode 'model' needs an EmoReason checkpoint; this model is {model_type!r}")
    return args.evidence_mode


def load_model_and_tokenizer(args: EmoArguments, dtype: torch.dtype | None = None) -> tuple[Any, Any, str]:
    """The model, its tokenizer (or processor) and the evidence mode, from ``args.model_name_or_path``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    import emoreason.models.emoreason  # noqa: F401  (registers the EmoReason Auto classes: a fresh process needs it)

    path = Path(args.model_name_or_path)
    if not path.exists():
        raise ModelError("model folder not found (no hub downloads here: give a local folder)", path)
    kw = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(path, **kw)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the model config: {e}", path) from None
    mode = resolve_evidence_mode(args, config.model_type)
    if mode == "model":
        return (*_load_multimodal(args, config, dtype), mode)
    if args.use_compressor is not None or args.num_experts is not None or args.prompt_observations is not None:
        raise ConfigError(
            "use_compressor/num_experts/prompt_observations are EmoReason model switches; this model is "
            + config.model_type
        )
    tokenizer = AutoTokenizer.from_pretrained(path, **kw)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelError("the tokenizer has no chat template; the text path needs one", path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype or torch.float32, quantization_config=quantization_config(args), **kw
    )
    if args.gguf_file and getattr(model, "hf_quantizer", None) is not None:
        # GGUF weights are dequantised to fp32 on load: drop the quantizer so training and save_pretrained treat the
        # model as the plain fp32 model it is.
        model.hf_quantizer.remove_quantization_config(model)
        model.config._is_quantized = False
    return model, tokenizer, mode


def _load_multimodal(args: EmoArguments, config: Any, dtype: torch.dtype | None) -> tuple[Any, Any]:
    """The EmoReason model and processor; ``use_compressor``/``num_experts`` from the recipe override the checkpoint's
    config (the ablation switches). Parts whose shape the override changes start from fresh weights."""
    try:
        from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
    except ImportError as e:
        raise ModelError(f"the EmoReason model package is not available: {e}") from None
    changed = False
    if args.prompt_observations is not None:
        config.prompt_observations = args.prompt_observations
    for key in ("use_compressor", "num_experts"):
        value = getattr(args, key)
        if value is not None and getattr(config, key) != value:
            setattr(config, key, value)
            changed = True
    if args.num_experts is not None:
        config.expert_top_k = min(config.expert_top_k, args.num_experts)
    if changed:
        log.warning("ablation: use_compressor=%s num_experts=%s; changed parts are newly initialised",
                    config.use_compressor, config.num_experts)  # fmt: skip
    model = EmoReasonForConditionalGeneration.from_pretrained(
        args.model_name_or_path,
        config=config,
        dtype=dtype or torch.float32,
        quantization_config=quantization_config(args),
        ignore_mismatched_sizes=changed,
    )
    return model, EmoReasonProcessor.from_pretrained(args.model_name_or_path)


class EvidenceCollator:
    """Batches dataset rows for the multimodal model: the prompt holds a face placeholder, the evidence's observations
    as text where the model reads them (``observations``, the config's ``prompt_observations``) and the question; the
    processor turns the row's Evidence into encoder inputs, and the loss covers the answer only."""

    def __init__(self, processor: Any, system_prompt: str = "train_system_v1", observations: bool = False) -> None:
        self.processor = processor
        self.system_prompt = system_prompt
        self.observations = observations
        self.fed: set[str] = set()  # the modalities whose encoder inputs some batch carried

    def prompt(self, row: dict, evidence: Any = None) -> str:
        from emoreason.data.builder import clip_messages

        obs = None
        if self.observations:
            from emoreason.evidence import Evidence
            from emoreason.evidence_text import observations_text

            obs = observations_text(evidence if evidence is not None else Evidence.load(row["evidence"]))
        messages = clip_messages(row["question"], face=True, system_prompt=self.system_prompt, observations=obs)
        return self.processor.render(messages, add_generation_prompt=True)[0]

    def __call__(self, rows: list[dict]) -> dict:
        from emoreason.evidence import Evidence

        evs = [Evidence.load(r["evidence"]) for r in rows]
        prompts = [self.prompt(r, ev) for r, ev in zip(rows, evs, strict=True)]
        eos = self.processor.tokenizer.eos_token
        batch = self.processor(text=[p + r["answer"] + eos for p, r in zip(prompts, rows, strict=True)], evidence=evs)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for i, (p, ev) in enumerate(zip(prompts, evs, strict=True)):
            n_prompt = self.processor(text=p, evidence=ev, padding=False)["input_ids"].shape[1]
            start = int(batch["attention_mask"][i].nonzero()[0])  # left padding shifts the prompt
            labels[i, : start + n_prompt] = -100
        batch["labels"] = labels
        self.fed |= {m for m in ("face", "audio") if f"{m}_values" in batch}
        return dict(batch)


def trained_modalities(model: Any, fed: set[str]) -> list[str]:
    """The modalities a stage trained: its batches carried the modality's encoder inputs and some parameter of that
    modality's encoder or compressor (``face.*``/``audio.*``, under peft's wrapping too) was trainable."""
    trainable = {m for m in ("face", "audio") for n, p in model.named_parameters()
                 if p.requires_grad and f".{m}." in f".{n}"}  # fmt: skip
    return sorted(fed & trainable)


def record_trained_modalities(model: Any, modalities: list[str]) -> list[str]:
    """Add ``modalities`` to the model's ``config.trained_modalities`` (kept across stages) before it is saved."""
    config = model.config
    config.trained_modalities = sorted(set(getattr(config, "trained_modalities", []) or []) | set(modalities))
    return config.trained_modalities


def lora_config(args: EmoArguments) -> Any:
    """The peft LoRA config of a recipe (TRL's ``get_peft_config``), or ``None`` for full fine-tuning."""
    from trl import get_peft_config

    return get_peft_config(args)


def text_dataset(
    args: EmoArguments,
    *,
    with_completion: bool,
    evidence_formatter: Callable | None = None,
    files: list[str] | None = None,
) -> Any:
    """A ``datasets.Dataset`` of conversational prompts (plus completions for SFT) and the label columns rewards read."""
    from datasets import Dataset

    rows = load_rows(files if files is not None else args.train_files, require_answer=with_completion)
    if args.max_train_samples is not None:
        rows = rows[: args.max_train_samples]
    records = []
    for row in rows:
        rec = {
            "id": row["id"],
            "prompt": prompt_messages(
                row,
                evidence_formatter=evidence_formatter,
                system_prompt=args.system_prompt,
                user_prompt=args.user_prompt,
            ),
            "emotion": row.get("emotion"),
            "compound": row.get("compound"),
            "aus": row.get("aus"),
            "evidence": row["evidence"],
            "caption": row.get("caption"),
        }
        if with_completion:
            rec["completion"] = [{"role": "assistant", "content": row["answer"]}]
        records.append(rec)
    return Dataset.from_list(records)


def last_checkpoint(args: Any) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` if set, else the newest in ``output_dir``."""
    if args.resume_from_checkpoint:
        return args.resume_from_checkpoint
    if not args.auto_resume or not Path(args.output_dir).is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(args.output_dir)
    if found:
        log.info("resuming from %s", found)
    return found


def save_outputs(trainer: Any, args: EmoArguments, summary: dict) -> dict:
    """Save the adapter/model (and the merged model for LoRA), the tokenizer and a summary JSON."""
    out = Path(trainer.args.output_dir)
    trainer.save_model(str(out))
    model = trainer.model
    if (
        args.use_peft
        and args.save_merged
        and hasattr(model, "merge_and_unload")
        and not (args.load_in_4bit or args.load_in_8bit)
    ):
        merged = model.merge_and_unload()
        merged.save_pretrained(out / "merged")
        trainer.processing_class.save_pretrained(out / "merged")
        summary["merged"] = str(out / "merged")
    summary["output_dir"] = str(out)
    atomic_write_text(out / "emoreason_train.json", json.dumps(summary, indent=1, default=str))
    return summary


def run_sft(args: EmoSFTConfig, evidence_formatter: Callable | None = None) -> dict:
    """Train with SFT; returns a summary (loss, steps, where the model went)."""
    from trl import SFTTrainer

    model, tokenizer, mode = load_model_and_tokenizer(args)
    if mode == "model":
        return _run_multimodal_sft(args, model, tokenizer)
    train = text_dataset(args, with_completion=True, evidence_formatter=evidence_formatter)
    evals = (
        text_dataset(args, with_completion=True, evidence_formatter=evidence_formatter, files=args.eval_files)
        if args.eval_files
        else None
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train.remove_columns(["emotion", "compound", "aus", "evidence", "caption", "id"]),
        eval_dataset=evals.remove_columns(["emotion", "compound", "aus", "evidence", "caption", "id"])
        if evals
        else None,
        processing_class=tokenizer,
        peft_config=lora_config(args),
    )
    result = trainer.train(resume_from_checkpoint=last_checkpoint(args))
    summary = {
        "stage": "sft",
        "model": args.model_name_or_path,
        "train_rows": len(train),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
    }
    return save_outputs(trainer, args, summary)


def _run_multimodal_sft(args: EmoSFTConfig, model: Any, processor: Any) -> dict:
    """SFT of the EmoReason model: rows go to :class:`EvidenceCollator` untouched (TRL's preparation is skipped)."""
    from datasets import Dataset
    from trl import SFTTrainer

    rows = load_rows(args.train_files, require_answer=True)[: args.max_train_samples]
    train = Dataset.from_list([{k: r[k] for k in ("id", "evidence", "question", "answer")} for r in rows])
    args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    args.remove_unused_columns = False

    class ModelLossSFTTrainer(SFTTrainer):
        """TRL's fused loss reads the text backbone directly; the EmoReason forward computes its own loss (LM loss
        plus the compressor's load-balancing loss), so use that, as ``transformers.Trainer`` does."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            from transformers import Trainer

            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    collator = EvidenceCollator(processor, args.system_prompt, model.config.prompt_observations)
    trainer = ModelLossSFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=collator,
        processing_class=processor.tokenizer,
        peft_config=lora_config(args),
    )
    result = trainer.train(resume_from_checkpoint=last_checkpoint(args))
    # recorded on the base model's config, which the adapter folder, the merged model and the full model all save
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    trained = record_trained_modalities(base, trained_modalities(trainer.model, collator.fed))
    summary = {
        "stage": "sft",
        "evidence_mode": "model",
        "trained_modalities": trained,
        "model": args.model_name_or_path,
        "use_compressor": model.config.use_compressor,
        "num_experts": model.config.num_experts,
        "train_rows": len(train),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
    }
    summary = save_outputs(trainer, args, summary)
    processor.save_pretrained(args.output_dir)
    if "merged" in summary:
        processor.save_pretrained(summary["merged"])
    return summary
