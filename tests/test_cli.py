"""``emoreason perceive`` run as a user runs it (``python -m emoreason`` in a subprocess): files, output, exit codes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emoreason.errors import ConfigError
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


# ---- in-process command tests (perception monkeypatched: fast, and independent of the models) ----


def _main(*args) -> int:
    from emoreason.cli import main

    return main(["-q", *map(str, args)])


def _fake_perceive(monkeypatch, calls: list | None = None):
    """Replace perception with a stub that records its calls and returns fixed evidence named after the clip."""
    from tests.test_reasoning import HAPPY, make_evidence

    def perceive(path, **kw):
        if calls is not None:
            calls.append((Path(path), kw))
        return make_evidence(HAPPY, path=str(path))

    monkeypatch.setattr("emoreason.perception.pipeline.perceive", perceive)
    return perceive


def test_batch_lists_any_failing_file_and_goes_on(tmp_path, monkeypatch, capsys):
    import emoreason.report
    from tests.test_reasoning import HAPPY, make_evidence

    real_build = emoreason.report.build_report

    def build_report(ev, *a, **kw):  # a bug in the reasoning on one file must not abort the batch either
        if ev.media.path == "n.mp4":
            raise IndexError("list index out of range")
        return real_build(ev, *a, **kw)

    monkeypatch.setattr(emoreason.report, "build_report", build_report)
    src = tmp_path / "in"
    src.mkdir()
    make_evidence(HAPPY).save(src / "a.evidence.json")
    bad = json.loads(make_evidence(HAPPY).model_dump_json())
    bad["aus"]["intensities"]["AU12"] = bad["aus"]["intensities"]["AU12"][:2]  # one AU series 2 entries long
    (src / "m.evidence.json").write_text(json.dumps(bad))
    make_evidence(HAPPY, path="n.mp4").save(src / "n.evidence.json")
    make_evidence(HAPPY).save(src / "z.evidence.json")
    out = tmp_path / "out"
    assert _main("report", src, "-o", out, "--format", "json") == 1
    stdout = capsys.readouterr().out
    assert "2 done, 2 failed" in stdout
    failed = [line for line in stdout.splitlines() if "failed:" in line]
    assert len(failed) == 2 and "m.evidence.json: " in failed[0] and "AU12" in failed[0]
    assert "n.evidence.json: " in failed[1] and "IndexError: list index out of range" in failed[1]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "z.json"]


def test_folder_mode_takes_every_clip_type_and_keeps_same_stems_apart(tmp_path, monkeypatch, capsys):
    from emoreason.media import MEDIA_SUFFIXES

    calls: list = []
    _fake_perceive(monkeypatch, calls)
    src = tmp_path / "in"
    src.mkdir()
    names = ["x.mov", "x.mp4", "y.ts", "z.gif", "p.jpg"] + [
        f"s{i}{suf}" for i, suf in enumerate(sorted(MEDIA_SUFFIXES))
    ]
    for n in names:
        (src / n).write_bytes(f"{n}: not decoded, perception is stubbed".encode())
    out = tmp_path / "out"
    assert _main("report", src, "-o", out, "--format", "json") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.json" for n in names)
    assert sorted(p.name for p, _ in calls) == sorted(names)
    assert f"{len(names)} done, 0 failed" in capsys.readouterr().out


def test_output_path_problems_are_one_line_and_checked_before_perception(
    tmp_path, monkeypatch, capsys, astronaut_clip
):
    def perceive(*a, **kw):
        raise AssertionError("perception must not run when the output cannot be written")

    monkeypatch.setattr("emoreason.perception.pipeline.perceive", perceive)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out in (tmp_path, a_file / "x.json"):
        for cmd in (["perceive", astronaut_clip, "-o", out], ["report", astronaut_clip, "-o", out]):
            if cmd[0] == "report" and out == tmp_path:
                cmd[-1] = tmp_path / "sub.json"
                (tmp_path / "sub.json").mkdir()
            assert _main(*cmd) != 0
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("emoreason: error: ") and str(cmd[-1]) in err[0], err


def test_report_refuses_to_overwrite_its_input(tmp_path, monkeypatch, capsys):
    from tests.test_reasoning import HAPPY, make_evidence

    src = make_evidence(HAPPY).save(tmp_path / "x.evidence.json")
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    link = tmp_path / "link.json"
    link.symlink_to(src)
    for out in (src, Path("x.evidence.json"), tmp_path / "." / "x.evidence.json", link):
        assert _main("report", src, "-o", out) == 2
        assert "input" in capsys.readouterr().err
        assert src.read_bytes() == before


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, parser) of every command, nested ones included (``train build``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def test_help_shows_every_default():
    from emoreason.cli import build_parser

    checked = 0
    for name, sub in _subparsers(build_parser()):
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or action.default in (None, False, argparse.SUPPRESS):
                continue
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            checked += 1
            assert f"(default: {action.default})" in text, f"{name} {action.option_strings[-1]}"
    assert checked > 30


def test_output_flag_is_o_everywhere():
    from emoreason.cli import build_parser

    writers = {"perceive", "report", "eval", "train build", "model build"}
    for name, sub in _subparsers(build_parser()):
        flags = {s for a in sub._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
        positional = {a.dest for a in sub._actions if not a.option_strings and a.help != argparse.SUPPRESS}
        assert "--out" not in flags and not positional & {"out", "output"}, name
        if name in writers:
            assert {"-o", "--output"} <= flags, name


@pytest.mark.parametrize("command", ["ask", "report", "eval", "serve"])
def test_one_model_spec_and_one_error_for_an_unknown_kind(command, tmp_path, capsys, monkeypatch):
    from emoreason.modelspec import parse_model_spec
    from tests.test_reasoning import HAPPY, make_evidence

    ev = make_evidence(HAPPY).save(tmp_path / "c.evidence.json")
    monkeypatch.setattr("emoreason.serving.server.serve", lambda s: pytest.fail("must not serve"), raising=False)
    argv = {"ask": ["ask", ev, "hi"], "report": ["report", ev, "-o", tmp_path / "r.json"],
            "eval": ["eval", "--tasks", "dfew", "--data-root", tmp_path], "serve": ["serve"]}[command]  # fmt: skip
    assert _main(*argv, "--model", "magic:x") == 2
    assert capsys.readouterr().err.strip() == (
        "emoreason: error: unknown --model 'magic:x'; use engine, transformers:PATH, openai:URL or vllm:PATH"
    )
    assert parse_model_spec("checkpoint:/m") == parse_model_spec("transformers:/m")
    assert str(parse_model_spec("openai:http://h:1/v1")) == "openai:http://h:1/v1"
    with pytest.raises(ConfigError, match="needs a path"):
        parse_model_spec("vllm:")
    with pytest.raises(
        ConfigError, match="eval cannot run --model vllm:PATH; use engine, transformers:PATH or openai"
    ):
        parse_model_spec("vllm:/m", ("engine", "transformers", "openai"), "eval")


def test_api_key_options_wherever_a_key_is_taken(monkeypatch):
    from emoreason.cli import build_parser
    from emoreason.modelspec import api_key

    for name, sub in _subparsers(build_parser()):
        flags = {s for a in sub._actions for s in a.option_strings}
        if "--api-key" in flags or "--api-key-env" in flags:
            assert {"--api-key", "--api-key-env"} <= flags, name
        if name in ("ask", "eval", "serve"):
            assert "--api-key-env" in flags, name
    p = build_parser()
    monkeypatch.setenv("MY_KEY", "sekrit")
    assert api_key(p.parse_args(["ask", "c.json", "--api-key-env", "MY_KEY"])) == "sekrit"
    assert api_key(p.parse_args(["ask", "c.json", "--api-key", "k", "--api-key-env", "MY_KEY"])) == "k"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ConfigError, match="MY_KEY"):
        api_key(p.parse_args(["ask", "c.json", "--api-key-env", "MY_KEY"]))


def test_fps_zero_means_every_frame_in_report_and_ask(tmp_path, monkeypatch):
    calls: list = []
    _fake_perceive(monkeypatch, calls)
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"stub")
    assert _main("report", clip, "-o", tmp_path / "r.json", "--fps", "0", "--no-cache") == 0
    assert _main("ask", clip, "Which emotion?", "--fps", "0", "--no-cache") == 0
    assert [kw["fps"] for _, kw in calls] == [None, None]
    assert _main("report", clip, "-o", tmp_path / "r.json", "--fps", "-1") == 2


def test_ask_caches_evidence_on_disk(tmp_path, monkeypatch, capsys):
    calls: list = []
    _fake_perceive(monkeypatch, calls)
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"some clip bytes")
    cache = tmp_path / "cache"
    assert _main("ask", clip, "Which emotion?", "--cache-dir", cache) == 0
    assert _main("ask", clip, "Why?", "--cache-dir", cache) == 0
    assert len(calls) == 1  # the second question reads the cached evidence
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(clip.read_bytes())
    assert _main("ask", copy, "Which emotion?", "--cache-dir", cache) == 0
    assert len(calls) == 1  # keyed by content, not by name
    assert _main("ask", clip, "Which emotion?", "--cache-dir", cache, "--fps", "5") == 0
    assert len(calls) == 2  # other perception options: another entry
    assert _main("ask", clip, "Which emotion?", "--cache-dir", cache, "--no-cache") == 0
    assert len(calls) == 3
    monkeypatch.setenv("EMOREASON_CACHE_DIR", str(tmp_path / "env-cache"))
    assert _main("ask", clip, "Which emotion?") == 0
    assert len(calls) == 4 and any((tmp_path / "env-cache").rglob("*.json"))
    assert "happiness" in capsys.readouterr().out


def test_old_spellings_still_parse(tmp_path):
    from emoreason.cli import build_parser
    from emoreason.serving.commands import settings_from_args

    p = build_parser()
    assert p.parse_args(["ask", "c.json", "--backend", "openai:http://h/v1"]).model == "openai:http://h/v1"
    assert p.parse_args(["eval", "--tasks", "t", "--data-root", "d", "--out", "r"]).output == Path("r")
    assert p.parse_args(["eval", "--tasks", "t", "--data-root", "d", "--endpoint-model", "m"]).api_model == "m"
    assert p.parse_args(["model", "build", "--base", "b", "--out", "o"]).output == Path("o")
    assert p.parse_args(["train", "build", "video-csv", "l.csv", "s.jsonl"]).legacy_out == Path("s.jsonl")
    s = settings_from_args(p.parse_args(["serve", "--engine", "transformers", "--model", str(tmp_path)]))
    assert (s.engine, s.model) == ("transformers", str(tmp_path))
    s = settings_from_args(p.parse_args(["serve", "--model", f"checkpoint:{tmp_path}"]))
    assert (s.engine, s.model) == ("transformers", str(tmp_path))
    with pytest.raises(
        ConfigError, match="serve cannot run --model openai:URL; use engine, transformers:PATH or vllm"
    ):
        settings_from_args(p.parse_args(["serve", "--model", "openai:http://h/v1"]))


def test_fps_zero_means_every_frame_in_serve_too():
    from emoreason.cli import build_parser
    from emoreason.serving.commands import settings_from_args

    p = build_parser()
    assert settings_from_args(p.parse_args(["serve", "--fps", "0"])).fps == 0
    with pytest.raises(ConfigError, match="fps must be >= 0"):
        settings_from_args(p.parse_args(["serve", "--fps", "-1"]))
