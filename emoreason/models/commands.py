"""``emoreason model build --base PATH -o DIR``: assemble a fresh EmoReason checkpoint around a local text model."""

from __future__ import annotations

import argparse
import json

from emoreason.cliopts import add_output, writable_folder
from emoreason.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="build EmoReason multimodal checkpoints", description=__doc__)
    sub = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    b = sub.add_parser(
        "build",
        help="new face/audio encoders + MoE compressor around a local causal LM",
        description="Add the EmoReason special tokens to a local Qwen2/llama causal LM, attach fresh encoders and "
        "compressors, and save config, safetensors and processor files to --out.",
    )
    b.add_argument(
        "--base", required=True, help="local HF folder, or a packaged base: smollm2-135m, qwen2.5-coder-0.5b"
    )
    add_output(b, "output folder (required)", old="--out")
    b.add_argument("--face-tokens", type=int, default=8, help="face tokens per clip (fixed budget)")
    b.add_argument("--audio-tokens", type=int, default=8, help="audio tokens per clip (fixed budget)")
    b.add_argument("--num-experts", type=int, default=2, help="experts in each compressor")
    b.add_argument("--routing", choices=("soft", "topk"), default="soft", help="gate routing")
    b.add_argument("--no-compressor", action="store_true", help="ablation: uniform temporal pooling instead")
    b.add_argument("--whisper-path", help="local Whisper checkpoint whose encoder becomes the audio encoder")
    b.add_argument("--face-reader", action="store_true",
                   help="the face encoder also reads the learned face reader's per-frame probabilities")  # fmt: skip
    b.add_argument("--seed", type=int, default=0, help="seed for the new weights")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from emoreason.models.build import build

    if args.output is None:
        raise ConfigError("give the output folder with -o/--output DIR")
    if args.output.exists() and not args.output.is_dir():
        raise ConfigError("the output is a file; give a folder", args.output)
    writable_folder(args.output)
    out = build(
        args.base,
        args.output,
        face_tokens=args.face_tokens,
        audio_tokens=args.audio_tokens,
        num_experts=args.num_experts,
        use_compressor=not args.no_compressor,
        routing=args.routing,
        whisper_path=args.whisper_path,
        seed=args.seed,
        face_config={"use_reader": True} if args.face_reader else {},
    )
    print(json.dumps({"out": str(out)}))
    return 0
