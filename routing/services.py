"""Routing writes: a project's policy, and routing passes that set items' routes in batches.

The invariants:
- Only this module changes Item.route (besides import, which writes the project's
  new_item_route: "human" only under all_human with no budget cap, else "pending"; import reads
  it under a share lock of the project row, which policy_save's update of the row waits for),
  and always while holding the project's RoutingPolicy row lock: passes and policy changes run
  one at a time per project, on any number of web and Celery processes, so the human budget is
  counted and spent atomically.
- The human budget caps the non-gold items routed to people (route "human" or "both"): counted
  under the lock, then granted to the items whose policy wants people, riskiest first. The audit
  slice always goes to both and counts against it.
- A route is changed by conditional UPDATEs (WHERE route = the route read): an item's route never
  changes behind a decision. Items a person has started (labels or live leases) keep theirs.
- Decisions are made in batches (after a judge run, on a policy change, on demand), never on an
  annotator's request: the next-item query only reads the column.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from annotate.models import Annotation, Item, Judge, Project
from judges.models import JudgeRun, Verdict

from . import features, learning, report
from .models import (
    ItemTextFeatures,
    ResponseSimilarity,
    RouteDecision,
    RouterModel,
    RoutingPolicy,
)
from .policies import Decision, PolicyError, get_policy
from .policies.base import UNSURE, uniform

Route = Item.Route
CHUNK = 2000


class ServiceError(ValueError):
    """`field` names the setting at fault; for "params", `param` names the parameter."""

    def __init__(self, message: str, field: str = "form", param: str | None = None):
        super().__init__(message)
        self.message, self.field, self.param = message, field, param


@dataclass
class RouteReport:
    """What one routing pass did: items per new route, how many wait, the budget after it."""

    routed: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    promoted: int = 0
    over_budget: int = 0
    budget: dict = field(default_factory=dict)


def policy_for(project: Project) -> RoutingPolicy:
    """The project's routing policy (all to people until an admin picks another)."""
    policy, _ = RoutingPolicy.objects.get_or_create(project=project)
    return policy


# Policy -----------------------------------------------------------------------------------------


def policy_save(*, project: Project, data: dict, user=None) -> RoutingPolicy:
    """Validate and save the project's routing settings, then route again every item no person
    has started, under the new policy. ServiceError names the field at fault."""
    cleaned = _clean(project, data)
    with transaction.atomic():
        row = _locked(project)
        for name, value in cleaned.items():
            setattr(row, name, value)
        row.updated_by = user if user is not None and user.is_authenticated else None
        row.updated_at = timezone.now()
        row.save()
        # New items go straight to people only when nothing caps them; else the router decides.
        uncapped = row.budget_labels is None and row.budget_share is None
        everyone = row.policy == RoutingPolicy.Name.ALL_HUMAN and uncapped
        start = Route.HUMAN if everyone else Route.PENDING
        Project.objects.filter(pk=project.pk).update(new_item_route=start)
        project.new_item_route = start
        # Unstarted items wait for the new policy's decision, made right below.
        _unstarted(project).exclude(route=Route.PENDING).update(route=Route.PENDING)
        _route_locked(project, row, trigger="policy changed")
    return row


def _clean(project: Project, data: dict) -> dict:
    name = data.get("policy", RoutingPolicy.Name.ALL_HUMAN)
    try:
        policy = get_policy(name)
        params = policy.clean_params(data.get("params"))
    except PolicyError as exc:
        if exc.field == "policy":
            raise ServiceError(exc.message, "policy") from None
        param = exc.field if exc.field != "params" else None
        raise ServiceError(exc.message, "params", param) from None
    judge = data.get("judge")
    if judge is not None and (not isinstance(judge, Judge) or judge.project_id != project.pk):
        raise ServiceError("not a judge of this project", "judge")
    if judge is None and name != RoutingPolicy.Name.ALL_HUMAN:
        raise ServiceError("this policy needs a judge to label what it routes to judges", "judge")
    if judge is not None and not judge.active:
        raise ServiceError(f"{judge.name!r} is switched off", "judge")
    labels = data.get("budget_labels")
    if labels is not None and (
        isinstance(labels, bool) or not isinstance(labels, int) or labels < 0
    ):
        raise ServiceError("a whole number of labels, 0 or more (empty: no cap)", "budget_labels")
    share = _share(data.get("budget_share"), "budget_share", optional=True)
    audit = _share(data.get("audit_share", 0.1), "audit_share", optional=False)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**31) <= seed < 2**31:
        raise ServiceError("a whole number", "seed")
    return {
        "policy": name,
        "params": params,
        "judge": judge,
        "budget_labels": labels,
        "budget_share": share,
        "audit_share": audit,
        "seed": seed,
    }


