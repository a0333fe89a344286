"""CPU learning experiment on the synthetic evidence -> emotion + AU task: untrained vs SFT vs SFT+GRPO, per seed, plus
the compressor ablation (multimodal EmoReason model, SFT with use_compressor on vs off).

    python train/experiment_cpu.py --out results/experiment_cpu --seeds 0 1

(the defaults are the headline configuration: 2000 / 120 clips, noisy-teacher SFT targets, hidden 128 × 4 layers, SFT
1000 steps of 16, GRPO 150 steps of 64 completions = 8 prompts × 8, lr 1e-4, beta 0.04, temperature 1.0, weights
format 0.25 / emotion 1 / AU 1; the model card lists the other configurations tried and their flags).

Task: train/held-out shards (data seeds 10 / 12) of prototypical AU events per emotion with missing AUs (15 %), onset
jitter and a distractor AU in 40 % of clips (``tests/fixtures/train/synth.py``; events listed in onset order). The gold
AU set is the expression's AUs (never the distractor). GRPO's AU reward scores the AUs named in the reasoning against
the gold set.

SFT targets (``--target``) are chain-of-thought answers written without the gold AU labels, as the engine-written
targets of ``emoreason/data/builder.py`` and LLM-written CoT are, and the gold emotion:

- ``noisy`` (default): an inconsistent writer — it cites each distractor the evidence shows with probability
  ``--teacher-distractor-rate`` (0.6) and leaves out each gold AU with probability ``--teacher-miss-rate`` (0.05),
  differently from clip to clip. SFT learns the writer's habits, distractors mostly in; the policy still samples
  answers without them, which GRPO can reinforce.
- ``evidence``: a consistent writer that cites every AU the evidence shows, distractors always in. SFT learns that
  rule exactly, its policy almost never samples an answer without the distractor, and GRPO has nothing to reinforce.
- ``compact`` cites the gold set (SFT can then learn everything; GRPO has nothing left to add), ``reference`` the
  fixture's long CoT with times.

Text path: a tiny random Qwen2 (``--hidden-size``, ``--num-layers``; BPE tokenizer trained on the task's text, one token
per AU code unless ``--no-au-tokens``) trained from scratch with full fine-tuning and the two-line system prompt
``emoreason/prompts/train_system_compact_v1.md``: SFT, then GRPO from the SFT weights. Every stage is measured the
same way: greedy answers on the same held-out clips, mean format / emotion (= accuracy) / AU (2·F1 − 1) rewards, and how
the answers' AUs differ from the gold sets (distractors cited, gold AUs missed, AUs the evidence does not show).

Ablation: the tiny random EmoReason model (``emoreason.models.emoreason.testing``) reads the clip's AU series through
its face encoder (no evidence text in the prompt), SFT with the same steps and seed, compressor on vs off, measured
with the same greedy held-out rewards.

Writes ``results.json`` and ``reward_curves.png`` (GRPO's per-step mean rewards on its own samples, per seed, with the
held-out SFT and SFT+GRPO levels) under ``--out``; runs started separately (one seed per process) are collected with
``--aggregate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REWARDS = ["format", "emotion", "au"]
RECIPES = REPO / "train" / "recipes"


def compact_answer(emotion: str, aus: list[str]) -> str:
    """The compact target: the AUs relied on and the conclusion, then the answer JSON."""
    from emoreason.parsing import format_answer

    return format_answer(f"Key observations: {', '.join(aus)}. Conclusion: {emotion}.", emotion, None, aus)


def shown_aus(evidence: Path) -> list[str]:
    """Every AU the evidence shows, in onset order: what a CoT writer that cites the evidence (and does not know the
    gold labels) puts in its key observations, distractor AUs included."""
    from emoreason.evidence import Evidence

    return [e.au for e in Evidence.load(evidence).au_events]


def noisy_teacher_aus(row: dict, shown: list[str], distractor_rate: float, miss_rate: float) -> list[str]:
    """What an inconsistent CoT writer cites (``--target noisy``): each shown AU outside the gold set with probability
    ``distractor_rate``, each gold AU with probability ``1 - miss_rate`` (at least one cited). Deterministic per row id.

    >>> row = {"id": "s10_0001", "aus": ["AU6", "AU12"]}
    >>> noisy_teacher_aus(row, ["AU6", "AU25", "AU12"], 1.0, 0.0)
    ['AU6', 'AU25', 'AU12']
    >>> noisy_teacher_aus(row, ["AU6", "AU25", "AU12"], 0.0, 0.0)
    ['AU6', 'AU12']
    """
    import random

    rng = random.Random(f"teacher-{row['id']}")
    gold = set(row["aus"])
    cited = [au for au in shown if rng.random() < (1.0 - miss_rate if au in gold else distractor_rate)]
    if not any(au in gold for au in cited):
        first = next(au for au in shown if au in gold)
        cited = [au for au in shown if au == first or au in cited]
    return cited


def write_data(
    out: Path, n_train: int, n_eval: int, target: str, distractor_rate: float = 0.6, miss_rate: float = 0.05
) -> dict[str, Path]:
    from emoreason.io import atomic_write_text
    from tests.fixtures.train.synth import synthetic_rows

    shards = {}
    for name, n, seed in (("train", n_train, 10), ("eval", n_eval, 12)):
        rows = synthetic_rows(out / "evidence", n, seed=seed)
        for r in rows:
            if target == "compact":
                r["answer"] = compact_answer(r["emotion"], r["aus"])
            elif target == "evidence":
                r["answer"] = compact_answer(r["emotion"], shown_aus(Path(r["evidence"])))
            elif target == "noisy":
                cited = noisy_teacher_aus(r, shown_aus(Path(r["evidence"])), distractor_rate, miss_rate)
                r["answer"] = compact_answer(r["emotion"], cited)
        shards[name] = out / f"{name}.jsonl"
        atomic_write_text(shards[name], "".join(json.dumps(r) + "\n" for r in rows))
    return shards


def held_out(
    model: Path, shards: dict[str, Path], max_new_tokens: int, system_prompt: str, evidence_formatter: Any = None
) -> dict[str, Any]:
    """Greedy answers on the held-out shard (``evaluate_rewards``: evidence as text for a text checkpoint, through the
    encoders for an EmoReason one): mean rewards plus ``citations``, how the answers' AUs differ from the gold sets."""
    from emoreason.training.config import EmoSFTConfig, parse_recipe
    from emoreason.training.synthesize import evaluate_rewards

    cfg = parse_recipe(
        EmoSFTConfig,
        RECIPES / "sft_smoke.yaml",
        [
            "--model_name_or_path",
            str(model),
            "--train_files",
            str(shards["train"]),
            "--use_peft",
            "false",
            "--system_prompt",
            system_prompt,
        ],  # fmt: skip
    )
    r = evaluate_rewards(
        cfg, [str(shards["eval"])], REWARDS, max_new_tokens=max_new_tokens, evidence_formatter=evidence_formatter
    )
    return {**r["mean"], "citations": citation_errors(shards["eval"], {p["id"]: p["answer"] for p in r["per_row"]})}


