"""Evaluation metrics in plain Python (no scipy): pairwise accuracy, Kendall tau, token F1 per
class, MAE and Spearman."""

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


def headline(objective: str, metrics: dict[str, Any]) -> float | None:
    """The objective's headline number in a model's metrics; None when they lack it."""
    value: Any = metrics
    for key in HEADLINES[objective][1]:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        value = sum(value) / len(value)
    return value if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def kendall_tau(predicted: list[float], ranking: list[int]) -> float:
    """Kendall's tau-a between predicted scores and a ranking (indices, best first)."""
    n = len(ranking)
    if n < 2:
        return 0.0
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            # ranking[i] is better than ranking[j]
            diff = predicted[ranking[i]] - predicted[ranking[j]]
            concordant += diff > 0
            discordant += diff < 0
    return (concordant - discordant) / (n * (n - 1) / 2)


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
    """F1 per error class (every class but index 0, "ok") and their macro mean."""
    scores = {}
    for index, name in enumerate(names):
        if index == 0:
            continue
        tp = sum(g == index and p == index for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != index and p == index for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == index and p != index for g, p in zip(gold, predicted, strict=True))
        scores[name] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    scores["macro"] = sum(scores.values()) / len(scores) if scores else 0.0
    return scores
