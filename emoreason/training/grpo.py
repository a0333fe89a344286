"""GRPO with TRL's ``GRPOTrainer`` and EmoReason's verifiable rewards (:mod:`emoreason.rewards`).

The recipe names the rewards (``reward_funcs: [format, emotion, au, compound]``) and their ``reward_weights``; the
dataset's label columns (``emotion``, ``compound``, ``aus``, ``evidence``, ``caption``) reach the rewards as keyword
lists. ``use_vllm`` is TRL's switch for vLLM generation; it needs a CUDA GPU and the vLLM environment.

Text checkpoints read the evidence as text in the prompt (TRL's own path). An EmoReason checkpoint reads the clip
through its face encoder (:class:`EvidenceGRPOTrainer`): the prompt is the multimodal SFT prompt (face placeholder and
question), the processor turns each row's Evidence into encoder inputs, and those inputs go with the row to
generation, to the old/reference log-probabilities and to the loss. ``use_vllm`` is refused there (TRL's vLLM
generation only carries images).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from emoreason.errors import ConfigError, ModelError
from emoreason.rewards import RewardFunc, get_reward_funcs
from emoreason.training.config import EmoGRPOConfig
from emoreason.training.sft import (
    last_checkpoint,
    load_model_and_tokenizer,
    load_rows,
    lora_config,
    save_outputs,
    text_dataset,
)

log = logging.getLogger(__name__)


def reward_funcs_for(args: EmoGRPOConfig) -> list[RewardFunc]:
    """The recipe's rewards, in order, from the one registry (:func:`emoreason.rewards.get_reward_funcs`)."""
    return get_reward_funcs(args.reward_funcs, args.compound_partial)


def run_grpo(args: EmoGRPOConfig, evidence_formatter: Callable | None = None) -> dict:
    """Train with GRPO; returns a summary (mean rewards per logging step, steps, where the model went)."""
    from trl import GRPOTrainer

    if args.use_vllm and not torch.cuda.is_available():
        raise ConfigError("use_vllm needs a CUDA GPU and the vLLM environment; set use_vllm: false on this machine")
    model, tokenizer, mode = load_model_and_tokenizer(args)
    if mode == "model":
        if args.use_vllm:
            raise ConfigError("use_vllm: TRL's vLLM generation cannot carry the EmoReason model's clip inputs")
        processor = tokenizer
        train = clip_dataset(args, processor, model.config.prompt_observations)
        args.remove_unused_columns = False
        trainer = EvidenceGRPOTrainer(
            model=model,
            reward_funcs=reward_funcs_for(args),
            args=args,
            train_dataset=train,
            processing_class=processor.tokenizer,
            peft_config=lora_config(args),
            clip_processor=processor,
        )
    elif mode == "text":
        train = text_dataset(args, with_completion=False, evidence_formatter=evidence_formatter)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_funcs_for(args),
            args=args,
            train_dataset=train,
            processing_class=tokenizer,
            peft_config=lora_config(args),
        )
    else:
        raise ModelError(f"GRPO has no path for evidence mode {mode!r}", args.model_name_or_path)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(args))
    rewards = [
        {k: v for k, v in entry.items() if k.startswith("reward") or k == "step"}
        for entry in trainer.state.log_history
        if "reward" in entry
    ]
    summary = {
        "stage": "grpo",
        "evidence_mode": mode,
        "model": args.model_name_or_path,
        "train_rows": len(train),
        "reward_funcs": list(args.reward_funcs),
        "reward_weights": args.reward_weights,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "rewards": rewards,
        "log_history": trainer.state.log_history,
    }
    summary = save_outputs(trainer, args, summary)
    if mode == "model":
        processor.save_pretrained(args.output_dir)
        if "merged" in summary:
            processor.save_pretrained(summary["merged"])
    return summary


def clip_dataset(args: EmoGRPOConfig, processor: Any, observations: bool = False) -> Any:
    """Rows for :class:`EvidenceGRPOTrainer`: the rendered multimodal prompt and the label columns rewards read."""
    from datasets import Dataset

    from emoreason.training.sft import EvidenceCollator

    rows = load_rows(args.train_files, require_answer=False)[: args.max_train_samples]
    collator = EvidenceCollator(processor, args.system_prompt, observations)
    return Dataset.from_list(
        [
            {
                "id": r["id"],
                "prompt": collator.prompt(r),
                **{k: r.get(k) for k in LABEL_COLUMNS},
                "evidence": r["evidence"],
            }
            for r in rows
        ]
    )


