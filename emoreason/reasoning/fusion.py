"""Per-modality emotion distributions and their fusion: face (learned reader, else AU prototypes), voice, words.

Everything is a small, stated formula so the report can say why a number is what it is:

- Face, learned (the default when perception ran the face reader, ``Evidence.reader``): the reader's per-frame
  probabilities (:mod:`emoreason.perception.reader`, trained on real, human-labelled faces; its own late-fusion weights
  were fitted by identity-grouped cross-validation), read at the window's apex (:func:`reader_distribution`).
- Face, from AUs only (evidence without a reader cue): soft prototype matching. Each AU's intensity is mapped to an activation in [0, 1]
  (``(I - FLOOR) / (SATURATION - FLOOR)``, clipped: landmark-geometry AUs idle around 1 on a neutral face). An emotion's
  score is the weighted coverage of its prototype AUs minus ``CONTRADICTION_PENALTY`` x the strongest contradicting AU;
  neutral scores ``NEUTRAL_SCALE`` x (1 - overall activation). A temperature softmax turns scores into probabilities.
- Voice: an arousal estimate in [-1, 1] from speaking rate, pitch variability and pitch range against conversational
  norms (Scherer 2003, "Vocal communication of emotion": high arousal raises f0 variability, range and rate), turned into
  a broad distribution over emotions by closeness of each emotion's arousal (taxonomy.VAD) to it.
- Expression (when perception ran a visual classifier, ``Evidence.expression``): its per-frame probabilities averaged
  over the window, smoothed by ``EXPRESSION_EPS`` so labels it lacks (contempt) are not ruled out.
- Words: lexicon votes (:mod:`emoreason.knowledge.lexicon`) with add-``WORD_PRIOR`` smoothing.
- Fusion: a linear opinion pool with weights ``BASE_WEIGHTS`` scaled by each modality's reliability (face coverage,
  speech present, number of emotion words), renormalised over the modalities present.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from emoreason.evidence import Prosody
from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD
from emoreason.knowledge.lexicon import LexiconScore
from emoreason.knowledge.prototypes import CONTRADICTIONS, PROTOTYPES
from emoreason.knowledge.taxonomy import ALL_EMOTIONS, VAD

FLOOR = 1.0  # AU intensity that counts as idle
SATURATION = 3.5  # AU intensity that counts as fully present
CONTRADICTION_PENALTY = 0.5
NEUTRAL_SCALE = 0.5
TEMPERATURE = 0.2
VOICE_SIGMA = 0.5  # spread of the arousal likelihood
WORD_PRIOR = 0.3  # add-k smoothing of lexicon votes
# Modality weights, set by hand: the labelled photos carry one modality (the face), so they cannot fit the weights
# between modalities; the face leads because it is the modality EmoReason reads best (dev UAR 0.55 on real faces).
BASE_WEIGHTS = {"face": 0.6, "expression": 0.25, "voice": 0.15, "words": 0.25}
EXPRESSION_EPS = 0.02
# Reader apex: frames whose expressiveness (1 - p(neutral)) reaches READER_APEX_FRACTION of the window's most
# expressive frame are averaged; a clip is labelled at its height (as DFEW/MAFW annotators label), an idle window reads
# neutral. A still photo's frames are all alike, so this is the photo's own reading.
READER_APEX_FRACTION = 0.8
# Open set when the face is read by the learned reader: "uncertain" when the best fused probability is under
# READER_UNCERTAIN_BELOW and under READER_UNCERTAIN_RATIO x the runner-up. Fitted by train/face_reader_fit.py
# (fit_open_set) on the reader's train out-of-fold probabilities: the widest abstention (4.6 % of photos, budget 5 %)
# whose withheld calls were right at most half as often as the calls given (28 % against 68 %).
READER_UNCERTAIN_BELOW = 0.34
READER_UNCERTAIN_RATIO = 1.1
# A reader's happiness without AU12 (peak under OCCURRENCE_THRESHOLD) keeps this share of its mass; the rest moves to
# neutral. On the train out-of-fold photos 742 of 3,698 happiness reads lacked AU12; moving all of it (0.0) costs 0.015
# UAR (0.563 -> 0.548; renormalising over the other emotions instead cost 0.010 but called those smiles disgusted or
# sad), the price of a happiness call that always cites AU12.
READER_NO_AU12_FACTOR = 0.0
# Conversational norms for the arousal estimate (adult read/conversational speech: ~4 syllables/s, f0 SD about 12% of
# the mean, ~6 semitones of range).
NORM_RATE_SPS, NORM_F0_CV, NORM_RANGE_ST = 4.0, 0.12, 6.0


def activation(intensity: float | None) -> float:
    """An AU intensity (0-5) as an activation in [0, 1]."""
    if intensity is None or math.isnan(intensity):
        return 0.0
    return min(1.0, max(0.0, (intensity - FLOOR) / (SATURATION - FLOOR)))


def softmax(scores: Mapping[str, float], temperature: float = TEMPERATURE) -> dict[str, float]:
    m = max(scores.values())
    exps = {k: math.exp((v - m) / temperature) for k, v in scores.items()}
    z = sum(exps.values())
    return {k: v / z for k, v in exps.items()}


def prototype_coverage(intensities: Mapping[str, float | None]) -> dict[str, float]:
    """Weighted coverage of each emotion's prototype AUs (only AUs the evidence measures count)."""
    out: dict[str, float] = {}
    for emotion, proto in PROTOTYPES.items():
        present = {au: w for au, w in proto.items() if au in intensities}
        total = sum(present.values())
        out[emotion] = sum(w * activation(intensities[au]) for au, w in present.items()) / total if total else 0.0
    return out


