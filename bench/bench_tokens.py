"""Tokens per second of clip and LM forward time: EmoReason's fixed budget vs Qwen2.5-VL native video tokens.

Qwen2.5-VL video tokenisation (no audio): frames sampled at 2 fps, resized to 448x448, 14x14 patches, temporal patch
2 (two frames share one token grid), 2x2 patch merge → (448/14)^2 / 4 = 256 tokens per 2 frames = 256 tokens per second
of clip at 2 fps, + 2 vision start/end tokens. EmoReason: face_tokens + audio_tokens + 4 start/end tokens per clip,
whatever its length.

Forward time: the same text model runs both sequences (prompt + clip tokens) on CPU. The EmoReason time includes its
face/audio encoders and compressors; the Qwen2.5-VL time is the LM on precomputed embeddings only (its ViT is not run,
which favours it). Run: ``python bench/bench_tokens.py [--seconds 10] [--base smollm2-135m|DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
from emoreason.models.emoreason.testing import tiny_audio, tiny_config, tiny_evidence, tiny_tokenizer

QWEN_FPS, QWEN_SIDE, QWEN_PATCH, QWEN_TEMPORAL, QWEN_MERGE = 2.0, 448, 14, 2, 2


def qwen_video_tokens(seconds: float) -> int:
    frames = max(QWEN_TEMPORAL, round(seconds * QWEN_FPS))
    groups = -(-frames // QWEN_TEMPORAL)
    return groups * (QWEN_SIDE // QWEN_PATCH) ** 2 // QWEN_MERGE**2 + 2


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--face-tokens", type=int, default=8)
    ap.add_argument("--audio-tokens", type=int, default=8)
    ap.add_argument("--base", help="use this text model's config (local dir or packaged name), random weights")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = tiny_tokenizer()
    kw = {"face_tokens": args.face_tokens, "audio_tokens": args.audio_tokens}
    if args.base:
        from transformers import AutoConfig

        from emoreason.models.build import resolve_base

        text = AutoConfig.from_pretrained(resolve_base(args.base)).to_dict()
        kw["text_config"] = {**text, "vocab_size": len(tok), "tie_word_embeddings": False}
    config = tiny_config(tokenizer=tok, **kw)
    torch.manual_seed(0)
    model = EmoReasonForConditionalGeneration(config).eval()
    proc = EmoReasonProcessor.from_model_config(tok, config)
    question = "What emotion does the person show, and which action units support it?"
    batch = proc(
        messages=[{"role": "user", "content": f"<|face|><|audio|>{question}"}],
        evidence=tiny_evidence(args.seconds),
        audio=tiny_audio(args.seconds),
    )
    n_text = proc(messages=[{"role": "user", "content": question}])["input_ids"].shape[1]
    n_emo = batch["input_ids"].shape[1] - n_text
    n_qwen = qwen_video_tokens(args.seconds)
    qwen_embeds = torch.randn(1, n_text + n_qwen, config.text_config.hidden_size) * 0.02
    lm = model.language_model

    with torch.no_grad():
        t_emo = timed(lambda: model(**batch, logits_to_keep=1), args.repeats)
        t_qwen = timed(lambda: lm(inputs_embeds=qwen_embeds, logits_to_keep=1), args.repeats)
    print(f"clip {args.seconds:g} s, text model: {config.text_config.model_type} hidden {config.text_config.hidden_size}"
          f" x {config.text_config.num_hidden_layers} layers, prompt text {n_text} tokens, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'':28}{'clip tokens':>12}{'tokens/s':>10}{'seq len':>9}{'forward ms':>12}")
    print(
        f"{'EmoReason (face+audio)':28}{n_emo:>12}{n_emo / args.seconds:>10.1f}{n_text + n_emo:>9}{1e3 * t_emo:>12.1f}"
    )
    print(f"{'Qwen2.5-VL video (no audio)':28}{n_qwen:>12}{n_qwen / args.seconds:>10.1f}{n_text + n_qwen:>9}{1e3 * t_qwen:>12.1f}")  # fmt: skip
    print(f"token ratio Qwen/EmoReason: {n_qwen / n_emo:.1f}x; forward-time ratio: {t_qwen / t_emo:.1f}x; "
          f"goal <= 32 tokens/s: {'met' if n_emo / args.seconds <= 32 else 'NOT met'} "
          f"(1 s clip worst case: {n_emo} tokens/s)")  # fmt: skip


if __name__ == "__main__":
    main()
