"""vLLM batch throughput vs transformers ``generate`` on CPU, same tiny EmoReason model, same clip prompts.

Run inside .venv-vllm (scripts/make_vllm_env.sh):
    VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 \
        .venv-vllm/bin/python bench/bench_vllm.py --prompts 32 --max-tokens 64

Prints generated tokens/s for both and the ratio (goal >= 3x). The transformers side runs in a child process (its
processor loads librosa/llvmlite, which vLLM 0.32's kernel scan trips over), batched with left padding. Both sides
generate exactly ``--max-tokens`` per prompt (eos ignored), so they do the same work.

``--text`` picks the text model inside the EmoReason model (random weights, same encoders): ``tiny`` (hidden 64,
2 layers) or ``smollm2-135m`` (SmolLM2-135M's shape: hidden 576, 30 layers, 9 heads of 64, 3 KV heads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT_MODELS = {
    "tiny": {},
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "max_position_embeddings": 2048,
    },  # fmt: skip
}

_HF = """
import json, sys, time, torch
from transformers import AutoProcessor
from emoreason.models.emoreason import EmoReasonForConditionalGeneration
from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence
d, out, n, k, bs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
proc = AutoProcessor.from_pretrained(d)
proc.tokenizer.padding_side = "left"
qs = [f"<|face|><|audio|>Clip {i}: what emotion does the person show?" for i in range(n)]
prompts = [proc.render([{"role": "user", "content": q}])[0] for q in qs]
evs = [tiny_evidence(seed=i) for i in range(n)]
auds = [tiny_audio(seed=i) for i in range(n)]
model = EmoReasonForConditionalGeneration.from_pretrained(d).eval()
with torch.no_grad():  # warm-up, as on the vLLM side
    model.generate(**proc(text=prompts[:1], evidence=evs[:1], audio=auds[:1]), max_new_tokens=2, do_sample=False)
items, toks, gen = [], 0, 0.0
t0 = time.perf_counter()
with torch.no_grad():
    for s in range(0, n, bs):
        x = proc(text=prompts[s:s+bs], evidence=evs[s:s+bs], audio=auds[s:s+bs], return_tensors="pt")
        t1 = time.perf_counter()
        y = model.generate(**x, max_new_tokens=k, min_new_tokens=k, do_sample=False)
        gen += time.perf_counter() - t1
        toks += (y.shape[1] - x["input_ids"].shape[1]) * y.shape[0]
        for j in range(y.shape[0]):
            xi = proc(text=[prompts[s+j]], evidence=[evs[s+j]], audio=[auds[s+j]], return_tensors="pt")
            items.append({"prompt": prompts[s+j], **{kk: xi[kk][0] for kk in ("face_values", "face_mask", "audio_values", "audio_mask")}})
dt = time.perf_counter() - t0
torch.save({"items": items, "tokens": toks, "seconds": gen}, out)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--hf-batch", type=int, default=8, help="transformers generate batch size")
    ap.add_argument("--text", choices=sorted(TEXT_MODELS), default="tiny", help="the text model's shape")
    ap.add_argument(
        "--hf-python", default=sys.executable, help="python for the transformers side (e.g. /work/venv/bin/python)"
    )
    args = ap.parse_args(argv)
    for k, v in (("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("VLLM_CPU_KVCACHE_SPACE", "1"), ("HF_HUB_OFFLINE", "1")):
        os.environ.setdefault(k, v)
    import torch
    from vllm import LLM, SamplingParams

    from emoreason.models.emoreason.testing import tiny_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    model_dir = tiny_model_dir(tmp, text_config=TEXT_MODELS[args.text])
    ref = tmp / "hf.pt"
    # Only generate() is timed on the transformers side; vLLM gets the same precomputed features.
    subprocess.run(
        [
            args.hf_python,
            "-c",
            _HF,
            str(model_dir),
            str(ref),
            str(args.prompts),
            str(args.max_tokens),
            str(args.hf_batch),
        ],
        check=True,
    )
    hf = torch.load(ref)
    llm = LLM(model=str(model_dir), dtype="float32", max_model_len=512, enforce_eager=True, enable_mm_embeds=True,
              max_num_seqs=max(args.prompts, 8))  # fmt: skip
    reqs = [
        {
            "prompt": it["prompt"],
            "multi_modal_data": {
                "face": {"face_values": it["face_values"], "face_mask": it["face_mask"]},
                "audio": {"audio_values": it["audio_values"], "audio_mask": it["audio_mask"]},
            },
        }
        for it in hf["items"]
    ]
    # (both models never generate their placeholder tokens: the models themselves suppress them)
    sp = SamplingParams(max_tokens=args.max_tokens, temperature=0, ignore_eos=True)
    llm.generate(reqs[:2], sp, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(reqs, sp, use_tqdm=False)
    dt = time.perf_counter() - t0
    v_toks = sum(len(o.outputs[0].token_ids) for o in outs)
    res = {
        "text_model": args.text,
        "prompts": args.prompts,
        "hf_batch": args.hf_batch,
        "max_tokens": args.max_tokens,
        "transformers_tok_s": round(hf["tokens"] / hf["seconds"], 1),
        "vllm_tok_s": round(v_toks / dt, 1),
    }
    res["ratio"] = round(res["vllm_tok_s"] / res["transformers_tok_s"], 2)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
