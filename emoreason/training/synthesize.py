"""The self-synthesis loop: sample k answers per clip, keep the verified ones, write them as a new dataset shard.

For each input row (a clip with its evidence, labelled or not) the model samples ``num_samples`` answers. Each answer is
scored with the recipe's rewards (:func:`emoreason.rewards.score_completions`; label rewards are ``None`` on unlabelled
clips, the faithfulness reward checks the reasoning against the evidence) and with self-consistency (the fraction of
the clip's well-formed answers that agree on its emotion). Answers that pass every threshold are ranked by total
reward and the best ``keep_per_clip`` are written as rows of the builder's schema, with provenance: model, training
step, rewards, source id, sample index and time. The next SFT round lists the shard in ``train_files``.

The run is resumable: each finished clip is recorded in ``<output>.progress.jsonl`` after its rows are appended, and
on restart rows of an unfinished clip are discarded and the clip is done again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm import tqdm

from emoreason.data.builder import ROW_FIELDS, load_rows, prompt_messages
from emoreason.errors import ConfigError, ModelError
from emoreason.io import append_jsonl, atomic_write_text, iter_jsonl
from emoreason.parsing import parse_output
from emoreason.rewards import score_completions
from emoreason.training.config import EmoArguments, SynthesisConfig
from emoreason.training.sft import load_model_and_tokenizer

log = logging.getLogger(__name__)


def _training_step(model_dir: str) -> int | None:
    """The global step the model was trained to, from the trainer state or summary saved beside it."""
    for candidate in (Path(model_dir), Path(model_dir).parent):
        for name in ("emoreason_train.json", "trainer_state.json"):
            p = candidate / name
            if p.exists():
                try:
                    return int(json.loads(p.read_text())["global_step"])
                except (ValueError, KeyError, TypeError):
                    continue
    return None


def _resume(output: Path, progress: Path) -> set[str]:
    """Ids of the clips already finished; drop rows of an unfinished clip from the shard."""
    if not progress.exists():
        if output.exists() and output.stat().st_size:
            raise ConfigError("output_file exists but has no progress file; choose a new output_file", output)
        atomic_write_text(progress, "")
        return set()
    done = {p["id"] for p in iter_jsonl(progress, skip_truncated_tail=True)}
    if output.exists():
        rows = [r for r in iter_jsonl(output, skip_truncated_tail=True) if r["provenance"]["source_id"] in done]
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return done


def agreement(emotions: list[str | None]) -> dict[str, float]:
    """For each emotion, the fraction of the well-formed answers that gave it.

    >>> agreement(["anger", "anger", None, "fear"])
    {'anger': 0.6666666666666666, 'fear': 0.3333333333333333}
    """
    given = [e for e in emotions if e is not None]
    return {e: n / len(given) for e, n in Counter(given).items()} if given else {}


def select(
    completions: list[str], scores: list[dict[str, float | None]], thresholds: dict[str, float], min_agreement: float
) -> list[tuple[int, float, float]]:
    """Indices of the answers that pass, with their total reward and agreement, best first."""
    parsed = [parse_output(c) for c in completions]
    votes = agreement([p.emotion if p.format_ok else None for p in parsed])
    kept = []
    for i, (p, s) in enumerate(zip(parsed, scores, strict=True)):
        if not p.format_ok or p.emotion is None:
            continue
        if any(s.get(name) is not None and s[name] < t for name, t in thresholds.items()):
            continue
        agree = votes.get(p.emotion, 0.0)
        if agree < min_agreement:
            continue
        kept.append((i, sum(v for v in s.values() if v is not None), agree))
    return sorted(kept, key=lambda k: (-k[1], -k[2], k[0]))


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    messages: list[dict],
    *,
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float | None = None,
    top_p: float = 1.0,
) -> list[str]:
    """``n`` answers to one chat prompt: sampled with ``temperature``, or greedy when it is ``None``."""
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return sample_answers(model, tokenizer, inputs, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_p=top_p)  # fmt: skip


@torch.no_grad()
def sample_answers(
    model,
    tokenizer,
    inputs,
    *,
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float | None = None,
    top_p: float = 1.0,
) -> list[str]:
    """``n`` answers from one tokenised prompt (encoder inputs ride along for the EmoReason model): sampled with
    ``temperature``, or greedy when it is ``None``; the new text decoded, special tokens dropped."""
    device = next(model.parameters()).device if hasattr(model, "parameters") else "cpu"
    inputs = inputs.to(device)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature else {"do_sample": False}
    out = model.generate(
        **inputs,
        **sampling,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def row_answers(
    model,
    tokenizer_or_processor,
    mode: str,
    row: dict,
    args: EmoArguments,
    *,
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float | None = None,
    top_p: float = 1.0,
    evidence_formatter: Callable | None = None,
) -> list[str]:
    """``n`` answers for one dataset row. Text checkpoints get the evidence as text in the chat prompt; an EmoReason
    checkpoint (``mode == "model"``) gets the multimodal SFT prompt and reads the row's Evidence through its face
    encoder (the processor's inputs), as in training."""
    if mode == "text":
        messages = prompt_messages(
            row, evidence_formatter=evidence_formatter, system_prompt=args.system_prompt, user_prompt=args.user_prompt
        )
        return generate_answers(model, tokenizer_or_processor, messages, n=n, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_p=top_p)  # fmt: skip
    if mode != "model":
        raise ModelError(f"no generation path for evidence mode {mode!r}", args.model_name_or_path)
    from emoreason.evidence import Evidence
    from emoreason.training.sft import EvidenceCollator

    processor = tokenizer_or_processor
    prompt = EvidenceCollator(processor, args.system_prompt).prompt(row)
    inputs = processor(text=prompt, evidence=Evidence.load(row["evidence"]), padding=False)
    return sample_answers(model, processor.tokenizer, inputs, n=n, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p)  # fmt: skip


@torch.no_grad()
def evaluate_rewards(
    args: EmoArguments,
    files: list[str],
    reward_funcs: list[str],
    *,
    max_new_tokens: int = 256,
    evidence_formatter: Callable | None = None,
    limit: int | None = None,
) -> dict:
    """Greedy answers of ``args.model_name_or_path`` on held-out rows and the mean of each reward over the rows it
    applies to (the held-out reward; ``emotion`` is the label accuracy). Also returns each row's answer and scores."""
    rows = load_rows(files, require_answer=False)[:limit]
    model, tokenizer, mode = load_model_and_tokenizer(args)
    model.eval()
    per_row = []
    for row in tqdm(rows, desc="evaluating", unit="row", disable=None):
        (answer,) = row_answers(
            model, tokenizer, mode, row, args, max_new_tokens=max_new_tokens, evidence_formatter=evidence_formatter
        )
        columns = {k: [row.get(k)] for k in ("emotion", "compound", "aus", "evidence", "caption")}
        per_row.append(
            {
                "id": row["id"],
                "answer": answer,
                "rewards": score_completions([answer], reward_funcs, args.compound_partial, **columns)[0],
            }
        )
    means = {}
    for name in reward_funcs:
        values = [r["rewards"][name] for r in per_row if r["rewards"][name] is not None]
        means[name] = sum(values) / len(values) if values else None
    return {"model": args.model_name_or_path, "rows": len(per_row), "mean": means, "per_row": per_row}


@torch.no_grad()
def run_synthesis(args: SynthesisConfig, evidence_formatter: Callable | None = None) -> dict:
    """Generate, verify and write the shard; returns counts (clips, generated, kept, skipped as already done)."""
    output = Path(args.output_file)
    progress = output.with_suffix(output.suffix + ".progress.jsonl")
    done = _resume(output, progress)
    rows = [r for r in load_rows(args.input_files) if r["id"] not in done]
    if args.max_train_samples is not None:
        rows = rows[: max(0, args.max_train_samples - len(done))]
    model, tokenizer, mode = load_model_and_tokenizer(args)
    device = "cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu"
    model.to(device).eval()
    thresholds = args.thresholds()
    step = _training_step(args.model_name_or_path)
    torch.manual_seed(args.seed)
    counts = {"clips": 0, "generated": 0, "kept": 0, "already_done": len(done)}
    for row in tqdm(rows, desc="synthesizing", unit="clip", disable=None):
        completions = row_answers(
            model,
            tokenizer,
            mode,
            row,
            args,
            n=args.num_samples,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            evidence_formatter=evidence_formatter,
        )
        columns = {k: [row.get(k)] * len(completions) for k in ("emotion", "compound", "aus", "evidence", "caption")}
        scores = score_completions(completions, args.reward_funcs, args.compound_partial, **columns)
        kept = select(completions, scores, thresholds, args.min_agreement)[: args.keep_per_clip]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for i, total, agree in kept:
            parsed = parse_output(completions[i])
            new = {k: row.get(k) for k in ROW_FIELDS}
            new |= {"id": f"{row['id']}#syn{i}", "answer": completions[i], "cot_source": "synthesis"}
            new["provenance"] = {
                "model": args.model_name_or_path,
                "step": step,
                "rewards": scores[i],
                "total_reward": total,
                "agreement": agree,
                "predicted": {"emotion": parsed.emotion, "compound": parsed.compound, "aus": parsed.aus},
                "source_id": row["id"],
                "sample_index": i,
                "num_samples": args.num_samples,
                "time": now,
            }
            append_jsonl(output, new)
        append_jsonl(progress, {"id": row["id"], "generated": len(completions), "kept": len(kept), "time": now})
        counts["clips"] += 1
        counts["generated"] += len(completions)
        counts["kept"] += len(kept)
    if not output.exists():
        atomic_write_text(output, "")
    log.info("synthesis: %s -> %s", counts, output)
    return counts | {"output_file": str(output)}
