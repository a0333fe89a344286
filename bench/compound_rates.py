"""How often each C-EXPR-DB compound fires on the real-faces dev split, beside how often its parts are the call.

Every dev photo goes through the default path (``perceive(asr=False)`` then ``analyze``). For each compound the script
counts the photos that get it under the engine's rule (:func:`emoreason.reasoning.engine._compound`: both parts'
prototypes present, the secondary at least a third as probable as the call) and under the old pairwise rule (any two
most probable non-neutral emotions with ``sqrt(p_a * p_b) >= 0.25``, on the same probabilities), and how often each
part is the emotion call. A compound is meant to be rarer than either of its parts.

    python bench/compound_rates.py --images /work/data/real_faces/images --split ../shared/data/real_faces_split.json

Only the split's ``dev`` names are read; the labels are not used (this reports rates, it tunes nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from emoreason.knowledge.taxonomy import C_EXPR_DB_LABELS, COMPOUNDS, compound_for
from emoreason.perception.pipeline import perceive
from emoreason.reasoning import engine
from emoreason.reasoning.engine import analyze
from emoreason.reasoning.faithfulness import present_aus

OLD_THRESHOLD = 0.25  # the pairwise rule this replaced


def old_rule(p: dict[str, float]) -> str | None:
    a, b = [e for e in sorted(p, key=lambda e: -p[e]) if e != "neutral"][:2]
    c = compound_for(a, b)
    return c.label if c is not None and math.sqrt(p[a] * p[b]) >= OLD_THRESHOLD else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of the real-faces photos")
    ap.add_argument("--split", type=Path, required=True, help="split JSON with a 'dev' list of file names")
    ap.add_argument("--out", type=Path, help="write the counts here as JSON")
    args = ap.parse_args()
    if not args.images.is_dir():
        sys.exit(f"error: {args.images}: images folder not found")
    if not args.split.is_file():
        sys.exit(f"error: {args.split}: split file not found")
    logging.getLogger("emoreason").setLevel(logging.ERROR)
    names = json.loads(args.split.read_text())["dev"]
    calls: Counter[str] = Counter()
    new: Counter[str] = Counter()
    old: Counter[str] = Counter()
    gates: Counter[str] = Counter()  # per candidate compound: which of the rule's two conditions hold
    for n in tqdm(names, unit="photo"):
        ev = perceive(args.images / n, asr=False)
        a = analyze(ev)
        calls[a.emotion] += 1
        if a.compound:
            new[a.compound] += 1
        if a.emotion in a.probabilities and a.emotion != "neutral":
            p = a.probabilities
            pairs = [b for b in sorted(p, key=lambda e: -p[e]) if b != a.emotion and (c := compound_for(a.emotion, b))
                     and c.abaw]  # fmt: skip
            if pairs:
                b = pairs[0]
                present, read = present_aus(ev), set(ev.aus.intensities) if ev.aus is not None else set()
                ratio = p[b] >= engine.COMPOUND_SECONDARY_FRACTION * p[a.emotion]
                own = engine._shows_prototype(a.emotion, present, read)
                other = engine._shows_prototype(b, present, read)
                gates["candidates"] += 1
                gates["secondary probable enough"] += ratio
                gates["call's prototype present"] += own
                gates["secondary's prototype present"] += other
                gates["both prototypes present"] += own and other
        if ev.face is not None and ev.face.coverage > 0:
            o = old_rule(a.probabilities)
            if o in C_EXPR_DB_LABELS:
                old[o] += 1
    rows = []
    print(f"{len(names)} dev photos; calls: " + ", ".join(f"{e} {k}" for e, k in calls.most_common()))
    print(f"{'compound':24s} {'fires':>6s} {'old rule':>8s}   parts as the call")
    for c in (c for c in COMPOUNDS if c.abaw):
        parts = {c.modifier: calls[c.modifier], c.base: calls[c.base]}
        rows.append({"compound": c.label, "fires": new[c.label], "old_rule": old[c.label], "parts": parts})
        print(
            f"{c.label:24s} {new[c.label]:6d} {old[c.label]:8d}   " + ", ".join(f"{e} {k}" for e, k in parts.items())
        )
    print(f"{'any':24s} {sum(new.values()):6d} {sum(old.values()):8d}")
    print("conditions on the photos with a non-neutral call: " + ", ".join(f"{k} {v}" for k, v in gates.items()))
    if args.out:
        args.out.write_text(json.dumps({"n": len(names), "calls": dict(calls), "compounds": rows,
                                        "conditions": dict(gates)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
