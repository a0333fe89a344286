"""Train the shipped face reader (``emoreason/assets/reader/``) from the real, human-labelled face photos.

    python train/train_face_reader.py --data /path/to/facial_expressions --split ../shared/data/real_faces_split.json \
        --work /work/results/face_reader [--out emoreason/assets/reader] [--cards data_cards/face_reader]

Stages (each cached under ``--work``, so a rerun recomputes nothing it already has):

1. **extract**: every train and dev photo through EmoReason's own visual perception
   (:func:`emoreason.perception.visual.analyze_frames` on the photo as one frame, downscaled to 720 px like a clip):
   the 468-point mesh, the 16 geometry features, the 17 AU intensities, the 64x64 aligned grey crop, and the ``fer``
   probabilities when ``fer`` is installed (used only as an ablation and a peer, never by the shipped reader).
   Written to ``WORK/features.npz``.
2. **select**: identity-grouped 5-fold cross-validation on train (``GroupKFold``) of the candidate readers (ablations);
   out-of-fold probabilities fit the late-fusion weights and the engine's thresholds.
3. **fit**: the chosen reader on all of train, written as safetensors with its sha256; dev is scored ONCE at the end.

Writes ``metrics.json`` (CV and dev numbers, ablations, confusion matrices) and ``confusion_dev.txt`` to ``--cards``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from emoreason.data.real_faces import load_real_faces


def extract(data: Path, split: Path, work: Path) -> Path:
    """Stage 1: perception features of every train and dev photo, cached to ``work/features.npz``."""
    from emoreason import media
    from emoreason.perception import au as au_mod
    from emoreason.perception.visual import analyze_frames

    out = work / "features.npz"
    if out.is_file():
        return out
    ds = load_real_faces(data, split)
    fer = None
    try:
        from emoreason.perception.expression import ExpressionClassifier

        fer = ExpressionClassifier()
    except Exception as e:  # noqa: BLE001 - fer is optional: an ablation only
        print(f"fer not available ({e}); fer columns stay NaN", file=sys.stderr)
    n = len(ds.photos)
    lms = np.full((n, 468, 3), np.nan, np.float32)
    crops = np.zeros((n, 64, 64), np.uint8)
    feats = np.full((n, len(au_mod.FEATURES)), np.nan, np.float32)
    aus = np.full((n, 17), np.nan, np.float32)
    ferp = np.full((n, 7), np.nan, np.float32)
    boxes = np.full((n, 4), np.nan, np.float32)
    t0 = time.time()
    for i, ph in enumerate(ds.photos):
        bgr = cv2.imread(str(ph.path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        sw, sh = media.scaled_size(w, h, 720)
        if (sw, sh) != (w, h):
            rgb = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        vis = analyze_frames([(0.0, rgb)], fps=10.0, keep_landmarks=True, keep_crops=True, crop_size=64)
        if vis.face is None or not vis.face.present[0]:
            continue
        lms[i] = vis.landmarks[0]
        crops[i] = vis.crops[0]
        feats[i] = au_mod.geometry_features(vis.landmarks[0][None].astype(np.float64))[0]
        aus[i] = [vis.aus.intensities[a][0] for a in vis.aus.intensities]
        boxes[i] = vis.face.boxes[0]
        if fer is not None:
            ferp[i] = fer.predict(crops[i])
        if i % 500 == 0:
            print(f"extract {i}/{n} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    names = np.array([p.path.name for p in ds.photos])
    np.savez_compressed(out, names=names, labels=np.array([p.label for p in ds.photos]),
                        identity=np.array([p.identity for p in ds.photos]),
                        split=np.array([p.split for p in ds.photos]), landmarks=lms, crops=crops, features=feats,
                        aus=aus, fer=ferp, boxes=boxes)  # fmt: skip
    print(f"extracted {n} photos in {time.time() - t0:.0f} s -> {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="checkout of muxspace/facial_expressions")
    ap.add_argument("--split", required=True, type=Path, help="the train/dev split JSON")
    ap.add_argument("--work", required=True, type=Path, help="folder for cached features and checkpoints")
    ap.add_argument("--out", type=Path, default=Path("emoreason/assets/reader"))
    ap.add_argument("--cards", type=Path, default=Path("data_cards/face_reader"))
    ap.add_argument("--only-extract", action="store_true")
    ap.add_argument("--select-only", action="store_true", help="cross-validated ablations only; no weights, no dev")
    args = ap.parse_args(argv)
    for p, what in ((args.data, "data folder"), (args.split, "split file")):
        if not p.exists():
            print(f"train_face_reader: {p}: {what} not found", file=sys.stderr)
            return 2
    args.work.mkdir(parents=True, exist_ok=True)
    feats = extract(args.data, args.split, args.work)
    if args.only_extract:
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from face_reader_fit import fit_all

    fit_all(feats, args.work, args.out, args.cards, argv=sys.argv, select_only=args.select_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
