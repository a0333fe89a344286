"""Every metric against hand-computed values, and the caption score's properties."""

from __future__ import annotations

import doctest

import pytest

from emoreason import caption_events, metrics
from emoreason.caption_events import Event, extract_events, relation
from emoreason.metrics import (
    au_f1,
    au_occurrence,
    caption_scores,
    classification_scores,
    compound_from_output,
    emotion_from_output,
    lcs_length,
    macro_f1,
    open_vocab_scores,
    open_vocab_words,
    rouge_l,
)
from emoreason.parsing import format_answer


@pytest.mark.parametrize("module", [metrics, caption_events])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --- caption events ---------------------------------------------------------------------------------------------------


def labels(text: str) -> list[str]:
    return [e.label for e in extract_events(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Her brows raise.", ["brow_raise"]),
        ("She raises her eyebrows.", ["brow_raise"]),
        ("His furrowed brows", ["brow_lower"]),
        ("He frowns.", ["brow_lower"]),
        ("The jaw drops.", ["mouth_open"]),
        ("Her lips part slightly.", ["mouth_open"]),
        ("The corners of her mouth turn up.", ["smile"]),
        ("She grins.", ["smile"]),
        ("The corners of his mouth turn down.", ["lip_corner_down"]),
        ("Her eyes widen.", ["eyes_widen"]),
        ("He squints.", ["eyes_narrow"]),
        ("She presses her lips together.", ["lips_press"]),
        ("Her nose wrinkles.", ["nose_wrinkle"]),
        ("He turns his head away.", ["head_turn"]),
        ("She nods.", ["head_nod"]),
        ("He looks furious.", ["emotion:anger"]),
        ("She seems delighted.", ["emotion:happiness"]),
        ("He does not smile.", ["not smile"]),
        ("She doesn't look happy.", ["not emotion:happiness"]),
        ("Her mouth does not open.", ["not mouth_open"]),
        ("A man stands by the window in the rain.", []),
        ("Her eyebrows are raised and her eyes wide open.", ["brow_raise", "eyes_widen"]),
        ("The corners of the mouth rise.", ["smile"]),
        ("The lip corners pull down.", ["lip_corner_down"]),
        ("She looks away, then looks down.", ["head_turn", "head_down"]),
        ("He shows no sign of anger.", ["not emotion:anger"]),
    ],
)
def test_event_lexicon(text, expected):
    assert labels(text) == expected


def test_event_order_words():
    assert labels("First her brows raise, then her mouth opens, and finally she smiles.") == [
        "brow_raise",
        "mouth_open",
        "smile",
    ]
    # "finally" clause written first still comes last; "first" clause written last comes first
    assert labels("Finally she smiles. Her mouth opens. At first her brows raise.") == [
        "brow_raise",
        "mouth_open",
        "smile",
    ]
    # "Y after X" puts X first; a sentence-initial "before X" clause goes after the next clause
    assert labels("She smiles after her brows rise.") == ["brow_raise", "smile"]
    assert labels("Before smiling, she raises her eyebrows.") == ["brow_raise", "smile"]


def test_repeated_action_counts_once():
    assert labels("His brows lower and he frowns.") == ["brow_lower"]


def test_relation_rules():
    assert relation(Event("smile"), Event("smile")) == "match"
    assert relation(Event("smile", True), Event("smile", True)) == "match"
    assert relation(Event("smile", True), Event("smile")) == "contradiction"
    assert relation(Event("brow_raise"), Event("brow_lower")) == "contradiction"
    assert relation(Event("brow_raise", True), Event("brow_lower")) == "unrelated"
    assert relation(Event("emotion:happiness"), Event("emotion:sadness")) == "contradiction"
    assert relation(Event("emotion:surprise"), Event("emotion:happiness")) == "unrelated"  # valence 0.2 is too weak
    assert relation(Event("smile"), Event("head_nod")) == "unrelated"


# --- caption score ----------------------------------------------------------------------------------------------------

REF = "First her eyebrows raise, then her mouth opens, and finally she smiles."


def test_caption_identical_is_one():
    s = caption_scores(REF, REF)
    assert (s["content_precision"], s["content_recall"], s["content_f1"], s["temporal"], s["score"]) == (1, 1, 1, 1, 1)
    assert s["contradictions"] == 0


def test_caption_paraphrase_is_one():
    s = caption_scores("Her brows lift, then her jaw drops; at the end she grins.", REF)
    assert s["score"] == 1.0


