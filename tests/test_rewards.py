"""Tests of the GRPO reward functions: each reward on good, partial and malformed completions, both completion shapes."""

from __future__ import annotations

import sys
import types

import pytest

from emoreason import rewards as R
from emoreason.errors import ConfigError
from emoreason.parsing import format_answer
from tests.fixtures.train.synth import make_evidence

GOOD = format_answer("Key observations: AU6 and AU12 from 0.4 s to 1.6 s. Conclusion: happy.", "happy", None, ["AU6"])
MALFORMED = [
    "",
    "happy",
    "<think>no answer</think>",
    '<answer>{"emotion": "happy"}</answer>',  # no think
    "<think>x</think><answer>{emotion: happy}</answer>",  # wrong JSON
    '<think>x</think><answer>{"emotion": ["happy"]}</answer>',  # emotion not a string
    '<think>x</think><answer>{"emotion": "zorblax"}</answer>',  # unknown label
    '<think>x</think><answer>{"emotion": "happy"}</answer> trailing',
    "<think>AU12 " + "very " * 50_000 + '</think><answer>{"emotion": "happy"}</answer>',  # huge, cut before the answer
]


def as_chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_format_reward_good_and_malformed():
    assert R.format_reward([GOOD]) == [1.0]
    assert R.format_reward(MALFORMED) == [0.0] * len(MALFORMED)


def test_chat_completions_score_like_strings():
    texts = [GOOD, *MALFORMED[:4]]
    kwargs = {"emotion": ["happiness"] * 5, "aus": [["AU6", "AU12"]] * 5}
    for fn in (R.format_reward, R.emotion_reward, R.au_reward):
        assert fn([as_chat(t) for t in texts], **kwargs) == fn(texts, **kwargs)


def test_emotion_reward_synonyms_and_missing_labels():
    outs = [
        '<think>.</think><answer>{"emotion": "joyful"}</answer>',
        '<think>.</think><answer>{"emotion": "sad"}</answer>',
        "<think>.</think><answer>Furious</answer>",
        "",
        '<think>.</think><answer>{"emotion": "happy"}</answer>',
    ]
    assert R.emotion_reward(outs, emotion=["happiness", "happy", "angry", "anger", None]) == [1.0, 0.0, 1.0, 0.0, None]


def test_au_reward_values():
    def out(think: str, aus: list[str] | None = None) -> str:
        return format_answer(think, "happy", None, aus)

    completions = [
        out("AU6 and AU12 are active."),  # exact: F1 = 1
        out("AU12 is active."),  # P=1 R=.5 F1=2/3
        out("AU4 and AU15."),  # F1 = 0
        out("A big smile."),  # nothing named
        out("A big smile.", ["AU6", "AU12"]),  # named in the answer only
        out("Nothing moves."),  # gold empty, nothing named
        out("AU6 is active."),  # sample without AU labels
        "<think>AU6 AU12</think><answer>{broken</answer>",  # malformed answer, reasoning still names AUs
    ]
    gold = [["AU6", "AU12"]] * 5 + [[], None, ["au06", "AU 12"]]
    got = R.au_reward(completions, aus=gold)
    assert got == [1.0, pytest.approx(1 / 3), -1.0, -1.0, 1.0, 1.0, None, 1.0]


def test_au_reward_malformed_never_raises():
    got = R.au_reward(MALFORMED, aus=[["AU12"]] * len(MALFORMED))
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in got)
    # Empty names nothing; the huge one is cut before its </think>, so its AU12 is not read as reasoning.
    assert got[0] == -1.0 and got[-1] == -1.0


def test_compound_reward_exact_partial_none():
    def out(emotion: str, compound: str | None) -> str:
        return format_answer("x", emotion, compound, [])

    completions = [
        out("surprise", "Happily-Surprised"),
        out("surprise", "fearfully surprised"),
        out("happiness", None),
        out("anger", "sadly angry"),
        out("happiness", None),
        "garbage",
    ]
    gold = ["happily surprised"] * 4 + [None, "happily surprised"]
    assert R.REWARDS["compound"](completions, compound=gold) == [1.0, 0.5, 0.5, 0.0, None, 0.0]
    assert R.CompoundReward(partial=0.25)([completions[1]], compound=[gold[1]]) == [0.25]
    # the one registry gives GRPO, synthesis and the held-out evaluation the recipe's partial credit alike
    (compound,) = R.get_reward_funcs(["compound"], compound_partial=0.25)
    assert compound([completions[1]], compound=[gold[1]]) == [0.25]
    assert R.score_completions([completions[1]], ["compound"], 0.25, compound=[gold[1]]) == [{"compound": 0.25}]
    with pytest.raises(ConfigError):
        R.CompoundReward(partial=2)


