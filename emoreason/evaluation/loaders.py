"""Dataset loaders: each reads one benchmark's own file layout into a list of :class:`Sample`.

A task YAML names its loader and passes it ``loader_args`` (file names, label order, path patterns), so one loader
serves every dataset that shares a format. Bad data is never skipped silently: a missing file, a malformed row or an
unknown label raises :class:`~emoreason.errors.DataError` naming the file and the line, before any model runs.

Media paths: ``media`` and ``evidence`` are patterns relative to the dataset folder, formatted with the sample id
(``"Clip/original/{id:0>5}.mp4"``). A sample needs at least one of the two to exist; a precomputed ``Evidence`` JSON
is used instead of running perception on the video.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoreason.data import formats
from emoreason.errors import ConfigError, DataError
from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD


@dataclass
class Sample:
    """One evaluation item. ``reference`` holds what the metrics compare against: ``label``, ``aus``, ``compound``,
    ``caption``, ``words`` or ``explanation`` depending on the task."""

    id: str
    reference: dict[str, Any]
    video: Path | None = None
    evidence: Path | None = None
    groups: dict[str, str] = field(default_factory=dict)
    source: str = ""  # "file:line" the sample was read from, for error messages


def _need(args: dict, key: str, loader: str) -> Any:
    if key not in args:
        raise ConfigError(f"loader {loader!r} needs loader_args.{key}")
    return args[key]


def _paths(root: Path, args: dict, sample_id: str, where: str) -> tuple[Path | None, Path | None]:
    video = root / args["media"].format(id=sample_id) if args.get("media") else None
    evidence = root / args["evidence"].format(id=sample_id) if args.get("evidence") else None
    video = video if video is not None and video.exists() else None
    evidence = evidence if evidence is not None and evidence.exists() else None
    if video is None and evidence is None:
        wanted = " or ".join(str(root / args[k].format(id=sample_id)) for k in ("media", "evidence") if args.get(k))
        raise DataError(f"{where}: sample {sample_id!r} has no media file ({wanted or 'no media/evidence pattern'})")
    return video, evidence


def _rows(path: Path, delimiter: str, header: bool) -> list[tuple[int, dict[str, str] | list[str]]]:
    """CSV rows with their 1-based line numbers; dicts when the file has a header row."""
    lines = formats.read_text(path).splitlines()
    rows = [line.split() for line in lines] if delimiter == " " else list(csv.reader(lines, delimiter=delimiter))
    numbered = [(i, r) for i, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if not header:
        return numbered
    if not numbered:
        raise DataError("empty file (expected a header row)", path)
    names = [c.strip() for c in numbered[0][1]]
    out: list[tuple[int, dict[str, str] | list[str]]] = []
    for i, r in numbered[1:]:
        if len(r) != len(names):
            raise DataError(f"line {i}: expected {len(names)} columns ({', '.join(names)}), got {len(r)}", path)
        out.append((i, dict(zip(names, (c.strip() for c in r), strict=True))))
    return out


def _cell(row: dict[str, str] | list[str], column: str | int, path: Path, line: int) -> str:
    try:
        return row[column] if isinstance(row, dict) else row[int(column)]
    except (KeyError, IndexError, ValueError):
        raise DataError(f"line {line}: no column {column!r}", path) from None


def _label(value: str, args: dict, path: Path, line: int) -> str:
    """A dataset label → our emotion label: ``label_names[int(value) - label_base]`` for index labels (an integer from
    ``label_base`` to ``label_base + len(label_names) - 1``, else a DataError: 0 or -1 never wrap around to the last
    classes), then ``label_map`` (dataset name → our name), then :func:`formats.emotion_label` (an unknown name is a
    DataError)."""
    names = args.get("label_names")
    if names is not None:
        base = int(args.get("label_base", 0))
        text = value.strip()
        # a strict integer in [base, base + len(names)): never a Python negative index that wraps around to the end
        index = int(text) - base if re.fullmatch(r"[+-]?[0-9]+", text) else -1
        if not 0 <= index < len(names):
            raise DataError(
                f"line {line}: label {value!r} is not a class index {base}-{base + len(names) - 1} "
                f"({', '.join(map(str, names))})", path)  # fmt: skip
        value = str(names[index])
    value = args.get("label_map", {}).get(value.strip().lower(), value)
    return formats.emotion_label(value, path, line)


def _groups(root: Path, spec: dict) -> dict[str, dict[str, str]]:
    """``{id: {column: value}}`` from a groups CSV (``file``, ``id_column``, ``columns``)."""
    path = root / _need(spec, "file", "groups")
    id_col = spec.get("id_column", "id")
    out: dict[str, dict[str, str]] = {}
    for line, row in _rows(path, ",", True):
        sid = _cell(row, id_col, path, line)
        out[sid] = {c: _cell(row, c, path, line) for c in spec.get("columns", [])}
    return out


def load_label_table(root: Path, args: dict) -> list[Sample]:
    """One clip per row of a CSV / whitespace table with an emotion label (DFEW, FERV39k, MAFW)."""
    path = root / _need(args, "file", "label_table")
    delimiter = args.get("delimiter", ",")
    id_col, label_col = args.get("id_column", 0), args.get("label_column", 1)
    samples = []
    for line, row in _rows(path, delimiter, bool(args.get("header", True))):
        sid = _cell(row, id_col, path, line)
        label = _label(_cell(row, label_col, path, line), args, path, line)
        video, evidence = _paths(root, args, sid, f"{path}:{line}")
        samples.append(Sample(sid, {"label": label}, video, evidence, {}, f"{path}:{line}"))
    return samples


def load_bp4d_occurrence(root: Path, args: dict) -> list[Sample]:
    """BP4D ``AUCoding/AU_OCC/<subject>_<task>.csv`` (:func:`formats.load_au_occurrence` over the ``aus`` columns;
    9 = not coded). A clip's reference AUs occur in at least ``min_fraction`` of its coded frames."""
    folder = root / _need(args, "occ_dir", "bp4d_occurrence")
    clips = formats.load_au_clips(
        folder, aus=_need(args, "aus", "bp4d_occurrence"), min_fraction=float(args.get("min_fraction", 0.5))
    )
    return [Sample(c.id, {"aus": c.aus}, *_paths(root, args, c.id, c.source), {}, c.source) for c in clips]


