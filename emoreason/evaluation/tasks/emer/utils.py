"""Hooks of the emer suite: which text of a model's answer is its explanation."""

from __future__ import annotations

from emoreason.evaluation.loaders import Sample
from emoreason.evaluation.models import Response
from emoreason.parsing import parse_output, think_sections


def extract_prediction(sample: Sample, response: Response) -> str:
    """The interpretation and conclusion of the reasoning (what EMER's references explain), else the whole reasoning,
    else the raw text."""
    parsed = parse_output(response.text)
    if parsed.think is None:
        return response.text
    sections = think_sections(parsed.think)
    parts = [sections.get(k) for k in ("Overall emotional interpretation", "Conclusion")]
    return " ".join(p for p in parts if p) or parsed.think
