from .base import Decision, Policy, uniform


class Random(Policy):
    """A fixed share of items to people, drawn by hash: the baseline the others must beat."""

    name, title = "random", "Random fraction to people"
    params = {"fraction": (0.25, 0.0, 1.0)}

    def decide(self, candidates, params, *, project, seed):
        fraction = params["fraction"]
        out = []
        for c in candidates:
            draw = uniform(seed, c.item_id, "random")
            wants = draw < fraction
            reason = f"random draw {draw:.3f} {'<' if wants else '≥'} fraction {fraction:g}"
            out.append(Decision(wants, 1.0 - draw, reason, {"draw": round(draw, 6)}))
        return out
