"""Reports: schema round trip, strict JSON, Markdown and self-contained HTML with every untrusted value escaped, HTML
rendered from the report JSON alone, photos without time axes, the report command on one clip and on a folder."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from emoreason.errors import ConfigError, DataError
from emoreason.evidence import AUSeries, Evidence, FaceTrack, HeadPose, KeyFrame, MediaInfo, ModelVersion, QualityFlag
from emoreason.knowledge.facs import PERCEIVED_AUS
from emoreason.perception.keyframes import THUMB_SIDE
from emoreason.reasoning.engine import MicroExpression, analyze
from emoreason.report import Report, build_report, is_valid_report, render_html, render_markdown, write_report
from tests import media_factory as mf
from tests.test_reasoning import HAPPY, make_evidence

EVIL = "<script>alert(1)</script>"
TIMING = re.compile(r"\d+\.\d+\s*(s\b|–)")  # "0.02 s", "0.02–0.04 s"


def _strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def _visible(html: str) -> str:
    """The page's visible text: no tags, no attribute values, no embedded report JSON."""
    html = re.sub(r"<details><summary>Report JSON</summary>.*?</details>", "", html, flags=re.S)
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return re.sub(r"<[^>]*>", " ", html)


def test_report_json_round_trip(tmp_path):
    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    r = build_report(ev)
    assert r.analysis.emotion == "happiness" and r.faithfulness.score == 1.0
    assert r.evidence.face_found and r.evidence.transcript == "what wonderful news"
    assert r.versions[0].name == "emoreason"
    path = write_report(r, tmp_path / "r.json")
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
    assert "No face was found" in render_html(r)


def test_html_is_self_contained(tmp_path):
    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    html = render_html(build_report(ev))
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 2  # heatmap + probabilities (no clip on disk)
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)
    assert "Key observations:" in html and "wonderful" in html
    path = write_report(build_report(ev), tmp_path / "r.html")
    assert is_valid_report(path)
    path.write_text(html[:200])
    assert not is_valid_report(path)


def test_unknown_format_is_a_clear_error(tmp_path):
    ev = make_evidence(HAPPY)
    with pytest.raises(ConfigError, match="unknown report format"):
        write_report(build_report(ev), tmp_path / "r.pdf")


def _key_frame_imgs(html: str) -> int:
    """Key frames are the page's only JPEG images."""
    assert "<h2>Key frames</h2>" in html
    return html.count('src="data:image/jpeg;base64,')


def test_perception_keeps_key_frame_thumbnails(astronaut_clip, monkeypatch):
    from emoreason import media
    from emoreason.perception.pipeline import perceive

    ev = perceive(astronaut_clip, asr=False)
    assert 2 <= len(ev.key_frames) <= 4
    for k in ev.key_frames:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(k.jpeg), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (k.height, k.width) and max(k.width, k.height) <= THUMB_SIDE
        assert 0 <= k.time <= ev.media.duration_s
    assert [k.time for k in ev.key_frames] == sorted(k.time for k in ev.key_frames)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the report decoded the clip again")

    monkeypatch.setattr(media, "iter_frames", no_decoding)
    html = render_html(build_report(ev))
    assert _key_frame_imgs(html) == len(ev.key_frames)


def test_html_renders_from_the_report_json_alone(tmp_path, astronaut_clip):
    from emoreason.perception.pipeline import perceive

    clip = shutil.copy(astronaut_clip, tmp_path / "gone.mp4")
    ev = perceive(clip, asr=False)
    report_json = write_report(build_report(ev), tmp_path / "gone.report.json")
    (tmp_path / "gone.mp4").unlink()
    html = render_html(Report.load(report_json))
    assert 2 <= _key_frame_imgs(html) <= 4
    assert "AU intensity heatmap" in html and "<h2>Timeline</h2>" in html
    out = tmp_path / "gone.html"
    r = _cli("report", report_json, "-o", out)
    assert r.returncode == 0, r.stderr
    assert 2 <= _key_frame_imgs(out.read_text()) <= 4
    assert is_valid_report(out)
    md = tmp_path / "gone.md"
    assert _cli("report", report_json, "-o", md).returncode == 0 and md.read_text().startswith("# Emotion report")


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
    assert "2 done, 1 failed, 0 already done" in r.stdout and "broken.mp4" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["one.json", "two.json"]
    (out / "two.json").write_text("{")  # a half-written report is redone
    mtime = (out / "one.json").stat().st_mtime_ns
    r = _cli("report", src, "-o", out, "--format", "json")
    assert "1 done, 1 failed, 1 already done" in r.stdout
    assert (out / "one.json").stat().st_mtime_ns == mtime and is_valid_report(out / "two.json")


def test_uncertain_headline_names_the_best_candidate():
    from emoreason.report import headline

    ev = make_evidence([("AU17", 0.5, 1.0, 2.5, 4.5), ("AU43", 0.5, 1.0, 2.5, 4.5), ("AU14", 0.4, 1.0, 2.5, 2.0)])
    r = build_report(ev)
    assert r.analysis.emotion == "uncertain"
    assert headline(r.analysis).startswith("uncertain (best: ")
    assert "**Emotion: uncertain (best: " in render_markdown(r)


