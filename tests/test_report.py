"""Reports: schema round trip, Markdown and self-contained HTML, the report command on one clip and on a folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from emoreason.errors import ConfigError
from emoreason.report import Report, build_report, is_valid_report, render_html, render_markdown, write_report
from tests.test_reasoning import HAPPY, make_evidence


def test_report_json_round_trip(tmp_path):
    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    r = build_report(ev)
    assert r.analysis.emotion == "happiness" and r.faithfulness.score == 1.0
    assert r.evidence.face_found and r.evidence.transcript == "what wonderful news"
    assert r.versions[0].name == "emoreason"
    path = write_report(r, ev, tmp_path / "r.json")
    back = Report.load(path)
    assert back == r
    assert json.loads(path.read_text())["analysis"]["caption"] == r.analysis.caption
    assert is_valid_report(path)


def test_markdown_sections():
    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    md = render_markdown(build_report(ev))
    for heading in ("# Emotion report", "## Probabilities", "## Modalities", "## Smile", "## Reasoning",
                    "## Over time", "## Transcript"):  # fmt: skip
        assert heading in md
    assert "Key observations:" in md and "genuine" in md


def test_no_face_report_says_so():
    ev = make_evidence(face=False, words="I hate this, it is unacceptable", arousal="animated")
    r = build_report(ev)
    assert not r.evidence.face_found
    assert "No face was found" in render_markdown(r)
    assert "No face was found" in render_html(r, ev)


def test_html_is_self_contained(tmp_path):
    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    html = render_html(build_report(ev), ev)
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 2  # heatmap + probabilities (no clip on disk)
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)
    assert "Key observations:" in html and "wonderful" in html
    path = write_report(build_report(ev), ev, tmp_path / "r.html")
    assert is_valid_report(path)
    path.write_text(html[:200])
    assert not is_valid_report(path)


def test_unknown_format_is_a_clear_error(tmp_path):
    ev = make_evidence(HAPPY)
    with pytest.raises(ConfigError, match="unknown report format"):
        write_report(build_report(ev), ev, tmp_path / "r.pdf")


def test_html_of_a_real_clip_has_key_frames(tmp_path, astronaut_clip):
    from emoreason.perception.pipeline import perceive

    ev = perceive(astronaut_clip)
    html = render_html(build_report(ev), ev)
    frames = re.search(r"<h2>Key frames</h2><div class='frames'>(.*?)</div>", html)
    assert frames and 2 <= frames.group(1).count("<img") <= 4


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "emoreason", "-q", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)  # fmt: skip


def test_report_command_on_a_clip(tmp_path, astronaut_clip):
    out = tmp_path / "a.md"
    r = _cli("report", astronaut_clip, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "happiness" in r.stdout and out.read_text().startswith("# Emotion report")
    bad = _cli("report", astronaut_clip, "-o", tmp_path / "a.txt")
    assert bad.returncode == 2 and "must end in one of" in bad.stderr


def test_batch_skips_bad_files_and_resumes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_evidence(HAPPY).save(src / "one.evidence.json")
    make_evidence(face=False, words="I hate it", arousal="animated").save(src / "two.evidence.json")
    (src / "broken.mp4").write_text("not a video")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    r = _cli("report", src, "-o", out, "--format", "json")
    assert r.returncode == 1
    assert "2 written, 0 already done, 1 failed" in r.stdout and "broken.mp4" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["one.json", "two.json"]
    (out / "two.json").write_text("{")  # a half-written report is redone
    mtime = (out / "one.json").stat().st_mtime_ns
    r = _cli("report", src, "-o", out, "--format", "json")
    assert "1 written, 1 already done, 1 failed" in r.stdout
    assert (out / "one.json").stat().st_mtime_ns == mtime and is_valid_report(out / "two.json")


def test_uncertain_headline_names_the_best_candidate():
    from emoreason.report import headline

    ev = make_evidence([("AU17", 0.5, 1.0, 2.5, 4.5), ("AU43", 0.5, 1.0, 2.5, 4.5), ("AU14", 0.4, 1.0, 2.5, 2.0)])
    r = build_report(ev)
    assert r.analysis.emotion == "uncertain"
    assert headline(r.analysis).startswith("uncertain (best: ")
    assert "**Emotion: uncertain (best: " in render_markdown(r)
