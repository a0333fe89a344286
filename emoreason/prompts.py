"""Prompt files: ``prompts/<name>.md`` loaded by name and rendered with :meth:`str.format`.

Prompts are versioned by file name (``ask_system_v1.md``); a changed prompt is a new file, so results stay reproducible.
Literal braces in a prompt are written ``{{`` and ``}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emoreason.errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"


def prompt_names(prompts_dir: str | Path | None = None) -> list[str]:
    """Names of the versioned prompt files (``<name>_v<N>.md``; the folder's README is not a prompt)."""
    return sorted(p.stem for p in Path(prompts_dir or PROMPTS_DIR).glob("*_v*.md"))


def load_prompt(name: str, prompts_dir: str | Path | None = None) -> str:
    """The text of ``prompts/<name>.md``; an unknown name raises :class:`ConfigError` listing the known ones."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"invalid prompt name {name!r}")
    path = Path(prompts_dir or PROMPTS_DIR) / f"{name}.md"
    if not path.is_file():
        known = ", ".join(prompt_names(prompts_dir)) or "none"
        raise ConfigError(f"no prompt named {name!r}; known: {known}", path)
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
