"""GRPO with EmoReason's rewards: ``python train/grpo.py --config train/recipes/grpo_smoke.yaml [--field value ...]``."""

from trl import TrlParser

from emoreason.training.config import EmoGRPOConfig
from emoreason.training.grpo import run_grpo


def main() -> None:
    (args,) = TrlParser(dataclass_types=[EmoGRPOConfig]).parse_args_and_config()
    run_grpo(args)


if __name__ == "__main__":
    main()
