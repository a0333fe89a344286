"""The faithfulness check catches every kind of claim that contradicts the evidence (issue 15's contradictions), and the
engine's own writing passes it on clips, photos and face-less clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoreason.evidence import AUSeries, Evidence, FaceTrack, HeadPose, MediaInfo
from emoreason.reasoning.engine import analyze
from emoreason.reasoning.faithfulness import check_analysis, check_faithfulness, present_aus
from tests.test_reasoning import HAPPY, make_evidence

# a 20 s clip: a long smile, with the cheeks raised only at the end
LONG_SMILE = [("AU12", 1.0, 3.0, 19.9, 4.1), ("AU6", 15.68, 17.0, 19.60, 4.2)]


def photo_evidence(intensities: dict[str, float], path: str = "photo.jpg"):
    """A photo's evidence: one frame at t = 0, no AU events, the AU series read on that frame."""
    ev = make_evidence([], duration=0.0, path=path)
    ev.media = MediaInfo(path=path, duration_s=0.0, has_video=True, has_audio=False, width=512, height=512,
                         sample_fps=10.0, n_frames=1, still_image=True)  # fmt: skip
    base = {au: 0.3 for au in ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU12", "AU15", "AU25", "AU26")}
    ev.aus = AUSeries(times=[0.0], intensities={au: [v] for au, v in (base | intensities).items()})
    ev.face = FaceTrack(times=[0.0], present=[True], boxes=[[100.0, 100.0, 300.0, 300.0]], scores=[0.99],
                        poses=[HeadPose(yaw=0.0, pitch=0.0, roll=0.0)], coverage=1.0, max_faces=1)  # fmt: skip
    ev.au_events = []
    return ev


def test_absence_claim_against_a_present_au_is_caught():
    ev = make_evidence(LONG_SMILE, duration=20.0)
    text = ("Facial actions: AU6 (cheek raiser) from 15.68 s to 19.60 s, peak intensity 4.2/5. AU12 pulls the lip "
            "corners (1.00–19.90 s) without AU6 raising the cheeks.")  # fmt: skip
    r = check_faithfulness(text, ev)
    assert any(c.startswith("absence:") and "AU6" in c for c in r.contradictions), r
    assert not r.ok and r.score < 1.0
    # the same words without times speak of the whole clip, where AU6 is present too
    assert not check_faithfulness("AU12 pulls the lip corners without AU6 raising the cheeks.", ev).ok
    # an absence that holds: AU6 is absent over the times the clause names
    r = check_faithfulness("AU12 rises at 3.00 s without AU6 raising the cheeks.", ev)
    assert r.ok and r.score == 1.0, r


def test_stillness_claim_beside_a_smile_is_caught():
    ev = photo_evidence({"AU12": 4.1, "AU6": 3.5})
    probs = {"happiness": 0.84, "neutral": 0.1, "sadness": 0.06}
    text = ("<think>Key observations: The face stays neutral throughout; no facial action stands out.\n"
            "Conclusion: Happiness (probability 0.84).</think>"
            '<answer>{"emotion": "happiness", "compound": null, "aus": []}</answer>')  # fmt: skip
    r = check_faithfulness(text, ev, probs)
    assert sum(c.startswith("stillness:") for c in r.contradictions) == 2, r
    assert not r.ok and r.score < 1.0
    # stillness on a face with nothing present, called neutral, holds
    still = photo_evidence({})
    assert check_faithfulness("The face stays neutral throughout; no facial action stands out.", still,
                              {"neutral": 0.9, "happiness": 0.1}).ok  # fmt: skip
    # ... but not when the fused call is not neutral
    r = check_faithfulness("The face stays neutral throughout.", still, {"neutral": 0.2, "sadness": 0.8})
    assert r.contradictions and "sadness" in r.contradictions[0]


def test_conclusion_that_differs_from_the_fused_top_label_is_caught():
    ev = make_evidence(HAPPY)
    probs = {"happiness": 0.7, "surprise": 0.2, "neutral": 0.1}
    text = ("<think>Key observations: AU12 apex at 1.30 s.\nConclusion: Surprise (probability 0.20).</think>"
            '<answer>{"emotion": "surprise"}</answer>')  # fmt: skip
    r = check_faithfulness(text, ev, probs)
    assert [c.split(" — ")[0] for c in r.contradictions] == ["conclusion: the answer says surprise",
                                                               "conclusion: the conclusion says surprise"], r  # fmt: skip
    assert r.score < 1.0
    # a wrong probability beside the right label
    text = "<think>Conclusion: Happiness (probability 0.90; then surprise 0.20).</think><answer>happy</answer>"
    r = check_faithfulness(text, ev, probs)
    assert len(r.contradictions) == 1 and r.contradictions[0].startswith("probability: Happiness (probability 0.90")
    good = "<think>Conclusion: Happiness (probability 0.70; then surprise 0.20).</think><answer>happy</answer>"
    assert check_faithfulness(good, ev, probs).ok


def test_happiness_without_au12_is_caught():
    ev = make_evidence([("AU6", 0.6, 1.4, 2.6, 3.0)])
    r = check_faithfulness("<think>Conclusion: Happiness (probability 0.60).</think><answer>happy</answer>", ev)
    assert any(c.startswith("label:") and "AU12" in c for c in r.contradictions), r


def test_a_time_no_event_supports_is_caught():
    ev = make_evidence(HAPPY)
    r = check_faithfulness("AU12 reaches its apex at 1.30 s and AU6 fades at 2.20 s.", ev)
    assert r.unsupported_times == [2.2] and r.score < 1.0
    # a photo has no time axis: any time is unsupported
    photo = photo_evidence({"AU12": 4.0, "AU6": 3.0})
    r = check_faithfulness("AU12 (lip corner puller) from 0.02 s to 0.04 s.", photo)
    assert r.unsupported_times == [0.02, 0.04]


def test_present_aus_reads_series_and_windows():
    ev = make_evidence(LONG_SMILE, duration=20.0)
    assert present_aus(ev) == {"AU6", "AU12"}
    assert present_aus(ev, 2.0, 10.0) == {"AU12"}
    assert present_aus(photo_evidence({"AU12": 4.0})) == {"AU12"}


def test_engine_writing_is_faithful_on_a_long_smile_with_late_cheeks():
    ev = make_evidence(LONG_SMILE, duration=20.0)
    a = analyze(ev)
    r = check_analysis(a, ev)
    assert r.ok and r.score == 1.0, (r, a.think, a.caption)
    assert "without AU6" not in a.think


def test_engine_writing_is_faithful_on_a_photo():
    ev = photo_evidence({"AU12": 4.1, "AU6": 3.6, "AU25": 2.2})
    a = analyze(ev)
    r = check_analysis(a, ev)
    assert r.ok and r.score == 1.0, (r, a.think, a.caption)
    assert "stays neutral" not in a.caption and "relaxes back to neutral" not in a.caption
    assert "photo" in a.caption.lower() and "photo" in a.think
    assert a.segments == []
    for au in ("AU6", "AU12"):
        assert au in a.think
    assert a.smile is not None and a.smile.duchenne and a.smile.kind == "genuine" and a.smile.onset is None
    posed = photo_evidence({"AU12": 4.1})
    a = analyze(posed)
    assert a.smile is not None and not a.smile.duchenne and "without AU6" in a.smile.statement
    assert check_analysis(a, posed).ok


def test_engine_writing_is_faithful_on_a_still_photo_with_no_action():
    ev = photo_evidence({})
    a = analyze(ev)
    r = check_analysis(a, ev)
    assert r.ok, (r, a.think, a.caption)


FIXTURE_EVIDENCE = sorted(Path(__file__).parent.glob("fixtures/**/*.evidence.json"))


def test_the_engine_is_faithful_on_every_fixture_evidence():
    assert len(FIXTURE_EVIDENCE) >= 20
    bad = {}
    for path in FIXTURE_EVIDENCE:
        ev = Evidence.load(path)
        r = check_analysis(analyze(ev), ev)
        if not r.ok:
            bad[path.name] = r
    assert not bad, bad


def test_report_faithfulness_is_not_one_when_a_claim_is_contradicted():
    from emoreason.report import build_report

    ev = make_evidence(HAPPY)
    a = analyze(ev)
    assert build_report(ev, a).faithfulness.score == 1.0
    a.caption = "The face stays neutral throughout; no facial action stands out."
    f = build_report(ev, a).faithfulness
    assert f.score < 1.0 and f.contradictions and f.contradictions[0].startswith("stillness:")


@pytest.mark.slow
def test_the_engine_is_faithful_on_the_example_clip():
    from emoreason.perception.pipeline import perceive

    clip = Path(__file__).parents[1] / "examples" / "smile.mp4"
    ev = perceive(clip, asr=False)
    a = analyze(ev)
    r = check_analysis(a, ev)
    assert r.ok and r.score == 1.0, (r, a.think, a.caption)
