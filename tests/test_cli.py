"""``emoreason perceive`` run as a user runs it (``python -m emoreason`` in a subprocess): files, output, exit codes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from emoreason.evidence import Evidence


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emoreason", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)  # fmt: skip


def top_aus(ev: Evidence, k: int = 5) -> list[str]:
    med = {c: float(np.median([v for v in s if v is not None])) for c, s in ev.aus.intensities.items()}
    return sorted(med, key=med.get, reverse=True)[:k]


def test_perceive_astronaut(astronaut_clip, tmp_path):
    out = tmp_path / "astronaut.json"
    r = run("perceive", astronaut_clip, "-o", out)
    assert r.returncode == 0, r.stderr
    ev = Evidence.load(out)
    assert ev.face.coverage >= 0.95
    assert {"AU6", "AU12"} <= set(top_aus(ev))
    assert "face: main face on 100% of frames" in r.stdout
    assert "AU12" in r.stdout and f"evidence written to {out}" in r.stdout


def test_perceive_landscape(landscape_clip, tmp_path):
    out = tmp_path / "landscape.json"
    r = run("perceive", landscape_clip, "-o", out, "--fps", "0", "--max-side", "0")
    assert r.returncode == 0, r.stderr
    ev = Evidence.load(out)
    assert ev.has_flag("no_face")
    assert ev.face is None and ev.aus is None and ev.au_events == []
    assert ev.media.n_frames == 50  # every frame (--fps 0)
    assert "no_face" in r.stdout


def test_default_output_name(landscape_clip, tmp_path):
    r = run("perceive", landscape_clip, "--no-asr", "--fps", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Evidence.load(tmp_path / "landscape.evidence.json").media.n_frames == 4


@pytest.mark.parametrize("kind", ["truncated", "zero_byte", "text", "missing", "directory"])
def test_bad_input_is_one_line(broken_files, media_dir, tmp_path, kind):
    folder = media_dir / "cli_folder"
    folder.mkdir(exist_ok=True)
    path = {**broken_files, "missing": media_dir / "nothing.mp4", "directory": folder}[kind]
    out = tmp_path / "out.json"
    r = run("perceive", path, "-o", out)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"emoreason: error: {path}: ")
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_bad_option_and_missing_model(astronaut_speech_clip, tmp_path):
    r = run("perceive", astronaut_speech_clip, "--fps", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "emoreason: error: --fps must be >= 0, got -1.0"
    r = run("perceive", astronaut_speech_clip, "-o", tmp_path / "x.json", "--asr-model", tmp_path / "nope")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == f"emoreason: error: {tmp_path / 'nope'}: speech model folder not " \
        "found (expected a CTranslate2 Whisper folder)"  # fmt: skip


def test_duration_limit_option(astronaut_clip):
    r = run("perceive", astronaut_clip, "--max-duration", "1")
    assert r.returncode != 0 and "--max-duration" in r.stderr and "Traceback" not in r.stderr