def test_misaligned_column_is_an_error():
    with pytest.raises(ValueError, match="2 values for 1"):
        R.emotion_reward([GOOD], emotion=["happy", "sad"])


def test_registry_and_unknown_name():
    assert set(R.REWARDS) == {"format", "emotion", "au", "compound", "faithfulness", "caption"}
    with pytest.raises(ConfigError, match="unknown reward 'accuracy'"):
        R.get_reward_funcs(["format", "accuracy"])


def test_score_completions_shapes():
    scores = R.score_completions(
        [GOOD, "x"], ["format", "emotion", "au"], emotion=["happy", None], aus=[["AU6"], None]
    )
    assert scores == [
        {"format": 1.0, "emotion": 1.0, "au": pytest.approx(1 / 3)},
        {"format": 0.0, "emotion": None, "au": None},
    ]


@pytest.fixture
def evidence_file(tmp_path):
    return make_evidence(tmp_path / "ev.json", [("AU6", 0.4, 0.9, 1.6, 3.0), ("AU12", 0.5, 1.0, 1.6, 4.0)])


def test_faithfulness_reward_counts_unsupported_claims(monkeypatch, evidence_file):
    """The reward's arithmetic, with a stand-in checker that flags AUs absent from the evidence and times past 3 s."""

    def check(text, ev):
        from emoreason.parsing import find_times, parse_output

        shown = {e.au for e in ev.au_events}
        p = parse_output(text)
        return types.SimpleNamespace(
            unsupported_aus=[a for a in p.think_aus if a not in shown],
            unsupported_times=[t for t in find_times(p.think or "") if t > ev.media.duration_s],
            score=None,
        )

    monkeypatch.setitem(
        sys.modules, "emoreason.reasoning.faithfulness", types.SimpleNamespace(check_faithfulness=check)
    )
    completions = [
        format_answer("AU6 and AU12 rise at 0.5 s.", "happy"),  # 3 claims, all supported
        format_answer("AU6, AU12 and AU4 at 0.5 s.", "happy"),  # 4 claims, AU4 unsupported
        format_answer("AU9 at 7 s.", "disgust"),  # 2 claims, both unsupported
        format_answer("She smiles.", "happy"),  # no claims
        format_answer("AU6.", "happy"),  # no evidence for this sample
    ]
    got = R.faithfulness_reward(completions, evidence=[str(evidence_file)] * 4 + [None])
    assert got == [1.0, 0.5, -1.0, 0.0, None]


def test_faithfulness_reward_with_the_real_checker(evidence_file):
    good = format_answer("Key observations: AU6 and AU12 from 0.4 s to 1.6 s.", "happy")
    bad = format_answer("Key observations: AU9 and AU15 at 2.5 s.", "disgust")
    r_good, r_bad = R.faithfulness_reward([good, bad], evidence=[str(evidence_file)] * 2)
    assert r_good > r_bad


def test_caption_reward_uses_metrics(monkeypatch):
    calls = []

    def caption_scores(pred, ref):
        calls.append((pred, ref))
        return {"score": 0.25}

    monkeypatch.setitem(sys.modules, "emoreason.metrics", types.SimpleNamespace(caption_scores=caption_scores))
    got = R.caption_reward([GOOD, "plain text"], caption=["A broad smile.", None])
    assert got == [0.25, None]
    assert calls == [("Key observations: AU6 and AU12 from 0.4 s to 1.6 s. Conclusion: happy.", "A broad smile.")]


def test_caption_reward_with_the_real_metric():
    ref = "The man raises his cheeks and smiles broadly."
    close = format_answer("The man raises his cheeks and smiles broadly.", "happy")
    far = format_answer("Nothing.", "neutral")
    r_close, r_far = R.caption_reward([close, far], caption=[ref, ref])
    assert r_close > r_far


@pytest.mark.parametrize("module", ["emoreason.rewards", "emoreason.training.synthesize"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
