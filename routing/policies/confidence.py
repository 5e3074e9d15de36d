"""People get what the router's judge is unsure of: a verdict that changed with the order of the
responses or failed, a jury that split, a reward model whose margin is small."""

import math

from .base import UNSURE, Decision, Policy


class Confidence(Policy):
    name, title = "confidence", "People get what the judges are unsure of"
    needs_verdict = True
    params = {
        # A reward model's reward gap below which people label the item.
        "max_margin": (1.0, 0.0, 1000.0),
        # A jury's agreement below which people label the item.
        "min_jury_agreement": (0.75, 0.0, 1.0),
    }

    def decide(self, candidates, params, *, project, seed):
        return [self.one(c, params) for c in candidates]

    def one(self, c, params) -> Decision:
        features = {"verdict": c.verdict, "margin": c.margin, "jury_agreement": c.jury_agreement}
        if c.verdict is None:
            return Decision(None, None, "waiting for the judge's verdict", features)
        if c.judge_unsure:
            return Decision(True, UNSURE, f"the judge's verdict is {c.verdict}", features)
        if c.jury_agreement is not None:
            wants = c.jury_agreement < params["min_jury_agreement"]
            reason = f"jury agreement {c.jury_agreement:.2f}"
            return Decision(wants, 1.0 - c.jury_agreement, reason, features)
        if c.margin is not None:
            wants = c.margin < params["max_margin"]
            # 1 - |2 P(A better) - 1| with P = sigmoid(margin): 1 at a tie, 0 when certain.
            risk = 1.0 - math.tanh(abs(c.margin) / 2)
            return Decision(wants, risk, f"reward margin {c.margin:.3f}", features)
        return Decision(False, 0.0, "the judge agreed with itself in every order", features)
