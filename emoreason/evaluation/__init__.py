"""Evaluation: benchmark loaders, model adapters and the resumable harness behind ``emoreason eval``.

Metrics themselves live in :mod:`emoreason.metrics`, shared with the training rewards.
"""

from emoreason.evaluation.harness import Task, load_task, resolve_tasks, run_task
from emoreason.evaluation.loaders import Sample, load_samples
from emoreason.evaluation.models import Request, Response, make_model

__all__ = [
    "Request",
    "Response",
    "Sample",
    "Task",
    "load_samples",
    "load_task",
    "make_model",
    "resolve_tasks",
    "run_task",
]