def held_out_text(model: Path, shards: dict[str, Path], max_new_tokens: int, system_prompt: str) -> dict[str, Any]:
    """:func:`held_out` for the text path, the evidence written by the task's formatter."""
    from tests.fixtures.train.synth import evidence_text

    return held_out(model, shards, max_new_tokens, system_prompt, evidence_text)


def citation_errors(eval_shard: Path, answers: dict[str, str]) -> dict[str, int]:
    """Counts over the held-out clips: those whose evidence shows a distractor and how many answers cite it, and how
    many answers leave out a gold AU or name an AU the evidence does not show (AUs read from the reasoning, as the AU
    reward reads them)."""
    from emoreason.rewards import parse_output

    counts = {"clips": 0, "with_distractor": 0, "distractor_cited": 0, "gold_missed": 0, "unshown_named": 0}
    for line in eval_shard.read_text().splitlines():
        row = json.loads(line)
        shown, gold = set(shown_aus(Path(row["evidence"]))), set(row["aus"])
        named = set(parse_output(answers[row["id"]]).think_aus)
        counts["clips"] += 1
        counts["with_distractor"] += bool(shown - gold)
        counts["distractor_cited"] += bool((shown - gold) & named)
        counts["gold_missed"] += bool(gold - named)
        counts["unshown_named"] += bool(named - shown)
    return counts