def _evil_report():
    ev = make_evidence(HAPPY, words=f"{EVIL} <img src=x onerror=alert(2)> & done", arousal="even",
                       path=f"/tmp/{EVIL}.mp4")  # fmt: skip
    r = build_report(ev)
    a = r.analysis
    a.micro_expressions = [MicroExpression(au=EVIL, onset=0.5, apex=0.6, offset=0.7, peak=3.0)]
    a.caption, a.think, a.agreement = EVIL, f"{EVIL}\nsecond line", [EVIL]
    a.modality_weights, a.modality_emotions = {EVIL: 1.0}, {EVIL: EVIL}
    a.ambivalence.flag, a.ambivalence.reasons = True, [EVIL]
    a.compound, a.compound_score = EVIL, 0.5
    r.reasoner = EVIL
    r.created_at = EVIL
    r.flags = [QualityFlag(code="no_audio", message=EVIL)]
    r.versions = [ModelVersion(name=EVIL, version=EVIL)]
    r.evidence.au_events[0].au = EVIL  # past the schema, as a buggy producer could
    return r


def test_html_escapes_every_untrusted_value():
    html = render_html(_evil_report())
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_markdown_escapes_every_untrusted_value():
    r = _evil_report()
    md = render_markdown(r)
    assert "<script" not in md.lower() and "<img" not in md
    assert "&lt;script&gt;" in md
    r.evidence.transcript = "![pixel](https://example.com/track.png) | [link](javascript:x)"
    md = render_markdown(r)
    assert "![pixel](" not in md and "[link](" not in md and " | [" not in md


def test_an_evidence_file_with_a_script_as_au_name_is_refused(tmp_path):
    data = json.loads(make_evidence(HAPPY).model_dump_json())
    data["au_events"][0]["au"] = EVIL
    path = tmp_path / "x.evidence.json"
    path.write_text(json.dumps(data))
    r = _cli("report", path, "-o", tmp_path / "x.html")
    assert r.returncode != 0 and not (tmp_path / "x.html").exists()
    assert "Traceback" not in r.stderr and "unknown Action Unit" in r.stderr and str(path) in r.stderr


def test_report_json_is_strict(tmp_path):
    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    path = write_report(build_report(ev), tmp_path / "r.json")
    assert _strict_json(path.read_text())["analysis"]["emotion"] == "happiness"
    a = analyze(ev)
    a.probabilities["anger"] = float("nan")
    with pytest.raises(DataError, match="finite") as e:
        build_report(ev, a)
    assert "\n" not in str(e.value) and "clip.mp4" in str(e.value)
    ev.face.coverage = float("nan")  # past the schema (attribute assignment is not validated)
    with pytest.raises(DataError, match="evidence.face_coverage is not a finite number"):
        build_report(ev, analyze(make_evidence(HAPPY)))


def test_a_report_file_with_nan_is_refused(tmp_path):
    ev = make_evidence(HAPPY)
    data = build_report(ev).model_dump(mode="json")
    data["duration_s"] = float("nan")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="finite"):
        Report.load(path)
    assert not is_valid_report(path)


def _photo_evidence() -> Evidence:
    img = mf.resize(mf.astronaut(), 200, 200)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    inten = {au: [0.3] for au in PERCEIVED_AUS} | {"AU6": [3.1], "AU12": [4.2], "AU25": [2.4]}
    ev = Evidence(media=MediaInfo(path="smile.jpg", duration_s=0.0, has_video=True, has_audio=False, width=512,
                                  height=512, n_frames=1, still_image=True))  # fmt: skip
    ev.face = FaceTrack(times=[0.0], present=[True], boxes=[[150.0, 100.0, 380.0, 360.0]], scores=[0.95],
                        poses=[HeadPose(yaw=1.0, pitch=0.0, roll=0.0)], coverage=1.0, max_faces=1)  # fmt: skip
    ev.aus = AUSeries(times=[0.0], intensities=inten)
    ev.key_frames = [KeyFrame(time=0.0, jpeg=base64.b64encode(jpg.tobytes()).decode(), width=200, height=200)]
    ev.flags = [QualityFlag(code="no_audio", message="the file has no audio stream: face only")]
    return Evidence.model_validate(ev.model_dump())


def test_a_photo_report_has_no_time_axes():
    r = build_report(_photo_evidence())
    assert r.evidence.still_image
    html, md = render_html(r), render_markdown(r)
    assert "Timeline" not in html and "over time" not in html.lower() and "time (s)" not in html
    assert "AU intensity heatmap" not in html and "emotion probabilities over time" not in html.lower()
    assert "Action Unit intensities" in html  # the bar chart
    assert html.count('src="data:image/jpeg;base64,') == 1  # the photo
    assert not TIMING.search(_visible(html)), TIMING.search(_visible(html))
    assert "## Over time" not in md and not TIMING.search(md), TIMING.search(md)
    assert re.search(r"\| AU12 \| [^|]* \| 4\.2 \|", md)
    assert "Photo" in md and "Photo" in html


def test_the_report_names_its_reasoner(tmp_path):
    ev = make_evidence(HAPPY)
    assert build_report(ev).reasoner == "knowledge-engine"
    r = build_report(ev, analyze(ev), reasoner="emoreason-7b via vllm")
    assert _strict_json(write_report(r, tmp_path / "r.json").read_text())["reasoner"] == "emoreason-7b via vllm"
    assert "reasoner emoreason-7b via vllm" in render_markdown(r)
    assert "reasoner emoreason-7b via vllm" in render_html(r)
