"""The ``emoreason`` command: subcommands are thin shells over library functions.

Each area registers its subcommands in its own module (``add_parser(subparsers)``); this module only parses, sets up
logging and turns an :class:`~emoreason.errors.EmoReasonError` into one line on stderr and a non-zero exit code.
The shared conventions (``-o/--output``, ``--model SPEC``, ``--fps``, defaults in ``--help``) live in
:mod:`emoreason.cliopts` and :mod:`emoreason.modelspec`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from emoreason import __version__
from emoreason.cliopts import use_formatter
from emoreason.errors import EmoReasonError

# Modules that define ``add_parser(subparsers)``; each adds one or more subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "emoreason.perception.commands",
    "emoreason.evaluation.commands",
    "emoreason.training.commands",
    "emoreason.reasoning.commands",
    "emoreason.serving.commands",
    "emoreason.models.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoreason", description="Explainable emotion reasoning over video clips.")
    parser.add_argument("--version", action="version", version=f"emoreason {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    use_formatter(parser)  # every subcommand's --help shows the defaults
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except EmoReasonError as e:
        if args.debug:
            raise
        print(f"emoreason: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("emoreason: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
