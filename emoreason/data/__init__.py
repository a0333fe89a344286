"""Training data: dataset format loaders, the per-clip feature cache and the instruction dataset builder."""

from emoreason.data.builder import BuildStats, build_rows, load_prompt, load_rows, prompt_messages, write_rows
from emoreason.data.cache import FeatureCache
from emoreason.data.formats import (
    FORMATS,
    AUOccurrence,
    LabeledClip,
    load_au_clips,
    load_au_occurrence,
    load_caption_json,
    load_clips,
    load_compound_labels,
    load_video_label_csv,
)

__all__ = [
    "FORMATS",
    "load_au_clips",
    "load_clips",
    "AUOccurrence",
    "BuildStats",
    "FeatureCache",
    "LabeledClip",
    "build_rows",
    "load_au_occurrence",
    "load_caption_json",
    "load_compound_labels",
    "load_prompt",
    "load_rows",
    "load_video_label_csv",
    "prompt_messages",
    "write_rows",
]
