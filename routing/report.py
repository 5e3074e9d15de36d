"""What routing buys: on items that both people and the router judge labelled, the agreement of
the final labels with the people's as a function of the share routed to people.

The rule, in one place (the routing report page, the learned router's held-out curve and
bench/route.py all use it): a policy ranks the items by risk; at share s the top ceil(s * n)
go to people, whose label is final (it agrees with itself), the rest keep the judge's label,
which agrees when the kind's gold match says it equals the people's majority label (an
inconsistent or failed verdict has no label: it disagrees). The oracle ranks the judge's
disagreements first: the ceiling of any router; random routing is its expectation over every
draw (random_curve).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from annotate.kinds import get_kind
from annotate.models import Annotation, Item, Judge
from judges.models import Verdict

SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass
class DoubleLabelled:
    """An item with the people's majority label and the router judge's verdict."""

    item: Item
    human_label: dict
    verdict: str
    judge_label: dict | None
    agrees: bool  # the judge's label equals the people's majority


def double_labelled(
    judge: Judge, sources: Sequence[str] = (Annotation.Source.HUMAN,)
) -> list[DoubleLabelled]:
    """The judge's project's items with labels from `sources` and a verdict of the judge (its
    latest), by item id. Items whose people split evenly (no majority) are left out."""
    project = judge.project
    kind = get_kind(project.kind)
    verdicts = {}
    for item_id, status, label in (
        Verdict.objects.filter(judge=judge).order_by("id").values_list("item_id", "status", "label")
    ):
        verdicts[item_id] = (status, label)
    humans: dict[int, list[dict]] = defaultdict(list)
    for item_id, label in (
        Annotation.objects.filter(item__project=project, source__in=list(sources))
        .order_by("id")
        .values_list("item_id", "label")
    ):
        if item_id in verdicts:
            humans[item_id].append(label)
    items = Item.objects.in_bulk(list(humans))
    out = []
    for item_id in sorted(humans):
        item = items[item_id]
        answer, _ = kind.aggregate(humans[item_id], item.responses, project.config)
        majority = kind.label_from_aggregate(answer, item.responses, project.config)
        if majority is None:
            continue
        status, label = verdicts[item_id]
        agrees = status == Verdict.Status.AGREED and kind.gold_matches(label, majority)
        out.append(DoubleLabelled(item, majority, status, label, bool(agrees)))
    return out


def agreement_curve(
    risks: Sequence[float], agrees: Sequence[bool], shares: Sequence[float] = SHARES
) -> list[float | None]:
    """Agreement with the people's labels when the riskiest `share` go to people (ties broken
    by position, so give risks in a fixed order); None on no items."""
    n = len(agrees)
    if n == 0:
        return [None for _ in shares]
    order = sorted(range(n), key=lambda i: -risks[i])
    out = []
    for share in shares:
        people = min(n, math.ceil(share * n - 1e-9))
        judged = order[people:]
        out.append((people + sum(1 for i in judged if agrees[i])) / n)
    return out


def shown(value: float | None) -> str:
    """A report number as the pages and the CSV show it."""
    return "n/a" if value is None else f"{value:.4f}"


def oracle_risks(agrees: Sequence[bool]) -> list[float]:
    return [0.0 if a else 1.0 for a in agrees]


def random_risks(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(n)]


def random_curve(agrees: Sequence[bool], shares: Sequence[float] = SHARES) -> list[float | None]:
    """Random routing's expected agreement at each share: ceil(s * n) items to people, the rest
    keeping the judge's label, which agrees at the items' rate: the mean over every draw, not
    one draw's luck (the baseline a router must beat)."""
    n = len(agrees)
    if n == 0:
        return [None for _ in shares]
    rate = sum(agrees) / n
    out = []
    for share in shares:
        people = min(n, math.ceil(share * n - 1e-9))
        out.append((people + (n - people) * rate) / n)
    return out


def bootstrap_difference(
    risks_a: Sequence[float],
    risks_b: Sequence[float] | None,
    agrees: Sequence[bool],
    share: float,
    *,
    samples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Agreement of policy A minus policy B at `share` (B None: random routing's expected
    agreement, random_curve), with a 95% bootstrap interval (items resampled with replacement,
    both policies on the same sample): (difference, low, high)."""
    n = len(agrees)
    rng = random.Random(seed)

    def diff(idx: list[int]) -> float:
        sample = [agrees[i] for i in idx]
        a = agreement_curve([risks_a[i] for i in idx], sample, [share])[0]
        if risks_b is None:
            return a - random_curve(sample, [share])[0]
        b = agreement_curve([risks_b[i] for i in idx], sample, [share])[0]
        return a - b

    point = diff(list(range(n)))
    draws = sorted(diff([rng.randrange(n) for _ in range(n)]) for _ in range(samples))
    return point, draws[int(0.025 * samples)], draws[min(samples - 1, int(0.975 * samples))]
