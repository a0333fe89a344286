"""Instruction datasets: labelled clips + their evidence -> rows with a question and a chain-of-thought answer.

A row (one JSON object per line, the one schema of training data)::

    {"id", "video", "audio", "evidence", "question", "answer", "emotion", "compound", "aus", "caption",
     "source", "cot_source"}

``answer`` is in the shared answer format (:mod:`emoreason.parsing`). Where no human reasoning exists, the reasoning is
written by the knowledge-based engine from the clip's evidence (ExpLLM's Exp-CoT idea) and the answer JSON carries the
gold labels; before use the engine's reasoning is checked for faithfulness against the evidence, and unfaithful ones
are dropped and counted (:class:`BuildStats`). Clips without labels become rows with ``answer: null``: inputs for the
synthesis loop.

:func:`prompt_messages` turns a row into chat messages for the text-only path (the evidence rendered as text by
:func:`emoreason.evidence_text.evidence_to_text`); :func:`load_rows` reads shards back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from emoreason.errors import ConfigError, DataError
from emoreason.evidence import Evidence
from emoreason.io import atomic_write_text, iter_jsonl
from emoreason.knowledge.taxonomy import ALL_EMOTIONS, COMPOUND_LABELS
from emoreason.parsing import format_answer, parse_output
from emoreason.prompts import load_prompt, render_prompt

from .cache import FeatureCache
from .formats import LabeledClip

log = logging.getLogger(__name__)

ROW_FIELDS = (
    "id", "video", "audio", "evidence", "question", "answer", "emotion", "compound", "aus", "caption", "source",
    "cot_source",
)  # fmt: skip


def question_templates(name: str = "train_question_v1", prompts_dir: str | Path | None = None) -> list[str]:
    """The question templates of a prompt file: one per non-empty line, ``#`` lines are comments."""
    lines = [ln.strip() for ln in load_prompt(name, prompts_dir).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def pick_question(clip_id: str, templates: Sequence[str]) -> str:
    """The template for a clip: chosen by a hash of its id, so a rebuilt dataset asks the same questions."""
    digest = hashlib.sha256(clip_id.encode()).digest()
    return templates[int.from_bytes(digest[:4], "big") % len(templates)]


@dataclass
class BuildStats:
    rows: int = 0
    labelled: int = 0
    unlabelled: int = 0
    human_cot: int = 0
    engine_cot: int = 0
    dropped_no_evidence: int = 0
    dropped_unfaithful: int = 0
    dropped_disagree: int = 0
    kept_disagree: int = 0
    dropped_ids: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, clip_id: str) -> None:
        setattr(self, f"dropped_{reason}", getattr(self, f"dropped_{reason}") + 1)
        self.dropped_ids.setdefault(reason, []).append(clip_id)


def _default_cot(ev: Evidence) -> str:
    from emoreason.reasoning.engine import analyze

    return analyze(ev).answer_text()


def _default_faithfulness(text: str, ev: Evidence) -> Any:
    from emoreason.reasoning.faithfulness import check_faithfulness

    return check_faithfulness(text, ev)


def build_rows(
    clips: Iterable[LabeledClip],
    *,
    cache: FeatureCache | None = None,
    question_prompt: str = "train_question_v1",
    cot_fn: Callable[[Evidence], str] | None = None,
    faithfulness_fn: Callable[[str, Evidence], Any] | None = None,
    on_disagree: Literal["drop", "keep"] = "drop",
    prompts_dir: str | Path | None = None,
) -> tuple[list[dict], BuildStats]:
    """Rows for ``clips`` and the counts of what was kept and dropped.

    The evidence of a clip is its ``evidence`` file, else the cached features of its ``video`` (``cache``). A clip with
    a human reasoning (``extra["cot"]``) uses it; otherwise ``cot_fn`` (default: the knowledge-based engine) writes one.
    Engine reasoning that cites AUs or times the evidence does not show is dropped (``dropped_unfaithful``). When the
    engine concludes a different emotion than the gold label, ``on_disagree`` decides: drop the row, or keep the
    engine's observations with the gold answer.
    """
    if on_disagree not in ("drop", "keep"):
        raise ConfigError(f"on_disagree must be 'drop' or 'keep', got {on_disagree!r}")
    cot_fn = cot_fn or _default_cot
    faithfulness_fn = faithfulness_fn or _default_faithfulness
    templates = question_templates(question_prompt, prompts_dir)
    stats = BuildStats()
    rows: list[dict] = []
    for clip in tqdm(list(clips), desc="building rows", unit="clip", disable=None):
        ev_path = _evidence_path(clip, cache)
        if ev_path is None:
            stats.drop("no_evidence", clip.id)
            continue
        labelled = clip.emotion is not None or clip.compound is not None
        row = {
            "id": clip.id,
            "video": clip.video,
            "audio": clip.audio,
            "evidence": str(ev_path),
            "question": pick_question(clip.id, templates),
            "answer": None,
            "emotion": clip.emotion,
            "compound": clip.compound,
            "aus": clip.aus,
            "caption": clip.caption,
            "source": clip.source,
            "cot_source": None,
        }
        if labelled:
            answer = _labelled_answer(clip, Evidence.load(ev_path), cot_fn, faithfulness_fn, on_disagree, stats)
            if answer is None:
                continue
            row["answer"], row["cot_source"] = answer
            stats.labelled += 1
        else:
            stats.unlabelled += 1
        rows.append(row)
    stats.rows = len(rows)
    return rows, stats