def test_caption_reversed_order_lowers_temporal_only():
    reversed_ = "First she smiles, then her mouth opens, and finally her eyebrows raise."
    s = caption_scores(reversed_, REF)
    assert s["content_f1"] == 1.0  # same events
    assert s["temporal"] == pytest.approx(1 / 3)  # LCS of a reversed 3-sequence is 1
    assert s["score"] == pytest.approx((1 + 1 / 3) / 2)
    swapped = caption_scores("First her eyebrows raise, then she smiles, and finally her mouth opens.", REF)
    assert swapped["temporal"] == pytest.approx(2 / 3)
    assert s["score"] < swapped["score"] < 1.0


def test_caption_negation_is_a_contradiction():
    s = caption_scores("First her eyebrows raise, then her mouth opens, but she does not smile.", REF)
    assert s["contradictions"] == 1
    # P = 2/3, R = 2/3, F1 = 2/3, temporal 1, contradiction share 1/3: 2/3 * 1 * (1 - 1/3)
    assert s["content_f1"] == pytest.approx(2 / 3)
    assert s["score"] == pytest.approx(2 / 3 * 2 / 3)


def test_caption_opposite_action_is_a_contradiction():
    s = caption_scores("Her brows lower.", "Her brows raise.")
    assert s["contradictions"] == 1 and s["score"] == 0.0


def test_caption_contradiction_costs_more_than_unrelated():
    unrelated = caption_scores("Her brows raise and she nods.", "Her brows raise.")
    contradicting = caption_scores("Her brows raise and she looks sad. Then she looks happy.", "She looks sad.")
    assert unrelated["contradictions"] == 0 and contradicting["contradictions"] == 1
    # unrelated: P = 1/2, R = 1 -> F1 = 2/3, no penalty
    assert unrelated["score"] == pytest.approx(2 / 3)
    # contradicting: P = 1/3, R = 1 -> F1 = 1/2, one of three events contradicts -> 1/2 * (1 - 1/3)
    assert contradicting["score"] == pytest.approx(1 / 3)


def test_caption_unrelated_is_zero():
    s = caption_scores("He nods and turns his head away.", REF)
    assert s["content_f1"] == 0 and s["temporal"] == 0 and s["score"] == 0 and s["contradictions"] == 0


def test_caption_no_events():
    s = caption_scores("A quiet room.", "A quiet room.")
    assert s["score"] == 0 and s["n_ref"] == 0 and s["n_pred"] == 0


def test_caption_partial_content():
    # prediction: brow_raise, smile, head_nod  vs  reference: brow_raise, mouth_open, smile
    s = caption_scores("Her brows raise, then she smiles and nods.", REF)
    assert s["content_precision"] == pytest.approx(2 / 3) and s["content_recall"] == pytest.approx(2 / 3)
    assert s["temporal"] == 1.0


def test_caption_repeated_event_aligns_for_order():
    # pred: smile, brow_raise, smile; ref: brow_raise, smile -> 2 pairs, and the order of brow_raise -> smile agrees
    s = caption_scores("She smiles. Then her brows raise. Then she smiles.", "Her brows raise, then she smiles.")
    assert (s["content_precision"], s["content_recall"], s["temporal"]) == (pytest.approx(2 / 3), 1.0, 1.0)


def test_caption_llm_judge_hook():
    calls = []

    def judge(p: Event, r: Event) -> str:  # a stand-in for an LLM judge: everything matches
        calls.append((p.key, r.key))
        return "match"

    s = caption_scores("He nods.", "She smiles.", judge=judge)
    assert calls == [("head_nod", "smile")] and s["score"] == 1.0  # each pair is judged once


def test_lcs():
    assert lcs_length([], [1]) == 0
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert lcs_length([1, 2, 3], [3, 2, 1]) == 1


# --- classification ---------------------------------------------------------------------------------------------------


def test_war_uar_confusion():
    refs = ["happiness"] * 4 + ["sadness"] * 2 + ["anger"] * 2
    preds = ["happiness", "happiness", "happiness", "sadness", "sadness", "anger", None, "anger"]
    s = classification_scores(preds, refs)
    assert s["war"] == pytest.approx(5 / 8)
    # recalls: happiness 3/4, sadness 1/2, anger 1/2
    assert s["uar"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert s["confusion"]["anger"] == {"<none>": 1, "anger": 1}
    assert s["invalid"] == 1


def test_classification_length_mismatch():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        classification_scores(["a", "b"], ["a"])


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (format_answer("AU6 and AU12.", "happiness"), "happiness"),
        ('<think>x</think><answer>{"emotion": "irritated"}</answer>', "anger"),
        ("<think>x</think><answer>scared</answer>", "fear"),
        ("The person is clearly disgusted by the food.", "disgust"),  # free text: first wheel word
        ('<think>x</think><answer>{"emotion": "zzz"}</answer>', None),
        ('<think>She looks happy.</think><answer>{"emotion": "zzz"}</answer>', None),  # the answer decides
        ('<think>She looks happy.</think><answer>{"emotion": "happy"</answer>', None),  # malformed answer JSON
        ("no emotion words here", None),
    ],
)
def test_emotion_from_output(text, label):
    assert emotion_from_output(text) == label


