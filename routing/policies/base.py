"""The routing policy interface: what a policy sees of an item, and what it decides.

A policy never writes: it reads a batch of candidates and says, per item, whether it wants people
for it and how risky it is to leave it to the judges (higher: more likely wrong). The router
(routing/services.py) grants people to the items that want them, riskiest first, while the human
budget lasts, keeps the audit slice, writes the routes and records each decision with the
policy's reason and features. One module per policy; `POLICIES` names them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Risk of an item whose judge verdict is inconsistent or failed: above anything a policy scores.
UNSURE = 1.0
# A decision's feature naming the version of the item's stored text features it read (their
# values are the item's, not copied into each decision: RouteDecision.read_features).
TEXT_FEATURES = "text_features"


class PolicyError(ValueError):
    """A policy's parameters are wrong; `field` names the parameter."""

    def __init__(self, message: str, field: str = "params"):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class Candidate:
    """An item as a policy sees it: its text, and what the router's judge said of it."""

    item_id: int
    prompt: Any
    responses: list[dict]
    metadata: dict
    # From the router's judge: "agreed" / "inconsistent" / "failed", or None (not judged yet),
    # and an agreed verdict's label (item terms; read for policies that read text).
    verdict: str | None = None
    judge_label: dict | None = None
    kind: str = ""
    # A reward model's smallest gap between two responses' rewards; a jury's agreement.
    margin: float | None = None
    jury_agreement: float | None = None
    # What an LLM judge said the prompt is (judges/tags.py): {"subject": ..., ...}; {} untagged.
    tags: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # The item's stored text features (routing.learning.text_features), read instead of the
    # text where they are stored; None: computed from prompt and responses.
    text_features: dict | None = None

    @property
    def judge_unsure(self) -> bool:
        return self.verdict in ("inconsistent", "failed")


@dataclass
class Decision:
    """`wants_people` None: the policy cannot decide yet (it waits for a judge verdict)."""

    wants_people: bool | None
    risk: float | None
    reason: str
    features: dict = field(default_factory=dict)


class Policy:
    name: str = ""
    title: str = ""
    # Whether it reads judge verdicts: an item without one waits (routing starts the judge).
    needs_verdict: bool = False
    # Whether it reads the items' prompt, responses and metadata (else a pass loads ids only).
    reads_text: bool = False
    # Parameters and their defaults; clean_params checks each is a number in [low, high].
    params: dict[str, tuple[float, float, float]] = {}

    def clean_params(self, params: Any) -> dict:
        """The parameters with defaults filled in; PolicyError naming a bad one."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise PolicyError("expected an object of parameter: number")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise PolicyError(f"unknown parameter {unknown[0]!r} (this policy takes: {known})")
        cleaned = {}
        for name, (default, low, high) in self.params.items():
            value = params.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise PolicyError(f"{name} must be a number", name)
            if not low <= value <= high:
                raise PolicyError(f"{name} must be between {low:g} and {high:g}", name)
            cleaned[name] = float(value)
        return cleaned

    def decide(self, candidates: list[Candidate], params: dict, *, project, seed: int) -> list:
        """One Decision per candidate, in order."""
        raise NotImplementedError


def uniform(seed: int, item_id: int, salt: str) -> float:
    """A draw in [0, 1) fixed by (seed, item, salt): the same item gets the same draw on every
    machine and every run, so a routing pass can be repeated and audited."""
    digest = hashlib.sha256(f"{salt}:{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64
