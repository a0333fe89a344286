"""``emoreason train sft|grpo|synthesize RECIPE [--field value ...]``: run a training stage from a YAML recipe."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model: sft, grpo or synthesize, from a recipe",
        description="Run a training stage from a YAML recipe (train/recipes/). Any recipe field can be overridden "
        "after the recipe as --field value.",
    )
    stages = train.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for stage, text in (
        ("sft", "supervised fine-tuning on chain-of-thought rows"),
        ("grpo", "GRPO with EmoReason's rewards"),
        ("synthesize", "sample, verify and write a new dataset shard"),
    ):
        p = stages.add_parser(stage, help=text, description=text)
        p.add_argument("recipe", help="YAML recipe file")
        p.add_argument("overrides", nargs=argparse.REMAINDER, help="--field value pairs that override the recipe")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emoreason.training.config import EmoGRPOConfig, EmoSFTConfig, SynthesisConfig, parse_recipe

    if args.stage == "sft":
        from emoreason.training.sft import run_sft

        summary = run_sft(parse_recipe(EmoSFTConfig, args.recipe, args.overrides))
    elif args.stage == "grpo":
        from emoreason.training.grpo import run_grpo

        summary = run_grpo(parse_recipe(EmoGRPOConfig, args.recipe, args.overrides))
    elif args.stage == "synthesize":
        from emoreason.training.synthesize import run_synthesis

        summary = run_synthesis(parse_recipe(SynthesisConfig, args.recipe, args.overrides))
    else:
        raise ValueError(f"unknown stage {args.stage!r}; expected sft, grpo or synthesize")
    print(json.dumps({k: v for k, v in summary.items() if k != "log_history"}, indent=1, default=str))
    return 0
