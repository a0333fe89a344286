"""The ``emoreason serve`` subcommand: the OpenAI-compatible API and the web page on one port."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from emoreason.errors import ConfigError
from emoreason.modelspec import ModelSpec, add_api_key_options, add_model_options, api_key, parse_model_spec
from emoreason.serving.settings import ENGINES, Settings

_DEFAULTS = {f.name: f.default for f in fields(Settings)}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve the OpenAI-compatible API and the web page",
                              description="Serve EmoReason over HTTP: /v1/chat/completions, /v1/reports, /v1/models, "
                              "/health, /metrics and the web page at /.")  # fmt: skip
    p.add_argument("--host", default=_DEFAULTS["host"], help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=_DEFAULTS["port"], help="TCP port")
    add_model_options(p, ENGINES)
    p.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)  # deprecated: --engine KIND --model PATH
    p.add_argument("--lora", type=Path, help="peft LoRA adapter folder for --model (safetensors)")
    p.add_argument("--model-name", default=_DEFAULTS["model_name"], help="model id clients send")
    p.add_argument("--media-root", type=Path, help="folder whose clips may be named by path (others are refused)")
    add_api_key_options(
        p, "the key clients must send ('Authorization: Bearer KEY' on /v1/*, /media/*, /metrics)", None
    )
    p.add_argument("--max-upload-mb", type=float, default=_DEFAULTS["max_upload_mb"], help="largest clip in MB")
    p.add_argument("--max-duration", type=float, default=_DEFAULTS["max_duration_s"], dest="max_duration_s",
                   help="longest clip in seconds")  # fmt: skip
    p.add_argument("--max-concurrency", type=int, default=_DEFAULTS["max_concurrency"], help="clips analysed at once")
    p.add_argument("--queue-size", type=int, default=_DEFAULTS["queue_size"], help="requests waiting before 503")
    p.add_argument("--timeout", type=float, default=_DEFAULTS["timeout_s"], dest="timeout_s",
                   help="seconds per request before 504")  # fmt: skip
    p.add_argument("--fps", type=float, default=_DEFAULTS["fps"], help="frames analysed per second")
    p.add_argument("--max-side", type=int, default=_DEFAULTS["max_side"], help="downscale frames to this long side")
    p.add_argument("--no-asr", action="store_true", help="skip speech transcription")
    p.add_argument(
        "--cache-size", type=int, default=_DEFAULTS["cache_size"], help="clips kept in the perception cache"
    )
    p.set_defaults(func=run_serve)


def _model(args: argparse.Namespace) -> ModelSpec:
    """``--model SPEC``; the old ``--engine KIND --model PATH`` still works."""
    if args.engine is not None and args.engine != "engine" and ":" not in args.model:
        return parse_model_spec(f"{args.engine}:{args.model}", ENGINES, "serve")
    spec = parse_model_spec(args.model, ENGINES, "serve")
    if args.engine is not None and args.engine != spec.kind:
        raise ConfigError(f"--engine {args.engine} contradicts --model {args.model}; give only --model SPEC")
    return spec


def settings_from_args(args: argparse.Namespace) -> Settings:
    spec = _model(args)
    return Settings(
        host=args.host, port=args.port, media_root=args.media_root, max_upload_mb=args.max_upload_mb,
        max_duration_s=args.max_duration_s, max_concurrency=args.max_concurrency, queue_size=args.queue_size,
        timeout_s=args.timeout_s, api_key=api_key(args, None), engine=spec.kind,
        model=spec.target, lora=str(args.lora) if args.lora else None, model_name=args.model_name, fps=args.fps,
        max_side=args.max_side, asr=not args.no_asr, cache_size=args.cache_size,
    ).validate()  # fmt: skip


def run_serve(args: argparse.Namespace) -> int:
    from emoreason.serving.server import serve

    serve(settings_from_args(args))
    return 0
