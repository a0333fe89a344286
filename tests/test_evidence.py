"""The Evidence schema refuses what no consumer can use: unknown AUs, NaN/Infinity, misaligned series, bad rates and a
newer major schema version, each as a one-line DataError naming the file; unknown fields load with a warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from emoreason.errors import DataError
from emoreason.evidence import SCHEMA_VERSION, Evidence, ExpressionCue
from tests.test_reasoning import HAPPY, make_evidence

FIXTURES = Path(__file__).parent / "fixtures"


def _write(tmp_path: Path, edit, words: str | None = "what wonderful news") -> Path:
    """A valid Evidence JSON (a happy clip with speech and an expression cue), changed by ``edit(data)``."""
    ev = make_evidence(HAPPY, words=words, arousal="even")
    times = ev.face.times
    ev.expression = ExpressionCue(model="fer", labels=["happy", "sad"], times=times, probs=[[0.8, 0.2]] * len(times))
    data = json.loads(ev.model_dump_json())
    edit(data)
    path = tmp_path / "clip.evidence.json"
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity as bare tokens, as a careless writer would
    return path


def _refused(path: Path, match: str) -> str:
    with pytest.raises(DataError, match=match) as e:
        Evidence.load(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    return msg


def test_a_valid_file_loads(tmp_path):
    ev = Evidence.load(_write(tmp_path, lambda d: None))
    assert ev.au_events[0].au == "AU6"


@pytest.mark.parametrize("fixture", sorted(FIXTURES.rglob("*.evidence.json")), ids=lambda p: p.name)
def test_every_fixture_loads(fixture):
    Evidence.load(fixture)


@pytest.mark.parametrize("bad", ["<script>alert(1)</script>", "AU99", "smile"])
def test_unknown_au_in_an_event_is_refused(tmp_path, bad):
    def edit(d):
        d["au_events"][0]["au"] = bad

    msg = _refused(_write(tmp_path, edit), "Action Unit")
    assert "au_events.0.au" in msg


def test_unknown_au_in_the_series_is_refused(tmp_path):
    def edit(d):
        d["aus"]["intensities"]["<img src=x>"] = d["aus"]["intensities"]["AU12"]

    _refused(_write(tmp_path, edit), "Action Unit")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("media", "duration_s"), float("nan")),
        (("media", "duration_s"), float("inf")),
        (("media", "sample_fps"), float("nan")),
        (("face", "coverage"), float("nan")),
        (("au_events", 0, "peak"), float("inf")),
        (("aus", "times", 3), float("nan")),
        (("prosody", "f0_std_hz"), float("-inf")),
        (("transcript", "words", 0, "start"), float("nan")),
    ],
)
def test_nan_and_infinity_are_refused(tmp_path, where, value):
    def edit(d):
        node = d
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value

    _refused(_write(tmp_path, edit), "finite|NaN|nan|inf")


def test_media_duration_must_not_be_negative(tmp_path):
    _refused(_write(tmp_path, lambda d: d["media"].update(duration_s=-1.0)), "duration_s")


@pytest.mark.parametrize("field", ["audio_sample_rate", "sample_fps", "native_fps"])
@pytest.mark.parametrize("value", [0, -16000])
def test_rates_must_be_positive(tmp_path, field, value):
    _refused(_write(tmp_path, lambda d: d["media"].update({field: value})), field)


def test_an_au_series_two_entries_long_among_longer_ones_is_refused(tmp_path):
    def edit(d):
        d["aus"]["intensities"]["AU12"] = d["aus"]["intensities"]["AU12"][:2]

    _refused(_write(tmp_path, edit), "AU12.*2 values.*30 times")


@pytest.mark.parametrize("field", ["present", "boxes", "scores", "poses"])
def test_face_track_lists_must_match_times(tmp_path, field):
    _refused(_write(tmp_path, lambda d: d["face"].update({field: d["face"][field][:-1]})), field)


def test_expression_probs_must_match_times_and_labels(tmp_path):
    _refused(_write(tmp_path, lambda d: d["expression"].update(probs=d["expression"]["probs"][:5])), "probs")

    def short_row(d):
        d["expression"]["probs"][2] = [1.0]

    _refused(_write(tmp_path, short_row), "labels")


def test_prosody_lists_must_match_times(tmp_path):
    _refused(_write(tmp_path, lambda d: d["prosody"].update(energy_db=d["prosody"]["energy_db"][:3])), "energy_db")


def test_event_times_must_be_ordered(tmp_path):
    def edit(d):
        d["au_events"][0].update(onset=2.0, apex=1.0)

    _refused(_write(tmp_path, edit), "onset")


def test_a_newer_major_schema_version_is_refused(tmp_path):
    major = int(SCHEMA_VERSION.split(".")[0])
    msg = _refused(_write(tmp_path, lambda d: d.update(schema_version=f"{major + 1}.0")), "schema version")
    assert "newer" in msg
    _refused(_write(tmp_path, lambda d: d.update(schema_version="one")), "schema version")


def test_a_newer_minor_schema_version_loads(tmp_path):
    major = int(SCHEMA_VERSION.split(".")[0])
    assert Evidence.load(_write(tmp_path, lambda d: d.update(schema_version=f"{major}.99"))).media.duration_s == 3.0


def test_unknown_fields_load_with_a_warning(tmp_path, caplog):
    def edit(d):
        d["mood"] = "sunny"
        d["media"]["bitrate"] = 1

    path = _write(tmp_path, edit)
    with caplog.at_level(logging.WARNING, logger="emoreason.evidence"):
        ev = Evidence.load(path)
    assert ev.media.duration_s == 3.0
    text = caplog.text
    assert "mood" in text and "media.bitrate" in text and str(path) in text
