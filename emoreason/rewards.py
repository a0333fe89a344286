"""Reward functions for GRPO and for scoring synthesised data, open-r1 style.

Every reward has the signature ``f(completions, **kwargs) -> list[float | None]``: ``completions`` is a list of strings
or of chat message lists (what TRL passes for conversational datasets), and the dataset's columns arrive as keyword
lists aligned with it (``emotion``, ``compound``, ``aus``, ``evidence``, ``caption``). ``None`` means "this reward does
not apply to this sample" (TRL then ignores it for that sample). All rewards read the output with
:func:`emoreason.parsing.parse_output`, the same parser the metrics use.

:data:`REWARDS` maps a recipe name to a reward; :func:`get_reward_funcs` turns the names of a recipe into callables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from emoreason.errors import ConfigError, DataError
from emoreason.knowledge.facs import normalize_au
from emoreason.knowledge.taxonomy import normalize_compound, normalize_emotion
from emoreason.parsing import ParsedOutput, find_times, parse_output

RewardFunc = Callable[..., list[float | None]]

# Longer completions are parsed only up to this many characters: a runaway generation must not stall training.
MAX_PARSE_CHARS = 20_000


def completion_text(completion: str | Sequence[dict] | None) -> str:
    """The text of one completion, given as a string or as chat messages (the last assistant turn wins).

    >>> completion_text([{"role": "assistant", "content": "<answer>sad</answer>"}])
    '<answer>sad</answer>'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    for message in reversed(list(completion)):
        if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
            content = message.get("content", "")
            if isinstance(content, list):  # multimodal content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _parse(completion: Any) -> ParsedOutput:
    return parse_output(completion_text(completion)[:MAX_PARSE_CHARS])


