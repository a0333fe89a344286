"""Self-synthesis: ``python train/synthesize.py --config train/recipes/synthesize_smoke.yaml [--field value ...]``."""

from trl import TrlParser

from emoreason.training.config import SynthesisConfig
from emoreason.training.synthesize import run_synthesis


def main() -> None:
    (args,) = TrlParser(dataclass_types=[SynthesisConfig]).parse_args_and_config()
    print(run_synthesis(args))


if __name__ == "__main__":
    main()