def load_disfa_intensity(root: Path, args: dict) -> list[Sample]:
    """DISFA ``ActionUnit_Labels/<SN>/<SN>_au<k>.txt`` (:func:`formats.load_disfa_labels`): a frame shows the AU when
    intensity >= ``facs.OCCURRENCE_THRESHOLD`` (2); a clip's reference AUs occur in >= ``min_fraction`` of frames."""
    folder = root / _need(args, "labels_dir", "disfa_intensity")
    subjects = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not subjects:
        raise DataError("no subject folders", folder)
    aus = _need(args, "aus", "disfa_intensity")
    threshold = float(args.get("threshold", OCCURRENCE_THRESHOLD))
    samples = []
    for subject in subjects:
        occ = formats.load_disfa_labels(subject, aus, threshold=threshold)
        video, evidence = _paths(root, args, subject.name, str(subject))
        ref = occ.clip_aus(float(args.get("min_fraction", 0.5)))
        samples.append(Sample(subject.name, {"aus": ref}, video, evidence, {}, str(subject)))
    return samples


def load_frame_compounds(root: Path, args: dict) -> list[Sample]:
    """C-EXPR-DB style ``<annotations>/<video>.txt`` (:func:`formats.compound_majority`): first line the class names,
    then one class index per frame (-1 = not annotated). A clip's reference is its most frequent annotated class."""
    folder = root / _need(args, "annotations_dir", "frame_compounds")
    clips = formats.load_compound_labels(folder)
    return [Sample(c.id, {"compound": c.compound}, *_paths(root, args, c.id, c.source), {}, c.source) for c in clips]


