"""EmoReason: explainable multimodal emotion reasoning over video clips."""

__version__ = "0.1.0"
