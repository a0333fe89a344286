"""Throughput of the temporal caption score: ``python bench/caption_score.py [N]`` scores N caption pairs (10,000 by
default) built from a pool of varied captions, and prints pairs per second and the time for 10,000 pairs.

Goal (issue #8): 10,000 pairs in under a minute on a 2-core CPU.
"""

from __future__ import annotations

import random
import sys
import time

from emoreason.metrics import caption_scores

ACTIONS = [
    "her brows raise", "his eyebrows lower", "the mouth opens", "the jaw drops", "she smiles", "he frowns",
    "the eyes widen", "her eyes narrow", "the lips press together", "the nose wrinkles", "he turns his head away",
    "she nods", "the corners of her mouth turn down", "the cheeks lift", "he does not smile", "she looks surprised",
    "he seems furious", "she appears sad", "he looks delighted", "the lips part",
]  # fmt: skip
ORDER = ["First", "Then", "After that", "Finally", "At the end"]


def caption(rng: random.Random) -> str:
    k = rng.randint(2, 6)
    parts = rng.sample(ACTIONS, k)
    return " ".join(f"{ORDER[min(i, len(ORDER) - 1)]} {p}." for i, p in enumerate(parts))


def main(n: int = 10_000) -> None:
    rng = random.Random(0)
    pool = [caption(rng) for _ in range(500)]
    pairs = [(rng.choice(pool), rng.choice(pool)) for _ in range(n)]
    t0 = time.perf_counter()
    total = 0.0
    for p, r in pairs:
        total += caption_scores(p, r)["score"]
    dt = time.perf_counter() - t0
    print(f"{n} pairs in {dt:.2f} s: {n / dt:,.0f} pairs/s; 10,000 pairs take {10_000 * dt / n:.2f} s "
          f"(goal < 60 s); mean score {total / n:.3f}")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