LABEL_COLUMNS = ("emotion", "compound", "aus", "caption")


def _clip_trainer_class() -> type:
    from trl import GRPOTrainer
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    class _EvidenceGRPOTrainer(GRPOTrainer):
        """TRL's GRPO for the EmoReason model: each row's Evidence becomes encoder inputs (``face_values``, ...) that
        travel with the row — into ``generate``, into the old/reference log-probabilities, and (split and shuffled
        with the rest of the batch) into the loss. Log-probabilities come from the model's own forward (TRL's fused
        LM head reads the text backbone directly and would skip the encoders), with ``logits_to_keep`` (the LM head
        runs on the completion only) and no cache. The compressor's load-balancing loss goes into the loss through
        TRL's own ``router_aux_loss_coef`` path (default: the checkpoint's ``aux_loss_coef``, as in SFT; 0 turns it
        off)."""

        def __init__(self, *args: Any, clip_processor: Any, **kwargs: Any) -> None:
            targs = kwargs["args"]
            coef = targs.router_aux_loss_coef
            targs.router_aux_loss_coef = None  # TRL looks for MoE routers in the text model; the compressors are ours
            try:
                super().__init__(*args, **kwargs)
            finally:
                targs.router_aux_loss_coef = coef
            config = kwargs["model"].config
            self.router_aux_loss_coef = config.aux_loss_coef if coef is None else coef
            self.aux_loss_enabled = bool(config.use_compressor) and self.router_aux_loss_coef != 0.0
            self.clip_processor = clip_processor
            self._clip_ids: list[list[int]] | None = None
            self._clip_fields: dict[str, torch.Tensor] | None = None

        def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
            from emoreason.evidence import Evidence

            evs = [Evidence.load(x["evidence"]) for x in inputs]
            batch = self.clip_processor(text=[x["prompt"] for x in inputs], evidence=evs)
            mask = batch["attention_mask"].bool()
            self._clip_ids = [row[m].tolist() for row, m in zip(batch["input_ids"], mask, strict=True)]
            device = self.accelerator.device
            fields = {k: v.to(device) for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
            self._clip_fields = fields
            try:
                out = super()._generate_and_score_completions(inputs)
            finally:
                self._clip_ids = self._clip_fields = None
            return {**out, **fields}

        def _tokenize_prompts(self, prompts: list) -> tuple:
            if self._clip_ids is None:
                return super()._tokenize_prompts(prompts)
            return self._clip_ids, None, dict(self._clip_fields or {})

        def _compute_loss(self, model: Any, inputs: dict) -> Any:
            names = set(self.clip_processor.model_input_names) - {"input_ids", "attention_mask"}
            self._clip_fields = {k: v for k, v in inputs.items() if k in names}
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._clip_fields = None

        def _get_per_token_logps_and_entropies(
            self,
            model: Any,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            logits_to_keep: int,
            batch_size: int | None = None,
            compute_entropy: bool = False,
            compute_aux_loss: bool = False,
            **kwargs: Any,
        ) -> tuple:
            if self._clip_fields is None:
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                    **kwargs,
                )  # fmt: skip
            batch_size = batch_size or input_ids.size(0)
            logps, entropies, aux = [], [], []
            for start in range(0, input_ids.size(0), batch_size):
                end = min(start + batch_size, input_ids.size(0))
                extra = {k: v[start:end] for k, v in self._clip_fields.items()}
                with self.accelerator.autocast():
                    out = model(input_ids=input_ids[start:end], attention_mask=attention_mask[start:end],
                                logits_to_keep=logits_to_keep + 1, use_cache=False, **extra)  # fmt: skip
                logits = out.logits[:, :-1, :] / self.temperature  # position t predicts token t+1
                logps.append(selective_log_softmax(logits, input_ids[start:end, -logits_to_keep:]))
                if compute_entropy:
                    with torch.no_grad():
                        entropies.append(entropy_from_logits(logits))
                if compute_aux_loss:
                    aux.append(out.aux_loss if out.aux_loss is not None else logits.new_zeros(()))
            aux_loss = torch.stack(aux).mean() if compute_aux_loss else None
            return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, aux_loss

    return _EvidenceGRPOTrainer


def EvidenceGRPOTrainer(*args: Any, **kwargs: Any) -> Any:  # noqa: N802  (a class built on first use: TRL is heavy)
    """:class:`trl.GRPOTrainer` for the EmoReason model (see ``_clip_trainer_class``)."""
    return _clip_trainer_class()(*args, **kwargs)
