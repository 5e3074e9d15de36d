"""People get the items the learned router predicts the judge gets wrong, riskiest first, until
the human budget is spent. Until a router is trained (routing/learning.py), the confidence
policy decides: the cold start."""

from .base import Decision, Policy
from .confidence import Confidence


class Learned(Policy):
    name, title = "learned", "Learned router: people get what the judges likely get wrong"
    needs_verdict = True
    params = Confidence.params

    def decide(self, candidates, params, *, project, seed):
        fallback = Confidence().decide(candidates, params, project=project, seed=seed)
        return [
            Decision(
                d.wants_people, d.risk, f"cold start (no router trained): {d.reason}", d.features
            )
            for d in fallback
        ]