def run_text_seed(a: argparse.Namespace, shards: dict[str, Path], seed: int) -> dict[str, Any]:
    from emoreason.data.builder import system_prompt_text
    from emoreason.knowledge.facs import AUS
    from emoreason.training.config import EmoGRPOConfig, EmoSFTConfig, parse_recipe
    from emoreason.training.grpo import run_grpo
    from emoreason.training.sft import run_sft
    from tests.fixtures.train.synth import evidence_text
    from tests.fixtures.train.tiny_model import default_corpus, make_tiny_model

    out = a.out / f"seed{seed}"
    common = ["--train_files", str(shards["train"]), "--use_peft", "false", "--no_auto_resume", "--seed", str(seed)]
    common += ["--save_steps", "100000", "--system_prompt", a.system_prompt]
    corpus = default_corpus() + [system_prompt_text(a.system_prompt)] * 3 + _answers(shards["train"])[:60]
    res: dict[str, Any] = {"held_out": {}, "seconds": {}}
    sft_dir = out / "sft"
    if not (a.reuse_sft and (sft_dir / "emoreason_train.json").exists()):
        base = make_tiny_model(
            out / "base",
            corpus,
            vocab_size=800,
            seed=seed,
            hidden_size=a.hidden_size,
            num_layers=a.num_layers,
            whole_words=AUS if a.au_tokens else (),
        )
        res["held_out"]["untrained"] = held_out_text(base, shards, a.max_new_tokens, a.system_prompt)
        t = time.time()
        sft_args = ["--model_name_or_path", str(base), "--output_dir", str(sft_dir), "--max_steps", str(a.sft_steps)]
        sft_args += ["--per_device_train_batch_size", str(a.sft_batch), "--learning_rate", str(a.sft_lr)]
        sft_args += ["--lr_scheduler_type", "cosine", "--warmup_steps", "0.05", "--logging_steps", "10", *common]
        sft = run_sft(
            parse_recipe(EmoSFTConfig, RECIPES / "sft_smoke.yaml", sft_args), evidence_formatter=evidence_text
        )
        res["seconds"]["sft"] = round(time.time() - t, 1)
        res["sft_loss"] = [(e["step"], e["loss"]) for e in sft["log_history"] if "loss" in e]
        res["sft_args"] = sft_args
        res["held_out"]["sft"] = held_out_text(sft_dir, shards, a.max_new_tokens, a.system_prompt)
        _save_json(out / "sft_stage.json", res)
    else:
        res = json.loads((out / "sft_stage.json").read_text())
    grpo_dir = out / f"grpo{a.tag}"
    shutil.rmtree(grpo_dir, ignore_errors=True)
    t = time.time()
    g = [*grpo_args(a, sft_dir, grpo_dir, a.max_new_tokens), *common]
    grpo = run_grpo(parse_recipe(EmoGRPOConfig, RECIPES / "grpo_smoke.yaml", g), evidence_formatter=evidence_text)
    res["seconds"]["grpo"] = round(time.time() - t, 1)
    res["grpo_args"] = g
    res["held_out"]["sft+grpo"] = held_out_text(grpo_dir, shards, a.max_new_tokens, a.system_prompt)
    res["grpo_rewards"] = grpo["rewards"]
    _save_json(out / f"results{a.tag}.json", res)
    return res


def grpo_args(a: argparse.Namespace, model: Path, output_dir: Path, max_new_tokens: int) -> list[str]:
    """The GRPO stage's recipe overrides, shared by the text and the multimodal runs."""
    g = ["--model_name_or_path", str(model), "--output_dir", str(output_dir), "--max_steps", str(a.grpo_steps)]
    g += ["--per_device_train_batch_size", str(a.grpo_batch), "--num_generations", str(a.num_generations)]
    g += ["--max_completion_length", str(max_new_tokens), "--learning_rate", str(a.grpo_lr)]
    g += ["--temperature", str(a.temperature), "--beta", str(a.beta), "--loss_type", a.loss_type]
    g += ["--scale_rewards", a.scale_rewards, "--lr_scheduler_type", "constant", "--warmup_steps", "0"]
    g += ["--num_iterations", str(a.num_iterations), "--logging_steps", "10"]
    return g + ["--reward_funcs", *REWARDS, "--reward_weights", *(str(w) for w in a.reward_weights)]


