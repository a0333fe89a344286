"""Run evaluation tasks: ``python eval/run.py --tasks dfew --model engine --data-root DATA -o results``.

The same as ``emoreason eval``; kept as a script for people who run ``eval/`` directly.
"""

from __future__ import annotations

import sys

from emoreason.cli import main


def run(argv: list[str] | None = None) -> int:
    return main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(run())
