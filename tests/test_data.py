"""Tests of the dataset format loaders, the per-clip feature cache and the instruction dataset builder."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

from emoreason.data import (
    FeatureCache,
    LabeledClip,
    build_rows,
    load_au_clips,
    load_au_occurrence,
    load_caption_json,
    load_clips,
    load_compound_labels,
    load_prompt,
    load_rows,
    load_video_label_csv,
    prompt_messages,
    write_rows,
)
from emoreason.data.formats import compound_majority, load_disfa_labels
from emoreason.errors import ConfigError, DataError
from emoreason.evidence import Evidence
from emoreason.parsing import format_answer, parse_output
from emoreason.reasoning.faithfulness import FaithfulnessResult
from tests.fixtures.train.synth import evidence_text, make_evidence

FIX = Path(__file__).parent / "fixtures" / "train"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# --- DFEW / MAFW ---------------------------------------------------------------------------------------------------


def test_video_label_csv_dfew_indices_and_names():
    clips = load_video_label_csv(FIX / "dfew_labels.csv", video_root="/data/dfew")
    assert [(c.id, c.video, c.emotion) for c in clips] == [
        ("clip_0001", "/data/dfew/clip_0001.mp4", "happiness"),
        ("clip_0002", "/data/dfew/clip_0002.mp4", "anger"),
        ("clip_0003", "/data/dfew/clip_0003", "happiness"),
    ]
    assert clips[0].extra == {"split": "train"} and clips[0].source.endswith("dfew_labels.csv:2")


def test_video_label_csv_mafw_tabs():
    clips = load_video_label_csv(FIX / "mafw_labels.tsv")
    assert [c.emotion for c in clips] == ["anger", "sadness"]
    assert clips[0].video == str(FIX / "00025.mp4")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("video,label\na.mp4,1\nb.mp4,9\n", "line 3: class index 9 is not a DFEW class"),
        ("video,label\na.mp4,0\n", "line 2: class index 0 is not a DFEW class"),
        ("video,label\na.mp4,-1\n", "line 2: class index -1 is not a DFEW class"),
        ("video,label\na.mp4,\u00b2\n", "line 2: unknown emotion label '\u00b2'"),
        ("video,label\na.mp4,1.0\n", "line 2: unknown emotion label '1.0'"),
        ("video,label\na.mp4,zorblax\n", "line 2: unknown emotion label 'zorblax'"),
        ("video,label\na.mp4,1,extra\n", "line 2: 3 fields, the header has 2"),
        ("name,label\na.mp4,1\n", "no video column"),
        ("video,label\n,1\n", "line 2: empty video name"),
    ],
)
def test_video_label_csv_errors(tmp_path, text, message):
    path = write(tmp_path, "labels.csv", text)
    with pytest.raises(DataError, match=message) as e:
        load_video_label_csv(path)
    assert e.value.path == str(path)


# --- BP4D / DISFA --------------------------------------------------------------------------------------------------


def test_bp4d_occurrence_with_uncoded_frames():
    occ = load_au_occurrence(FIX / "bp4d_F001_T1.csv")
    assert occ.frame_numbers == [1, 2, 3, 4]
    assert occ.frames[1]["AU25"] is None  # 9 = not coded
    assert occ.clip_aus(min_fraction=0.5) == ["AU6", "AU12"]
    assert occ.clip_aus(min_fraction=0.25) == ["AU4", "AU6", "AU12"]


def test_disfa_intensity_threshold():
    occ = load_au_occurrence(FIX / "disfa_SN001.csv", intensity=True)
    assert [f["AU4"] for f in occ.frames] == [1, 1, 1]
    assert [f["AU25"] for f in occ.frames] == [0, 0, 1]  # 1 (trace) is below the occurrence threshold of 2
    assert occ.clip_aus(min_fraction=0.3) == ["AU4", "AU25"]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("frame,1,2\n1,0,2\n", {}, "line 2: AU2 occurrence must be 0, 1 or 9"),
        ("frame,1,3\n1,0,0\n", {}, "line 1: unknown Action Unit AU3"),
        ("frame,1\n1,0,1\n", {}, "line 2: 3 fields"),
        ("frame,1\n1,x\n", {}, "line 2: not a number"),
        ("frame,1\n1,7\n", {"intensity": True}, "line 2: AU1 intensity 7 outside 0-5"),
        ("time,1\n1,0\n", {}, "first column must be the frame number"),
        ("frame,1\n", {}, "no frames"),
    ],
)
def test_au_occurrence_errors(tmp_path, text, kwargs, message):
    path = write(tmp_path, "au.csv", text)
    with pytest.raises(DataError, match=message) as e:
        load_au_occurrence(path, **kwargs)
    assert e.value.path == str(path)


def test_au_occurrence_selected_columns_bp4d_layout(tmp_path):
    # BP4D's own header: the frame column is "0" and AUs outside our table (AU3) are coded too.
    path = write(tmp_path, "F001_T1.csv", "0,1,2,3,12\n1,1,0,1,9\n2,1,0,x,1\n3,0,0,1,1\n")
    occ = load_au_occurrence(path, aus=["AU1", "AU12"])
    assert occ.frames == [{"AU1": 1, "AU12": None}, {"AU1": 1, "AU12": 1}, {"AU1": 0, "AU12": 1}]
    assert occ.clip_aus(min_fraction=0.6) == ["AU1", "AU12"]
    with pytest.raises(DataError, match="line 1: the header lacks AU columns AU4, AU6"):
        load_au_occurrence(path, aus=["AU1", "AU6", "AU4"])
    with pytest.raises(DataError, match="line 1: unknown Action Unit AU3"):
        load_au_occurrence(path)
    clips = load_au_clips(tmp_path, aus=["AU1", "AU12"], min_fraction=0.6)
    assert [(c.id, c.aus) for c in clips] == [("F001_T1", ["AU1", "AU12"])]


def test_disfa_labels_per_au_files(tmp_path):
    write(tmp_path, "SN001/SN001_au4.txt", "1,3\n2,2\n3,0\n")
    write(tmp_path, "SN001/SN001_au25.txt", "1,1\n2,0\n")
    occ = load_disfa_labels(tmp_path / "SN001", ["AU4", "AU25"])
    assert occ.frame_numbers == [1, 2, 3]
    assert occ.frames == [{"AU4": 1, "AU25": 0}, {"AU4": 1, "AU25": 0}, {"AU4": 0, "AU25": None}]
    assert occ.clip_aus(min_fraction=0.5) == ["AU4"]
    assert load_disfa_labels(tmp_path / "SN001", ["AU25"], threshold=1).clip_aus(0.5) == ["AU25"]
    write(tmp_path, "SN002/SN002_au4.txt", "1,3\n2\n")
    with pytest.raises(DataError, match="line 2: expected 'frame,intensity'") as e:
        load_disfa_labels(tmp_path / "SN002", ["AU4"])
    assert e.value.path.endswith("SN002_au4.txt")
    write(tmp_path, "SN003/SN003_au4.txt", "1,6\n")
    with pytest.raises(DataError, match="line 1: AU4 intensity 6 outside 0-5"):
        load_disfa_labels(tmp_path / "SN003", ["AU4"])
    with pytest.raises(DataError, match="file not found"):
        load_disfa_labels(tmp_path / "SN003", ["AU1"])


# --- C-EXPR-DB -----------------------------------------------------------------------------------------------------


def test_compound_labels_majority_per_video():
    clips = load_compound_labels(FIX / "cexpr", video_root="/data/cexpr")
    assert [(c.id, c.video, c.compound) for c in clips] == [
        ("vid_01", "/data/cexpr/vid_01.mp4", "happily surprised"),
        ("vid_02", "/data/cexpr/vid_02.mp4", "sadly angry"),
    ]
    assert clips[0].extra["labelled_frames"] == 4


def test_compound_labels_errors(tmp_path):
    header = "Fearfully_Surprised,Happily_Surprised\n"
    with pytest.raises(DataError, match="line 3: class index 5 outside 0-1"):
        load_compound_labels(write(tmp_path, "a/v.txt", header + "0\n5\n"))
    with pytest.raises(DataError, match="line 1: unknown compound label 'Happily Bored'"):
        load_compound_labels(write(tmp_path, "b/v.txt", "Happily_Bored\n0\n"))
    with pytest.raises(DataError, match="no labelled frame"):
        load_compound_labels(write(tmp_path, "c/v.txt", header + "-1\n"))
    with pytest.raises(DataError, match="line 2: expected a class index"):
        load_compound_labels(write(tmp_path, "d/v.txt", header + "happy\n"))
    # the header is the first non-empty line; ties go to the class seen first
    assert compound_majority(write(tmp_path, "e/v.txt", "\n" + header + "1\n0\n\n0\n1\n")) == ("happily surprised", 4)


# --- FEC-Bench -----------------------------------------------------------------------------------------------------


def test_caption_json():
    clips = load_caption_json(FIX / "fec_captions.json")
    assert [(c.id, c.emotion, c.aus) for c in clips] == [("fec_1", "happiness", ["AU6", "AU12"]), ("2", "anger", None)]
    assert clips[1].video == str(FIX / "fec" / "2.mp4") and "brows lower" in clips[1].caption


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"video": "a.mp4"}], "entry 0: missing or empty 'caption'"),
        ([{"video": "a.mp4", "caption": "x"}, {"caption": "y"}], "entry 1: missing 'video'"),
        ([{"video": "a.mp4", "caption": "x", "emotion": "zorblax"}], "entry 0: unknown emotion label"),
        ([{"video": "a.mp4", "caption": "x", "aus": ["AU99"]}], "entry 0: unknown Action Unit AU99"),
        ("just a string", "expected a JSON list or object"),
    ],
)
def test_caption_json_errors(tmp_path, data, message):
    path = write(tmp_path, "c.json", json.dumps(data))
    with pytest.raises(DataError, match=message):
        load_caption_json(path)


def test_caption_json_by_id(tmp_path):
    path = write(tmp_path, "c.json", json.dumps([{"id": "7", "caption": " Brows raise. "}, {"caption": "x"}]))
    with pytest.raises(DataError, match="entry 0: missing 'video'"):
        load_caption_json(path)
    with pytest.raises(DataError, match="entry 1: missing 'id' or 'video'"):
        load_caption_json(path, require_video=False)
    path.write_text(json.dumps([{"id": "7", "caption": " Brows raise. "}]))
    (clip,) = load_caption_json(path, require_video=False)
    assert (clip.id, clip.video, clip.caption) == ("7", None, "Brows raise.")


def test_caption_json_malformed_names_line(tmp_path):
    with pytest.raises(DataError, match="malformed JSON at line 2"):
        load_caption_json(write(tmp_path, "c.json", '[\n{"video": }\n]'))


# --- feature cache -------------------------------------------------------------------------------------------------


def test_feature_cache_keys_by_content(tmp_path):
    calls = []

    def compute(path: Path) -> Evidence:
        calls.append(path)
        return Evidence.load(make_evidence(tmp_path / f"computed{len(calls)}.json", [("AU12", 0.1, 0.5, 1.0, 3.0)]))

    video = write(tmp_path, "clip.mp4", "fake video bytes")
    cache = FeatureCache(tmp_path / "cache", compute=compute)
    first = cache.evidence_path(video)
    assert cache.evidence(video).au_events[0].au == "AU12"
    copy = tmp_path / "renamed.mp4"
    shutil.copy(video, copy)
    assert cache.evidence_path(copy) == first  # same bytes, same entry
    assert len(calls) == 1 and cache.hits == 2 and cache.misses == 1
    video.write_text("other bytes")
    assert cache.evidence_path(video) != first and len(calls) == 2
    assert FeatureCache(tmp_path / "cache", tag="v2", compute=compute).path_for(copy) != first


def test_feature_cache_recomputes_corrupt_entry(tmp_path):
    video = write(tmp_path, "clip.mp4", "bytes")
    ev_file = make_evidence(tmp_path / "e.json", [])
    cache = FeatureCache(tmp_path / "cache", compute=lambda p: Evidence.load(ev_file))
    entry = cache.evidence_path(video)
    entry.write_text("{not json")
    assert cache.evidence_path(video) == entry and cache.misses == 2
    Evidence.load(entry)


# --- builder -------------------------------------------------------------------------------------------------------


def fake_engine(ev: Evidence) -> str:
    """Stand-in reasoner: cites the evidence's AUs, or an AU it does not show when the clip's first AU is AU9."""
    aus = [e.au for e in ev.au_events]
    cited = ["AU20"] if aus[:1] == ["AU9"] else aus
    emotion = "happiness" if "AU12" in aus else "sadness"
    return format_answer(f"Key observations: {', '.join(cited)} at 0.5 s. Conclusion: {emotion}.", emotion, None, aus)


def fake_checker(text: str, ev: Evidence):
    shown = {e.au for e in ev.au_events}
    bad = [a for a in parse_output(text).think_aus if a not in shown]
    return FaithfulnessResult(
        unsupported_aus=bad, n_claims=len(parse_output(text).think_aus), score=0.0 if bad else 1.0
    )


@pytest.fixture
def clips(tmp_path) -> list[LabeledClip]:
    def ev(name: str, aus: list[str]) -> str:
        return str(make_evidence(tmp_path / f"{name}.json", [(a, 0.2, 0.5, 1.0, 3.0) for a in aus]))

    return [
        LabeledClip("happy1", evidence=ev("h1", ["AU6", "AU12"]), emotion="happiness", aus=["AU6", "AU12"]),
        LabeledClip("sad1", evidence=ev("s1", ["AU1", "AU15"]), emotion="sadness"),
        LabeledClip("unfaithful", evidence=ev("u", ["AU9", "AU15"]), emotion="disgust"),
        LabeledClip("disagree", evidence=ev("d", ["AU4"]), emotion="anger"),
        LabeledClip("human", evidence=ev("hu", ["AU4"]), emotion="anger", extra={"cot": "Brows lower (AU4)."}),
        LabeledClip("compound", evidence=ev("c", ["AU6", "AU12", "AU5"]), compound="happily surprised"),
        LabeledClip("unlabelled", evidence=ev("x", ["AU12"])),
        LabeledClip("novideo", video=str(tmp_path / "missing.mp4"), emotion="happiness"),
    ]


def test_build_rows_filters_and_counts(clips):
    rows, stats = build_rows(clips, cot_fn=fake_engine, faithfulness_fn=fake_checker)
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"happy1", "sad1", "human", "compound", "unlabelled"}
    assert (stats.dropped_unfaithful, stats.dropped_disagree, stats.dropped_no_evidence) == (1, 1, 1)
    assert stats.dropped_ids == {"no_evidence": ["novideo"], "unfaithful": ["unfaithful"], "disagree": ["disagree"]}
    assert (stats.rows, stats.labelled, stats.unlabelled, stats.human_cot, stats.engine_cot) == (5, 4, 1, 1, 3)

    happy = parse_output(by_id["happy1"]["answer"])
    assert happy.format_ok and happy.emotion == "happiness" and happy.aus == ["AU6", "AU12"]
    assert by_id["happy1"]["cot_source"] == "engine" and by_id["happy1"]["question"] in load_prompt(
        "train_question_v1"
    )
    sad = parse_output(by_id["sad1"]["answer"])
    assert sad.aus == ["AU1", "AU15"]  # no gold AUs: the engine's, which the faithfulness check passed
    human = parse_output(by_id["human"]["answer"])
    assert human.think == "Brows lower (AU4)." and human.emotion == "anger"
    compound = parse_output(by_id["compound"]["answer"])
    assert (compound.emotion, compound.compound) == ("happiness", "happily surprised")
    assert by_id["unlabelled"]["answer"] is None


def test_build_rows_keep_disagreeing(clips):
    rows, stats = build_rows(clips, cot_fn=fake_engine, faithfulness_fn=fake_checker, on_disagree="keep")
    row = next(r for r in rows if r["id"] == "disagree")
    assert parse_output(row["answer"]).emotion == "anger" and stats.kept_disagree == 1
    with pytest.raises(ConfigError):
        build_rows(clips, on_disagree="maybe")


def test_build_rows_is_deterministic_and_round_trips(clips, tmp_path):
    rows, stats = build_rows(clips, cot_fn=fake_engine, faithfulness_fn=fake_checker)
    again, _ = build_rows(clips, cot_fn=fake_engine, faithfulness_fn=fake_checker)
    assert rows == again
    path = write_rows(rows, tmp_path / "shard.jsonl", stats)
    assert json.loads((tmp_path / "shard.jsonl.stats.json").read_text())["dropped_unfaithful"] == 1
    assert load_rows(path) == rows
    with pytest.raises(DataError, match="row 5: missing 'answer'"):
        load_rows(path, require_answer=True)


def test_build_rows_with_the_real_engine(tmp_path):
    ev = make_evidence(tmp_path / "e.json", [("AU6", 0.3, 0.8, 1.8, 3.5), ("AU12", 0.3, 0.9, 1.9, 4.0)])
    rows, stats = build_rows([LabeledClip("h", evidence=str(ev), emotion="happiness", aus=["AU6", "AU12"])])
    assert stats.dropped_unfaithful == 0
    assert stats.rows + stats.dropped_disagree == 1


def test_prompt_messages_text_path(clips):
    rows, _ = build_rows(clips[:1], cot_fn=fake_engine, faithfulness_fn=fake_checker)
    messages = prompt_messages(rows[0], evidence_formatter=evidence_text)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "AU6: onset 0.2 s" in messages[1]["content"] and rows[0]["question"] in messages[1]["content"]
    assert "<answer>" in messages[0]["content"]


def test_unknown_prompt_names_known_ones():
    with pytest.raises(ConfigError, match="known: .*train_question_v1"):
        load_prompt("train_question_v9")


def test_au_clips_and_format_registry(tmp_path):
    clips = load_clips("au-occurrence", FIX / "bp4d_F001_T1.csv", video_root="/v")
    assert [(c.id, c.video, c.aus) for c in clips] == [("bp4d_F001_T1", "/v/bp4d_F001_T1.mp4", ["AU4", "AU6", "AU12"])]
    assert load_clips("au-intensity", FIX / "disfa_SN001.csv")[0].aus == ["AU4", "AU25"]
    assert [c.compound for c in load_clips("compound", FIX / "cexpr")] == ["happily surprised", "sadly angry"]
    with pytest.raises(DataError, match="unknown dataset format 'csv'; known: video-csv"):
        load_clips("csv", FIX / "dfew_labels.csv")


def test_train_build_command(tmp_path, monkeypatch, capsys):
    """``emoreason train build`` on the caption fixture with precomputed evidence, the reasoner and checker stubbed."""
    import argparse
    import sys

    from emoreason.training import commands
    from tests.fixtures.train.synth import stand_in_check_faithfulness

    monkeypatch.setitem(
        sys.modules,
        "emoreason.reasoning.engine",
        types.SimpleNamespace(analyze=lambda ev: types.SimpleNamespace(answer_text=lambda: fake_engine(ev))),
    )
    monkeypatch.setitem(
        sys.modules,
        "emoreason.reasoning.faithfulness",
        types.SimpleNamespace(check_faithfulness=stand_in_check_faithfulness),
    )
    ev_dir = tmp_path / "ev"
    make_evidence(ev_dir / "fec_1.json", [("AU6", 0.2, 0.6, 1.2, 3.0), ("AU12", 0.2, 0.7, 1.3, 3.5)])
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "shard.jsonl"
    args = parser.parse_args(
        [
            "train",
            "build",
            "caption-json",
            str(FIX / "fec_captions.json"),
            "-o",
            str(out),
            "--evidence-dir",
            str(ev_dir),
        ]
    )
    assert args.func(args) == 0
    (row,) = load_rows(out, require_answer=True)
    assert row["id"] == "fec_1" and row["caption"].startswith("The man") and parse_output(row["answer"]).format_ok
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["dropped_no_evidence"]) == (1, 1)


def test_rendered_training_prompt_snapshot(tmp_path):
    """Pins the v1 training prompt; a prompt change needs a new version (train_*_v2.md) and a new snapshot."""
    ev = make_evidence(tmp_path / "e.json", [("AU6", 0.4, 0.9, 1.6, 3.0), ("AU12", 0.5, 1.0, 1.6, 4.0)])
    messages = prompt_messages(
        {"evidence": str(ev), "question": "How does she feel?"}, evidence_formatter=evidence_text
    )
    rendered = "".join(f"<<{m['role']}>>\n{m['content']}\n" for m in messages)
    assert rendered == (FIX / "prompt_v1_snapshot.txt").read_text()


def test_prompt_messages_use_the_project_evidence_formatter(tmp_path):
    ev = make_evidence(tmp_path / "e.json", [("AU6", 0.4, 0.9, 1.6, 3.0), ("AU12", 0.5, 1.0, 1.6, 4.0)])
    user = prompt_messages({"evidence": str(ev), "question": "How does she feel?"})[1]["content"]
    assert "AU12 (lip corner puller): 0.50-1.60 s" in user and user.endswith("How does she feel?")
