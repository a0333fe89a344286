"""Training: supervised fine-tuning, GRPO with verifiable rewards, and the self-synthesis loop (TRL based).

Import the stage modules directly (``emoreason.training.sft``, ``.grpo``, ``.synthesize``); importing this package
loads nothing heavy.
"""