def _share(value, name: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ServiceError("a share from 0 to 1" + (" (empty: no cap)" if optional else ""), name)
    return float(value)


def _locked(project: Project) -> RoutingPolicy:
    policy_for(project)
    row = RoutingPolicy.objects.select_for_update().get(project=project)
    row.judge  # noqa: B018 (read after the lock: PostgreSQL locks no outer-joined row)
    return row


def _unstarted(project: Project):
    """Items no person has started: no human label, no live lease, not gold."""
    return Item.objects.filter(
        project=project, gold_label__isnull=True, human_label_count=0, lease_count=0
    )


# Routing passes ---------------------------------------------------------------------------------


def route_enqueue(*, project: Project, trigger: str = "on demand") -> str:
    """Queue a routing pass of the project (routing.route) once the caller's transaction
    commits, never inside the request; returns the Celery task id it will run under."""
    from .tasks import route

    return _on_commit(route, (project.pk, trigger[:100]))


def _on_commit(task, args: tuple) -> str:
    """Send `task` with `args` once the caller's transaction commits; the id it will run under
    (known now, so a request can answer with it)."""
    task_id = str(uuid.uuid4())
    transaction.on_commit(lambda: task.apply_async(args, task_id=task_id))
    return task_id


def route_items(*, project: Project, trigger: str = "on demand") -> RouteReport:
    """Route the project's waiting items, and promote to people the items routed to judges whose
    verdict came back inconsistent or failed, while the human budget lasts."""
    with transaction.atomic():
        row = _locked(project)
        return _route_locked(project, row, trigger)


def _route_locked(project: Project, row: RoutingPolicy, trigger: str) -> RouteReport:
    policy = get_policy(row.policy)
    waiting = Item.objects.filter(project=project, route=Route.PENDING, gold_label__isnull=True)
    unsure = _unsure_judged(project, row.judge)
    capacity = budget(project, row)["people_items_left"]  # None: no cap
    report = RouteReport()
    made: list[tuple[int, str, Decision, bool]] = []  # (item id, route, decision, audit)
    wanting: list[tuple[int, Decision, bool]] = []  # (item id, decision, promotion)
    regular = []
    for c in features.waiting(waiting, row.judge, text=policy.reads_text):
        draw = uniform(row.seed, c.item_id, "audit")
        if draw < row.audit_share:
            reason = f"audit slice (draw {draw:.3f} < {row.audit_share:g})"
            made.append((c.item_id, Route.BOTH, Decision(True, None, reason), True))
        else:
            regular.append(c)
    # Defaults filled in at use: a parameter added to a policy later has its default here.
    params = policy.clean_params(row.params)
    decisions = policy.decide(regular, params, project=project, seed=row.seed)
    for c, decision in zip(regular, decisions, strict=True):
        if decision.wants_people is None:
            report.waiting += 1
        elif decision.wants_people:
            wanting.append((c.item_id, decision, False))
        else:
            made.append((c.item_id, Route.JUDGE, decision, False))
    for item_id in unsure:
        reason = "promoted: the judge's verdict came back unsure"
        wanting.append((item_id, Decision(True, UNSURE, reason, {"verdict": "unsure"}), True))
    if capacity is not None:
        capacity -= sum(1 for *_, audit in made if audit)
    wanting.sort(key=lambda w: (-(w[1].risk if w[1].risk is not None else 0.5), w[0]))
    for n, (item_id, decision, promotion) in enumerate(wanting):
        if capacity is None or n < capacity:
            made.append((item_id, Route.HUMAN, decision, False))
            report.promoted += promotion
        elif not promotion:
            spent = Decision(False, decision.risk, f"human budget spent; {decision.reason}")
            spent.features = decision.features
            made.append((item_id, Route.JUDGE, spent, False))
            report.over_budget += 1
    _write(made, set(unsure), row, trigger)
    for _, route, _, _ in made:
        report.routed[route] = report.routed.get(route, 0) + 1
    RoutingPolicy.objects.filter(pk=row.pk).update(routed_at=timezone.now())
    report.budget = budget(project, row)
    return report


def _unsure_judged(project: Project, judge: Judge | None) -> list[int]:
    """Ids of the items routed to judges only whose router-judge verdict is inconsistent or
    failed."""
    if judge is None:
        return []
    sure = Verdict.objects.filter(item=OuterRef("pk"), judge=judge, status=Verdict.Status.AGREED)
    unsure = Verdict.objects.filter(
        item=OuterRef("pk"),
        judge=judge,
        status__in=[Verdict.Status.INCONSISTENT, Verdict.Status.FAILED],
    )
    return list(
        Item.objects.filter(project=project, route=Route.JUDGE, gold_label__isnull=True)
        .filter(Exists(unsure), ~Exists(sure))
        .order_by("id")
        .values_list("id", flat=True)
    )


# The decisions' columns, written by one prepared upsert (executemany): Django's bulk_create
# built each row's parameters field by field, most of a 100,000-item pass.
DECISION_COLUMNS = (
    "item_id", "route", "policy", "risk", "features", "reason", "audit", "promoted", "trigger",
    "decided_at",
)  # fmt: skip


def _write(made, promoted_ids: set[int], row: RoutingPolicy, trigger: str) -> None:
    """Set the items' routes (each only from the route it was read with) and upsert their
    decisions. PostgreSQL: one statement each over arrays (unnest), 2.5 times faster than
    a statement per chunk or row on a 100,000-item pass; SQLite: chunks and executemany."""
    now = RouteDecision._meta.get_field("decided_at").get_db_prep_save(timezone.now(), connection)
    policy, trigger = row.policy, trigger[:100]
    rows = [
        (
            item_id,
            Route.JUDGE if item_id in promoted_ids else Route.PENDING,  # the route read
            route,
            policy,
            decision.risk,
            # JSON text (orjson: a third of the time of the JSONField's json.dumps per row);
            # PostgreSQL casts it to jsonb, SQLite keeps it as the JSONField does.
            orjson.dumps(decision.features).decode(),
            decision.reason[:300],
            audit,
            item_id in promoted_ids,
            trigger,
            now,
        )
        for item_id, route, decision, audit in made
    ]
    if not rows:
        return
    if connection.vendor == "postgresql":
        _write_arrays(rows)
    else:
        _write_rows(rows)


def _write_rows(rows: list[tuple]) -> None:
    by_change: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item_id, old, new, *_ in rows:
        by_change[(old, new)].append(item_id)
    for (old, new), ids in by_change.items():
        for start in range(0, len(ids), CHUNK):
            Item.objects.filter(pk__in=ids[start : start + CHUNK], route=old).update(route=new)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in DECISION_COLUMNS)
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in DECISION_COLUMNS[1:])
    sql = (
        f"INSERT INTO {quote(RouteDecision._meta.db_table)} ({columns}) "
        f"VALUES ({', '.join(['%s'] * len(DECISION_COLUMNS))}) "
        f"ON CONFLICT ({quote('item_id')}) DO UPDATE SET {updates}"
    )
    params = [(item_id, *rest) for item_id, _old, *rest in rows]
    with connection.cursor() as cursor:
        for start in range(0, len(params), CHUNK * 5):
            cursor.executemany(sql, params[start : start + CHUNK * 5])


