"""Train a reward model on a dataset version's JSONL files with transformers' Trainer.

Reads top to bottom: check the data (fail fast, before any model loads), load the base model
with the objective's head, train with checkpoints and progress, evaluate, save.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig
from .data import DataError

__all__ = [
    "ConfigError",
    "DataError",
    "TrainingCancelled",
    "evaluate",
    "evaluate_rewardbench",
    "train",
]


class TrainingCancelled(Exception):
    """should_stop() said stop; `step` is the last optimizer step, `checkpoint` the last
    checkpoint folder (None when none was saved yet)."""

    def __init__(self, step: int = 0, checkpoint: str | None = None):
        super().__init__(f"training cancelled at step {step}")
        self.step = step
        self.checkpoint = checkpoint


def train(
    config: TrainConfig,
    *,
    train_path: Path,
    eval_path: Path | None,
    output_dir: Path,
    taxonomy: list[dict] | None = None,
    aspects: list[str] | None = None,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    raise NotImplementedError


def evaluate(model_dir, objective: str, eval_path, **kw) -> dict[str, Any]:
    raise NotImplementedError


def evaluate_rewardbench(model_dir, path) -> dict[str, Any]:
    raise NotImplementedError
