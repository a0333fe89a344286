"""The knowledge-based engine and the faithfulness check, on hand-built evidence and on the perceived fixtures.

``make_evidence`` (also used by the report, Q&A and backend tests) builds an Evidence with AU series shaped by chosen
events, optional prosody and a transcript with word times.
"""

from __future__ import annotations

import math

import pytest

from emoreason.evidence import (
    AUEvent,
    AUSeries,
    Evidence,
    FaceTrack,
    HeadPose,
    MediaInfo,
    Prosody,
    QualityFlag,
    Transcript,
    Word,
)  # fmt: skip
from emoreason.knowledge.facs import PERCEIVED_AUS
from emoreason.knowledge.taxonomy import ALL_EMOTIONS, UNCERTAIN
from emoreason.parsing import find_times, parse_output, think_sections
from emoreason.reasoning.engine import analyze
from emoreason.reasoning.faithfulness import check_analysis, check_faithfulness
from tests.fixtures.build_eval_fixtures import evidence as fixture_evidence

REST = 0.5  # resting intensity of every AU


def make_evidence(
    events: list[tuple[str, float, float, float, float]] = (),
    duration: float = 3.0,
    fps: float = 10.0,
    face: bool = True,
    words: str | None = None,
    arousal: str | None = None,
    path: str = "clip.mp4",
) -> Evidence:
    """Evidence for a clip of ``duration`` s: ``events`` are (AU, onset, apex, offset, peak); ``words`` is spoken evenly
    across the clip; ``arousal`` in (None, "flat", "even", "animated") adds speech prosody of that kind."""
    n = int(round(duration * fps))
    times = [round(i / fps, 3) for i in range(n)]
    has_audio = words is not None or arousal is not None
    media = MediaInfo(path=path, duration_s=duration, has_video=True, has_audio=has_audio, width=640, height=480,
                      native_fps=25.0, sample_fps=fps, n_frames=n, audio_sample_rate=16000 if has_audio else None)  # fmt: skip
    ev = Evidence(media=media)
    if face:
        series = {au: [REST] * n for au in PERCEIVED_AUS}
        for au, on, ap, off, peak in events:
            for i, t in enumerate(times):
                if on <= t <= ap:
                    v = REST + (peak - REST) * ((t - on) / (ap - on) if ap > on else 1.0)
                elif ap < t <= off:
                    v = peak - (peak - REST) * (t - ap) / (off - ap)
                else:
                    continue
                series[au][i] = max(series[au][i], v)
        ev.face = FaceTrack(times=times, present=[True] * n, boxes=[[200.0, 100.0, 400.0, 340.0]] * n,
                            scores=[0.9] * n, poses=[HeadPose(yaw=2.0, pitch=-3.0, roll=1.0)] * n, coverage=1.0,
                            max_faces=1)  # fmt: skip
        ev.aus = AUSeries(times=times, intensities=series)
        ev.au_events = [AUEvent(au=au, onset=on, apex=ap, offset=off, peak=peak, mean=(peak + REST) / 2)
                        for au, on, ap, off, peak in events]  # fmt: skip
    else:
        ev.flags.append(QualityFlag(code="no_face", message=f"no face found in any of the {n} analysed frames"))
    if arousal is not None:
        rate, sd, rng = {"flat": (2.5, 5.0, 2.0), "even": (4.0, 14.0, 6.0), "animated": (6.0, 40.0, 12.0)}[arousal]
        hop = 0.1
        pt = [round(i * hop, 3) for i in range(int(duration / hop))]
        ev.prosody = Prosody(hop_s=hop, times=pt, f0_hz=[120.0] * len(pt), energy_db=[-30.0] * len(pt),
                             voiced=[True] * len(pt), speech_segments=[(0.0, duration)], speech_ratio=0.9,
                             f0_mean_hz=120.0, f0_std_hz=sd, f0_range_semitones=rng, speaking_rate_sps=rate)  # fmt: skip
    if not has_audio:
        ev.flags.append(QualityFlag(code="no_audio", message="the file has no audio stream: face only"))
    if words is not None:
        toks = words.split()
        step = duration / max(1, len(toks))
        ev.transcript = Transcript(text=words, words=[Word(word=w, start=round(i * step, 2), end=round((i + 0.8) * step, 2))
                                                      for i, w in enumerate(toks)])  # fmt: skip
    return ev


