"""Hooks of the fec_bench suite: which text of a model's answer is its caption."""

from __future__ import annotations

from emoreason.evaluation.loaders import Sample
from emoreason.evaluation.models import Response
from emoreason.parsing import parse_output, think_sections


def extract_prediction(sample: Sample, response: Response) -> str:
    """The model's own caption when it writes one; else, for an answer in the shared format, its "Key observations"
    (the part that narrates the clip in order), else the reasoning, else the raw text."""
    if response.caption:
        return response.caption
    parsed = parse_output(response.text)
    if parsed.think is None:
        return response.text
    return think_sections(parsed.think).get("Key observations") or parsed.think
