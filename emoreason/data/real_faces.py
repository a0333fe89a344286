"""Loader for the real, human-labelled face photos of ``muxspace/facial_expressions`` (train and dev splits only).

The data is not shipped: fetch the public GitHub repository (Apache-2.0, crowd-labelled), and point the loader at
``data/legend.csv`` (columns ``user.id,image,emotion``), the ``images/`` folder and the split file (a JSON object with
keys ``source``, ``identity``, ``train`` and ``dev``: lists of image file names). See ``data_cards/real_faces.md``.

Rules applied, all counted in :class:`RealFaces.dropped`:

- labels are lower-cased (the legend mixes ``HAPPINESS`` and ``happiness``);
- a file listed twice in the legend with the same label counts once; a file with two different labels is dropped;
- ``contempt`` (9 photos in the whole legend, 6 in train, none in dev) is dropped: too few to learn or to score;
- a name listed twice in a split counts once; a name in both splits, a name without a label, or a label outside the
  taxonomy is an error (the split is identity-disjoint by construction, so any overlap means a wrong file).

The identity of a photo is its file name without the extension and its trailing ``_<number>`` (``Aaron_Eckhart_0001.jpg``
-> ``Aaron_Eckhart``); names without such a suffix are their own identity.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from emoreason.errors import DataError
from emoreason.knowledge.taxonomy import BASIC_EMOTIONS

SPLITS = ("train", "dev")
DROPPED_LABELS = ("contempt",)
LABELS: tuple[str, ...] = BASIC_EMOTIONS  # what the loader yields (contempt dropped)
_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class FacePhoto:
    path: Path
    label: str
    identity: str
    split: str


@dataclass
class RealFaces:
    photos: list[FacePhoto]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> number of photos

    def split(self, name: str) -> list[FacePhoto]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [p for p in self.photos if p.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Photos per split per label."""
        return {s: dict(Counter(p.label for p in self.split(s))) for s in SPLITS}

    def __iter__(self) -> Iterator[FacePhoto]:
        return iter(self.photos)


def identity_of(name: str) -> str:
    """The person a photo shows: the file name without extension and trailing ``_<number>``."""
    return _SUFFIX.sub("", Path(name).stem)


def read_legend(path: Path) -> tuple[dict[str, str], set[str]]:
    """``image -> lower-case label`` from legend.csv, and the files left out because they carry two labels."""
    if not path.is_file():
        raise DataError("label file not found (expected data/legend.csv of muxspace/facial_expressions)", path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"image", "emotion"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"label file lacks column(s) {sorted(missing)}; has {reader.fieldnames}", path)
        labels: dict[str, set[str]] = {}
        for row in reader:
            name, label = (row["image"] or "").strip(), (row["emotion"] or "").strip().lower()
            if not name or not label:
                raise DataError(f"line {reader.line_num}: empty image or emotion", path)
            labels.setdefault(name, set()).add(label)
    conflicting = {k for k, v in labels.items() if len(v) > 1}
    return {k: next(iter(v)) for k, v in labels.items() if len(v) == 1}, conflicting


def read_split(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise DataError("split file not found", path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"split file is not JSON: {e}", path) from e
    if not isinstance(obj, dict) or any(not isinstance(obj.get(s), list) for s in SPLITS):
        raise DataError(f"split file must be an object with lists {list(SPLITS)}", path)
    out = {s: list(dict.fromkeys(str(n) for n in obj[s])) for s in SPLITS}
    both = set(out["train"]) & set(out["dev"])
    if both:
        raise DataError(f"{len(both)} photo(s) in both train and dev, e.g. {sorted(both)[0]}", path)
    shared = {identity_of(n) for n in out["train"]} & {identity_of(n) for n in out["dev"]}
    if shared:
        raise DataError(f"{len(shared)} identities in both train and dev, e.g. {sorted(shared)[0]}", path)
    return out


def load_real_faces(root: str | Path, split_file: str | Path, *, check_images: bool = True) -> RealFaces:
    """The train and dev photos of a ``muxspace/facial_expressions`` checkout at ``root`` (``data/legend.csv`` and
    ``images/``), split by ``split_file``. Photos of other splits are never read."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            "data folder not found (a checkout of muxspace/facial_expressions with data/ and images/)", root
        )
    images = root / "images"
    if check_images and not images.is_dir():
        raise DataError("no images/ folder in the data folder", root)
    labels, conflicting = read_legend(root / "data" / "legend.csv")
    splits = read_split(Path(split_file))
    dropped = Counter({"conflicting_labels": 0, "contempt": 0})
    photos: list[FacePhoto] = []
    for s in SPLITS:
        for name in splits[s]:
            if name in conflicting:
                dropped["conflicting_labels"] += 1
                continue
            if name not in labels:
                raise DataError(f"{s} photo {name} has no label in legend.csv", split_file)
            label = labels[name]
            if label in DROPPED_LABELS:
                dropped[label] += 1
                continue
            if label not in LABELS:
                raise DataError(f"photo {name} has label {label!r}, not one of {list(LABELS)}", root / "data")
            path = images / name
            if check_images and not path.is_file():
                raise DataError(f"{s} photo {name} is listed but not in images/", images)
            photos.append(FacePhoto(path=path, label=label, identity=identity_of(name), split=s))
    return RealFaces(photos=photos, dropped=dict(dropped))