HAPPY = [("AU6", 0.6, 1.4, 2.6, 3.0), ("AU12", 0.5, 1.3, 2.7, 4.0)]
SAD = [("AU1", 0.4, 1.2, 2.6, 3.2), ("AU4", 0.4, 1.2, 2.6, 3.5), ("AU15", 0.5, 1.3, 2.6, 3.5)]
SURPRISE = [("AU1", 0.3, 0.8, 2.5, 3.8), ("AU2", 0.3, 0.8, 2.5, 3.8), ("AU5", 0.3, 0.8, 2.5, 3.5),
            ("AU26", 0.3, 0.8, 2.5, 3.8)]  # fmt: skip
ANGER = [("AU4", 0.4, 1.2, 2.6, 4.0), ("AU7", 0.4, 1.2, 2.6, 3.5), ("AU23", 0.5, 1.3, 2.6, 3.5)]


def _check_cot(a, ev):
    sections = think_sections(a.think)
    assert set(sections) == {"Key observations", "Overall emotional interpretation", "Conclusion"}
    f = check_faithfulness(a.answer_text(), ev)
    assert f.ok and f.score == 1.0, (f, a.think)
    whole = check_analysis(a, ev)  # with the caption and the fused probabilities
    assert whole.ok and whole.score == 1.0, (whole, a.think, a.caption)


@pytest.mark.parametrize(
    ("events", "expected"), [(HAPPY, "happiness"), (SAD, "sadness"), (SURPRISE, "surprise"), (ANGER, "anger")]
)
def test_prototypes_pick_the_emotion(events, expected):
    ev = make_evidence(events)
    a = analyze(ev)
    assert a.emotion == expected
    assert set(a.probabilities) == set(ALL_EMOTIONS)
    assert math.isclose(sum(a.probabilities.values()), 1.0, abs_tol=1e-3)
    assert 0.5 <= a.probabilities[expected] < 0.99  # confident but not one-hot
    assert a.aus and all(au in {e[0] for e in events} for au in a.aus)
    _check_cot(a, ev)
    p = parse_output(a.answer_text())
    assert p.format_ok and p.emotion == expected and p.aus == a.aus


def test_resting_face_is_neutral():
    ev = make_evidence([])
    a = analyze(ev)
    assert a.emotion == "neutral" and a.probabilities["neutral"] > 0.5
    assert "neutral" in a.caption
    _check_cot(a, ev)


def test_happy_cot_names_aus_with_times_and_a_genuine_smile():
    ev = make_evidence(HAPPY)
    a = analyze(ev)
    obs = think_sections(a.think)["Key observations"]
    assert "AU6" in obs and "AU12" in obs
    assert 0.5 in find_times(obs) and 1.3 in find_times(obs)  # AU12 onset and apex
    assert a.smile is not None and a.smile.kind == "genuine" and a.smile.duchenne
    assert a.smile.onset == 0.5 and a.smile.onset_fast is False
    assert "genuine" in a.think


def test_smile_without_cheeks_and_fast_onset_is_posed():
    a = analyze(make_evidence([("AU12", 1.0, 1.1, 2.5, 4.0)]))
    assert a.smile is not None and a.smile.kind == "posed" and not a.smile.duchenne and a.smile.onset_fast


def test_no_smile_no_cue():
    assert analyze(make_evidence(SAD)).smile is None


def test_compound_from_two_components():
    a = analyze(make_evidence(HAPPY + SURPRISE))
    assert a.compound == "happily surprised"
    assert a.compound_score >= 0.25
    assert "happily surprised" in a.answer_text()
    assert analyze(make_evidence(HAPPY)).compound is None
    _check_cot(a, make_evidence(HAPPY + SURPRISE))


