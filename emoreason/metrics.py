"""Every evaluation metric of EmoReason, defined once; the training rewards call the same functions.

Model outputs are read with :func:`emoreason.parsing.parse_output` and labels are normalised with
:mod:`emoreason.knowledge.taxonomy` and :mod:`emoreason.knowledge.facs`, so a reward and a score can never disagree
about what an output says. Each function states its exact formula; the data cards in ``data_cards/`` repeat them.

Conventions: all scores are in [0, 1]; an average over classes uses the classes seen in the references *or* the
predictions (as ``sklearn``'s ``average="macro"`` does), so a fixture with three classes is not scored over eleven.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from emoreason.caption_events import Event, extract_events, relation
from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD, normalize_au
from emoreason.knowledge.taxonomy import (
    UNCERTAIN,
    UnknownLabelError,
    normalize_compound,
    normalize_emotion,
)
from emoreason.parsing import parse_output

__all__ = [
    "CAPTION_KEYS",
    "au_f1",
    "au_occurrence",
    "caption_scores",
    "classification_scores",
    "compound_from_output",
    "emotion_from_output",
    "faithfulness_score",
    "lcs_length",
    "macro_f1",
    "open_vocab_scores",
    "open_vocab_words",
    "rouge_l",
]

# ---------------------------------------------------------------------------------------------------------------------
# Sequences


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (O(len(a)·len(b)) dynamic programme).

    >>> lcs_length("brow smile open".split(), "brow open smile".split())
    2
    """
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _lcs_matched(rel: list[list[str]]) -> int:
    """LCS length of two sequences given their pairwise relation matrix (equal = ``"match"``)."""
    if not rel or not rel[0]:
        return 0
    prev = [0] * (len(rel[0]) + 1)
    for row in rel:
        cur = [0]
        for j, r in enumerate(row):
            cur.append(prev[j] + 1 if r == "match" else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


# ---------------------------------------------------------------------------------------------------------------------
# Temporal caption score (FEC-Bench style)

CAPTION_KEYS = ("content_precision", "content_recall", "content_f1", "temporal", "contradictions", "score")
Judge = Callable[[Event, Event], str]  # (predicted event, reference event) -> "match" | "contradiction" | "unrelated"


def caption_scores(pred: str, ref: str, judge: Judge | None = None) -> dict[str, float]:
    """Content and temporal consistency of a predicted caption against a reference caption.

    Both captions become event sequences (:func:`emoreason.caption_events.extract_events`), and every (predicted,
    reference) pair of events is related once by ``judge`` — default the lexicon rule
    :func:`emoreason.caption_events.relation`; pass an LLM judge with the same signature to replace it — as
    ``match``, ``contradiction`` or ``unrelated``. Each predicted event, in order, is paired with the earliest still
    unpaired reference event it matches; a predicted event left unpaired is a *contradiction* if it contradicts any
    reference event, else *unrelated*. With ``m`` pairs, ``P`` predicted and ``R`` reference events, ``c``
    contradictions, and ``LCS`` the longest common subsequence of the two event sequences (two events are equal when
    they match)::

        content_precision = m / P            content_recall = m / R        content_f1 = 2pr / (p + r)
        temporal          = min(1, LCS / m)
        score             = content_f1 · (1 + temporal) / 2 · (1 − c / P)

    so ``temporal`` judges only the order of what both captions share (1 = same order; reversing ``n`` distinct
    events gives ``1/n``), half of ``score`` depends on the order, and every contradiction removes its share of the
    predicted events. With no events on either side every value is 0; ``n_pred``/``n_ref`` tell that case apart.

    >>> s = caption_scores("Her brows raise, then she smiles.", "She smiles after raising her eyebrows.")
    >>> (s["content_f1"], s["temporal"], s["score"])
    (1.0, 1.0, 1.0)
    >>> round(caption_scores("She smiles, then her brows raise.", "Her brows raise, then she smiles.")["score"], 3)
    0.75
    """
    judge = judge or relation
    p_events, r_events = extract_events(pred), extract_events(ref)
    rel = [[judge(pe, re_) for re_ in r_events] for pe in p_events]
    free = list(range(len(r_events)))
    m = contradictions = 0
    for row in rel:
        hit = next((j for j in free if row[j] == "match"), None)
        if hit is not None:
            free.remove(hit)
            m += 1
        elif "contradiction" in row:
            contradictions += 1
    n_p, n_r = len(p_events), len(r_events)
    precision = m / n_p if n_p else 0.0
    recall = m / n_r if n_r else 0.0
    f1 = _f1(precision, recall)
    temporal = min(1.0, _lcs_matched(rel) / m) if m else 0.0
    score = f1 * (1 + temporal) / 2 * (1 - contradictions / n_p) if n_p else 0.0
    return {
        "content_precision": precision,
        "content_recall": recall,
        "content_f1": f1,
        "temporal": temporal,
        "contradictions": float(contradictions),
        "score": score,
        "n_pred": float(n_p),
        "n_ref": float(n_r),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Reading labels out of model outputs


def emotion_from_output(text: str) -> str | None:
    """The emotion an output names, or None.

    Rule: when the output has an ``<answer>`` block, its emotion as the shared parser reads it (the rewards read the
    same; an unknown or malformed answer gives None); an output without one (a model that ignored the format) goes
    whole through :func:`taxonomy.normalize_emotion` (exact name / adjective / wheel word of the whole text first,
    then the first wheel word in the text). None is counted as a wrong answer.

    >>> emotion_from_output('<think>AU6+AU12.</think><answer>{"emotion": "joyful"}</answer>')
    'happiness'
    >>> emotion_from_output("The woman seems rather annoyed, not sad.")
    'anger'
    """
    parsed = parse_output(text)
    if parsed.answer_raw is not None:
        return parsed.emotion
    try:
        return normalize_emotion(text)
    except UnknownLabelError:
        return None


def compound_from_output(text: str) -> str | None:
    """The compound label an output names (answer ``compound`` field, else the whole text), or None."""
    parsed = parse_output(text)
    if parsed.compound is not None:
        return parsed.compound
    if parsed.answer is not None:
        return None
    try:
        return normalize_compound(parsed.answer_raw if parsed.answer_raw is not None else text)
    except UnknownLabelError:
        return None


# ---------------------------------------------------------------------------------------------------------------------
# Classification: WAR / UAR


def classification_scores(
    preds: Sequence[str | None], refs: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """WAR, UAR and the confusion matrix of single-label predictions (None = no usable answer, always wrong).

    ``war`` (weighted average recall) = correct / N = accuracy. ``uar`` (unweighted average recall) = mean over the
    reference classes of (correct in class / samples of class). ``confusion[ref][pred]`` counts; a missing prediction
    is the column ``"<none>"``.

    >>> s = classification_scores(["happiness", "happiness", "anger", None], ["happiness", "sadness", "anger", "anger"])
    >>> (s["war"], s["uar"])
    (0.5, 0.5)
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    if not refs:
        return {"war": 0.0, "uar": 0.0, "n": 0, "per_class_recall": {}, "confusion": {}, "invalid": 0}
    classes = list(labels) if labels else sorted(set(refs))
    confusion: dict[str, Counter] = {c: Counter() for c in classes}
    for p, r in zip(preds, refs, strict=True):
        confusion.setdefault(r, Counter())[p if p is not None else "<none>"] += 1
    support = Counter(refs)
    recall = {c: confusion[c][c] / support[c] for c in confusion if support[c]}
    correct = sum(confusion[c][c] for c in confusion)
    return {
        "war": correct / len(refs),
        "uar": sum(recall.values()) / len(recall),
        "n": len(refs),
        "invalid": sum(p is None for p in preds),
        "per_class_recall": recall,
        "confusion": {r: dict(row) for r, row in confusion.items()},
    }


def macro_f1(preds: Sequence[str | None], refs: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Macro F1 over classes: F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c), averaged over ``labels`` seen in the references
    or predictions (all of ``labels`` when None is given: the classes seen). Used for C-EXPR-DB compounds.

    >>> round(macro_f1(["a", "b", "b"], ["a", "b", "a"])["macro_f1"], 4)
    0.6667
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    seen = set(refs) | {p for p in preds if p is not None}
    classes = [c for c in labels if c in seen] if labels else sorted(seen)
    per_class: dict[str, float] = {}
    for c in classes:
        tp = sum(p == c and r == c for p, r in zip(preds, refs, strict=True))
        fp = sum(p == c and r != c for p, r in zip(preds, refs, strict=True))
        fn = sum(p != c and r == c for p, r in zip(preds, refs, strict=True))
        per_class[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    accuracy = sum(p == r for p, r in zip(preds, refs, strict=True)) / len(refs) if refs else 0.0
    return {
        "macro_f1": sum(per_class.values()) / len(per_class) if per_class else 0.0,
        "accuracy": accuracy,
        "per_class_f1": per_class,
        "n": len(refs),
        "invalid": sum(p is None for p in preds),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Action Units


def au_occurrence(intensities: Mapping[str, float], threshold: float = OCCURRENCE_THRESHOLD) -> set[str]:
    """AUs that *occur*: intensity >= ``threshold`` on the 0-5 scale (BP4D/DISFA protocol, FACS "B" = 2).

    >>> sorted(au_occurrence({"AU6": 2.0, "au12": 3.5, "AU4": 1.0}))
    ['AU12', 'AU6']
    """
    return {normalize_au(a) for a, v in intensities.items() if v is not None and v >= threshold}


def au_f1(preds: Sequence[Iterable[str]], refs: Sequence[Iterable[str]], aus: Sequence[str]) -> dict[str, Any]:
    """Per-AU F1 over samples and their mean (the BP4D/DISFA detection metric).

    For AU ``a``: TP/FP/FN count samples where ``a`` is predicted and present / predicted and absent / missed;
    F1_a = 2·TP / (2·TP + FP + FN). ``mean_f1`` averages the AUs of ``aus`` (the protocol's list); an AU with no
    positive and no prediction anywhere (F1 undefined) is reported as None and left out of the mean.

    >>> s = au_f1([{"AU6", "AU12"}, {"AU4"}], [{"AU6", "AU12"}, {"AU12"}], ["AU4", "AU6", "AU12"])
    >>> (s["per_au"], round(s["mean_f1"], 4))
    ({'AU4': 0.0, 'AU6': 1.0, 'AU12': 0.6667}, 0.5556)
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    codes = [normalize_au(a) for a in aus]
    p_sets = [{normalize_au(a) for a in p} for p in preds]
    r_sets = [{normalize_au(a) for a in r} for r in refs]
    per_au: dict[str, float | None] = {}
    for a in codes:
        tp = sum(a in p and a in r for p, r in zip(p_sets, r_sets, strict=True))
        fp = sum(a in p and a not in r for p, r in zip(p_sets, r_sets, strict=True))
        fn = sum(a not in p and a in r for p, r in zip(p_sets, r_sets, strict=True))
        per_au[a] = round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else None
    defined = [v for v in per_au.values() if v is not None]
    return {"mean_f1": sum(defined) / len(defined) if defined else 0.0, "per_au": per_au, "n": len(refs)}


# ---------------------------------------------------------------------------------------------------------------------
# Open vocabulary (AffectGPT / MER-UniBench style)


def open_vocab_words(text: str) -> list[str]:
    """Emotion words of an output: the answer's ``words`` list when it has one, else its ``emotion`` and the two
    components of its ``compound``; for free text, every emotion word in it (caption event extraction)."""
    parsed = parse_output(text)
    if parsed.answer is not None:
        words = parsed.answer.get("words")
        if isinstance(words, list):
            return [str(w) for w in words]
        out = [str(parsed.answer.get("emotion") or "")]
        if parsed.compound:
            out.extend(parsed.compound.split())
        return [w for w in out if w]
    body = parsed.answer_raw if parsed.answer_raw is not None else text
    if "," in body and len(body) < 200:
        return [w.strip() for w in body.split(",") if w.strip()]
    return [e.key.split(":", 1)[1] for e in extract_events(body) if e.is_emotion and not e.negated]


def _wheel_group(words: Iterable[str]) -> tuple[set[str], list[str]]:
    groups: set[str] = set()
    unknown: list[str] = []
    for w in words:
        try:
            g = normalize_emotion(w)
        except UnknownLabelError:
            unknown.append(w)
            continue
        if g != UNCERTAIN:
            groups.add(g)
    return groups, unknown


def open_vocab_scores(pred_words: Iterable[str], ref_words: Iterable[str]) -> dict[str, Any]:
    """Hit rate, precision and recall of predicted emotion words against reference words, after grouping both sides
    on the emotion wheel (every word → its basic emotion with ``taxonomy.normalize_emotion``; words the wheel does not
    know are dropped and listed). With G_p and G_r the two sets of groups::

        hit = 1 if G_p ∩ G_r else 0    precision = |G_p ∩ G_r| / |G_p|    recall = |G_p ∩ G_r| / |G_r|

    (0 when the denominator is empty); F1 from these. Averaged over samples by the harness.

    >>> s = open_vocab_scores(["delighted", "nervous"], ["happy", "excited", "surprised"])
    >>> (s["hit"], s["precision"], s["recall"])
    (1.0, 0.5, 0.5)
    """
    gp, unknown_p = _wheel_group(pred_words)
    gr, unknown_r = _wheel_group(ref_words)
    inter = gp & gr
    precision = len(inter) / len(gp) if gp else 0.0
    recall = len(inter) / len(gr) if gr else 0.0
    return {
        "hit": 1.0 if inter else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "pred_groups": sorted(gp),
        "ref_groups": sorted(gr),
        "unknown_words": unknown_p + unknown_r,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Explanations


def _tokens(text: str) -> list[str]:
    return "".join(ch.lower() if ch.isalnum() else " " for ch in text).split()


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 (Lin 2004, with β = 1 as in ``rouge-score``): LCS of lower-cased alphanumeric tokens,
    P = LCS / |pred|, R = LCS / |ref|, F = 2PR / (P + R).

    >>> round(rouge_l("the cat sat on the mat", "the cat lay on the mat"), 4)
    0.8333
    """
    p, r = _tokens(pred), _tokens(ref)
    lcs = lcs_length(p, r)
    if not lcs:
        return 0.0
    return _f1(lcs / len(p), lcs / len(r))


def faithfulness_score(text: str, evidence: Any) -> float:
    """Share of the claims in ``text`` backed by ``evidence``: the reasoning module's
    ``check_faithfulness(text, evidence).score``. Raises ``ModuleNotFoundError`` until that module exists."""
    from emoreason.reasoning.faithfulness import check_faithfulness

    return float(check_faithfulness(text, evidence).score)
