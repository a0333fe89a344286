"""AU prototypes and the transcript lexicon: tables consistent with the FACS table and the taxonomy; negation."""

from __future__ import annotations

from emoreason.knowledge.facs import AUS
from emoreason.knowledge.lexicon import LEXICON, score_text
from emoreason.knowledge.prototypes import CONTRADICTIONS, PROTOTYPES
from emoreason.knowledge.taxonomy import ALL_EMOTIONS
from emoreason.reasoning import fusion


def test_prototypes_cover_every_non_neutral_emotion_with_known_aus():
    assert set(PROTOTYPES) == set(ALL_EMOTIONS) - {"neutral"}
    assert set(CONTRADICTIONS) == set(PROTOTYPES)
    for emotion, proto in PROTOTYPES.items():
        assert all(au in AUS for au in proto), emotion
        assert all(0 < w <= 1 for w in proto.values())
        assert not set(proto) & set(CONTRADICTIONS[emotion]), emotion  # an AU never both supports and contradicts


def test_emfacs_cores():
    core = {e: {au for au, w in p.items() if w == 1.0} for e, p in PROTOTYPES.items()}
    assert core["happiness"] == {"AU6", "AU12"}
    assert core["sadness"] == {"AU1", "AU4", "AU15"}
    assert core["surprise"] == {"AU1", "AU2", "AU5", "AU26"}
    assert {"AU4", "AU7", "AU23"} <= core["anger"]


def test_soft_matching_coverage_and_penalty():
    rest = {au: 0.5 for au in AUS}
    smile = rest | {"AU6": 3.5, "AU12": 3.5}
    cov = fusion.prototype_coverage(smile)
    assert cov["happiness"] > 0.8 and cov["sadness"] == 0.0
    half = fusion.prototype_coverage(rest | {"AU12": 3.5})["happiness"]
    assert 0.3 < half < 0.6  # one of the two core AUs
    scores = fusion.face_scores(rest | {"AU1": 3.5, "AU4": 3.5, "AU15": 3.5, "AU12": 3.5})
    plain = fusion.face_scores(rest | {"AU1": 3.5, "AU4": 3.5, "AU15": 3.5})
    assert scores["sadness"] < plain["sadness"]  # the smile contradicts sadness
    p = fusion.face_distribution(rest)
    assert max(p, key=p.get) == "neutral"


def test_missing_series_drop_out_of_the_match():
    only = {"AU9": 3.5}  # AU10/AU15/AU16/AU17 not measured: AU9 alone covers disgust
    assert fusion.prototype_coverage(only)["disgust"] == 1.0


def test_lexicon_counts_and_negation():
    s = score_text("What wonderful news, I'm so happy!")
    assert s.counts == {"happiness": 2.0} and s.valence == 1.0
    neg = score_text("I am not happy about this")
    assert neg.hits[0].negated and neg.counts == {"sadness": 1.0} and neg.valence == -1.0
    far = score_text("not that it matters much but I am happy")  # negator outside the 3-word window
    assert far.counts == {"happiness": 1.0}
    assert score_text("the table is brown").n == 0
    assert LEXICON["furious"] == "anger"


def test_voice_arousal_from_prosody():
    from tests.test_reasoning import make_evidence

    hi = fusion.voice_arousal(make_evidence(arousal="animated").prosody)
    lo = fusion.voice_arousal(make_evidence(arousal="flat").prosody)
    assert hi > 0.3 > -0.3 > lo
    d = fusion.voice_distribution(hi)
    assert d["anger"] > d["sadness"]
