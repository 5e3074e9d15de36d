"""Routing reads: the latest decisions, an item's decision, the router judges to pick from, and
the routing report (what each policy's routing buys, on the items people and the router judge
both labelled).

The report's numbers come only from routing.report (one rule, shared with the learned router's
held-out curve and bench/route.py); the confidence ranking is the confidence policy's own risk.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence

from django.db.models import QuerySet

from annotate.models import Item, Judge, Project

from . import features, learning, report
from .models import RouteDecision, RoutingPolicy
from .policies import POLICIES
from .policies.confidence import Confidence
from .services import budget

# A ranker turns the double-labelled rows into one risk per row (higher: people first).
Ranker = Callable[[list[report.DoubleLabelled]], Sequence[float]]
# Risk given to a row whose policy gave none (the router ranks such items in the middle too).
NO_RISK = 0.5


def policy_of(project: Project) -> RoutingPolicy:
    """The project's routing policy; the default one, unsaved, when none was ever set: reading
    creates no row (a project without one is never routed after its judge runs)."""
    row = (
        RoutingPolicy.objects.filter(project=project).select_related("judge", "updated_by").first()
    )
    return row or RoutingPolicy(project=project)


def router_judges(project: Project) -> QuerySet[Judge]:
    """The judges an admin may pick as the router judge: the project's active ones."""
    return Judge.objects.filter(project=project, active=True).order_by("name")


def decisions_for(project: Project, route: str | None = None) -> QuerySet[RouteDecision]:
    """The project's routing decisions, newest first, with their item's external id."""
    rows = RouteDecision.objects.filter(item__project=project)
    if route:
        rows = rows.filter(route=route)
    return rows.select_related("item__text_features").only(
        *DECISION_FIELDS, "item__external_id", *(f"item__{f}" for f in TEXT_FEATURE_FIELDS)
    )


DECISION_FIELDS = (
    "id",
    "item_id",
    "route",
    "policy",
    "risk",
    "features",
    "reason",
    "audit",
    "promoted",
    "trigger",
    "decided_at",
)
# What RouteDecision.read_features reads of the item.
TEXT_FEATURE_FIELDS = ("text_features__version", "text_features__values")


def item_with_decision(project: Project, external_id: str) -> Item | None:
    """The item with its routing decision (`route_decision`, missing when never routed)."""
    return (
        Item.objects.filter(project=project, external_id=external_id)
        .select_related("route_decision", "text_features")
        .only(
            "id",
            "external_id",
            "route",
            *(f"route_decision__{f}" for f in DECISION_FIELDS),
            *TEXT_FEATURE_FIELDS,
        )
        .first()
    )


# The routing report -----------------------------------------------------------------------------


def extra_rankers(project: Project) -> dict[str, Ranker]:
    """Curves beyond random, confidence and the oracle: the learned router's, when the project
    has one for its router judge (its risks on items it was trained on too: its held-out curve
    is on the routing page)."""
    judge = policy_of(project).judge
    router = learning.current(project, judge)
    if router is None:
        return {}

    def learned(rows: list[report.DoubleLabelled]) -> list[float]:
        return learning.predict(router, features.candidates([r.item for r in rows], judge))[0]

    return {"learned": learned}


def routing_report(project: Project, rankers: dict[str, Ranker] | None = None) -> dict:
    """Agreement of the final labels with the people's, by share of items routed to people, for
    the random and confidence policies, any `rankers` (default: extra_rankers) and the oracle,
    on the items with labels from people and a verdict of the router judge; the current human
    budget's share is one of the shares, marked."""
    row = policy_of(project)
    judge = row.judge
    rows = report.double_labelled(judge) if judge is not None else []
    agrees = [r.agrees for r in rows]
    shares, budget_share = _shares(project, row)
    curves: dict[str, list[float | None]] = {}
    curves["random"] = report.random_curve(agrees, shares)
    rankings = {
        "confidence": lambda rs: _confidence_risks(project, row, judge, rs),
        **(extra_rankers(project) if rankers is None else rankers),
        "oracle": lambda rs: report.oracle_risks([r.agrees for r in rs]),
    }
    for name, ranker in rankings.items():
        curves[name] = report.agreement_curve(ranker(rows) if rows else [], agrees, shares)
    return {
        "judge": judge.name if judge is not None else None,
        "items": len(rows),
        "judge_agrees": sum(agrees),
        "shares": shares,
        "budget_share": budget_share,
        "curves": curves,
        "table": _table(shares, budget_share, curves),
    }


def _confidence_risks(project, row: RoutingPolicy, judge, rows) -> list[float]:
    policy = Confidence()
    # The project's own thresholds when its policy reads them, else the policy's defaults.
    params = row.params if set(row.params) <= set(policy.params) else {}
    candidates = features.candidates([r.item for r in rows], judge)
    decisions = policy.decide(
        candidates, policy.clean_params(params), project=project, seed=row.seed
    )
    return [NO_RISK if d.risk is None else d.risk for d in decisions]


def _shares(project: Project, row: RoutingPolicy) -> tuple[list[float], float | None]:
    """The report's shares, with the share of items the human budget allows (None: no cap)."""
    status = budget(project, row)
    allowed, items = status["people_items_allowed"], status["items"]
    share = None if allowed is None else (min(1.0, allowed / items) if items else 0.0)
    shares = sorted({*report.SHARES, *([round(share, 4)] if share is not None else [])})
    return shares, None if share is None else round(share, 4)


shown = report.shown


def _table(shares, budget_share, curves) -> list[list[str]]:
    """The numbers behind the chart, as text: a header, then a row per share."""
    header = ["share_to_people", *curves, "budget"]
    body = [
        [shown(share), *(shown(curve[i]) for curve in curves.values())]
        + ["yes" if share == budget_share else ""]
        for i, share in enumerate(shares)
    ]
    return [header, *body]


def report_csv(data: dict) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(data["table"])
    return out.getvalue()


def policy_choices() -> list[tuple[str, str]]:
    return [(name, policy.title) for name, policy in POLICIES.items()]