_ROUTES_PG = """
UPDATE annotate_item AS i SET route = v.new
FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS v (id, old, new)
WHERE i.id = v.id AND i.route = v.old
"""
_DECISIONS_PG = """
INSERT INTO routing_routedecision
    (item_id, route, policy, risk, features, reason, audit, promoted, trigger, decided_at)
SELECT v.item_id, v.route, %b, v.risk, v.features::jsonb, v.reason, v.audit, v.promoted, %b, %b
FROM unnest(%b::bigint[], %b::text[], %b::float8[], %b::text[], %b::text[], %b::boolean[],
            %b::boolean[]) AS v (item_id, route, risk, features, reason, audit, promoted)
ON CONFLICT (item_id) DO UPDATE SET
    route = excluded.route, policy = excluded.policy, risk = excluded.risk,
    features = excluded.features, reason = excluded.reason, audit = excluded.audit,
    promoted = excluded.promoted, trigger = excluded.trigger, decided_at = excluded.decided_at
"""


def _write_arrays(rows: list[tuple]) -> None:
    ids, olds, news, policies, risks, features_, reasons, audits, promoted, triggers, nows = zip(
        *rows, strict=True
    )
    import psycopg

    connection.ensure_connection()
    # Bound on the server, in binary (%b): Django's client-side cursor quoted and escaped every
    # array element into the SQL text, most of the write's time.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_ROUTES_PG, [list(ids), list(olds), list(news)])
        cursor.execute(
            _DECISIONS_PG,
            [
                policies[0],
                triggers[0],
                nows[0],
                list(ids),
                list(news),
                list(risks),
                list(features_),
                list(reasons),
                list(audits),
                list(promoted),
            ],
        )


