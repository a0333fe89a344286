"""Loaders for the label formats of the public emotion datasets, each turned into :class:`LabeledClip` records.

- :func:`load_video_label_csv` — DFEW/MAFW style: one clip per row, a video column and an emotion label (a name, a
  wheel word, or DFEW's 1–7 class index).
- :func:`load_au_occurrence` — BP4D/DISFA style: one row per frame, one column per AU, values 0/1 occurrence (9 =
  not coded, as in BP4D) or 0–5 intensity (DISFA); the clip's AU set is what occurs in enough frames.
  :func:`load_disfa_labels` reads DISFA's own layout (one ``frame,intensity`` file per AU) into the same record.
- :func:`load_compound_labels` — C-EXPR-DB (ABAW) style: one text file per video, a header naming the classes, then
  one class index per frame (−1 = not labelled); the clip label is the majority class.
- :func:`load_caption_json` — FEC-Bench style: a JSON list (or id-keyed object) of ``{"video", "caption", ...}``.

A bad row raises :class:`~emoreason.errors.DataError` naming the file and line; an unknown label says which label.

This module is the one parser of these formats: the evaluation loaders (:mod:`emoreason.evaluation.loaders`) call it
and turn its records into their own samples.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Collection
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
    if re.fullmatch(r"[+-]?[0-9]+", text):  # ASCII digits only: "²".isdigit() is true but int("²") fails
        index = int(text)
        if index not in DFEW_CLASSES:
            raise DataError(f"line {line}: class index {index} is not a DFEW class (1-7)", path)
        return DFEW_CLASSES[index]
    return emotion_label(text, path, line)


def emotion_label(value: str, path: Path, line: int) -> str:
    """A dataset's emotion word -> our label (:func:`taxonomy.normalize_emotion`); unknown is a DataError at ``line``."""
    try:
        return normalize_emotion(value)
    except UnknownLabelError as e:
        raise DataError(f"line {line}: {e}", path) from None


def load_video_label_csv(path: str | Path, video_root: str | Path | None = None) -> list[LabeledClip]:
    """Read a DFEW/MAFW-style ``video,label`` table (comma, tab or space separated; a header row is required).

    Extra columns are kept in ``LabeledClip.extra``.
    """
    path = Path(path)
    root = Path(video_root) if video_root is not None else path.parent
    text = read_text(path)
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


def read_text(path: str | Path) -> str:
    """The text of a label file (a UTF-8 byte-order mark dropped); a missing or unreadable file is a DataError."""
    path = Path(path)
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


def _au_code(name: str) -> str:
    """An AU column name (``AU12``, ``12`` or ``12.0``) -> its FACS code; ValueError when it names no known AU."""
    name = name.strip()
    if name.upper().startswith("AU"):
        return normalize_au(name)
    try:
        number = float(name)
    except ValueError:
        number = None
    if number is None or not number.is_integer():
        raise ValueError(f"not an Action Unit column: {name!r}")
    return normalize_au(f"AU{int(number)}")


def load_au_occurrence(
    path: str | Path,
    *,
    intensity: bool = False,
    threshold: float = OCCURRENCE_THRESHOLD,
    aus: Collection[str] | None = None,
) -> AUOccurrence:
    """Read a per-frame AU table: a header ``frame,AU1,AU2,...`` (``1,2,...`` also accepted; BP4D's own files name
    the frame column ``0``), then one row per frame.

    Occurrence files (BP4D) hold 0/1 with 9 for "not coded"; intensity files (DISFA, ``intensity=True``) hold 0–5 and an
    AU occurs at or above ``threshold`` (FACS "B", the convention of both datasets). Without ``aus`` every column must
    name a known AU; with ``aus`` only those columns are read (BP4D codes AUs outside our table), and each must exist.
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    if not lines:
        raise DataError("empty AU file", path)
    header = [h.strip() for h in lines[0].split(",")]
    if header[0].lower() not in ("frame", "frame_number", "frames", "", "0"):
        raise DataError(f"line 1: the first column must be the frame number, found {header[0]!r}", path)
    keep = {normalize_au(a) for a in aus} if aus is not None else None
    columns: dict[int, str] = {}
    for k, h in enumerate(header[1:], 1):
        try:
            code = _au_code(h)
        except ValueError as e:
            if keep is None:
                raise DataError(f"line 1: {e}", path) from None
            continue
        if keep is None or code in keep:
            columns[k] = code
    missing = sorted((keep or set()) - set(columns.values()), key=lambda a: int(a[2:]))
    if missing:
        raise DataError(f"line 1: the header lacks AU columns {', '.join(missing)}", path)
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
            values = {au: float(fields[k]) for k, au in columns.items()}
        except ValueError:
            raise DataError(f"line {line}: not a number in {text.strip()!r}", path) from None
        frame: dict[str, int | None] = {}
        for au, v in values.items():
            if intensity:
                frame[au] = _occurs(v, threshold, au, path, line)
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


def _occurs(intensity: float, threshold: float, au: str, path: Path, line: int) -> int:
    if not 0 <= intensity <= 5:
        raise DataError(f"line {line}: {au} intensity {intensity:g} outside 0-5", path)
    return int(intensity >= threshold)


def load_disfa_labels(
    subject_dir: str | Path, aus: Collection[str], *, threshold: float = OCCURRENCE_THRESHOLD
) -> AUOccurrence:
    """Read DISFA's own layout for one subject: ``<SN>/<SN>_au<k>.txt`` per AU, lines ``frame,intensity`` (0–5); a
    frame shows the AU at or above ``threshold``. A frame missing from one AU's file is "not coded" for that AU."""
    folder = Path(subject_dir)
    per_au: dict[str, dict[int, int]] = {}
    for code in (normalize_au(a) for a in aus):
        path = folder / f"{folder.name}_au{code[2:]}.txt"
        values: dict[int, int] = {}
        for line, text in enumerate(read_text(path).splitlines(), 1):
            if not text.strip():
                continue
            fields = text.split(",")
            try:
                frame, intensity = int(float(fields[0])), float(fields[1])
            except (IndexError, ValueError):
                raise DataError(f"line {line}: expected 'frame,intensity', got {text.strip()!r}", path) from None
            values[frame] = _occurs(intensity, threshold, code, path, line)
        per_au[code] = values
    numbers = sorted(set().union(*per_au.values()))
    if not numbers:
        raise DataError("no frames in the AU label files", folder)
    frames = [{au: v.get(n) for au, v in per_au.items()} for n in numbers]
    return AUOccurrence(str(folder), numbers, frames)