def mm_sft_args(a: argparse.Namespace, base: Path, output_dir: Path, shards: dict[str, Path], seed: int) -> list[str]:
    """The multimodal SFT stage's recipe overrides (full fine-tuning), shared by the ablation and the GRPO run."""
    args = ["--model_name_or_path", str(base), "--output_dir", str(output_dir), "--max_steps", str(a.mm_steps)]
    args += ["--train_files", str(shards["train"]), "--use_peft", "false", "--no_auto_resume", "--seed", str(seed)]
    args += ["--per_device_train_batch_size", str(a.sft_batch), "--learning_rate", str(a.sft_lr)]
    args += ["--system_prompt", a.system_prompt, "--lr_scheduler_type"]
    return args + ["cosine", "--warmup_steps", "0.05", "--logging_steps", "10", "--save_steps", "100000"]


def _answers(path: Path) -> list[str]:
    return [json.loads(line)["answer"] for line in path.read_text().splitlines() if line.strip()]


def _save_json(path: Path, obj: Any) -> None:
    from emoreason.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=1))


def held_out_multimodal(
    model_dir: Path, shards: dict[str, Path], max_new_tokens: int, system_prompt: str
) -> dict[str, Any]:
    """:func:`held_out` for an EmoReason checkpoint (evidence through the processor), plus the teacher-forced loss on
    the held-out answers (``loss``)."""
    import torch

    from emoreason.data.builder import load_rows
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
    from emoreason.training.sft import EvidenceCollator

    model = EmoReasonForConditionalGeneration.from_pretrained(model_dir).eval()
    collator = EvidenceCollator(EmoReasonProcessor.from_pretrained(model_dir), system_prompt)
    rows = load_rows([str(shards["eval"])])
    losses = []
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            losses.append(float(model(**collator(rows[i : i + 8])).loss) * len(rows[i : i + 8]))
    return {**held_out(model_dir, shards, max_new_tokens, system_prompt), "loss": sum(losses) / len(rows)}


def run_ablation(a: argparse.Namespace, shards: dict[str, Path], seed: int) -> dict[str, Any]:
    from emoreason.models.emoreason.testing import tiny_model_dir
    from emoreason.training.config import EmoSFTConfig, parse_recipe
    from emoreason.training.sft import run_sft

    out = a.out / f"ablation_seed{seed}"
    base = tiny_model_dir(out, text_config={"max_position_embeddings": 2048})  # room for the training system prompt
    res: dict[str, Any] = {}
    for on in (True, False):
        name = "compressor_on" if on else "compressor_off"
        t = time.time()
        args = [*mm_sft_args(a, base, out / name, shards, seed), "--use_compressor", str(on).lower()]
        sft = run_sft(parse_recipe(EmoSFTConfig, RECIPES / "sft_smoke.yaml", args))
        res[name] = {
            "seconds": round(time.time() - t, 1),
            "train_loss": sft["train_loss"],
            "loss": [(e["step"], e["loss"]) for e in sft["log_history"] if "loss" in e],
            "held_out": held_out_multimodal(out / name, shards, a.max_new_tokens_mm, a.system_prompt),
        }
    _save_json(out / "ablation.json", res)
    return res


