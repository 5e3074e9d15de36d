"""Evaluation metrics: pairwise accuracy, Kendall tau (scipy, imported where used: the web
process imports HEADLINES and has no scipy), token F1 per class, MAE and Spearman."""

from __future__ import annotations

import math
from typing import Any

# Each objective's headline number, by the keys rewards.train.evaluate_examples writes:
# pairwise {"accuracy", "pairs"}, listwise {"kendall_tau", "lists"}, spans {"f1": {class..,
# "macro"}, "tokens"}, ratings {"mae": [one per aspect], "spearman": [...]}. The registry
# compares models by these; a list (one number per aspect) shows as its mean.
HEADLINES = {
    "pairwise": ("Accuracy", ("accuracy",)),
    "listwise": ("Kendall τ", ("kendall_tau",)),
    "spans": ("Macro F1", ("f1", "macro")),
    "ratings": ("MAE (mean of aspects)", ("mae",)),
}


# The baseline shown beside an objective's headline, where its metrics carry one: spans, the
# class prior (every token marked with the class: metrics.prior_f1).
BASELINES = {"spans": ("class prior", ("prior_f1", "macro"))}


def headline(objective: str, metrics: dict[str, Any]) -> float | None:
    """The objective's headline number in a model's metrics; None when they lack it."""
    return _lookup(metrics, HEADLINES[objective][1])


def baseline(objective: str, metrics: dict[str, Any]) -> tuple[str, float] | None:
    """(name, value) of the baseline beside the headline; None when there is none."""
    if objective not in BASELINES:
        return None
    name, keys = BASELINES[objective]
    value = _lookup(metrics, keys)
    return (name, value) if value is not None else None


def _lookup(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        value = sum(value) / len(value)
    return value if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def kendall_tau(predicted: list[float], groups: list[list[int]]) -> float | None:
    """Kendall's tau-b (scipy) between predicted scores and a ranking given as tied groups of
    indices, best first: pairs tied in the ranking count for neither side. None when the
    ranking orders no pair (every response tied) or the predictions are all equal."""
    from scipy.stats import kendalltau

    gold = [0] * len(predicted)
    for rank, group in enumerate(groups):
        for i in group:
            gold[i] = -rank  # higher is better, as the scores
    if len(set(gold)) < 2 or len(set(predicted)) < 2:
        return None
    tau = kendalltau(predicted, gold).statistic
    return None if math.isnan(tau) else float(tau)


def ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def pearson(x: list[float], y: list[float]) -> float:
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else 0.0


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks (0 when either side is constant)."""
    return pearson(ranks(x), ranks(y))


def token_f1(gold: list[int], predicted: list[int], names: list[str]) -> dict[str, float]:
    """F1 per error class (every class but index 0, "ok") and their macro mean (scikit-learn;
    a class absent from both gold and predictions scores 0)."""
    from sklearn.metrics import f1_score

    labels = list(range(1, len(names)))
    if not labels:
        return {"macro": 0.0}
    values = f1_score(gold, predicted, labels=labels, average=None, zero_division=0.0)
    scores = {names[c]: float(v) for c, v in zip(labels, values, strict=True)}
    scores["macro"] = sum(scores.values()) / len(scores)
    return scores


def prior_f1(gold: list[int], names: list[str]) -> dict[str, float]:
    """The class-prior baseline: for each error class, the F1 of marking every token with it
    (recall 1, precision its share p of the tokens: 2p / (1 + p)), the best any constant
    prediction does on that class; and their macro mean. Marking every token "ok" (the
    majority class) scores 0 on every error class."""
    scores = {}
    for c in range(1, len(names)):
        scores[names[c]] = token_f1(gold, [c] * len(gold), names)[names[c]]
    scores["macro"] = sum(scores.values()) / len(scores) if scores else 0.0
    return scores