def load_caption_json(root: Path, args: dict) -> list[Sample]:
    """A JSON list of ``{"id": ..., "caption": ...}`` objects (FEC-Bench style temporal captions), read by
    :func:`formats.load_caption_json`; media come from the ``media``/``evidence`` patterns, not a ``video`` field."""
    path = root / _need(args, "file", "caption_json")
    clips = formats.load_caption_json(path, require_video=False)
    return [Sample(c.id, {"caption": c.caption}, *_paths(root, args, c.id, c.source), {}, c.source) for c in clips]


def _word_list(value: str, path: Path, line: int) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            words = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            try:
                words = json.loads(value)
            except json.JSONDecodeError:
                raise DataError(f"line {line}: malformed word list {value!r}", path) from None
        if not isinstance(words, list):
            raise DataError(f"line {line}: word list is not a list", path)
        return [str(w).strip() for w in words if str(w).strip()]
    return [w.strip() for w in value.split(",") if w.strip()]


def load_text_table(root: Path, args: dict) -> list[Sample]:
    """A CSV with a header: ``id_column`` and a text column, read as open-vocabulary ``words`` (MER-OV:
    ``"['happy', 'excited']"`` or ``"happy, excited"``) or as a reference ``explanation`` (EMER)."""
    path = root / _need(args, "file", "text_table")
    id_col = args.get("id_column", "name")
    text_col = _need(args, "text_column", "text_table")
    kind = args.get("kind", "words")
    if kind not in ("words", "explanation"):
        raise ConfigError(f"loader text_table: kind must be 'words' or 'explanation', not {kind!r}")
    samples = []
    for line, row in _rows(path, ",", True):
        sid = _cell(row, id_col, path, line)
        text = _cell(row, text_col, path, line)
        if kind == "words":
            words = _word_list(text, path, line)
            if not words:
                raise DataError(f"line {line}: empty word list", path)
            ref: dict[str, Any] = {"words": words}
        else:
            if not text.strip():
                raise DataError(f"line {line}: empty explanation", path)
            ref = {"explanation": text}
        if args.get("label_column"):
            ref["label"] = _label(_cell(row, args["label_column"], path, line), args, path, line)
        video, evidence = _paths(root, args, sid, f"{path}:{line}")
        samples.append(Sample(sid, ref, video, evidence, {}, f"{path}:{line}"))
    return samples


LOADERS: dict[str, Callable[[Path, dict], list[Sample]]] = {
    "label_table": load_label_table,
    "bp4d_occurrence": load_bp4d_occurrence,
    "disfa_intensity": load_disfa_intensity,
    "frame_compounds": load_frame_compounds,
    "caption_json": load_caption_json,
    "text_table": load_text_table,
}


def load_samples(loader: str, root: Path, args: dict) -> list[Sample]:
    """Run the loader named ``loader`` on the dataset folder ``root``; ids must be unique.

    Any loader takes ``groups: {file, id_column, columns}``: a CSV of per-sample attributes (gender, age band, skin
    tone, head pose, occlusion ...) whose values the harness reports every metric for, with the best-worst gap."""
    if loader not in LOADERS:
        raise ConfigError(f"unknown loader {loader!r}; known: {', '.join(LOADERS)}")
    if not root.is_dir():
        raise DataError("dataset folder not found", root)
    samples = LOADERS[loader](root, args)
    if args.get("groups"):
        groups = _groups(root, args["groups"])
        for s in samples:
            s.groups = groups.get(s.id, {})
    seen: dict[str, str] = {}
    for s in samples:
        if s.id in seen:
            raise DataError(f"duplicate sample id {s.id!r} (also at {seen[s.id]})", s.source)
        seen[s.id] = s.source
    return samples
