"""Prompt files: ``<name>.md`` beside this module, loaded by name and rendered with :meth:`str.format`.

Prompts are versioned by file name (``ask_system_v1.md``); a changed prompt is a new file, so results stay reproducible.
Literal braces in a prompt are written ``{{`` and ``}}``. The files ship inside the package (package data) and are read
through :mod:`importlib.resources`, so an installed wheel finds them; ``prompts_dir`` points at another folder instead.
"""

from __future__ import annotations

from fnmatch import fnmatch
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from emoreason.errors import ConfigError

PROMPTS_DIR: Traversable = files(__name__)
PROMPT_PATTERN = "*_v*.md"


def _folder(prompts_dir: str | Path | None) -> Traversable:
    if prompts_dir is None:
        return PROMPTS_DIR
    folder = Path(prompts_dir)
    if not folder.is_dir():
        raise ConfigError("prompts folder not found", folder)
    return folder


def prompt_names(prompts_dir: str | Path | None = None) -> list[str]:
    """Names of the versioned prompt files (``<name>_v<N>.md``; the folder's README is not a prompt)."""
    folder = _folder(prompts_dir)
    return sorted(
        p.name.removesuffix(".md") for p in folder.iterdir() if p.is_file() and fnmatch(p.name, PROMPT_PATTERN)
    )


def load_prompt(name: str, prompts_dir: str | Path | None = None) -> str:
    """The text of the prompt ``<name>.md``; an unknown name raises :class:`ConfigError` listing the known ones."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"invalid prompt name {name!r}")
    folder = _folder(prompts_dir)
    path = folder / f"{name}.md"
    if not path.is_file():
        known = ", ".join(prompt_names(prompts_dir)) or "none"
        raise ConfigError(f"no prompt named {name!r}; known: {known}", str(path))
    return path.read_text(encoding="utf-8").strip()


def render_prompt(name: str, /, *, prompts_dir: str | Path | None = None, **values: Any) -> str:
    """Load a prompt and fill its ``{fields}`` (any names, ``name`` included); a missing value raises
    :class:`ConfigError`."""
    text = load_prompt(name, prompts_dir)
    try:
        return text.format(**values)
    except KeyError as e:
        raise ConfigError(f"prompt {name!r} needs a value for {e.args[0]!r}") from None
    except (IndexError, ValueError) as e:
        raise ConfigError(f"prompt {name!r} is malformed: {e}") from None