def _evidence_path(clip: LabeledClip, cache: FeatureCache | None) -> Path | None:
    if clip.evidence:
        p = Path(clip.evidence)
        if not p.exists():
            raise DataError(f"evidence file of clip {clip.id!r} not found", p)
        return p
    if cache is not None and clip.video and Path(clip.video).exists():
        return cache.evidence_path(clip.video)
    return None


def _labelled_answer(
    clip: LabeledClip,
    ev: Evidence,
    cot_fn: Callable[[Evidence], str],
    faithfulness_fn: Callable[[str, Evidence], Any],
    on_disagree: str,
    stats: BuildStats,
) -> tuple[str, str] | None:
    human = clip.extra.get("cot")
    if human:
        stats.human_cot += 1
        think, source, engine = str(human), "human", None
    else:
        text = cot_fn(ev)
        engine = parse_output(text)
        if engine.think is None:
            raise DataError(f"the reasoner wrote no <think> block for clip {clip.id!r}: {text[:80]!r}")
        result = faithfulness_fn(text, ev)
        if not result.cites_only_evidence:
            stats.drop("unfaithful", clip.id)
            return None
        if clip.emotion is not None and engine.emotion != clip.emotion:
            if on_disagree == "drop":
                stats.drop("disagree", clip.id)
                return None
            stats.kept_disagree += 1
        stats.engine_cot += 1
        think, source = engine.think, "engine"
    emotion = clip.emotion or (engine.emotion if engine else None)
    if emotion is None:  # a compound-only label: its base emotion answers the basic question
        from emoreason.knowledge.taxonomy import COMPOUNDS

        emotion = next(c.base for c in COMPOUNDS if c.label == clip.compound)
    aus = clip.aus if clip.aus is not None else (engine.aus if engine else [])
    return format_answer(think, emotion, clip.compound, aus), source


def write_rows(rows: Sequence[dict], path: str | Path, stats: BuildStats | None = None) -> Path:
    """Write rows as JSONL (atomically) and, with ``stats``, ``<path>.stats.json`` beside it."""
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if stats is not None:
        atomic_write_text(path.with_suffix(path.suffix + ".stats.json"), json.dumps(asdict(stats), indent=1))
    return path


def load_rows(paths: str | Path | Sequence[str | Path], *, require_answer: bool = False) -> list[dict]:
    """Read dataset shards; every row must have ``id``, ``question`` and ``evidence`` (and ``answer`` if required).

    Relative ``evidence``/``video`` paths are resolved against the shard's folder.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    rows: list[dict] = []
    for path in paths:
        path = Path(path)
        for i, row in enumerate(iter_jsonl(path), 1):
            for key in ("id", "question", "evidence") + (("answer",) if require_answer else ()):
                if not row.get(key):
                    raise DataError(f"row {i}: missing {key!r}", path)
            for key in ("evidence", "video", "audio"):
                if row.get(key) and not Path(row[key]).is_absolute():
                    row[key] = str(path.parent / row[key])
            rows.append({k: row.get(k) for k in ROW_FIELDS} | {k: v for k, v in row.items() if k not in ROW_FIELDS})
    return rows


@lru_cache(maxsize=1024)
def _evidence_text(path: str, formatter: Callable[[Evidence], str]) -> str:
    return formatter(Evidence.load(path))


def default_evidence_formatter() -> Callable[[Evidence], str]:
    """:func:`emoreason.evidence_text.evidence_to_text`, the one rendering of evidence as text."""
    try:
        from emoreason.evidence_text import evidence_to_text
    except ImportError as e:
        raise ConfigError(
            f"the text path needs emoreason.evidence_text.evidence_to_text, which is missing: {e}"
        ) from None
    return evidence_to_text


def system_prompt_text(name: str = "train_system_v1", prompts_dir: str | Path | None = None) -> str:
    """The system turn that teaches the answer format, with the label lists filled in from the taxonomy."""
    return render_prompt(
        name, prompts_dir=prompts_dir, emotions=", ".join(ALL_EMOTIONS), compounds=", ".join(COMPOUND_LABELS)
    )


def prompt_messages(
    row: dict,
    *,
    evidence_formatter: Callable[[Evidence], str] | None = None,
    system_prompt: str = "train_system_v1",
    user_prompt: str = "train_user_v1",
    prompts_dir: str | Path | None = None,
) -> list[dict[str, str]]:
    """The chat prompt of a row for the text-only path: system instructions, then the evidence as text + question."""
    formatter = evidence_formatter or default_evidence_formatter()
    user = render_prompt(
        user_prompt,
        prompts_dir=prompts_dir,
        evidence=_evidence_text(str(row["evidence"]), formatter),
        question=row["question"],
    )
    system = system_prompt_text(system_prompt, prompts_dir)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]


def clip_messages(
    question: str,
    *,
    face: bool = True,
    audio: bool = False,
    system_prompt: str = "train_system_v1",
    prompts_dir: str | Path | None = None,
    history: Sequence[dict[str, str]] | None = None,
    observations: str | None = None,
) -> list[dict[str, str]]:
    """The chat prompt for the multimodal model (training and serving alike): system instructions, earlier turns, then
    the clip's placeholders (face, audio), the perception stage's ``observations`` as text where the checkpoint reads
    them (``config.prompt_observations``), and the question. The processor turns the placeholders into encoder tokens."""
    from emoreason.models.emoreason.processing_emoreason import AUDIO_TOKEN, FACE_TOKEN

    marks = (FACE_TOKEN if face else "") + (AUDIO_TOKEN if audio else "")
    body = "\n".join(x for x in (marks, observations, question) if x)
    return [
        {"role": "system", "content": system_prompt_text(system_prompt, prompts_dir)},
        *(history or []),
        {"role": "user", "content": body},
    ]
