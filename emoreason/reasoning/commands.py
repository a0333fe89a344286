"""The ``emoreason report`` and ``emoreason ask`` subcommands.

``report CLIP -o out.{json,md,html}`` perceives a clip (or reads an ``*.json`` Evidence file) and writes the report;
``report DIR/ -o OUTDIR/`` does every clip in a folder, skipping finished reports and listing the files it could not read.
``ask CLIP "question"`` answers one question; without a question it reads questions from stdin until EOF or ``quit``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from emoreason.errors import ConfigError, EmoReasonError
from emoreason.evidence import Evidence

log = logging.getLogger(__name__)

CLIP_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wav", ".flac", ".mp3",
                           ".ogg", ".m4a"})  # fmt: skip
QUIT_WORDS = frozenset({"quit", "exit", ":q"})


def _perception_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=10.0, help="frames analysed per second (default 10)")
    p.add_argument("--max-side", type=int, default=720, help="downscale frames to this long side (default 720)")
    p.add_argument("--no-asr", action="store_true", help="skip speech transcription")
    p.add_argument("--asr-model", type=Path, help="local CTranslate2 Whisper folder (default: packaged tiny.en)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("report", help="explainable emotion report of a clip (or every clip in a folder)",
                              description="Perceive a clip and write its emotion report as JSON, Markdown or HTML.")  # fmt: skip
    r.add_argument("clip", type=Path, help="video/audio file, an Evidence .json, a report .json, or a folder of them")
    r.add_argument("-o", "--output", type=Path, required=True,
                   help="report file (.json, .md or .html); for a folder input, an output folder")  # fmt: skip
    r.add_argument("--format", choices=("json", "md", "html"), default="html",
                   help="report format for folder input (default html)")  # fmt: skip
    r.add_argument("--overwrite", action="store_true", help="for folder input, redo reports that already exist")
    _perception_args(r)
    r.set_defaults(func=run_report)

    a = subparsers.add_parser("ask", help="ask a free-text question about a clip (chat without a question)",
                              description="Answer questions about a clip from its evidence.")  # fmt: skip
    a.add_argument("clip", type=Path, help="video/audio file or an Evidence .json")
    a.add_argument("question", nargs="?", help="the question; omit it to chat (one question per line, 'quit' ends)")
    a.add_argument("--backend", default="engine",
                   help="engine (default, grounded answers), transformers:PATH or openai:URL")  # fmt: skip
    a.add_argument("--model", default="default", help="model name sent to an openai: endpoint")
    a.add_argument("--api-key", help="API key for an openai: endpoint")
    _perception_args(a)
    a.set_defaults(func=run_ask)


def load_or_perceive(path: Path, args: argparse.Namespace, progress: bool = False) -> Evidence:
    """An Evidence JSON is read as is; anything else goes through perception."""
    if path.suffix.lower() == ".json":
        return Evidence.load(path)
    from emoreason.perception.pipeline import perceive

    if args.fps <= 0:
        raise ConfigError(f"--fps must be positive, got {args.fps}")
    return perceive(path, fps=args.fps, max_side=args.max_side or None, asr=not args.no_asr,
                    asr_model=args.asr_model, progress=progress)  # fmt: skip


def _stem(p: Path) -> str:
    return p.name.removesuffix(".evidence.json") if p.name.endswith(".evidence.json") else p.stem


def _clips(folder: Path) -> list[Path]:
    """Clips and Evidence files in ``folder``, one per stem: a clip's saved evidence is used instead of the clip."""
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.name.endswith(".evidence.json"):
            by_stem[_stem(p)] = p
        elif p.suffix.lower() in CLIP_SUFFIXES:
            by_stem.setdefault(_stem(p), p)
    return [by_stem[k] for k in sorted(by_stem)]


def run_report(args: argparse.Namespace) -> int:
    from emoreason.report import REPORT_FORMATS, Report, build_report, headline, is_report_file, write_report

    quiet = getattr(args, "quiet", False)
    if not args.clip.exists():
        raise ConfigError("no such file or folder", args.clip)
    if args.clip.is_dir():
        return _report_folder(args, quiet)
    if args.output.suffix.lower() not in REPORT_FORMATS + (".htm",):
        raise ConfigError(f"the output must end in one of {', '.join(REPORT_FORMATS)}", args.output)
    if is_report_file(args.clip):  # a report JSON is self-contained: render it again in another format
        report = Report.load(args.clip)
    else:
        report = build_report(load_or_perceive(args.clip, args, progress=not quiet))
    write_report(report, args.output)
    a = report.analysis
    print(f"{args.output}: {headline(a)}" + (f", {a.compound}" if a.compound else ""))
    return 0


def _report_folder(args: argparse.Namespace, quiet: bool) -> int:
    from tqdm import tqdm

    from emoreason.report import build_report, is_valid_report, write_report

    clips = _clips(args.clip)
    if not clips:
        raise ConfigError("no clips in the folder", args.clip)
    args.output.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Path, str]] = []
    done = skipped = 0
    for clip in tqdm(clips, desc="reports", unit="clip", disable=quiet):
        out = args.output / f"{_stem(clip)}.{args.format}"
        if not args.overwrite and is_valid_report(out):
            skipped += 1
            continue
        try:
            ev = load_or_perceive(clip, args)
            write_report(build_report(ev), out)
            done += 1
        except EmoReasonError as e:
            failed.append((clip, e.message))
            log.warning("skipped %s: %s", clip, e.message)
    print(f"{done} written, {skipped} already done, {len(failed)} failed -> {args.output}")
    for clip, why in failed:
        print(f"  failed: {clip}: {why}")
    return 1 if failed else 0


def run_ask(args: argparse.Namespace) -> int:
    from emoreason.reasoning.backends import make_backend
    from emoreason.reasoning.qa import ChatSession

    if not args.clip.exists():
        raise ConfigError("no such file", args.clip)
    backend = make_backend(args.backend, model=args.model, api_key=args.api_key)
    ev = load_or_perceive(args.clip, args, progress=False)
    session = ChatSession(ev, backend)
    if args.question is not None:
        print(session.ask(args.question).answer)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Ask about {args.clip.name} ('quit' to end).")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        q = line.strip()
        if q.lower() in QUIT_WORDS:
            break
        if q:
            print(session.ask(q).answer, flush=True)
    return 0
