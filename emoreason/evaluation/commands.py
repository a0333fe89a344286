"""``emoreason eval``: run evaluation tasks on a model and print a summary table.

Exit status 0 when every sample was answered; 1 when some failed (their rows carry the error; a rerun retries them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emoreason.cliopts import add_output, writable_folder
from emoreason.errors import ConfigError
from emoreason.evaluation.harness import TASKS_DIR, load_published, resolve_tasks, run_task, summary_markdown
from emoreason.evaluation.models import make_model
from emoreason.io import atomic_write_text
from emoreason.modelspec import add_model_options, parse_model_spec
from emoreason.modelspec import api_key as read_api_key

log = logging.getLogger(__name__)

EVAL_MODELS = ("engine", "transformers", "openai")


def evaluate(
    tasks: list[str],
    model: str,
    data_root: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    concurrency: int = 1,
    endpoint_model: str = "emoreason",
    api_key: str | None = None,
    send_video: bool = False,
    clip_only: bool = False,
    tasks_dir: Path = TASKS_DIR,
    progress: bool = True,
) -> str:
    """Run ``tasks`` with ``model`` (a ``--model`` spec: engine, transformers:PATH or openai:URL); write ``<out>/<task>/...`` and ``<out>/summary.md``; return the summary text."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
    spec = parse_model_spec(model, EVAL_MODELS, "eval")
    selected = resolve_tasks(tasks, tasks_dir)
    adapter = make_model(
        "checkpoint:" + str(spec.target) if spec.kind == "transformers" else str(spec),
        endpoint_model=endpoint_model, api_key=api_key, send_video=send_video, clip_only=clip_only,
    )  # fmt: skip
    results = [
        run_task(t, adapter, data_root, out, limit=limit, concurrency=concurrency, progress=progress) for t in selected
    ]
    text = summary_markdown(results, selected, load_published())
    atomic_write_text(Path(out) / "summary.md", text)
    atomic_write_text(Path(out) / "summary.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    return text


def _run(args: argparse.Namespace) -> int:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ConfigError("--tasks is empty")
    writable_folder(args.output)
    text = evaluate(
        tasks, args.model, args.data_root, args.output, limit=args.limit, concurrency=args.concurrency,
        endpoint_model=args.api_model, api_key=read_api_key(args), send_video=args.send_video,
        clip_only=args.clip_only, progress=not args.quiet,
    )  # fmt: skip
    print(text, end="")
    results = json.loads((Path(args.output) / "summary.json").read_text(encoding="utf-8"))
    failed = {r["task"]: r["n_errors"] for r in results if r["n_errors"]}
    if failed:
        detail = ", ".join(f"{t}: {n}" for t, n in failed.items())
        print(f"emoreason: error: samples failed ({detail}); see 'error' in {args.output}/<task>/predictions.jsonl, rerun to "
              "retry them", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a model on benchmark suites",
        description="Run evaluation tasks on a model; print a summary table.",
    )  # fmt: skip
    p.add_argument("--tasks", required=True, help="comma-separated task or suite names (emoreason/evaluation/tasks/)")
    p.add_argument("--data-root", required=True, type=Path, help="folder holding one folder per dataset")
    add_output(p, "results folder (resumable)", default=Path("results"), old="--out")
    add_model_options(p, EVAL_MODELS)
    p.add_argument("--endpoint-model", dest="api_model", help=argparse.SUPPRESS)  # deprecated spelling of --api-model
    p.add_argument("--limit", type=int, default=None, help="only the first N samples of each task")
    p.add_argument("--concurrency", type=int, default=1, help="parallel requests (endpoint models)")
    p.add_argument(
        "--send-video",
        action="store_true",
        help="attach clips to openai: requests (for endpoints that take video) instead of evidence text",
    )
    p.add_argument(
        "--clip-only",
        action="store_true",
        help="send openai: endpoints the clip alone, no prompt (for `emoreason serve`: full analysis)",
    )
    p.set_defaults(func=_run)
