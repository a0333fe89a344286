"""Supervised fine-tuning: ``python train/sft.py --config train/recipes/sft_smoke.yaml [--field value ...]``."""

from trl import TrlParser

from emoreason.training.config import EmoSFTConfig
from emoreason.training.sft import run_sft


def main() -> None:
    (args,) = TrlParser(dataclass_types=[EmoSFTConfig]).parse_args_and_config()
    run_sft(args)


if __name__ == "__main__":
    main()
