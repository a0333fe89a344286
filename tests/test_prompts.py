"""Prompt files: loading by name, clear errors, and snapshots that pin the rendered Q&A prompts.

A changed prompt is a new versioned file (``ask_system_v2.md``) with a new snapshot, never an edit of v1.
"""

from __future__ import annotations

import pytest

from emoreason.errors import ConfigError
from emoreason.evidence_text import evidence_to_text
from emoreason.parsing import find_times
from emoreason.prompts import load_prompt, prompt_names, render_prompt
from emoreason.reasoning.engine import analyze
from emoreason.reasoning.qa import build_messages
from tests.test_reasoning import HAPPY, make_evidence

ASK_SYSTEM_V1_SNAPSHOT = (
    "You are EmoReason, an assistant that answers questions about the emotions of a person in one video clip. You cannot see\n"
    "or hear the clip; you are given what was measured in it: facial Action Units (FACS codes with onset, apex and offset\n"
    "times, intensity 0-5), head pose, voice prosody and the transcript with word times, plus the knowledge-based analysis.\n"
    "\n"
    "Rules:\n"
    '- Answer only from this evidence. Cite the AUs and times (in seconds, like "1.20 s") you rely on.\n'
    "- Never invent an AU, a time, a word or a cue that is not in the evidence.\n"
    "- If the evidence cannot answer the question (for example, a question about the voice when there is no audio), say\n"
    '  "I can\'t tell from this clip" and say what is missing.\n'
    "- Answer in two to four sentences.\n"
    "\n"
    "Evidence:\n"
    "Clip: 3.00 s, video, audio.\n"
    "Face: visible in 100% of 30 frames analysed at 10.0 fps.\n"
    "Facial Action Unit events (intensity 0-5; 2 in all):\n"
    "- AU12 (lip corner puller): 0.50-2.70 s, apex 1.30 s, peak 4.0/5\n"
    "- AU6 (cheek raiser): 0.60-2.60 s, apex 1.40 s, peak 3.0/5\n"
    "Head pose: yaw 2 to 2 deg, pitch -3 to -3 deg.\n"
    "Voice: speech 90% of the audio; pitch mean 120 Hz, sd 14 Hz, range 6.0 semitones; 4.0 syllables per second.\n"
    'Transcript: "what wonderful news"\n'
    "Word times: what@0.00s wonderful@1.00s news@2.00s\n"
    "\n"
    "Analysis:\n"
    "(analysis)"
)

ASK_USER_V1_SNAPSHOT = "Question about the clip: Is the smile genuine?"


@pytest.fixture
def ev():
    return make_evidence(HAPPY, words="what wonderful news", arousal="even")


def test_ask_system_v1_snapshot(ev):
    rendered = render_prompt("ask_system_v1", evidence=evidence_to_text(ev), analysis="(analysis)")
    assert rendered == ASK_SYSTEM_V1_SNAPSHOT


def test_ask_user_v1_snapshot():
    assert render_prompt("ask_user_v1", question="Is the smile genuine?") == ASK_USER_V1_SNAPSHOT


def test_messages_carry_evidence_and_analysis(ev):
    msgs = build_messages(ev, "Why?", analyze(ev))
    assert msgs[0]["content"].startswith(ASK_SYSTEM_V1_SNAPSHOT.split("(analysis)")[0])
    assert "Key observations:" in msgs[0]["content"] and "Probabilities: happiness" in msgs[0]["content"]
    assert msgs[-1] == {"role": "user", "content": "Question about the clip: Why?"}


def test_unknown_and_bad_prompt_names():
    assert {"ask_system_v1", "ask_user_v1"} <= set(prompt_names())
    with pytest.raises(ConfigError, match="no prompt named 'ask_v9'.*ask_system_v1"):
        load_prompt("ask_v9")
    with pytest.raises(ConfigError, match="invalid prompt name"):
        load_prompt("../pyproject")
    with pytest.raises(ConfigError, match="needs a value for 'question'"):
        render_prompt("ask_user_v1")


def test_prompt_dir_override(tmp_path):
    (tmp_path / "p_v1.md").write_text("Hello {name}, {{literal}}\n")
    assert render_prompt("p_v1", prompts_dir=tmp_path, name="you") == "Hello you, {literal}"


def test_evidence_text_shrinks_to_fit():
    events = [(f"AU{n}", 0.1 * i, 0.1 * i + 0.5, 0.1 * i + 1.0, 1.0 + i / 4)
              for i, n in enumerate((1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23))]  # fmt: skip
    ev = make_evidence(events, words=" ".join(["word"] * 60), arousal="even")
    full = evidence_to_text(ev, max_chars=100_000)
    assert "Word times:" in full and full.count("- AU") == 14
    small = evidence_to_text(ev, max_chars=900)
    assert len(small) <= 900 and "Word times:" not in small and "weaker events left out" in small
    assert "AU23" in small  # the strongest events stay
    assert find_times(small)
    assert len(evidence_to_text(ev, max_chars=50)) <= 50


def test_evidence_text_includes_the_expression_cue():
    from tests.test_reasoning import _with_expression

    text = evidence_to_text(_with_expression(make_evidence(HAPPY), "happiness"))
    assert "Expression classifier (test-classifier, 30 frames): happiness 0.80" in text


TRAIN_SYSTEM_COMPACT_V1_SNAPSHOT = (
    "You are EmoReason. Read the facial Action Units measured in the clip and answer in exactly this format:\n"
    '<think>Key observations: ... Conclusion: ...</think><answer>{"emotion": "<one of: neutral, happiness, sadness, '
    'surprise, fear, disgust, anger, contempt>", "compound": null, "aus": ["AU.."]}</answer>'
)


def test_train_system_compact_v1_snapshot():
    from emoreason.data.builder import system_prompt_text

    assert system_prompt_text("train_system_compact_v1") == TRAIN_SYSTEM_COMPACT_V1_SNAPSHOT


def test_a_missing_prompt_dir_override_is_an_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="prompts folder not found") as e:
        prompt_names(missing)
    assert e.value.path == str(missing)
    with pytest.raises(ConfigError, match="prompts folder not found"):
        load_prompt("ask_system_v1", missing)


def test_observations_list_what_the_evidence_shows_and_pass_the_faithfulness_check():
    """The observations text beside the model's face tokens: the AUs present, strongest first, with their times, and
    the transcript; every AU and time it names passes the faithfulness check (a model that copies it stays faithful)."""
    from emoreason.evidence_text import observations_text
    from emoreason.reasoning.faithfulness import check_faithfulness, present_aus

    ev = make_evidence(HAPPY, words="what wonderful news", arousal="even")
    text = observations_text(ev)
    assert text.splitlines()[0] == ("Facial actions seen (peak intensity 0-5): AU12 (lip corner puller) 4.0 at "
                                    "0.50-2.70 s, AU6 (cheek raiser) 3.0 at 0.60-2.60 s.")  # fmt: skip
    assert text.splitlines()[-1] == 'Transcript: "what wonderful news"'
    assert {au for au in present_aus(ev) if au in text} == present_aus(ev)
    check = check_faithfulness(f"<think>Key observations: {text}</think>", ev)
    assert check.cites_only_evidence
    assert observations_text(make_evidence([])).startswith("Facial actions seen: none.")
