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
    p.add_argument("--max-text-kb", type=int, default=_DEFAULTS["max_text_kb"],
                   help="largest body apart from the clip (JSON or form fields), in KB")  # fmt: skip
    p.add_argument("--header-timeout", type=float, default=_DEFAULTS["header_timeout_s"], dest="header_timeout_s",
                   help="seconds a connection may take to send its request headers")  # fmt: skip
    p.add_argument("--body-timeout", type=float, default=_DEFAULTS["body_timeout_s"], dest="body_timeout_s",
                   help="seconds a request's whole body may take to arrive (then 408)")  # fmt: skip
    p.add_argument("--keep-alive", type=float, default=_DEFAULTS["keep_alive_s"], dest="keep_alive_s",
                   help="seconds an idle keep-alive connection is kept")  # fmt: skip
    p.add_argument("--max-connections", type=int, default=_DEFAULTS["max_connections"],
                   help="open connections at once (more get 503)")  # fmt: skip
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
        max_side=args.max_side, asr=not args.no_asr, cache_size=args.cache_size, max_text_kb=args.max_text_kb,
        header_timeout_s=args.header_timeout_s, body_timeout_s=args.body_timeout_s, keep_alive_s=args.keep_alive_s,
        max_connections=args.max_connections,
    ).validate()  # fmt: skip


def run_serve(args: argparse.Namespace) -> int:
    from emoreason.serving.server import serve

    serve(settings_from_args(args))
    return 0