def test_compound_from_output():
    assert compound_from_output(format_answer("t", "surprise", "happily surprised")) == "happily surprised"
    assert compound_from_output("surprised and happy") == "happily surprised"
    assert compound_from_output(format_answer("t", "surprise")) is None


def test_macro_f1_hand_computed():
    refs = ["happily surprised", "happily surprised", "sadly angry", "sadly fearful"]
    preds = ["happily surprised", "sadly angry", "sadly angry", None]
    s = macro_f1(preds, refs)
    # happily surprised: tp1 fp0 fn1 -> 2/3; sadly angry: tp1 fp1 fn0 -> 2/3; sadly fearful: tp0 fn1 -> 0
    assert s["per_class_f1"] == pytest.approx({"happily surprised": 2 / 3, "sadly angry": 2 / 3, "sadly fearful": 0})
    assert s["macro_f1"] == pytest.approx(4 / 9)
    assert s["accuracy"] == 0.5


# --- AUs --------------------------------------------------------------------------------------------------------------


def test_au_occurrence_threshold():
    assert au_occurrence({"AU1": 1.99, "AU2": 2.0, "AU12": 4.0, "AU4": None}) == {"AU2", "AU12"}
    assert au_occurrence({"AU1": 1.0}, threshold=1.0) == {"AU1"}


def test_au_f1_hand_computed():
    refs = [{"AU1", "AU2"}, {"AU12"}, {"AU1"}, set()]
    preds = [{"AU1"}, {"AU12", "AU1"}, {"AU1"}, {"AU2"}]
    s = au_f1(preds, refs, ["AU1", "AU2", "AU12", "AU4"])
    # AU1: tp2 fp1 fn0 -> 0.8; AU2: tp0 fp1 fn1 -> 0; AU12: tp1 -> 1; AU4: never -> None (left out)
    assert s["per_au"] == {"AU1": 0.8, "AU2": 0.0, "AU12": 1.0, "AU4": None}
    assert s["mean_f1"] == pytest.approx(0.6)


# --- open vocabulary --------------------------------------------------------------------------------------------------


def test_open_vocab_hand_computed():
    s = open_vocab_scores(["joyful", "amazed", "calm"], ["happy", "delighted", "worried"])
    # groups: pred {happiness, surprise, neutral}, ref {happiness, fear}
    assert (s["hit"], s["precision"], s["recall"]) == (1.0, pytest.approx(1 / 3), 0.5)
    assert s["f1"] == pytest.approx(0.4)
    miss = open_vocab_scores(["angry"], ["sad"])
    assert (miss["hit"], miss["precision"], miss["recall"]) == (0.0, 0.0, 0.0)
    unknown = open_vocab_scores(["flabbergasted-ish", "glad"], ["happy"])
    assert unknown["precision"] == 1.0 and unknown["unknown_words"] == ["flabbergasted-ish"]


def test_open_vocab_words():
    text = '<think>t</think><answer>{"emotion": "happy", "words": ["relieved", "grateful"]}</answer>'
    assert open_vocab_words(text) == ["relieved", "grateful"]
    assert open_vocab_words(format_answer("t", "surprise", "happily surprised")) == [
        "surprise",
        "happily",
        "surprised",
    ]
    assert open_vocab_words("worried, nervous") == ["worried", "nervous"]
    assert open_vocab_words("She looks worried and a bit angry but not sad.") == ["fear", "anger"]


# --- explanations -----------------------------------------------------------------------------------------------------


def test_rouge_l_hand_computed():
    assert rouge_l("a b c d", "a b c d") == 1.0
    assert rouge_l("", "a b") == 0.0
    # LCS("the person smiles", "the person is smiling happily") = 2: P 2/3, R 2/5 -> F 0.5
    assert rouge_l("The person smiles", "the person is smiling, happily") == pytest.approx(0.5)


def test_faithfulness_delegates_to_reasoning_module():
    from emoreason.evidence import Evidence, MediaInfo

    ev = Evidence(media=MediaInfo(path="x.mp4", duration_s=1.0, has_video=True, has_audio=False))
    assert 0.0 <= metrics.faithfulness_score("AU12 rises at 0.5 s.", ev) <= 1.0
