"""People get the items the learned router predicts the judge gets wrong, riskiest first, until
the human budget is spent: the policy wants people for every judged item, with risk = the
router's P(the judge's label disagrees with the people's), and the router's budget grant
(routing/services.py) sends the riskiest first. Until a router is trained on enough
double-labelled items (routing/learning.py, MIN_ITEMS), the confidence policy decides: the cold
start."""

from .base import TEXT_FEATURES, Decision, Policy
from .confidence import Confidence


class Learned(Policy):
    name, title = "learned", "Learned router: people get what the judges likely get wrong"
    needs_verdict = True
    reads_text = True
    params = Confidence.params

    def decide(self, candidates, params, *, project, seed):
        from routing import learning  # scikit-learn and the saved model: only in a pass
        from routing.models import RoutingPolicy

        judge_id = RoutingPolicy.objects.filter(project=project).values_list("judge", flat=True)
        router = learning.current(project, judge_id.first())
        if router is None or router.n_train + router.n_test < learning.min_items():
            return self.cold(candidates, params, seed)
        judged = [c for c in candidates if c.verdict is not None]
        risks, matrix, names = learning.predict(router, judged)
        # Plain floats, rounded at once: numpy scalars one by one cost a second a pass.
        values = matrix.round(6).tolist()
        # One-hot columns an item has no 1 in say nothing of it: left out of its decision.
        shown = [(j, n) for j, n in enumerate(names) if "=" not in n]
        onehot = [(j, n) for j, n in enumerate(names) if "=" in n]
        by_id = {c.item_id: k for k, c in enumerate(judged)}
        out = []
        for c in candidates:
            k = by_id.get(c.item_id)
            if k is None:
                out.append(Decision(None, None, "waiting for the judge's verdict"))
                continue
            risk = risks[k]
            row = values[k]
            # Features of the item's stored text are the item's: the decision names their
            # version (RouteDecision.read_features shows them), a third of its size.
            text = c.text_features or {}
            features = {n: row[j] for j, n in shown if row[j] == row[j] and n not in text}
            features.update((n, 1.0) for j, n in onehot if row[j] == 1.0)
            if text:
                features[TEXT_FEATURES] = learning.TEXT_FEATURES_VERSION
            features.update(router=router.pk, p_disagree=round(risk, 6))
            reason = f"router {router.pk} (AUC {router.auc:.2f}): P(judge disagrees) = {risk:.3f}"
            out.append(Decision(True, risk, reason, features))
        return out

    def cold(self, candidates, params, seed):
        fallback = Confidence().decide(candidates, params, project=None, seed=seed)
        return [
            Decision(
                d.wants_people, d.risk, f"cold start (no router trained): {d.reason}", d.features
            )
            for d in fallback
        ]
