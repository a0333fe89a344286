"""The one exception hierarchy of EmoReason.

Every error a user can cause (bad file, bad option, missing model) is an :class:`EmoReasonError`; the CLI prints it as one
line, ``emoreason: <path>: <message>``, and exits non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class EmoReasonError(Exception):
    """Base class. ``path`` names the file the problem is about, when there is one."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class MediaError(EmoReasonError):
    """A media file cannot be read, or is outside the limits we accept."""


class NoFaceError(EmoReasonError):
    """A step that needs a face found none."""


class DataError(EmoReasonError):
    """A dataset, JSON or label file is malformed or holds an unknown value."""


class ConfigError(EmoReasonError):
    """A recipe, option or configuration value is wrong."""

    exit_code = 2


class ModelError(EmoReasonError):
    """A model or checkpoint is missing, malformed or cannot run here."""


class BackendError(EmoReasonError):
    """A remote or local LLM backend failed to answer."""
