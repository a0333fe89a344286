"""GRPO with TRL's ``GRPOTrainer`` and EmoReason's verifiable rewards (:mod:`emoreason.rewards`).

The recipe names the rewards (``reward_funcs: [format, emotion, au, compound]``) and their ``reward_weights``; the
dataset's label columns (``emotion``, ``compound``, ``aus``, ``evidence``, ``caption``) reach the rewards as keyword
lists. ``use_vllm`` is TRL's switch for vLLM generation; it needs a CUDA GPU and the vLLM environment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from emoreason.errors import ConfigError, ModelError
from emoreason.rewards import REWARDS, CompoundReward, RewardFunc
from emoreason.training.config import EmoGRPOConfig
from emoreason.training.sft import last_checkpoint, load_model_and_tokenizer, lora_config, save_outputs, text_dataset

log = logging.getLogger(__name__)


def reward_funcs_for(args: EmoGRPOConfig) -> list[RewardFunc]:
    """The recipe's rewards, in order (the compound reward with the recipe's partial credit)."""
    funcs = []
    for name in args.reward_funcs:
        if name not in REWARDS:
            raise ConfigError(f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
        funcs.append(CompoundReward(args.compound_partial) if name == "compound" else REWARDS[name])
    return funcs


def run_grpo(args: EmoGRPOConfig, evidence_formatter: Callable | None = None) -> dict:
    """Train with GRPO; returns a summary (mean rewards per logging step, steps, where the model went)."""
    from trl import GRPOTrainer

    if args.use_vllm and not torch.cuda.is_available():
        raise ConfigError("use_vllm needs a CUDA GPU and the vLLM environment; set use_vllm: false on this machine")
    model, tokenizer, mode = load_model_and_tokenizer(args)
    if mode != "text":
        raise ModelError("only the text path is wired for GRPO so far", args.model_name_or_path)
    train = text_dataset(args, with_completion=False, evidence_formatter=evidence_formatter)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs_for(args),
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora_config(args),
    )
    result = trainer.train(resume_from_checkpoint=last_checkpoint(args))
    rewards = [
        {k: v for k, v in entry.items() if k.startswith("reward") or k == "step"}
        for entry in trainer.state.log_history
        if "reward" in entry
    ]
    summary = {
        "stage": "grpo",
        "model": args.model_name_or_path,
        "train_rows": len(train),
        "reward_funcs": list(args.reward_funcs),
        "reward_weights": args.reward_weights,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "rewards": rewards,
        "log_history": trainer.state.log_history,
    }
    return save_outputs(trainer, args, summary)