RESTING_BROWS = [("AU1", 0.2, 1.0, 2.8, 2.8), ("AU2", 0.2, 1.0, 2.8, 2.6)]  # brows at rest that read 2.5-3 (issue 15)


def test_smile_with_resting_brows_is_not_a_compound():
    """A compound needs both parts in the evidence: brows alone do not make a smile 'happily surprised'."""
    a = analyze(make_evidence(HAPPY + RESTING_BROWS))
    assert a.emotion == "happiness"
    assert a.compound is None and "Compound" not in a.think


def test_compound_needs_the_secondary_to_be_probable():
    """Both prototypes shown, but the secondary is a tail of the fused distribution: no compound."""
    from emoreason.reasoning import engine

    present = {"AU1", "AU2", "AU5", "AU26", "AU6", "AU12"}
    read = set(PERCEIVED_AUS)
    p = dict.fromkeys(ALL_EMOTIONS, 0.0) | {"happiness": 0.8, "surprise": 0.15, "neutral": 0.05}
    assert engine._compound(p, "happiness", present, read)[0] is None
    p |= {"happiness": 0.6, "surprise": 0.35}
    assert engine._compound(p, "happiness", present, read)[0] == "happily surprised"
    assert engine._compound(p, "happiness", present - {"AU5", "AU26"}, read)[0] is None
    assert engine._compound(p, "uncertain", present, read)[0] is None


def test_open_set_uncertain_when_no_prototype_fits():
    ev = make_evidence([("AU17", 0.5, 1.0, 2.5, 4.5), ("AU43", 0.5, 1.0, 2.5, 4.5), ("AU14", 0.4, 1.0, 2.5, 2.0)])
    a = analyze(ev)
    assert a.emotion == UNCERTAIN
    assert parse_output(a.answer_text()).emotion == UNCERTAIN
    assert "Uncertain" in think_sections(a.think)["Conclusion"]
    _check_cot(a, ev)


def test_micro_expression_flagged():
    ev = make_evidence(HAPPY + [("AU4", 2.0, 2.1, 2.3, 3.0)])
    a = analyze(ev)
    assert [(m.au, m.onset) for m in a.micro_expressions] == [("AU4", 2.0)]
    assert "micro-expression" in a.think
    _check_cot(a, ev)


def test_vad_is_a_distribution():
    a = analyze(make_evidence(HAPPY))
    assert a.valence.mean > 0.3 and a.valence.std > 0.05
    s = analyze(make_evidence(SAD))
    assert s.valence.mean < -0.2 and s.arousal.std > 0.05


def test_segments_cover_the_clip():
    a = analyze(make_evidence(HAPPY, duration=4.0))
    assert [s.start for s in a.segments][0] == 0.0 and a.segments[-1].end == 4.0
    assert all(math.isclose(sum(s.probabilities.values()), 1.0, abs_tol=1e-3) for s in a.segments)


def test_caption_beginning_progress_end():
    a = analyze(make_evidence(HAPPY))
    assert a.caption.startswith("At first the face is neutral")
    assert "lip corners pull up" in a.caption and "finally" in a.caption
    late = analyze(make_evidence([("AU12", 0.5, 1.3, 2.98, 4.0), ("AU6", 0.5, 1.3, 2.98, 3.0)]))
    assert "still looks happy" in late.caption


def test_words_and_voice_without_a_face():
    ev = make_evidence(face=False, words="I am furious and I hate this, it is unacceptable", arousal="animated")
    a = analyze(ev)
    assert a.emotion == "anger"
    assert set(a.modality_weights) == {"voice", "words"} and "face" not in a.modality_weights
    assert "No face was found" in a.think and "no face was found" in think_sections(a.think)["Conclusion"]
    assert a.voice_arousal > 0.3
    _check_cot(a, ev)


