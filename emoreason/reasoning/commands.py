"""The ``emoreason report`` and ``emoreason ask`` subcommands.

``report CLIP -o out.{json,md,html}`` perceives a clip (or reads an ``*.json`` Evidence file) and writes the report;
``report DIR/ -o OUTDIR/`` does every clip in a folder, skipping finished reports and listing the files it could not read
(whatever went wrong with one file, the others are still done; the exit status is 1 when any failed).
``ask CLIP "question"`` answers one question; without a question it reads questions from stdin until EOF or ``quit``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from emoreason.cliopts import (
    add_cache_options,
    add_fps,
    add_output,
    cached_perceive,
    check_output_file,
    fps_value,
    writable_folder,
    write_error,  # fmt: skip
)
from emoreason.errors import ConfigError, EmoReasonError
from emoreason.evidence import Evidence
from emoreason.modelspec import add_model_options, api_key, make_reasoner, parse_model_spec

log = logging.getLogger(__name__)

QUIT_WORDS = frozenset({"quit", "exit", ":q"})
REPORT_MODELS = ("engine", "transformers", "vllm")
ASK_MODELS = ("engine", "transformers", "openai", "vllm")


def _perception_args(p: argparse.ArgumentParser) -> None:
    add_fps(p)
    p.add_argument("--max-side", type=int, default=720, help="downscale frames to this long side; 0 = full size")
    p.add_argument("--no-asr", action="store_true", help="skip speech transcription")
    p.add_argument("--asr-model", type=Path, help="local CTranslate2 Whisper folder (default: packaged tiny.en)")
    add_cache_options(p)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("report", help="explainable emotion report of a clip (or every clip in a folder)",
                              description="Perceive a clip and write its emotion report as JSON, Markdown or HTML.")  # fmt: skip
    r.add_argument("clip", type=Path,
                   help="video/audio/image file, an Evidence .json, a report .json, or a folder of them")  # fmt: skip
    add_output(r, "report file (.json, .md or .html); for a folder input, an output folder", required=True)
    r.add_argument("--format", choices=("json", "md", "html"), default="html", help="report format for folder input")
    r.add_argument("--overwrite", action="store_true", help="for folder input, redo reports that already exist")
    add_model_options(r, REPORT_MODELS)
    _perception_args(r)
    r.set_defaults(func=run_report)

    a = subparsers.add_parser("ask", help="ask a free-text question about a clip (chat without a question)",
                              description="Answer questions about a clip from its evidence.")  # fmt: skip
    a.add_argument("clip", type=Path, help="video/audio/image file or an Evidence .json")
    a.add_argument("question", nargs="?", help="the question; omit it to chat (one question per line, 'quit' ends)")
    add_model_options(a, ASK_MODELS)
    a.add_argument("--backend", dest="model", help=argparse.SUPPRESS)  # deprecated spelling of --model
    _perception_args(a)
    a.set_defaults(func=run_ask)


def load_or_perceive(path: Path, args: argparse.Namespace, progress: bool = False) -> Evidence:
    """An Evidence JSON is read as is; anything else goes through perception (and the evidence cache)."""
    if path.suffix.lower() == ".json":
        return Evidence.load(path)
    return cached_perceive(path, args, progress=progress)


def _is_evidence(p: Path) -> bool:
    return p.name.endswith(".evidence.json")


def _out_name(p: Path, fmt: str) -> str:
    """``x.evidence.json`` -> ``x.FMT``; a clip keeps its suffix (``x.mov`` -> ``x.mov.FMT``), so ``x.mov`` and
    ``x.mp4`` get distinct reports."""
    return f"{p.name.removesuffix('.evidence.json')}.{fmt}" if _is_evidence(p) else f"{p.name}.{fmt}"


def _clips(folder: Path) -> list[Path]:
    """Evidence files and clips (every suffix of :data:`emoreason.media.MEDIA_SUFFIXES`) in ``folder``.

    ``x.evidence.json`` (what ``perceive x.mp4`` writes) stands in for the clip ``x.<ext>`` when exactly one clip has
    the stem ``x``; with several (``x.mov`` and ``x.mp4``) every clip is done from its own file.
    """
    from emoreason.media import MEDIA_SUFFIXES

    files = sorted(p for p in folder.iterdir() if p.is_file())
    evidence = [p for p in files if _is_evidence(p)]
    clips = [p for p in files if not _is_evidence(p) and p.suffix.lower() in MEDIA_SUFFIXES]
    stems: dict[str, list[Path]] = {}
    for c in clips:
        stems.setdefault(c.stem, []).append(c)
    covered = {p.name.removesuffix(".evidence.json") for p in evidence}
    kept = [c for c in clips if not (c.stem in covered and len(stems[c.stem]) == 1)]
    for c in clips:
        if c not in kept:
            log.info("%s: using its evidence file %s.evidence.json", c, c.stem)
    return sorted(evidence + kept)


def _reasoner(args: argparse.Namespace, allowed: tuple[str, ...], command: str):
    spec = parse_model_spec(args.model, allowed, command)
    return make_reasoner(spec, api_model=getattr(args, "api_model", "emoreason"), api_key=api_key(args))


def _build(ev: Evidence, engine, media: Path | None, model: str):
    from emoreason import report as reports

    if engine is None:
        return reports.build_report(ev)
    return reports.build_report(ev, engine.analyze(ev, media=media), reasoner=model)


def run_report(args: argparse.Namespace) -> int:
    from emoreason.report import REPORT_FORMATS, Report, headline, is_report_file, write_report

    quiet = getattr(args, "quiet", False)
    if not args.clip.exists():
        raise ConfigError("no such file or folder", args.clip)
    spec = parse_model_spec(args.model, REPORT_MODELS, "report")
    args.model = str(spec)  # the canonical spelling names the reasoner in the report
    fps_value(args.fps)
    if args.clip.is_dir():
        writable_folder(args.output)
        engine = None if spec.kind == "engine" else _reasoner(args, REPORT_MODELS, "report")
        return _report_folder(args, engine, quiet)
    if args.output.suffix.lower() not in REPORT_FORMATS + (".htm",):
        raise ConfigError(f"the output must end in one of {', '.join(REPORT_FORMATS)}", args.output)
    check_output_file(args.output, (args.clip,))
    engine = None if spec.kind == "engine" else _reasoner(args, REPORT_MODELS, "report")
    if is_report_file(args.clip):  # a report JSON is self-contained: render it again in another format
        report = Report.load(args.clip)
    else:
        ev = load_or_perceive(args.clip, args, progress=not quiet)
        report = _build(ev, engine, None if args.clip.suffix.lower() == ".json" else args.clip, args.model)
    try:
        write_report(report, args.output)
    except OSError as e:
        raise write_error(e, args.output) from None
    a = report.analysis
    print(f"{args.output}: {headline(a)}" + (f", {a.compound}" if a.compound else ""))
    return 0


def _one_line(e: BaseException) -> str:
    if isinstance(e, EmoReasonError):
        return e.message
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _report_folder(args: argparse.Namespace, engine, quiet: bool) -> int:
    from tqdm import tqdm

    from emoreason.report import is_valid_report, write_report

    clips = _clips(args.clip)
    if not clips:
        raise ConfigError("no clips or Evidence files in the folder", args.clip)
    failed: list[tuple[Path, str]] = []
    done = skipped = 0
    for clip in tqdm(clips, desc="reports", unit="clip", disable=quiet):
        out = args.output / _out_name(clip, args.format)
        if not args.overwrite and is_valid_report(out):
            skipped += 1
            continue
        try:
            ev = load_or_perceive(clip, args)
            report = _build(ev, engine, None if _is_evidence(clip) else clip, args.model)
            write_report(report, out)
            done += 1
        except Exception as e:  # noqa: BLE001  (one file's problem, whatever it is, must not end the batch)
            failed.append((clip, _one_line(e)))
            log.warning("skipped %s: %s", clip, _one_line(e))
            log.debug("traceback of %s", clip, exc_info=True)
    print(f"{done} done, {len(failed)} failed, {skipped} already done -> {args.output}")
    for clip, why in failed:
        print(f"  failed: {clip}: {why}")
    return 1 if failed else 0


def run_ask(args: argparse.Namespace) -> int:
    from emoreason.reasoning.engine import analyze

    if not args.clip.exists():
        raise ConfigError("no such file", args.clip)
    fps_value(args.fps)
    engine = _reasoner(args, ASK_MODELS, "ask")
    ev = load_or_perceive(args.clip, args, progress=False)
    media = None if args.clip.suffix.lower() == ".json" else args.clip
    analysis = analyze(ev)
    history: list[dict[str, str]] = []

    def answer(q: str) -> str:
        text = engine.ask(ev, q, analysis, list(history), media=media).answer
        history.extend([{"role": "user", "content": q}, {"role": "assistant", "content": text}])
        return text

    if args.question is not None:
        print(answer(args.question))
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
            print(answer(q), flush=True)
    return 0
