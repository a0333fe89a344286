"""Photos as a first-class input: an image file is a still (``media.still_image``), not a 0.04 s clip; no invented AU
events or times; every face counted; the writer speaks without time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoreason import media
from emoreason.errors import MediaError
from emoreason.parsing import find_times
from emoreason.perception.pipeline import perceive
from emoreason.reasoning.engine import analyze
from emoreason.reasoning.faithfulness import check_analysis
from tests.media_factory import astronaut, landscape


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("photos")
    im = Image.fromarray(astronaut())
    out = {}
    for ext in ("jpg", "png", "bmp", "webp", "gif"):
        out[ext] = d / f"astronaut.{ext}"
        im.save(out[ext])
    out["landscape"] = d / "landscape.png"
    Image.fromarray(landscape()).save(out["landscape"])
    out["anim"] = d / "anim.gif"
    im.save(out["anim"], save_all=True, append_images=[Image.fromarray(landscape()).resize(im.size)], duration=200)
    face = astronaut()[20:260, 130:350]  # the astronaut's head, 240x220
    out["five"] = d / "five.png"
    Image.fromarray(np.concatenate([face] * 5, axis=1)).save(out["five"])
    return out


@pytest.mark.parametrize("ext", ["jpg", "png", "bmp", "webp", "gif"])
def test_an_image_file_is_a_still(photos, ext):
    info = media.probe(photos[ext])
    assert info.still_image and info.duration_s == 0.0 and info.native_fps is None
    assert [t for t, _ in media.iter_frames(photos[ext], fps=10.0)] == [0.0]


def test_an_animated_gif_is_a_clip(photos):
    info = media.probe(photos["anim"])
    assert not info.still_image and info.duration_s > 0


def test_photo_evidence_has_no_time_and_no_short_clip_flag(photos):
    ev = perceive(photos["jpg"], asr=False)
    assert ev.media.still_image and ev.media.duration_s == 0.0 and ev.media.n_frames == 1
    assert "short_clip" not in {f.code for f in ev.flags}
    assert ev.au_events == []  # one frame: no onset, apex or offset to report
    top = sorted(ev.aus.intensities, key=lambda au: -(ev.aus.intensities[au][0] or 0))[:4]
    assert {"AU6", "AU12"} <= set(top), top  # the still smiling face keeps its smile
    a = analyze(ev)
    assert a.segments == [] and not find_times(a.think) and not find_times(a.caption)
    assert "relaxes back to neutral" not in a.caption and "stays neutral" not in a.caption
    assert a.caption.startswith("The photo shows")
    r = check_analysis(a, ev)
    assert r.ok and r.score == 1.0, (r, a.think, a.caption)


def test_photo_without_a_face_invents_no_aus(photos):
    ev = perceive(photos["landscape"], asr=False)
    assert ev.media.still_image and ev.aus is None and ev.au_events == []
    a = analyze(ev)
    assert a.aus == [] and "No face was found in the photo" in a.think
    assert check_analysis(a, ev).ok


def test_every_face_in_a_group_photo_is_counted(photos):
    ev = perceive(photos["five"], asr=False)
    assert ev.face is not None and ev.face.max_faces == 5
    x0, _, x1, _ = ev.face.boxes[0]
    assert 2 * 220 <= (x0 + x1) / 2 <= 3 * 220  # the main face is chosen as in clips: here the most central copy
    multi = [f.message for f in ev.flags if f.code == "multiple_faces"]
    assert multi and multi[0].startswith("up to 5 faces")


def test_a_broken_image_is_a_one_line_error(tmp_path):
    bad = tmp_path / "cut.png"
    good = tmp_path / "ok.png"
    Image.fromarray(astronaut()).save(good)
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(MediaError) as e:
        perceive(bad, asr=False)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