def run_multimodal_grpo(a: argparse.Namespace, shards: dict[str, Path], seed: int) -> dict[str, Any]:
    """SFT then GRPO of the tiny random EmoReason model reading the clip through its face encoder (compressor on, full
    fine-tuning), GRPO with the text runs' settings; the same greedy held-out measures after each stage."""
    from emoreason.models.emoreason.testing import tiny_model_dir
    from emoreason.training.config import EmoGRPOConfig, EmoSFTConfig, parse_recipe
    from emoreason.training.grpo import run_grpo
    from emoreason.training.sft import run_sft

    out = a.out / f"mm_seed{seed}"
    base = tiny_model_dir(out, text_config={"max_position_embeddings": 2048})
    common = ["--train_files", str(shards["train"]), "--use_peft", "false", "--no_auto_resume", "--seed", str(seed)]
    common += ["--save_steps", "100000", "--system_prompt", a.system_prompt]
    res: dict[str, Any] = {"held_out": {}, "seconds": {}}
    if not (a.reuse_sft and (out / "sft" / "emoreason_train.json").exists()):
        t = time.time()
        run_sft(
            parse_recipe(EmoSFTConfig, RECIPES / "sft_smoke.yaml", mm_sft_args(a, base, out / "sft", shards, seed))
        )
        res["seconds"]["sft"] = round(time.time() - t, 1)
    res["held_out"]["sft"] = held_out_multimodal(out / "sft", shards, a.max_new_tokens_mm, a.system_prompt)
    _save_json(out / f"mm_results{a.tag}.json", res)
    t = time.time()
    g = grpo_args(a, out / "sft", out / f"grpo{a.tag}", a.max_new_tokens_mm)
    grpo = run_grpo(parse_recipe(EmoGRPOConfig, RECIPES / "grpo_smoke.yaml", [*g, *common]))
    res["seconds"]["grpo"] = round(time.time() - t, 1)
    res["grpo_args"] = g
    res["grpo_rewards"] = grpo["rewards"]
    res["held_out"]["sft+grpo"] = held_out_multimodal(
        out / f"grpo{a.tag}", shards, a.max_new_tokens_mm, a.system_prompt
    )
    _save_json(out / f"mm_results{a.tag}.json", res)
    print(f"multimodal seed {seed}:", json.dumps(res["held_out"]), res["seconds"])
    return res


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = results["seeds"]
    fig, axes = plt.subplots(1, len(REWARDS), figsize=(11, 3.4))
    for ax, name in zip(axes, REWARDS, strict=True):
        key = f"rewards/{name}_reward/mean"
        for seed, r in seeds.items():
            pts = [(e["step"], e[key]) for e in r["grpo_rewards"] if e.get(key) is not None]
            (line,) = ax.plot(*zip(*pts, strict=True), lw=1, label=f"seed {seed}: GRPO samples")
            ax.axhline(r["held_out"]["sft"][name], ls=":", color=line.get_color(), label=f"seed {seed}: held-out SFT")
            ax.axhline(r["held_out"]["sft+grpo"][name], ls="--", color=line.get_color(),
                       label=f"seed {seed}: held-out SFT+GRPO")  # fmt: skip
        ax.set_title(f"{name} reward")
        ax.set_xlabel("GRPO step")
    axes[0].set_ylabel("mean reward")
    axes[-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def aggregate(out: Path, tag: str) -> dict[str, Any]:
    """Collect ``seed*/results<tag>.json`` and ``ablation_seed*/ablation.json`` under ``out`` into one results file."""
    results: dict[str, Any] = {"seeds": {}, "ablation": {}}
    for f in sorted(out.glob(f"seed*/results{tag}.json")):
        results["seeds"][f.parent.name.removeprefix("seed")] = json.loads(f.read_text())
    for f in sorted(out.glob("ablation_seed*/ablation.json")):
        results["ablation"][f.parent.name.removeprefix("ablation_seed")] = json.loads(f.read_text())
    if not results["seeds"]:
        raise SystemExit(f"no seed*/results{tag}.json under {out}")
    keys = ("untrained", "sft", "sft+grpo")
    results["mean_over_seeds"] = {
        k: {n: sum(r["held_out"][k][n] for r in results["seeds"].values()) / len(results["seeds"]) for n in REWARDS}
        for k in keys
        if all(k in r["held_out"] for r in results["seeds"].values())
    }
    _save_json(out / f"results{tag}.json", results)
    plot(results, out / f"reward_curves{tag}.png")
    print(json.dumps({s: r["held_out"] for s, r in results["seeds"].items()}, indent=1))
    print(json.dumps(results["mean_over_seeds"], indent=1))
    return results


def main() -> None:
    sys.path.insert(0, str(REPO))  # the task generator and tiny model live with the test fixtures
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "results" / "experiment_cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument(
        "--target",
        choices=["evidence", "noisy", "compact", "reference"],
        default="noisy",
        help="SFT targets: evidence = compact CoT citing every AU the evidence shows (distractors too; the AU reward "
        "scores against the gold set), noisy = an inconsistent writer citing each distractor with probability "
        "--teacher-distractor-rate and missing each gold AU with probability --teacher-miss-rate, compact = the gold "
        "AU set, reference = the fixture's long CoT with times",
    )
    p.add_argument("--teacher-distractor-rate", type=float, default=0.6)
    p.add_argument("--teacher-miss-rate", type=float, default=0.05)
    p.add_argument(
        "--system-prompt",
        default="train_system_compact_v1",
        help="system prompt name (emoreason/prompts/): the compact one keeps the tiny model's sequences short",
    )
    p.add_argument("--sft-batch", type=int, default=16)
    p.add_argument(
        "--au-tokens",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the text model's tokenizer one token per AU code (else AU25 is AU, 2, 5)",
    )
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-eval", type=int, default=120)
    p.add_argument("--sft-steps", type=int, default=1000)
    p.add_argument("--sft-lr", type=float, default=2e-3)
    p.add_argument("--grpo-steps", type=int, default=150)
    p.add_argument("--grpo-batch", type=int, default=64, help="completions per step (prompts x num_generations)")
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--grpo-lr", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--loss-type", default="dapo")
    p.add_argument("--scale-rewards", default="group")
    p.add_argument("--num-iterations", type=int, default=1)
    p.add_argument("--reward-weights", type=float, nargs=3, default=[0.25, 1.0, 1.0], help="format emotion au")
    p.add_argument("--max-new-tokens", type=int, default=80)
    p.add_argument("--max-new-tokens-mm", type=int, default=96)
    p.add_argument("--mm-steps", type=int, default=1000)
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument(
        "--only-multimodal-grpo",
        action="store_true",
        help="only SFT then GRPO of the tiny EmoReason model reading the clip through its face encoder",
    )
    p.add_argument("--only-ablation", action="store_true")
    p.add_argument("--reuse-sft", action="store_true", help="start GRPO from an SFT stage already in --out")
    p.add_argument("--tag", default="", help="suffix of the GRPO output folder and per-seed results file")
    p.add_argument(
        "--aggregate",
        action="store_true",
        help="only collect the per-seed results and ablations already under --out (runs started separately, e.g. one "
        "seed per process) into results<tag>.json and reward_curves<tag>.png",
    )
    p.add_argument(
        "--diagnose",
        type=Path,
        nargs="+",
        help="only measure these trained stage folders (e.g. OUT/seed0/sft OUT/seed0/grpo) on --out's held-out shard, "
        "with the citation counts, into OUT/diagnostics.json",
    )
    a = p.parse_args()
    a.out = a.out.resolve()
    logging.basicConfig(level=logging.WARNING)
    if a.aggregate:
        aggregate(a.out, a.tag)
        return
    if a.diagnose:
        shards = {"train": a.out / "data" / "train.jsonl", "eval": a.out / "data" / "eval.jsonl"}
        found = json.loads((a.out / "diagnostics.json").read_text()) if (a.out / "diagnostics.json").exists() else {}
        for d in a.diagnose:
            key = str(d.resolve().relative_to(a.out))
            found[key] = held_out_text(d, shards, a.max_new_tokens, a.system_prompt)
            print(key, json.dumps(found[key]))
            _save_json(a.out / "diagnostics.json", found)
        return
    shards = write_data(a.out / "data", a.n_train, a.n_eval, a.target, a.teacher_distractor_rate, a.teacher_miss_rate)
    results: dict[str, Any] = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}}
    results["task"] = {"n_train": a.n_train, "n_eval": a.n_eval, "data_seeds": {"train": 10, "eval": 12}}
    if a.only_multimodal_grpo:
        for s in a.seeds:
            run_multimodal_grpo(a, shards, s)
        return
    if not a.only_ablation:
        results["seeds"] = {str(s): run_text_seed(a, shards, s) for s in a.seeds}
        plot(results, a.out / f"reward_curves{a.tag}.png")
        for s, r in results["seeds"].items():
            print(f"seed {s}:", json.dumps(r["held_out"]), r["seconds"])
    if not a.no_ablation:
        results["ablation"] = {str(s): run_ablation(a, shards, s) for s in a.seeds[:1]}
        print("ablation:", json.dumps(results["ablation"]))
    _save_json(a.out / f"results{a.tag}.json", results)


if __name__ == "__main__":
    main()
