"""Time perception against reasoning + report rendering on ONE clip in ONE run, and print the ratio.

    python bench/bench_report.py          # generates the 10 s 1280x720 astronaut clip of bench_perception.py
    python bench/bench_report.py CLIP [--repeat 2]

Stages: **perceive** (:func:`emoreason.perception.pipeline.perceive` with the CLI defaults: 10 fps, 720 px, ASR);
**analyze** (:func:`emoreason.reasoning.engine.analyze`); **report** for each format (build_report + write_report, the
HTML with its plots and the key frames perception kept). Goal of issue 5: the HTML report in <= 2x the perception time.
Best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", nargs="?", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from emoreason.perception.pipeline import perceive
    from emoreason.reasoning.engine import analyze
    from emoreason.report import build_report, write_report

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip
        if clip is None:
            from bench_perception import make_clip

            clip = make_clip(Path(tmp) / "bench_10s_720p.mp4")
        t_perc, ev = best(lambda: perceive(clip), args.repeat)
        t_an, _ = best(lambda: analyze(ev), args.repeat)
        print(f"clip {clip}: {ev.media.duration_s:.1f} s, {ev.media.width}x{ev.media.height}, "
              f"{len(ev.au_events)} AU events, transcript: {ev.transcript.text[:60] if ev.transcript else None!r}")  # fmt: skip
        print(f"perceive   {t_perc:7.3f} s")
        print(f"analyze    {t_an:7.3f} s")
        for fmt in ("json", "md", "html"):
            out = Path(tmp) / f"r.{fmt}"
            t_rep, _ = best(lambda out=out: write_report(build_report(ev), out), args.repeat)
            print(
                f"report.{fmt:<4} {t_rep:7.3f} s  ratio to perception {t_rep / t_perc:.3f}  ({out.stat().st_size} B)"
            )


if __name__ == "__main__":
    main()