def test_face_and_words_disagree_out_loud():
    ev = make_evidence(HAPPY, words="this is terrible and I hate it so much, awful", arousal="flat")
    a = analyze(ev)
    assert any("disagree" in s for s in a.agreement)
    assert a.ambivalence.flag and any("valence" in r for r in a.ambivalence.reasons)
    assert math.isclose(sum(a.modality_weights.values()), 1.0, abs_tol=0.01)
    assert "Modality weights" in a.think
    _check_cot(a, ev)


def test_faithfulness_catches_a_tampered_cot():
    ev = make_evidence(HAPPY, words="hello there")
    a = analyze(ev)
    tampered = a.think.replace("Overall emotional interpretation:",
                               "AU9 (nose wrinkler) flashes at 2.2 s. Overall emotional interpretation:")  # fmt: skip
    r = check_faithfulness(tampered, ev)
    assert r.unsupported_aus == ["AU9"] and r.unsupported_times == [2.2]
    assert 0 < r.score < 1
    assert check_faithfulness("<think>AU12 at 1.30 s; the word at 0.00 s</think><answer>happy</answer>", ev).ok


def test_faithfulness_reads_only_the_think_block():
    ev = make_evidence(HAPPY)
    r = check_faithfulness(
        '<think>AU12 apex at 1.3 s.</think><answer>{"emotion": "happy", "aus": ["AU9"]}</answer>', ev
    )
    assert r.ok and r.n_claims == 3  # AU12, 1.3 s, and the answer's happiness (which needs AU12); not the answer's AU9


# --- on the perceived fixture clips ---------------------------------------------------------------------------------


def test_astronaut_clip_is_a_genuine_smile(astronaut_clip):
    from emoreason.perception.pipeline import perceive

    ev = perceive(astronaut_clip)
    a = analyze(ev)
    assert a.emotion == "happiness" and a.probabilities["happiness"] >= 0.6
    obs = think_sections(a.think)["Key observations"]
    for au in ("AU6", "AU12"):
        assert f"{au} (" in obs
    assert find_times(obs)
    assert a.smile is not None and a.smile.duchenne and a.smile.kind == "genuine"
    assert check_faithfulness(a.answer_text(), ev).ok and check_analysis(a, ev).ok


def test_angry_noface_clip_from_voice_and_words(angry_noface_clip):
    from emoreason.perception.pipeline import perceive

    ev = perceive(angry_noface_clip)
    a = analyze(ev)
    assert a.emotion == "anger"
    assert "No face was found" in a.think
    assert "face" not in a.modality_weights and "words" in a.modality_weights
    assert check_faithfulness(a.answer_text(), ev).ok and check_analysis(a, ev).ok


def test_repeated_emotion_words_get_their_own_times():
    ev = make_evidence(HAPPY, words="happy today and happy tomorrow", duration=5.0)
    a = analyze(ev)
    obs = think_sections(a.think)["Key observations"]
    assert "'happy' (happiness) at 0.00 s" in obs and "'happy' (happiness) at 3.00 s" in obs
    _check_cot(a, ev)


def test_doctests_of_the_reasoning_modules():
    import doctest

    import emoreason.evidence_text
    import emoreason.knowledge.lexicon
    import emoreason.reasoning.faithfulness

    for mod in (emoreason.reasoning.faithfulness, emoreason.knowledge.lexicon, emoreason.evidence_text):
        r = doctest.testmod(mod)
        assert r.attempted > 0 and r.failed == 0, mod.__name__


def _with_expression(ev, label: str, p: float = 0.8):
    from emoreason.evidence import ExpressionCue

    labels = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    row = [(1 - p) / 6] * 7
    row[labels.index(label)] = p
    ev.expression = ExpressionCue(model="test-classifier", labels=labels, times=ev.face.times,
                                  probs=[row] * len(ev.face.times))  # fmt: skip
    return ev


