"""Conventions shared by the subcommands: ``-o/--output``, output checks made before any work, the help formatter that
shows every default, ``--fps`` (0 = every frame) and the on-disk evidence cache of ``ask`` and ``report``."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from emoreason.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_ENV = "EMOREASON_CACHE_DIR"


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose default is a value (not None, not a False flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "%(default)" in text or d is None or d is False or d is argparse.SUPPRESS or text == argparse.SUPPRESS:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


def use_formatter(parser: argparse.ArgumentParser) -> None:
    """:class:`HelpFormatter` on ``parser`` and every subcommand parser below it."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_formatter(sub)


def add_output(
    p: argparse.ArgumentParser, help: str, *, required: bool = False, old: str | None = None, **kw: Any
) -> None:
    """``-o/--output``; ``old`` (e.g. ``--out``) is kept as a hidden, deprecated spelling."""
    p.add_argument("-o", "--output", type=Path, required=required and old is None, help=help, **kw)
    if old:
        p.add_argument(old, dest="output", type=Path, help=argparse.SUPPRESS)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: Path, inputs: tuple[Path, ...] = ()) -> Path:
    """Fail now, in one line, when ``path`` cannot be written: a folder, under a file, an unwritable folder, or one of
    the ``inputs``. Creates missing parent folders."""
    for src in inputs:
        if _same_file(path, src):
            raise ConfigError("the output is the input file (it would be overwritten); give another -o", path)
    if path.is_dir():
        raise ConfigError("the output is a folder; give a file name", path)
    writable_folder(path.parent if str(path.parent) else Path("."), path)
    return path


def writable_folder(folder: Path, name: Path | None = None) -> Path:
    """Make ``folder`` (and parents) and check a file can be created in it; ``name`` is the path the error names."""
    who = name if name is not None else folder
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"cannot write here: {folder} is a file, not a folder", who)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".emoreason-write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write to the folder {folder}: {e.strerror or e}", who) from None
    return folder


def write_error(e: OSError, path: Path) -> ConfigError:
    return ConfigError(f"cannot write the output: {e.strerror or e}", path)


def add_fps(p: argparse.ArgumentParser, default: float = 10.0) -> None:
    p.add_argument("--fps", type=float, default=default, help="frames analysed per second; 0 = every frame")


def fps_value(fps: float) -> float | None:
    """``--fps`` as perception takes it: None (every frame) for 0; a negative value is an error."""
    if fps < 0:
        raise ConfigError(f"--fps must be >= 0, got {fps}")
    return fps or None


def default_cache_dir() -> Path:
    """``$EMOREASON_CACHE_DIR``, else ``$XDG_CACHE_HOME/emoreason/evidence``, else ``~/.cache/emoreason/evidence``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emoreason" / "evidence"


def add_cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"evidence cache folder (default: ${CACHE_ENV}, else ~/.cache/emoreason/evidence)")  # fmt: skip
    p.add_argument("--no-cache", action="store_true", help="run perception again instead of using cached evidence")


def cached_perceive(clip: Path, args: argparse.Namespace, progress: bool = False) -> Any:
    """Perceive ``clip`` with the perception options in ``args``, through the on-disk cache unless ``--no-cache``.

    The key is the clip's SHA-256 plus the options that change the result (fps, max side, ASR and its model, the
    suffix) and the EmoReason version, as in the server's in-memory cache; the evidence keeps the clip's current path.
    """
    from emoreason import __version__
    from emoreason.data.cache import FeatureCache
    from emoreason.perception import pipeline
    from emoreason.serving.cache import cache_key

    fps = fps_value(args.fps)

    def compute(path: Path) -> Any:
        return pipeline.perceive(path, fps=fps, max_side=args.max_side or None, asr=not args.no_asr,
                                 asr_model=args.asr_model, progress=progress)  # fmt: skip

    if getattr(args, "no_cache", False):
        return compute(clip)
    options = {"fps": fps, "max_side": args.max_side or None, "asr": not args.no_asr,
               "asr_model": str(Path(args.asr_model).resolve()) if args.asr_model else None,
               "suffix": clip.suffix.lower(), "version": __version__}  # fmt: skip
    root = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    cache = FeatureCache(root, tag=cache_key("options", options), compute=compute)
    try:
        ev = cache.evidence(clip)
    except OSError as e:
        raise ConfigError(
            f"cannot use the evidence cache: {e.strerror or e} (use --cache-dir or --no-cache)", root
        ) from None
    log.info("evidence of %s %s the cache %s", clip, "from" if cache.hits else "stored in", root)
    return ev.model_copy(update={"media": ev.media.model_copy(update={"path": str(clip)})})
