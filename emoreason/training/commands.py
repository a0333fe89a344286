"""``emoreason train sft|grpo|synthesize RECIPE [--field value ...]``: run a training stage from a YAML recipe;
``emoreason train build FORMAT LABELS -o SHARD.jsonl``: build an instruction dataset shard."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from emoreason.cliopts import add_output, check_output_file
from emoreason.errors import ConfigError

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
    from emoreason.data.formats import FORMATS

    b = stages.add_parser(
        "build",
        help="build an instruction dataset shard from a labelled source",
        description="Read labels in one of the known formats, get each clip's evidence (a precomputed file in "
        "--evidence-dir named <id>.json, else perception through the feature cache), write chain-of-thought rows.",
    )
    b.add_argument("format", choices=sorted(FORMATS), help="label format of the source")
    b.add_argument("labels", help="label file or folder")
    add_output(b, "output shard (.jsonl); counts go to OUTPUT.stats.json")
    b.add_argument("legacy_out", nargs="?", type=Path, help=argparse.SUPPRESS)  # deprecated positional OUT
    b.add_argument("--video-root", help="folder the label file's video names are relative to")
    b.add_argument("--evidence-dir", help="folder of precomputed Evidence files named <clip id>.json")
    b.add_argument("--cache", help="feature cache folder for clips without precomputed evidence")
    b.add_argument(
        "--on-disagree", choices=("drop", "keep"), default="drop", help="when the reasoner's emotion differs"
    )
    b.add_argument("--question-prompt", default="train_question_v1", help="prompt file with the question templates")
    b.set_defaults(func=build)


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


def build(args: argparse.Namespace) -> int:
    from emoreason.data import FeatureCache, build_rows, load_clips, write_rows

    out = args.output or args.legacy_out
    if out is None:
        raise ConfigError("give the output shard with -o/--output FILE.jsonl")
    if args.output and args.legacy_out:
        raise ConfigError("give the output once: -o/--output (the positional OUT is its old spelling)")
    check_output_file(out, (Path(args.labels),))
    clips = load_clips(args.format, args.labels, args.video_root)
    if args.evidence_dir:
        for clip in clips:
            candidate = Path(args.evidence_dir) / f"{clip.id}.json"
            if candidate.exists():
                clip.evidence = str(candidate)
    cache = FeatureCache(args.cache) if args.cache else None
    rows, stats = build_rows(clips, cache=cache, question_prompt=args.question_prompt, on_disagree=args.on_disagree)
    write_rows(rows, out, stats)
    counts = {k: v for k, v in vars(stats).items() if k != "dropped_ids"}
    print(json.dumps({"out": str(out), **counts}, indent=1))
    return 0
