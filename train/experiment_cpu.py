"""CPU learning experiment on the synthetic evidence -> emotion + AU task: untrained vs SFT vs SFT+GRPO.

    python train/experiment_cpu.py --out results/experiment_cpu [--sft-steps 300] [--grpo-steps 150]

Writes train/held-out shards of the task (prototypical AU events per emotion with missing AUs, onset jitter and a
distractor AU in 40 % of clips), a tiny random Qwen2 (hidden 64, 2 layers, BPE tokenizer on the task's text), trains
it with the smoke recipes (full fine-tuning, overridden below), measures the greedy held-out rewards after each stage,
and saves ``results.json`` and ``reward_curves.png`` (GRPO's per-step mean rewards on its own samples).
The evidence is rendered by the test fixture's one-line-per-AU-event formatter, so the run does not depend on the
prose of ``emoreason.evidence_text``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REWARDS = ["format", "emotion", "au"]


def main() -> None:
    import sys

    sys.path.insert(0, str(REPO))  # the task generator and tiny model live with the test fixtures
    from emoreason.io import atomic_write_text
    from emoreason.training.config import EmoGRPOConfig, EmoSFTConfig, parse_recipe
    from emoreason.training.grpo import run_grpo
    from emoreason.training.sft import run_sft
    from emoreason.training.synthesize import evaluate_rewards
    from tests.fixtures.train.synth import evidence_text, synthetic_rows
    from tests.fixtures.train.tiny_model import default_corpus, make_tiny_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "results" / "experiment_cpu")
    p.add_argument("--n-train", type=int, default=240)
    p.add_argument("--n-eval", type=int, default=120)
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--grpo-steps", type=int, default=150)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: Path = a.out
    for name, n, seed in (("train", a.n_train, 10), ("eval", a.n_eval, 12)):
        rows = synthetic_rows(out / "evidence", n, seed=seed)
        atomic_write_text(out / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    base = make_tiny_model(out / "base", default_corpus(), vocab_size=800)
    recipes = REPO / "train" / "recipes"
    common = [
        "--train_files",
        str(out / "train.jsonl"),
        "--use_lora",
        "false",
        "--no_auto_resume",
        "--save_steps",
        "100000",
    ]

    def held_out(model: Path) -> dict:
        cfg = parse_recipe(EmoSFTConfig, recipes / "sft_smoke.yaml", ["--model_name_or_path", str(model), *common])
        r = evaluate_rewards(
            cfg, [str(out / "eval.jsonl")], REWARDS, max_new_tokens=160, evidence_formatter=evidence_text
        )
        return r["mean"]

    results: dict = {"task": {"n_train": a.n_train, "n_eval": a.n_eval}, "held_out": {}, "seconds": {}}
    results["held_out"]["untrained"] = held_out(base)
    t = time.time()
    sft_args = ["--model_name_or_path", str(base), "--output_dir", str(out / "sft"), "--max_steps", str(a.sft_steps)]
    sft_args += ["--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--lr_scheduler_type", "cosine"]
    sft_args += ["--warmup_steps", "0.05", "--logging_steps", "20", *common]
    sft = run_sft(parse_recipe(EmoSFTConfig, recipes / "sft_smoke.yaml", sft_args), evidence_formatter=evidence_text)
    results["seconds"]["sft"] = round(time.time() - t, 1)
    results["held_out"]["sft"] = held_out(out / "sft")
    t = time.time()
    grpo_args = ["--model_name_or_path", str(out / "sft"), "--output_dir", str(out / "grpo")]
    grpo_args += ["--max_steps", str(a.grpo_steps), "--per_device_train_batch_size", "16", "--num_generations", "8"]
    grpo_args += ["--max_completion_length", "160", "--learning_rate", "2e-4", "--temperature", "0.7"]
    grpo_args += [
        "--logging_steps",
        "10",
        "--reward_funcs",
        *REWARDS,
        "--reward_weights",
        "0.5",
        "0.5",
        "1.0",
        *common,
    ]
    grpo = run_grpo(
        parse_recipe(EmoGRPOConfig, recipes / "grpo_smoke.yaml", grpo_args), evidence_formatter=evidence_text
    )
    results["seconds"]["grpo"] = round(time.time() - t, 1)
    results["held_out"]["sft+grpo"] = held_out(out / "grpo")
    results["sft_loss"] = [(e["step"], e["loss"]) for e in sft["log_history"] if "loss" in e]
    results["grpo_rewards"] = grpo["rewards"]
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    plot(results, out / "reward_curves.png")
    print(json.dumps(results["held_out"], indent=1))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in REWARDS:
        key = f"rewards/{name}_reward/mean"
        pts = [(r["step"], r[key]) for r in results["grpo_rewards"] if r.get(key) is not None]
        ax.plot(*zip(*pts, strict=True), marker="o", label=f"{name} (GRPO samples)")
        held = results["held_out"]
        ax.axhline(held["sft"][name], ls=":", color=ax.lines[-1].get_color(), label=f"{name} held-out after SFT")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