def _column(kwargs: dict, name: str, n: int) -> list:
    """The dataset column ``name`` aligned with ``n`` completions (all ``None`` when the dataset lacks it)."""
    values = kwargs.get(name)
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _gold_aus(value: Any) -> set[str] | None:
    """A gold AU column value as a set of codes; ``None`` when the sample has no AU labels."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    return {normalize_au(str(a)) for a in value}


def format_reward(completions: list, **kwargs: Any) -> list[float | None]:
    """1.0 when the output is exactly one ``<think>`` block then one ``<answer>`` holding a known emotion, else 0.0.

    >>> format_reward(['<think>Key observations: AU12.</think><answer>{"emotion": "happy"}</answer>', "happy"])
    [1.0, 0.0]
    """
    rewards: list[float | None] = []
    for c in completions:
        p = _parse(c)
        rewards.append(1.0 if p.format_ok and p.emotion is not None and not p.errors else 0.0)
    return rewards


def emotion_reward(completions: list, emotion: list | None = None, **kwargs: Any) -> list[float | None]:
    """1.0 when the answer's emotion equals the gold one after both go through the emotion wheel, else 0.0.

    Synonyms count: "delighted" and "happiness" are the same emotion. ``None`` where the sample has no emotion label.

    >>> emotion_reward(['<think>.</think><answer>{"emotion": "delighted"}</answer>'], emotion=["happy"])
    [1.0]
    """
    golds = _column({"emotion": emotion}, "emotion", len(completions))
    rewards: list[float | None] = []
    for c, gold in zip(completions, golds, strict=True):
        if not gold:
            rewards.append(None)
            continue
        p = _parse(c)
        rewards.append(1.0 if p.emotion is not None and p.emotion == normalize_emotion(gold) else 0.0)
    return rewards


def au_reward(completions: list, aus: list | None = None, **kwargs: Any) -> list[float | None]:
    """2·F1 − 1 between the AUs named in the reasoning and the gold AU set; −1 when the reasoning names none.

    AUs listed only in the answer JSON also count as named (a model may cite them there). ``None`` when the sample has
    no AU labels. An empty gold set with no AU named scores 1.

    >>> au_reward(['<think>AU6 and AU12 rise at 1.0 s, AU4 too.</think><answer>{"emotion": "happy"}</answer>'],
    ...           aus=[["AU6", "AU12"]])
    [0.6]
    """
    golds = _column({"aus": aus}, "aus", len(completions))
    rewards: list[float | None] = []
    for c, gold_value in zip(completions, golds, strict=True):
        gold = _gold_aus(gold_value)
        if gold is None:
            rewards.append(None)
            continue
        p = _parse(c)
        named = set(p.think_aus) | set(p.aus)
        if not named:
            rewards.append(1.0 if not gold else -1.0)
            continue
        tp = len(named & gold)
        f1 = 2 * tp / (len(named) + len(gold))
        rewards.append(round(2 * f1 - 1, 6))
    return rewards


class CompoundReward:
    """Compound expression reward: 1 for the exact compound, ``partial`` when one of its two components is right.

    A component is right when the predicted compound shares one basic emotion with the gold one, or, when no compound
    is predicted, the answer's emotion is one of the gold components. ``None`` where the sample has no compound label.

    >>> CompoundReward(partial=0.5)(['<think>.</think><answer>{"emotion": "surprise", "compound": "fearfully '
    ...     'surprised"}</answer>'], compound=["happily surprised"])
    [0.5]
    """

    __name__ = "compound_reward"

    def __init__(self, partial: float = 0.5):
        if not 0.0 <= partial <= 1.0:
            raise ConfigError(f"compound partial credit must be in [0, 1], got {partial}")
        self.partial = partial

    def __call__(self, completions: list, compound: list | None = None, **kwargs: Any) -> list[float | None]:
        from emoreason.knowledge.taxonomy import COMPOUNDS

        by_label = {c.label: c for c in COMPOUNDS}
        golds = _column({"compound": compound}, "compound", len(completions))
        rewards: list[float | None] = []
        for c, gold_label in zip(completions, golds, strict=True):
            if not gold_label:
                rewards.append(None)
                continue
            gold = by_label[normalize_compound(gold_label)]
            p = _parse(c)
            if p.compound == gold.label:
                rewards.append(1.0)
                continue
            predicted = by_label[p.compound].components if p.compound is not None else {p.emotion}
            rewards.append(self.partial if predicted & gold.components else 0.0)
        return rewards


@lru_cache(maxsize=256)
def _load_evidence(path: str):
    from emoreason.evidence import Evidence

    return Evidence.load(path)


def _evidence(value: Any):
    """An evidence column value (a path, an Evidence, or its dict) as an Evidence; ``None`` stays ``None``."""
    from emoreason.evidence import Evidence

    if value is None or value == "":
        return None
    if isinstance(value, Evidence):
        return value
    if isinstance(value, dict):
        return Evidence.model_validate(value)
    if isinstance(value, str | Path):
        return _load_evidence(str(value))
    raise DataError(f"evidence must be a path, an Evidence or a dict, got {type(value).__name__}")


def faithfulness_reward(completions: list, evidence: list | None = None, **kwargs: Any) -> list[float | None]:
    """1 − 2·(unsupported claims / claims): every AU or time the reasoning cites that the evidence does not show costs.

    Claims are the AUs named in ``<think>`` and the times it mentions; support is decided by
    :func:`emoreason.reasoning.faithfulness.check_faithfulness`. A reasoning that cites nothing scores 0 (nothing to
    trust or distrust); no evidence for the sample gives ``None``. Below, 2 of 5 claims (AU4, 2.8 s) are unsupported.

    >>> from emoreason.evidence import AUEvent, Evidence, MediaInfo
    >>> ev = Evidence(media=MediaInfo(path="a.mp4", duration_s=3, has_video=True, has_audio=False),
    ...               au_events=[AUEvent(au="AU12", onset=0.5, apex=1.0, offset=2.0, peak=3.0, mean=2.5)])
    >>> faithfulness_reward(['<think>AU12 from 0.5 s to 2.0 s; AU4 at 2.8 s</think><answer>happy</answer>'],
    ...                     evidence=[ev])
    [0.2]
    """
    from emoreason.reasoning.faithfulness import check_faithfulness

    evs = _column({"evidence": evidence}, "evidence", len(completions))
    rewards: list[float | None] = []
    for c, ev_value in zip(completions, evs, strict=True):
        ev = _evidence(ev_value)
        if ev is None:
            rewards.append(None)
            continue
        text = completion_text(c)[:MAX_PARSE_CHARS]
        p = parse_output(text)
        think = p.think if p.think is not None else text
        n_claims = len(p.think_aus) + len(set(find_times(think)))
        if n_claims == 0:
            rewards.append(0.0)
            continue
        result = check_faithfulness(text, ev)
        n_bad = len(list(result.unsupported_aus)) + len(list(result.unsupported_times))
        rewards.append(round(1.0 - 2.0 * min(n_bad, n_claims) / n_claims, 6))
    return rewards


def caption_reward(completions: list, caption: list | None = None, **kwargs: Any) -> list[float | None]:
    """The LCS-based caption score (:func:`emoreason.metrics.caption_scores`) of the reasoning against the reference
    caption; ``None`` where the sample has no caption.

    >>> caption_reward(["<think>She smiles, then frowns.</think><answer>happy</answer>"],
    ...                caption=["She smiles and then frowns."])
    [1.0]
    """
    from emoreason.metrics import caption_scores

    refs = _column({"caption": caption}, "caption", len(completions))
    rewards: list[float | None] = []
    for c, ref in zip(completions, refs, strict=True):
        if not ref:
            rewards.append(None)
            continue
        p = _parse(c)
        pred = p.think if p.think is not None else completion_text(c)[:MAX_PARSE_CHARS]
        rewards.append(float(caption_scores(pred, ref)["score"]))
    return rewards


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "emotion": emotion_reward,
    "au": au_reward,
    "compound": CompoundReward(),
    "faithfulness": faithfulness_reward,
    "caption": caption_reward,
}


def get_reward_funcs(names: Sequence[str], compound_partial: float = 0.5) -> list[RewardFunc]:
    """The rewards named in a recipe, in order: the one registry (:data:`REWARDS`) that GRPO, synthesis and the
    held-out reward evaluation all read, the compound reward with the recipe's partial credit. An unknown name raises
    :class:`ConfigError` listing the known ones.

    >>> [f.__name__ for f in get_reward_funcs(["format", "au"])]
    ['format_reward', 'au_reward']
    """
    funcs = []
    for name in names:
        if name not in REWARDS:
            raise ConfigError(f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
        funcs.append(CompoundReward(compound_partial) if name == "compound" else REWARDS[name])
    return funcs


def score_completions(completions: list, names: Sequence[str], compound_partial: float = 0.5, **columns: Any
                      ) -> list[dict[str, float | None]]:  # fmt: skip
    """Every named reward for every completion, as one dict per completion (the synthesis loop, held-out rewards)."""
    funcs = get_reward_funcs(names, compound_partial)
    per_reward = {name: fn(completions, **columns) for name, fn in zip(names, funcs, strict=True)}
    return [{name: per_reward[name][i] for name in names} for i in range(len(completions))]


__all__ = [
    "REWARDS",
    "CompoundReward",
    "au_reward",
    "caption_reward",
    "completion_text",
    "emotion_reward",
    "faithfulness_reward",
    "format_reward",
    "get_reward_funcs",
    "score_completions",
]