def label_files(path: str | Path, suffix: str) -> list[Path]:
    """``path`` itself, or the ``*<suffix>`` files of the folder ``path`` in name order (none is a DataError)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(path.glob(f"*{suffix}"))
    if not files:
        raise DataError(f"no {suffix} files", path)
    return files


def _default_root(path: Path, video_root: str | Path | None) -> Path:
    return Path(video_root) if video_root is not None else (path if path.is_dir() else path.parent)


def compound_majority(path: str | Path) -> tuple[str, int]:
    """One C-EXPR-DB annotation file -> (its majority compound class, the number of labelled frames).

    The first non-empty line names the classes (``Fearfully_Surprised,Happily_Surprised,...``); each following line is
    the class index of one frame, ``-1`` where the frame is not labelled. Ties go to the class seen first.
    """
    path = Path(path)
    lines = [(i, s.strip()) for i, s in enumerate(read_text(path).splitlines(), 1) if s.strip()]
    if not lines:
        raise DataError("empty annotation file", path)
    header_line, header = lines[0]
    classes = []
    for name in header.split(","):
        try:
            classes.append(normalize_compound(name.replace("_", " ")))
        except UnknownLabelError as e:
            raise DataError(f"line {header_line}: {e}", path) from None
    votes: Counter[int] = Counter()
    for line, text in lines[1:]:
        try:
            index = int(text)
        except ValueError:
            raise DataError(f"line {line}: expected a class index, got {text!r}", path) from None
        if index == -1:
            continue
        if not 0 <= index < len(classes):
            raise DataError(f"line {line}: class index {index} outside 0-{len(classes) - 1}", path)
        votes[index] += 1
    if not votes:
        raise DataError("no labelled frame", path)
    return classes[votes.most_common(1)[0][0]], sum(votes.values())


def load_compound_labels(
    path: str | Path, video_root: str | Path | None = None, video_suffix: str = ".mp4"
) -> list[LabeledClip]:
    """Read C-EXPR-DB-style annotations: ``path`` is one ``<video>.txt`` file or a folder of them.

    Each file's first line names the classes (``Fearfully_Surprised,Happily_Surprised,...``); each following line is
    the class index of one frame, ``-1`` where the frame is not labelled. The clip takes the majority class.
    """
    path = Path(path)
    root = _default_root(path, video_root)
    clips = []
    for f in label_files(path, ".txt"):
        label, labelled = compound_majority(f)
        clips.append(
            LabeledClip(
                id=f.stem,
                video=_resolve(f.stem + video_suffix, root),
                compound=label,
                source=f"{f}:1",
                extra={"labelled_frames": labelled},
            )
        )
    return clips


def load_caption_json(
    path: str | Path, video_root: str | Path | None = None, *, require_video: bool = True
) -> list[LabeledClip]:
    """Read FEC-Bench-style captions: a JSON list of objects (or an object keyed by clip id) with ``video`` and
    ``caption``; optional ``id``, ``emotion``, ``compound``, ``aus``, ``audio``. Errors name the entry index.

    ``require_video=False`` accepts entries that name only an ``id`` (the evaluation harness finds their media from
    the id); their ``video`` is ``None``."""
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
        named_by_id = not require_video and video is None and isinstance(e.get("id"), str) and bool(e["id"])
        if not named_by_id and (not isinstance(video, str) or not video):
            raise DataError(
                f"{where}: missing 'video'" if require_video else f"{where}: missing 'id' or 'video'", path
            )
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
                video=_resolve(video, root) if video is not None else None,
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
    aus: Collection[str] | None = None,
) -> list[LabeledClip]:
    """One clip per BP4D/DISFA-style AU file (``path`` is a ``.csv`` file or a folder of them); the clip's AU set is
    :meth:`AUOccurrence.clip_aus` over the ``aus`` columns (default: all) and its video is the file's stem plus
    ``video_suffix`` under ``video_root``."""
    path = Path(path)
    root = _default_root(path, video_root)
    clips = []
    for f in label_files(path, ".csv"):
        occ = load_au_occurrence(f, intensity=intensity, aus=aus)
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
