"""Training configuration: TRL's ``SFTConfig``/``GRPOConfig`` extended with TRL's ``ModelConfig`` (the model, LoRA and
quantisation fields, turned into peft/bitsandbytes configs by TRL's ``get_peft_config``/``get_quantization_config``)
and EmoReason's data and model fields.

Recipes (``train/recipes/*.yaml``) set these fields; :func:`parse_recipe` reads a recipe plus command-line overrides with
TRL's ``TrlParser``, the way TRL's own scripts do. Every field carries ``metadata={"help": ...}`` so ``--help`` lists
it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

from emoreason.errors import ConfigError

T = TypeVar("T")


@dataclass
class EmoArguments(ModelConfig):
    """Model, data and adapter fields shared by SFT, GRPO and synthesis: TRL's ``ModelConfig`` (``use_peft``,
    ``lora_*``, ``load_in_4bit``, ``bnb_4bit_quant_type``, ``use_bnb_nested_quant``, ``dtype``, …) with EmoReason's
    defaults, and the fields below."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Local model folder (a causal LM, or an EmoReason multimodal checkpoint)."}
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file name inside model_name_or_path (dequantised to fp32 on load)."}
    )
    train_files: list[str] = field(
        default_factory=list, metadata={"help": "Dataset shards (JSONL rows of emoreason.data.builder) to train on."}
    )
    eval_files: list[str] = field(default_factory=list, metadata={"help": "Dataset shards for evaluation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    evidence_mode: str = field(
        default="auto",
        metadata={
            "help": "How the clip reaches the model: 'text' (evidence rendered as text in the prompt, any causal "
            "LM), 'model' (the EmoReason model's encoders via its processor), or 'auto' (by the model's config)."
        },
    )
    system_prompt: str = field(
        default="train_system_v1", metadata={"help": "Prompt name (emoreason/prompts/<name>.md) for the system turn."}
    )
    user_prompt: str = field(default="train_user_v1", metadata={"help": "Prompt file for the user turn."})
    use_peft: bool = field(
        default=True, metadata={"help": "Train LoRA adapters on the LLM instead of all its weights."}
    )
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "LLM modules that get LoRA adapters."},
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full next to the adapters (the multimodal model's encoders and compressor)."
        },
    )
    use_bnb_nested_quant: bool = field(
        default=True, metadata={"help": "QLoRA: quantise the quantisation constants too (double quantisation)."}
    )
    compound_partial: float = field(
        default=0.5, metadata={"help": "Compound reward when one of the two components is right."}
    )
    prompt_observations: bool | None = field(
        default=None,
        metadata={
            "help": "EmoReason model: also give the evidence's observations as text in the prompt (the AUs present, "
            "the face reader, the transcript) beside the face tokens; saved in the config, so serving does the same."
        },
    )
    use_compressor: bool | None = field(
        default=None, metadata={"help": "Ablation: override the EmoReason config's use_compressor (multimodal only)."}
    )
    num_experts: int | None = field(
        default=None, metadata={"help": "Ablation: override the EmoReason compressor's num_experts (multimodal only)."}
    )
    auto_resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir when one exists."}
    )
    save_merged: bool = field(
        default=True, metadata={"help": "After LoRA training, also save the merged model to <output_dir>/merged."}
    )

    def check_emo_arguments(self) -> None:
        ModelConfig.__post_init__(self)
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required")
        if self.evidence_mode not in ("auto", "text", "model"):
            raise ConfigError(f"evidence_mode must be 'auto', 'text' or 'model', got {self.evidence_mode!r}")
        if (self.load_in_4bit or self.load_in_8bit) and not self.use_peft:
            raise ConfigError("load_in_4bit/load_in_8bit (QLoRA) trains adapters only: set use_peft: true")


@dataclass
class EmoSFTConfig(SFTConfig, EmoArguments):
    """Supervised fine-tuning on chain-of-thought rows (``emoreason train sft RECIPE``)."""

    def __post_init__(self):
        super().__post_init__()
        self.check_emo_arguments()
        if not self.train_files:
            raise ConfigError("train_files is empty: list at least one dataset shard")


@dataclass
class EmoGRPOConfig(GRPOConfig, EmoArguments):
    """GRPO with EmoReason's rewards (``emoreason train grpo RECIPE``); ``reward_weights`` pairs with ``reward_funcs``."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["format", "emotion", "au"],
        metadata={
            "help": "Rewards by name (emoreason.rewards.REWARDS): format, emotion, au, compound, faithfulness, caption."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_emo_arguments()
        if not self.train_files:
            raise ConfigError("train_files is empty: list at least one dataset shard")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ConfigError(
                f"reward_weights has {len(self.reward_weights)} values for {len(self.reward_funcs)} reward_funcs"
            )


@dataclass
class SynthesisConfig(EmoArguments):
    """Self-synthesis: sample answers for unlabelled clips, keep the verified ones (``emoreason train synthesize``)."""

    input_files: list[str] = field(default_factory=list, metadata={"help": "Shards of clips to answer (rows)."})
    output_file: str = field(default="", metadata={"help": "The new shard (JSONL) to write; resumed if it exists."})
    num_samples: int = field(default=4, metadata={"help": "Answers sampled per clip (k)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer generated."})
    temperature: float = field(default=0.9, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["format", "emotion", "au", "faithfulness"],
        metadata={"help": "Rewards computed for each answer and stored with it."},
    )
    min_rewards: list[str] = field(
        default_factory=lambda: ["format=1.0", "faithfulness=1.0"],
        metadata={"help": "Thresholds 'name=value': an answer is kept when each reward that applies is >= value."},
    )
    min_agreement: float = field(
        default=0.5,
        metadata={
            "help": "Keep an answer only if at least this fraction of the clip's well-formed answers agree on "
            "its emotion (self-consistency; what stands in for a label on unlabelled clips)."
        },
    )
    keep_per_clip: int = field(default=1, metadata={"help": "Most answers kept per clip (the best by total reward)."})
    seed: int = field(default=0, metadata={"help": "Random seed for sampling."})
    use_cpu: bool = field(default=False, metadata={"help": "Run on the CPU even when a GPU is there."})

    def __post_init__(self):
        self.check_emo_arguments()
        if not self.input_files or not self.output_file:
            raise ConfigError("input_files and output_file are required")
        if self.num_samples < 1 or self.keep_per_clip < 1:
            raise ConfigError("num_samples and keep_per_clip must be >= 1")

    def thresholds(self) -> dict[str, float]:
        out = {}
        for item in self.min_rewards:
            name, sep, value = item.partition("=")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep:
                raise ConfigError(f"min_rewards entries are 'name=value', got {item!r}") from None
        unknown = set(out) - set(self.reward_funcs)
        if unknown:
            raise ConfigError(f"min_rewards names rewards not in reward_funcs: {', '.join(sorted(unknown))}")
        return out


def parse_recipe(config_class: type[T], recipe: str | Path, overrides: Sequence[str] = ()) -> T:
    """Read a YAML recipe plus ``--field value`` overrides into ``config_class`` with TRL's ``TrlParser``."""
    recipe = Path(recipe)
    if not recipe.exists():
        raise ConfigError("recipe not found", recipe)
    parser = TrlParser(dataclass_types=[config_class])
    try:
        (cfg,) = parser.parse_args_and_config(args=["--config", str(recipe), *overrides])
    except ConfigError as e:
        raise ConfigError(e.message, recipe) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e), recipe) from None
    return cfg
