"""Evidence for the real-faces photos (train and dev splits only), for training and measuring the EmoReason model.

    python train/real_faces_evidence.py --data /path/to/facial_expressions --split ../shared/data/real_faces_split.json \
        --out results/real_faces_evidence [--splits dev train] [--per-class-cap 300] [--seed 0]

Each photo goes through :func:`emoreason.perception.pipeline.perceive` as a photo (``media.still_image``: one frame, AU
intensities, landmarks, the face reader's reading), with the default options. Writes
``<out>/<split>/<stem>.evidence.json`` and ``<out>/<split>.jsonl`` (one row per photo: ``id``, ``label``, ``identity``,
``evidence``; a photo with no face gets ``"evidence": null`` and its one-line reason). Resumable: an evidence file
already written is kept. ``--per-class-cap`` keeps at most that many photos of each label (a seeded sample, so that the
train rows are not nine tenths neutral and happy); dev is always taken whole.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from emoreason.data.real_faces import load_real_faces
from emoreason.errors import EmoReasonError
from emoreason.io import atomic_write_text


def sample(photos: list, cap: int | None, seed: int) -> list:
    if cap is None:
        return photos
    by: dict[str, list] = defaultdict(list)
    for p in photos:
        by[p.label].append(p)
    rng = random.Random(seed)
    out = []
    for label in sorted(by):
        group = sorted(by[label], key=lambda p: p.path.name)
        rng.shuffle(group)
        out += group[:cap]
    return sorted(out, key=lambda p: p.path.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--split", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--splits", nargs="+", default=["dev", "train"], choices=("dev", "train"))
    ap.add_argument("--per-class-cap", type=int, default=300, help="train only; dev is taken whole")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from emoreason.perception.pipeline import perceive

    faces = load_real_faces(args.data, args.split)
    for split in args.splits:
        photos = faces.split(split)
        photos = photos if split == "dev" else sample(photos, args.per_class_cap, args.seed)
        folder = args.out / split
        folder.mkdir(parents=True, exist_ok=True)
        rows, t0 = [], time.time()
        for k, ph in enumerate(photos):
            path = folder / f"{ph.path.stem}.evidence.json"
            row = {"id": ph.path.stem, "label": ph.label, "identity": ph.identity, "evidence": str(path)}
            if not path.exists():
                try:
                    ev = perceive(ph.path, asr=False)
                    if ev.face is None or not ev.face.coverage:
                        raise EmoReasonError("no face found")
                    atomic_write_text(path, ev.model_dump_json())
                except EmoReasonError as e:
                    row |= {"evidence": None, "error": str(e).splitlines()[0]}
            rows.append(row)
            if k % 100 == 0:
                print(f"{split} {k}/{len(photos)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        atomic_write_text(args.out / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        print(f"{split}: {sum(r['evidence'] is not None for r in rows)} of {len(rows)} photos with a face",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
