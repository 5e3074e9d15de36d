"""The routing policies, by name (RoutingPolicy.Name)."""

from .all_human import AllHuman
from .all_judge import AllJudge
from .base import Candidate, Decision, Policy, PolicyError
from .confidence import Confidence
from .learned import Learned
from .random import Random

POLICIES: dict[str, Policy] = {
    p.name: p for p in (AllHuman(), AllJudge(), Random(), Confidence(), Learned())
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise PolicyError(f"expected one of {', '.join(POLICIES)}", "policy") from None


__all__ = ["POLICIES", "Candidate", "Decision", "Policy", "PolicyError", "get_policy"]