def face_scores(intensities: Mapping[str, float | None]) -> dict[str, float]:
    """Unnormalised scores over ALL_EMOTIONS from one set of AU intensities."""
    cov = prototype_coverage(intensities)
    acts = sorted((activation(v) for v in intensities.values()), reverse=True)
    overall = sum(acts[:3]) / 3 if acts else 0.0
    scores = {"neutral": NEUTRAL_SCALE * (1.0 - overall)}
    for emotion, c in cov.items():
        contra = [activation(intensities.get(au)) for au in CONTRADICTIONS.get(emotion, ()) if au in intensities]
        scores[emotion] = c - CONTRADICTION_PENALTY * (max(contra) if contra else 0.0)
    return {e: scores[e] for e in ALL_EMOTIONS}


def face_distribution(intensities: Mapping[str, float | None]) -> dict[str, float]:
    return softmax(face_scores(intensities))


def voice_arousal(p: Prosody) -> float | None:
    """Arousal in [-1, 1] from prosody, or None when there is no speech to judge."""
    parts: list[float] = []
    if p.speaking_rate_sps is not None:
        parts.append((p.speaking_rate_sps - NORM_RATE_SPS) / 2.0)
    if p.f0_std_hz is not None and p.f0_mean_hz:
        parts.append((p.f0_std_hz / p.f0_mean_hz - NORM_F0_CV) / NORM_F0_CV)
    if p.f0_range_semitones is not None:
        parts.append((p.f0_range_semitones - NORM_RANGE_ST) / NORM_RANGE_ST)
    if not parts or p.speech_ratio <= 0:
        return None
    return max(-1.0, min(1.0, sum(parts) / len(parts)))


def voice_distribution(arousal: float) -> dict[str, float]:
    """A broad distribution over emotions: how close each emotion's arousal is to the voice's."""
    like = {e: math.exp(-((VAD[e][1] - arousal) ** 2) / (2 * VOICE_SIGMA**2)) for e in ALL_EMOTIONS}
    z = sum(like.values())
    return {e: v / z for e, v in like.items()}


def expression_distribution(labels: list[str], rows: list[list[float]]) -> dict[str, float]:
    """Mean of a classifier's per-frame probabilities, over ALL_EMOTIONS (labels are taxonomy names)."""
    mean = {e: EXPRESSION_EPS for e in ALL_EMOTIONS}
    for row in rows:
        for label, q in zip(labels, row, strict=True):
            if label in mean:
                mean[label] += q / len(rows)
    z = sum(mean.values())
    return {e: v / z for e, v in mean.items()}


def reader_distribution(labels: list[str], rows: list[list[float]]) -> dict[str, float]:
    """The learned reader's distribution over a window: the mean of its frames at the window's apex, over ALL_EMOTIONS
    (labels it lacks, contempt, get ``EXPRESSION_EPS`` before renormalising)."""
    if not rows:
        raise ValueError("reader_distribution needs at least one frame")
    i_neutral = labels.index("neutral") if "neutral" in labels else None
    expr = [1.0 - (r[i_neutral] if i_neutral is not None else 0.0) for r in rows]
    top = max(expr)
    apex = [r for r, x in zip(rows, expr, strict=True) if x >= READER_APEX_FRACTION * top - 1e-9]
    mean = dict.fromkeys(ALL_EMOTIONS, 0.0)
    for r in apex:
        for label, q in zip(labels, r, strict=True):
            if label in mean:
                mean[label] += q / len(apex)
    mean = {e: v if v > 0 else EXPRESSION_EPS for e, v in mean.items()}
    z = sum(mean.values())
    return {e: v / z for e, v in mean.items()}


def gate_happiness(dist: Mapping[str, float], au12_peak: float | None) -> dict[str, float]:
    """A happiness read needs its evidence: when the window's AU12 peak is under ``OCCURRENCE_THRESHOLD`` (or AU12 was
    not measured), all but ``READER_NO_AU12_FACTOR`` of the reader's happiness mass moves to neutral (a smile the AUs
    do not see reads as a resting face, not as the runner-up), so a happiness call always comes with AU12 in the
    evidence the explanation cites."""
    if au12_peak is not None and au12_peak >= OCCURRENCE_THRESHOLD:
        return dict(dist)
    out = dict(dist)
    moved = out["happiness"] * (1.0 - READER_NO_AU12_FACTOR)
    out["happiness"] -= moved
    out["neutral"] += moved
    return out


def words_distribution(score: LexiconScore) -> dict[str, float]:
    votes = {e: score.counts.get(e, 0.0) + WORD_PRIOR for e in ALL_EMOTIONS}
    if not score.counts:  # no emotion words: the words lean neutral
        votes["neutral"] += 1.0
    z = sum(votes.values())
    return {e: v / z for e, v in votes.items()}


def fuse(dists: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    """Linear opinion pool; weights are renormalised over the modalities given. Empty input gives a uniform answer."""
    used = {m: weights[m] for m in dists if weights.get(m, 0.0) > 0}
    total = sum(used.values())
    if not total:
        return {e: 1.0 / len(ALL_EMOTIONS) for e in ALL_EMOTIONS}
    return {e: sum(used[m] * dists[m][e] for m in used) / total for e in ALL_EMOTIONS}
