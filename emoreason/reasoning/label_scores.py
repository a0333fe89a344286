"""A model's own probabilities for the emotion labels: the scores it gives each label's tokens where its answer names
the emotion.

The reply's ``<answer>`` holds ``{"emotion": "<label>", ...}``. Given the prompt and the reply up to the opening quote
of the label, the model scores every label of :data:`~emoreason.knowledge.taxonomy.ALL_EMOTIONS` as the continuation
(its tokens and the closing quote, teacher-forced in one batched forward); the probability of a label is
``exp(sum of its token log-probabilities)``, renormalised over the labels. This is the model's distribution over the
label set at the point where it commits to one, not a calibrated probability.
"""

from __future__ import annotations

import re
from typing import Any

from emoreason.knowledge.taxonomy import ALL_EMOTIONS

_ANSWER = re.compile(r"<answer>\s*")
_EMOTION_KEY = re.compile(r'\{\s*"emotion"\s*:\s*"')
_TEXT_KEYS = ("input_ids", "attention_mask")


def label_prefix(reply: str) -> str | None:
    """The reply up to where the emotion label starts (a JSON answer's ``"emotion": "``; for an answer written
    otherwise, the ``<answer>`` tag followed by that key); ``None`` when the reply has no ``<answer>``."""
    m = _ANSWER.search(reply)
    if m is None:
        return None
    key = _EMOTION_KEY.match(reply, m.end())
    return reply[: key.end()] if key else reply[: m.end()] + '{"emotion": "'


def label_probabilities(
    model: Any, tokenizer: Any, inputs: Any, reply: str, labels: tuple[str, ...] = ALL_EMOTIONS, device: str = "cpu"
) -> dict[str, float]:
    """The model's probability of each label in ``labels`` (see the module docstring); empty when the reply has no
    answer to score. ``inputs`` are the prompt's tokenised inputs (one prompt; encoder inputs ride along)."""
    import torch

    parts = label_continuations(tokenizer, reply, labels)
    if parts is None:
        return {}
    prompt = inputs["input_ids"][0].to(device)
    pre = torch.tensor(parts[0], dtype=prompt.dtype, device=device)
    conts = parts[1]
    start = prompt.numel() + pre.numel()
    width = max(len(c) for c in conts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids = torch.full((len(labels), start + width), pad, dtype=prompt.dtype, device=device)
    mask = torch.zeros_like(ids)
    for i, c in enumerate(conts):
        ids[i, :start] = torch.cat([prompt, pre])
        ids[i, start : start + len(c)] = torch.tensor(c, dtype=prompt.dtype, device=device)
        mask[i, : start + len(c)] = 1
    extra = {k: v.to(device).expand(len(labels), *v.shape[1:]) for k, v in inputs.items()
             if k not in _TEXT_KEYS and hasattr(v, "expand") and v.shape[:1] == (1,)}  # fmt: skip
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, **extra).logits.float()
    logp = torch.log_softmax(logits[:, start - 1 : start - 1 + width], dim=-1)
    scores = []
    for i, c in enumerate(conts):
        target = torch.tensor(c, device=device)
        scores.append(logp[i, torch.arange(len(c), device=device), target].sum())
    return normalised(labels, [float(x) for x in scores])


def label_continuations(tokenizer: Any, reply: str, labels: tuple[str, ...] = ALL_EMOTIONS
                        ) -> tuple[list[int], list[list[int]]] | None:  # fmt: skip
    """The token ids of the reply up to the label (:func:`label_prefix`) and of each label's continuation (its tokens
    and the closing quote); ``None`` when the reply has no answer to score."""
    prefix = label_prefix(reply)
    if prefix is None:
        return None
    conts = [tokenizer(label + '"', add_special_tokens=False)["input_ids"] for label in labels]
    return tokenizer(prefix, add_special_tokens=False)["input_ids"], conts


def normalised(labels: tuple[str, ...], log_scores: list[float]) -> dict[str, float]:
    """Each label's probability from its summed token log-probabilities, renormalised over the labels."""
    import math

    top = max(log_scores)
    weights = [math.exp(x - top) for x in log_scores]
    total = sum(weights)
    return {label: w / total for label, w in zip(labels, weights, strict=True)}