# Budget -----------------------------------------------------------------------------------------


def _allowed(project: Project, row: RoutingPolicy, items: int) -> int | None:
    """How many non-gold items the budget lets people label; None: no cap."""
    caps = []
    if row.budget_labels is not None:
        caps.append(row.budget_labels // project.overlap)
    if row.budget_share is not None:
        caps.append(math.floor(row.budget_share * items + 1e-9))
    return min(caps) if caps else None


def budget(project: Project, row: RoutingPolicy | None = None) -> dict:
    """The human budget (items and labels: an item costs `overlap` labels) and the router
    judge's spend: what is allowed, used and left."""
    row = row or policy_for(project)
    regular = Item.objects.filter(project=project, gold_label__isnull=True)
    counts = dict(regular.values_list("route").annotate(n=Count("id")).order_by())
    items = sum(counts.values())
    allowed = _allowed(project, row, items)
    used = counts.get(Route.HUMAN, 0) + counts.get(Route.BOTH, 0)
    out = {
        "items": items,
        "by_route": {r: counts.get(r, 0) for r in Route.values},
        "people_items_allowed": allowed,
        "people_items_used": used,
        "people_items_left": None if allowed is None else max(0, allowed - used),
        "labels_allowed": None if allowed is None else allowed * project.overlap,
        "labels_used": used * project.overlap,
        "labels_left": None if allowed is None else max(0, allowed - used) * project.overlap,
    }
    judge = row.judge
    if judge is not None:
        out["judge_spend"] = {
            "judge": judge.name,
            "budget_usd": str(judge.budget_usd),
            "spent_usd": str(judge.spent_usd),
            "left_usd": str(max(judge.budget_usd - judge.spent_usd - judge.reserved_usd, 0)),
        }
    return out


# The judge of what is routed to judges ----------------------------------------------------------


def unjudged_routed(project: Project, judge: Judge):
    """Items the router sent to judges, or waits on, that `judge` has no verdict on."""
    judged = Verdict.objects.filter(item=OuterRef("pk"), judge=judge)
    return Item.objects.filter(
        project=project,
        gold_label__isnull=True,
        route__in=[Route.JUDGE, Route.BOTH, Route.PENDING],
    ).exclude(Exists(judged))


def judge_routed(*, project: Project) -> JudgeRun | None:
    """Start the router judge on the items routed to judges, or waiting for its verdict, that it
    has not judged: None when there are none, or it is already running in the project."""
    from judges import services as judge_services

    row = policy_for(project)
    judge = row.judge
    if judge is None or not judge.active:
        return None
    busy = JudgeRun.objects.filter(
        project=project, judges=judge, status__in=JudgeRun.ACTIVE
    ).exists()
    if busy:
        return None
    if not unjudged_routed(project, judge).exists():
        return None
    try:
        return judge_services.run_start(
            project=project, judges=[judge], selection=JudgeRun.Selection.ROUTING
        )
    except judge_services.ServiceError:
        return None


# The learned router -----------------------------------------------------------------------------


def router_train(
    *,
    project: Project,
    seed: int = 0,
    embeddings: bool = False,
    minimum: int | None = None,
    test_share: float = learning.TEST_SHARE,
    sources: tuple[str, ...] = (Annotation.Source.HUMAN,),
) -> RouterModel:
    """Train the project's learned router on the items both people and the routing policy's
    judge labelled, evaluate it on held-out items and save it as the project's current router.
    With `embeddings`, the responses' MiniLM similarity stored by response_similarity_compute
    is a feature; `sources` are the labels that count as the people's (imported ones too, for
    data labelled by people elsewhere). ServiceError (nothing written) when there is no judge or
    the data cannot train a router; an unexpected failure is recorded as a failed RouterModel
    and raised."""
    judge = policy_for(project).judge
    if judge is None:
        raise ServiceError("the routing policy has no judge whose verdicts to learn", "judge")
    labelled = report.double_labelled(judge, sources)
    candidates = features.candidates([d.item for d in labelled], judge)
    if embeddings:
        learning.with_cached_similarity(candidates)
    data = {
        **learning.item_span([d.item for d in labelled]),
        "double_labelled": double_labelled_count(project, judge, sources),
        "embeddings": embeddings,
        "sources": list(sources),
    }
    params = {"seed": seed, "test_share": test_share}
    try:
        fitted = learning.fit(
            candidates,
            [not d.agrees for d in labelled],
            seed=seed,
            minimum=minimum,
            test_share=test_share,
        )
    except learning.LearningError as exc:
        raise ServiceError(str(exc), "router") from None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        RouterModel.objects.create(
            project=project,
            judge=judge,
            status=RouterModel.Status.FAILED,
            error=error,
            data=data,
            params=params,
        )
        raise
    with transaction.atomic():
        router = RouterModel.objects.create(
            project=project,
            judge=judge,
            status=RouterModel.Status.DONE,
            n_train=fitted.n_train,
            n_test=fitted.n_test,
            auc=fitted.auc,
            curve=fitted.curve,
            feature_names=fitted.names,
            data=data,
            params={**params, "model": fitted.chosen, "cv_auc": fitted.cv_auc},
        )
        router.model_path = f"routing/{project.pk}/router-{router.pk}.joblib"
        learning.save(fitted, Path(settings.MEDIA_ROOT) / router.model_path)
        router.save(update_fields=["model_path"])
    return router


def router_train_enqueue(*, project: Project) -> str:
    """Queue the learned router's training on the training worker once the caller's
    transaction commits (never inside a request); returns the Celery task id. ServiceError
    (field "router") now, not in the worker's log, when there is no router judge or fewer
    double-labelled items than a router needs."""
    from .tasks import train_router

    row = RoutingPolicy.objects.filter(project=project).select_related("judge").first()
    if row is None or row.judge is None:
        raise ServiceError("choose a router judge in the routing settings first", "router")
    have, need = double_labelled_count(project, row.judge), learning.min_items()
    if have < need:
        raise ServiceError(
            f"the router needs at least {need} items labelled by both people and the router "
            f"judge; there are {have}",
            "router",
        )
    return _on_commit(train_router, (project.pk,))


def router_current(project: Project, judge: Judge | None = None) -> dict | None:
    """What the routing page shows of the current router of `judge` (default: the policy's
    router judge) (learning.summary), or None. Reading creates no policy."""
    if judge is None:
        judge_id = RoutingPolicy.objects.filter(project=project).values_list("judge", flat=True)
        judge = Judge.objects.filter(pk=judge_id.first()).first()
    return learning.summary(learning.current(project, judge))


def double_labelled_count(
    project: Project, judge: Judge, sources: tuple[str, ...] = (Annotation.Source.HUMAN,)
) -> int:
    """Items with a label from `sources` and a verdict of `judge`: what a router can learn from
    (an upper bound of report.double_labelled, which leaves out even splits; a cheap count)."""
    verdict = Verdict.objects.filter(item=OuterRef("pk"), judge=judge)
    label = Annotation.objects.filter(item=OuterRef("pk"), source__in=list(sources))
    items = Item.objects.filter(project=project, gold_label__isnull=True)
    return items.filter(Exists(verdict), Exists(label)).count()


def router_retrain_due(project: Project) -> bool:
    """Whether the learned policy's router should learn again: ROUTING_RETRAIN_EVERY new
    double-labelled items since it was trained (or enough for a first router)."""
    row = policy_for(project)
    if row.policy != RoutingPolicy.Name.LEARNED or row.judge is None:
        return False
    count = double_labelled_count(project, row.judge)
    router = learning.current(project, row.judge)
    since = count - (router.data.get("double_labelled", 0) if router else 0)
    return count >= learning.min_items() and since >= settings.ROUTING_RETRAIN_EVERY


def response_similarity_compute(*, project: Project, similarity) -> int:
    """Store the MiniLM similarity of the responses of the project's items that the routing
    policy's judge gave a verdict and that have none yet (mean over pairs of responses);
    `similarity` is rewards.embeddings.similarity, passed in by the training task (torch).
    Returns how many items got one."""
    judge = policy_for(project).judge
    if judge is None:
        return 0
    verdict = Verdict.objects.filter(item=OuterRef("pk"), judge=judge)
    known = ResponseSimilarity.objects.filter(item=OuterRef("pk"))
    items = list(
        Item.objects.filter(project=project)
        .filter(Exists(verdict), ~Exists(known))
        .only("id", "responses")
        .order_by("id")
    )
    pairs, owners = [], []
    for item in items:
        texts = [str(r.get("text", "")) for r in item.responses]
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                pairs.append((a, b))
                owners.append(item.pk)
    by_item: dict[int, list[float]] = defaultdict(list)
    for owner, value in zip(owners, similarity(pairs), strict=True):
        by_item[owner].append(value)
    ResponseSimilarity.objects.bulk_create(
        [ResponseSimilarity(item_id=k, value=sum(v) / len(v)) for k, v in by_item.items()],
        batch_size=CHUNK,
        ignore_conflicts=True,
    )
    return len(by_item)


def text_features_store(items) -> int:
    """Compute and store the text features (routing.learning.text_features) of the items of
    `items` (a queryset) that have none of the current version; how many were stored. Called
    where the judges' verdicts on items are written (routing.signals): a routing pass then reads
    the stored numbers, not the text (and computes, without storing, any still missing)."""
    version = learning.TEXT_FEATURES_VERSION
    current = ItemTextFeatures.objects.filter(item=OuterRef("pk"), version=version)
    ids = list(items.exclude(Exists(current)).order_by("id").values_list("id", flat=True))
    for at in range(0, len(ids), CHUNK):
        chunk = Item.objects.filter(pk__in=ids[at : at + CHUNK]).order_by("id")
        ItemTextFeatures.objects.bulk_create(
            [
                ItemTextFeatures(
                    item_id=pk, version=version, values=learning.text_features(prompt, responses)
                )
                for pk, prompt, responses in chunk.values_list("id", "prompt", "responses")
            ],
            update_conflicts=True,
            unique_fields=["item"],
            update_fields=["version", "values"],
        )
    return len(ids)
