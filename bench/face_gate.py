"""Face or not: how often the face tracker finds no face on real photos, and which non-faces it takes for faces.

Runs :class:`emoreason.perception.face.FaceTracker` (the path ``perceive`` takes on a photo: one ``step`` on a fresh
track) with the flat-shading check (``FLAT_MAX``) and without it, on

- the real-faces dev split (every photo holds a real face: the no-face rate should stay near 0), and
- the tests' no-face fixtures (a landscape, a rocket, the chelsea cat, a smiley logo, drawn cartoon faces, some through
  JPEG): each should get no face.

    python bench/face_gate.py --images /work/data/real_faces/images --split ../shared/data/real_faces_split.json

Only the split's ``dev`` names are read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emoreason.perception.face import FLAT_MAX, FaceTracker  # noqa: E402
from tests.test_face import _no_faces  # noqa: E402


def found(tracker: FaceTracker, rgb: np.ndarray) -> bool:
    tracker.track, tracker._i = None, 0
    return tracker.step(np.ascontiguousarray(rgb)).present


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of the real-faces photos")
    ap.add_argument("--split", type=Path, required=True, help="split JSON with a 'dev' list of file names")
    args = ap.parse_args()
    if not args.images.is_dir():
        sys.exit(f"error: {args.images}: images folder not found")
    if not args.split.is_file():
        sys.exit(f"error: {args.split}: split file not found")
    names = json.loads(args.split.read_text())["dev"]
    photos = []
    for n in names:
        bgr = cv2.imread(str(args.images / n))
        if bgr is None:
            sys.exit(f"error: {args.images / n}: missing or unreadable photo")
        photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    fixtures = _no_faces()
    out = {}
    for label, gate in (("mesh presence + detector score (before)", None), (f"+ flat check <= {FLAT_MAX}", FLAT_MAX)):
        tracker = FaceTracker(flat_max=gate)
        missed = sum(not found(tracker, p) for p in tqdm(photos, desc=label, unit="photo"))
        false = [k for k, img in fixtures.items() if found(tracker, img)]
        out[label] = {"dev_photos": len(photos), "dev_no_face": missed, "dev_no_face_rate": round(missed / len(photos), 4),
                      "fixtures": len(fixtures), "fixtures_with_a_face": false}  # fmt: skip
        print(f"{label}: dev no-face {missed}/{len(photos)} = {missed / len(photos):.2%}; non-face fixtures given a "
              f"face: {len(false)}/{len(fixtures)} {false}")  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