def test_expression_classifier_is_a_fourth_modality():
    agree = analyze(_with_expression(make_evidence(HAPPY), "happiness"))
    assert (
        set(agree.modality_weights) == {"face", "expression"} and agree.modality_emotions["expression"] == "happiness"
    )
    assert any("agree on happiness" in s for s in agree.agreement)
    assert "Expression classifier (test-classifier)" in agree.think
    differ_ev = _with_expression(make_evidence(HAPPY), "sadness")
    differ = analyze(differ_ev)
    assert any("happiness against sadness" in s for s in differ.agreement)
    assert differ.probabilities["happiness"] < agree.probabilities["happiness"]
    _check_cot(differ, differ_ev)


def test_a_clear_lead_is_not_uncertain_even_when_low():
    ev = make_evidence(face=False, words="I hate it and it is unacceptable", arousal="even")
    a = analyze(ev)
    ranked = sorted(a.probabilities.values(), reverse=True)
    assert a.emotion == "anger" and ranked[0] >= 1.5 * ranked[1]


def test_rapid_alternation_is_ambivalence():
    smile = [("AU6", 0.1, 0.5, 0.9, 3.5), ("AU12", 0.1, 0.5, 0.9, 4.0)]
    frown = [("AU1", 1.1, 1.5, 1.9, 4.0), ("AU4", 1.1, 1.5, 1.9, 4.0), ("AU15", 1.1, 1.5, 1.9, 4.0)]
    shift = [(au, on + 2, ap + 2, off + 2, pk) for au, on, ap, off, pk in smile + frown]
    ev = make_evidence(smile + frown + shift, duration=4.0)
    a = analyze(ev)
    assert [s.dominant for s in a.segments] == ["happiness", "sadness", "happiness", "sadness"]
    assert a.ambivalence.flag and any("switches 3 times" in r for r in a.ambivalence.reasons)
    assert "happiness, then sadness, then happiness, then sadness" in a.think
    _check_cot(a, ev)


def test_nothing_readable_is_uncertain_not_a_crash():
    ev = Evidence(media=MediaInfo(path="x.mp4", duration_s=0.0, has_video=True, has_audio=False))
    a = analyze(ev)
    assert a.emotion == UNCERTAIN and not a.modality_weights and a.segments == []
    assert "Nothing in the clip can be read" in a.think
    assert parse_output(a.answer_text()).format_ok


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # EMFACS prototypes with the AUs peaking at different times, as they do (brows before the jaw in surprise).
        ([("AU1", 0.2, 0.6, 1.6, 3.2), ("AU2", 0.2, 0.6, 1.6, 3.0), ("AU5", 0.4, 0.8, 1.4, 2.8),
          ("AU26", 0.6, 1.0, 2.0, 3.4)], "surprise"),
        ([("AU1", 0.2, 1.0, 2.6, 2.6), ("AU4", 0.4, 1.2, 2.6, 2.4), ("AU15", 0.6, 1.4, 2.8, 3.0)], "sadness"),
        ([("AU4", 0.2, 1.0, 2.8, 3.6), ("AU7", 0.4, 1.2, 2.6, 3.0), ("AU23", 0.6, 1.4, 2.6, 2.8)], "anger"),
        ([("AU9", 0.4, 1.0, 2.4, 3.2), ("AU10", 0.4, 1.0, 2.4, 2.8)], "disgust"),
        ([("AU1", 0.2, 0.8, 2.0, 2.8), ("AU2", 0.2, 0.8, 2.0, 2.4), ("AU4", 0.4, 1.0, 2.2, 2.4),
          ("AU5", 0.4, 0.8, 1.8, 2.6), ("AU20", 0.6, 1.2, 2.4, 2.8)], "fear"),
    ],
)  # fmt: skip
def test_textbook_expressions_read_at_their_apex(events, expected):
    """A short expression in a longer idle clip is read at its height, not washed out by the idle frames."""
    ev = fixture_evidence("textbook", events, duration=4.0)
    a = analyze(ev)
    assert a.emotion == expected
    assert a.probabilities[expected] >= 0.45
    assert set(a.aus) <= {e[0] for e in events}
