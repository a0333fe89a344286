"""Loaders for the label formats of the public emotion datasets, each turned into :class:`LabeledClip` records.

- :func:`load_video_label_csv` — DFEW/MAFW style: one clip per row, a video column and an emotion label (a name, a
  wheel word, or DFEW's 1–7 class index).
- :func:`load_au_occurrence` — BP4D/DISFA style: one row per frame, one column per AU, values 0/1 occurrence (9 =
  not coded, as in BP4D) or 0–5 intensity (DISFA); the clip's AU set is what occurs in enough frames.
- :func:`load_compound_labels` — C-EXPR-DB (ABAW) style: one text file per video, a header naming the classes, then
  one class index per frame (−1 = not labelled); the clip label is the majority class.
- :func:`load_caption_json` — FEC-Bench style: a JSON list (or id-keyed object) of ``{"video", "caption", ...}``.

A bad row raises :class:`~emoreason.errors.DataError` naming the file and line; an unknown label says which label.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emoreason.errors import DataError
from emoreason.io import read_json
from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD, normalize_au
from emoreason.knowledge.taxonomy import UnknownLabelError, normalize_compound, normalize_emotion

# DFEW's class indices (README of DFEW: 1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear).
DFEW_CLASSES: dict[int, str] = {
    1: "happiness", 2: "sadness", 3: "neutral", 4: "anger", 5: "surprise", 6: "disgust", 7: "fear",
}  # fmt: skip

_VIDEO_COLUMNS = ("video", "video_name", "clip", "path", "file", "filename")
_LABEL_COLUMNS = ("emotion", "label", "class", "emotion_label")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass
class LabeledClip:
    """One clip with whatever labels its source provides (``None`` = not labelled by this source)."""

    id: str
    video: str | None = None
    audio: str | None = None
    evidence: str | None = None
    emotion: str | None = None
    compound: str | None = None
    aus: list[str] | None = None
    caption: str | None = None
    source: str = ""  # "file:line" the record came from
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve(video: str, root: Path | None) -> str:
    p = Path(video)
    return str(p if p.is_absolute() or root is None else root / p)


def _clip_id(video: str) -> str:
    name = Path(video).name
    for suffix in _VIDEO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _pick(header: list[str], names: tuple[str, ...], path: Path, what: str) -> str:
    lowered = {h.strip().lower(): h for h in header}
    for n in names:
        if n in lowered:
            return lowered[n]
    raise DataError(f"no {what} column; expected one of {', '.join(names)}, found {', '.join(header)}", path)


def _emotion(label: str, path: Path, line: int) -> str:
    text = label.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if index not in DFEW_CLASSES:
            raise DataError(f"line {line}: class index {index} is not a DFEW class (1-7)", path)
        return DFEW_CLASSES[index]
    try:
        return normalize_emotion(text)
    except UnknownLabelError as e:
        raise DataError(f"line {line}: {e}", path) from None


def load_video_label_csv(path: str | Path, video_root: str | Path | None = None) -> list[LabeledClip]:
    """Read a DFEW/MAFW-style ``video,label`` table (comma, tab or space separated; a header row is required).

    Extra columns are kept in ``LabeledClip.extra``.
    """
    path = Path(path)
    root = Path(video_root) if video_root is not None else path.parent
    text = _read_text(path)
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",\t; ")
    except (csv.Error, IndexError):
        raise DataError("cannot tell the column separator from the header line", path) from None
    rows = list(csv.reader(text.splitlines(), dialect))
    if not rows:
        raise DataError("empty label file", path)
    header = [h.strip() for h in rows[0]]
    video_col = header.index(_pick(header, _VIDEO_COLUMNS, path, "video"))
    label_col = header.index(_pick(header, _LABEL_COLUMNS, path, "label"))
    clips: list[LabeledClip] = []
    for line, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise DataError(f"line {line}: {len(row)} fields, the header has {len(header)}", path)
        video = row[video_col].strip()
        if not video:
            raise DataError(f"line {line}: empty video name", path)
        extra = {h: v for i, (h, v) in enumerate(zip(header, row, strict=True)) if i not in (video_col, label_col)}
        clips.append(
            LabeledClip(
                id=_clip_id(video),
                video=_resolve(video, root),
                emotion=_emotion(row[label_col], path, line),
                source=f"{path}:{line}",
                extra=extra,
            )
        )
    return clips


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", path) from None


@dataclass
class AUOccurrence:
    """Per-frame AU occurrence of one clip (BP4D/DISFA style). ``frames[i]`` maps AU -> 0/1, or ``None`` if not coded."""

    path: str
    frame_numbers: list[int]
    frames: list[dict[str, int | None]]

    def clip_aus(self, min_fraction: float = 0.1) -> list[str]:
        """AUs present in at least ``min_fraction`` of the frames where they are coded, in FACS order."""
        counts: Counter[str] = Counter()
        coded: Counter[str] = Counter()
        for frame in self.frames:
            for au, v in frame.items():
                if v is not None:
                    coded[au] += 1
                    counts[au] += v
        present = [au for au in coded if coded[au] and counts[au] / coded[au] >= min_fraction]
        return sorted(present, key=lambda a: int(a[2:]))


def load_au_occurrence(
    path: str | Path, *, intensity: bool = False, threshold: float = OCCURRENCE_THRESHOLD
) -> AUOccurrence:
    """Read a per-frame AU table: a header ``frame,AU1,AU2,...`` (``1,2,...`` also accepted), then one row per frame.

    Occurrence files (BP4D) hold 0/1 with 9 for "not coded"; intensity files (DISFA, ``intensity=True``) hold 0–5 and an
    AU occurs at or above ``threshold`` (FACS "B", the convention of both datasets).
    """
    path = Path(path)
    lines = [ln for ln in _read_text(path).splitlines()]
    if not lines:
        raise DataError("empty AU file", path)
    header = [h.strip() for h in lines[0].split(",")]
    if not header or header[0].lower() not in ("frame", "frame_number", "frames", ""):
        raise DataError(f"line 1: the first column must be the frame number, found {header[0]!r}", path)
    aus: list[str] = []
    for h in header[1:]:
        try:
            aus.append(normalize_au(h if h.upper().startswith("AU") else f"AU{h}"))
        except ValueError as e:
            raise DataError(f"line 1: {e}", path) from None
    numbers: list[int] = []
    frames: list[dict[str, int | None]] = []
    for line, text in enumerate(lines[1:], 2):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != len(header):
            raise DataError(f"line {line}: {len(fields)} fields, the header has {len(header)}", path)
        try:
            numbers.append(int(fields[0]))
            values = [float(f) for f in fields[1:]]
        except ValueError:
            raise DataError(f"line {line}: not a number in {text.strip()!r}", path) from None
        frame: dict[str, int | None] = {}
        for au, v in zip(aus, values, strict=True):
            if intensity:
                if not 0 <= v <= 5:
                    raise DataError(f"line {line}: {au} intensity {v:g} outside 0-5", path)
                frame[au] = int(v >= threshold)
            elif v == 9:
                frame[au] = None
            elif v in (0, 1):
                frame[au] = int(v)
            else:
                raise DataError(f"line {line}: {au} occurrence must be 0, 1 or 9 (not coded), got {v:g}", path)
        frames.append(frame)
    if not frames:
        raise DataError("no frames in AU file", path)
    return AUOccurrence(str(path), numbers, frames)


def load_compound_labels(
    path: str | Path, video_root: str | Path | None = None, video_suffix: str = ".mp4"
) -> list[LabeledClip]:
    """Read C-EXPR-DB-style annotations: ``path`` is one ``<video>.txt`` file or a folder of them.

    Each file's first line names the classes (``Fearfully_Surprised,Happily_Surprised,...``); each following line is
    the class index of one frame, ``-1`` where the frame is not labelled. The clip takes the majority class.
    """
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise DataError("no .txt annotation files", path)
    root = Path(video_root) if video_root is not None else (path if path.is_dir() else path.parent)
    clips = []
    for f in files:
        lines = _read_text(f).splitlines()
        if not lines:
            raise DataError("empty annotation file", f)
        classes = []
        for name in lines[0].split(","):
            try:
                classes.append(normalize_compound(name.replace("_", " ")))
            except UnknownLabelError as e:
                raise DataError(f"line 1: {e}", f) from None
        votes: Counter[int] = Counter()
        for line, text in enumerate(lines[1:], 2):
            if not text.strip():
                continue
            try:
                index = int(text.strip())
            except ValueError:
                raise DataError(f"line {line}: expected a class index, got {text.strip()!r}", f) from None
            if index == -1:
                continue
            if not 0 <= index < len(classes):
                raise DataError(f"line {line}: class index {index} outside 0-{len(classes) - 1}", f)
            votes[index] += 1
        if not votes:
            raise DataError("no labelled frame", f)
        label = classes[votes.most_common(1)[0][0]]
        clips.append(
            LabeledClip(
                id=f.stem,
                video=_resolve(f.stem + video_suffix, root),
                compound=label,
                source=f"{f}:1",
                extra={"labelled_frames": sum(votes.values())},
            )
        )
    return clips


def load_caption_json(path: str | Path, video_root: str | Path | None = None) -> list[LabeledClip]:
    """Read FEC-Bench-style captions: a JSON list of objects (or an object keyed by clip id) with ``video`` and
    ``caption``; optional ``id``, ``emotion``, ``compound``, ``aus``, ``audio``. Errors name the entry index."""
    path = Path(path)
    root = Path(video_root) if video_root is not None else path.parent
    data = read_json(path)
    if isinstance(data, dict):
        entries = [{"id": k, **v} if isinstance(v, dict) else v for k, v in data.items()]
    elif isinstance(data, list):
        entries = data
    else:
        raise DataError(f"expected a JSON list or object of entries, got {type(data).__name__}", path)
    clips = []
    for i, e in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(e, dict):
            raise DataError(f"{where}: expected an object, got {json.dumps(e)[:60]}", path)
        video, caption = e.get("video"), e.get("caption")
        if not isinstance(video, str) or not video:
            raise DataError(f"{where}: missing 'video'", path)
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{where}: missing or empty 'caption'", path)
        try:
            emotion = normalize_emotion(e["emotion"]) if e.get("emotion") else None
            compound = normalize_compound(e["compound"]) if e.get("compound") else None
            aus = [normalize_au(str(a)) for a in e["aus"]] if e.get("aus") is not None else None
        except (UnknownLabelError, ValueError) as err:
            raise DataError(f"{where}: {err}", path) from None
        clips.append(
            LabeledClip(
                id=str(e.get("id") or _clip_id(video)),
                video=_resolve(video, root),
                audio=_resolve(e["audio"], root) if e.get("audio") else None,
                emotion=emotion,
                compound=compound,
                aus=aus,
                caption=caption.strip(),
                source=f"{path}:{where}",
            )
        )
    return clips


def load_au_clips(
    path: str | Path,
    video_root: str | Path | None = None,
    *,
    intensity: bool = False,
    min_fraction: float = 0.1,
    video_suffix: str = ".mp4",
) -> list[LabeledClip]:
    """One clip per BP4D/DISFA-style AU file (``path`` is a ``.csv`` file or a folder of them); the clip's AU set is
    :meth:`AUOccurrence.clip_aus` and its video is the file's stem plus ``video_suffix`` under ``video_root``."""
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise DataError("no .csv AU files", path)
    root = Path(video_root) if video_root is not None else (path if path.is_dir() else path.parent)
    clips = []
    for f in files:
        occ = load_au_occurrence(f, intensity=intensity)
        clips.append(
            LabeledClip(
                id=f.stem,
                video=_resolve(f.stem + video_suffix, root),
                aus=occ.clip_aus(min_fraction),
                source=f"{f}:1",
                extra={"frames": len(occ.frames)},
            )
        )
    return clips


# Format name (as the CLI spells it) -> loader of LabeledClip records.
FORMATS = {
    "video-csv": load_video_label_csv,
    "au-occurrence": load_au_clips,
    "au-intensity": lambda path, video_root=None: load_au_clips(path, video_root, intensity=True),
    "compound": load_compound_labels,
    "caption-json": load_caption_json,
}


def load_clips(format: str, path: str | Path, video_root: str | Path | None = None) -> list[LabeledClip]:
    """Clips of a labelled source in one of :data:`FORMATS`."""
    if format not in FORMATS:
        raise DataError(f"unknown dataset format {format!r}; known: {', '.join(FORMATS)}", path)
    return FORMATS[format](path, video_root)
