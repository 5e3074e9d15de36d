"""The assignment engine: which item an annotator labels next, leases, submissions and skips.

How it stays cheap and correct:
- Every item carries two counters, `human_label_count` and `lease_count` (live leases). They are
  changed only here, always while the item's row is locked, so "human labels + live leases <
  overlap" is a column test and the next item is one index scan with LIMIT 1 on `item_next_idx`
  (project, human_label_count, -priority, id), never a COUNT or a random sort over the project.
- Locks are always taken item first, then assignment. The next-item query locks its candidate
  with FOR UPDATE SKIP LOCKED (PostgreSQL), so parallel annotators pass over each other's rows
  instead of queueing, and an item is never leased beyond the project's overlap. SQLite ignores
  row locks; its IMMEDIATE transactions (settings) serialise every write instead.
- Expired leases are reclaimed lazily by `assignment_next`, through the small partial index of
  live leases (`assignment_expiry_idx`), at most once per RECLAIM_EVERY in each process: an
  expired item returns to the pool within seconds of its expiry, not on the exact request.

Conventions:
- An annotator gets an item at most once (one Assignment per item and annotator), except that
  their own expired lease may be leased to them again: they never labeled it.
- Gold items (Item.gold_label set) do not count against overlap: every annotator may get each one
  once. They come at Project.gold_rate, spread evenly over each annotator's assignments.
- Only items routed to people (Item.route "human" or "both") are leased; the router (routing/)
  sets the route in batches, under the same item row lock. The route is in `item_next_idx`'s
  condition, so an item routed to judges is not even in the index the next-item query scans.
  Gold items are always for people.
- Labels arrive in display terms (a pairwise "A" is the response shown first) and are stored in
  the item's terms ("A" is item.responses[0]): the kind decides the display order and whether
  a lease is swapped, and its `swap_label` turns a swapped assignment's label back.
  `Assignment.order` holds the response ids in display order for every kind.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from functools import partial

from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Subquery
from django.utils import timezone

from config import runtime

from . import assignment_sql
from .kinds import KindError, get_kind
from .models import Annotation, Assignment, Item, Membership, Project
from .services import ServiceError

MAX_TIME_SPENT_MS = 2**31 - 1
PROGRESS_CACHE_SECONDS = 10
RECLAIM_BATCH = 500
RECLAIM_EVERY = timedelta(seconds=5)

_random = random.Random()
_reclaim = runtime.Every(RECLAIM_EVERY)


class AssignmentConflict(ServiceError):
    """The assignment is no longer in a state that allows this (skipped, submitted, lost)."""


# Leasing ------------------------------------------------------------------------------------


def assignment_next(
    *, project: Project, annotator, now: datetime | None = None
) -> Assignment | None:
    """The annotator's next assignment in the project, or None when nothing is left for them.

    Their own unexpired lease comes back first. Otherwise an item they have not seen is leased:
    fewest human labels first, then higher priority, then lower id; a gold item when it is
    their turn for one.
    """
    now = now or timezone.now()
    _reclaim_due_leases(now)
    if connection.vendor == "postgresql":
        return _next_in_one_statement(project, annotator, now)
    with transaction.atomic():
        # One next-item decision per annotator at a time: a double click gets one lease.
        list(
            Membership.objects.filter(project=project, user=annotator)
            .order_by()
            .select_for_update(no_key=True)
            .values_list("pk", flat=True)
        )
        own = _live_lease(project, annotator, now)
        if own is not None:
            return own
        item = _candidate(project, annotator, gold=True) if _gold_turn(project, annotator) else None
        if item is None:
            item = _candidate(project, annotator, gold=False)
        if item is None:
            return None
        return _lease(project, item, annotator, now)


def _next_in_one_statement(project: Project, annotator, now: datetime) -> Assignment | None:
    """PostgreSQL: the same decision as the ORM path, one statement per candidate kind."""
    kind = get_kind(project.kind)
    swapped = kind.draw_swap(_random)
    lease = partial(
        assignment_sql.lease,
        project_id=project.pk,
        annotator_id=annotator.pk,
        overlap=project.overlap,
        swapped=swapped,
        now=now,
        expires=now + timedelta(minutes=project.lease_minutes),
    )
    golds = (True, False) if _gold_turn(project, annotator) else (False,)
    if golds == (False,) and not kind.shuffled and not connection.in_atomic_block:
        # The usual case, nothing to decide between statements: BEGIN, lock, lease and COMMIT
        # sent together.
        row = lease(gold=False, commit=True)
        return None if row is None else _assignment_from_row(row, project, annotator)
    with transaction.atomic():
        for gold in golds:
            row = lease(gold=gold)
            if row is not None:
                break
        else:
            return None
        assignment = _assignment_from_row(row, project, annotator)
        if row[5] and kind.shuffled:
            # A shuffled order is drawn here, as on the ORM path (tests fix `_random`).
            assignment.order, _ = kind.display_order(assignment.item.responses, _random)
            assignment.save(update_fields=["order"])
    return assignment


def _assignment_from_row(row: tuple, project: Project, annotator) -> Assignment:
    pk, swapped, order, expires_at, created_at, new, *item_row = row
    item_id, external_id, prompt, responses, metadata, priority, gold_label, *rest = item_row
    labels, leases, item_created_at = rest
    item = Item(
        id=item_id,
        project=project,
        external_id=external_id,
        prompt=json.loads(prompt),
        responses=json.loads(responses),
        metadata=json.loads(metadata),
        priority=priority,
        gold_label=None if gold_label is None else json.loads(gold_label),
        human_label_count=labels,
        # The row was read before this statement's own lease was counted.
        lease_count=leases + 1 if new else leases,
        created_at=item_created_at,
    )
    item._state.adding, item._state.db = False, connection.alias
    assignment = Assignment(
        id=pk,
        item=item,
        annotator=annotator,
        status=Assignment.Status.LEASED,
        swapped=swapped,
        order=json.loads(order),
        expires_at=expires_at,
        created_at=created_at,
    )
    assignment._state.adding, assignment._state.db = False, connection.alias
    return assignment


def _reclaim_due_leases(now: datetime) -> None:
    if _reclaim.due(now):
        leases_reclaim(now=now)


def _live_lease(project: Project, annotator, now: datetime) -> Assignment | None:
    return (
        Assignment.objects.filter(
            annotator=annotator,
            item__project=project,
            status=Assignment.Status.LEASED,
            expires_at__gt=now,
        )
        .select_related("item")
        .order_by("created_at", "id")
        .first()
    )


def _gold_turn(project: Project, annotator) -> bool:
    """Whether the annotator's next assignment should be gold: exactly `gold_rate` of them over
    time, at a phase of its own for each annotator (deterministic, no shared state)."""
    rate = project.gold_rate
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    seen = Assignment.objects.filter(annotator=annotator, item__project=project).count()
    digest = hashlib.sha256(f"{project.pk}:{annotator.pk}".encode()).digest()
    phase = int.from_bytes(digest[:8]) / 2**64
    return math.floor((seen + 1) * rate + phase) > math.floor(seen * rate + phase)


def _candidate(project: Project, annotator, *, gold: bool) -> Item | None:
    """The first item the annotator may get, locked; rows others have locked are passed over."""
    mine = Assignment.objects.filter(item=OuterRef("pk"), annotator=annotator).order_by()
    items = Item.objects.filter(project=project, gold_label__isnull=not gold).filter(
        ~Exists(mine.exclude(status=Assignment.Status.EXPIRED))
    )
    if gold:
        order = ("human_label_count", "id")
    else:
        # The first test bounds the index range; the second is checked on the rows scanned.
        items = items.filter(human_label_count__lt=project.overlap, route__in=Item.TO_PEOPLE)
        items = items.filter(lease_count__lt=project.overlap - F("human_label_count"))
        order = ("human_label_count", "-priority", "id")
    expired = mine.filter(status=Assignment.Status.EXPIRED).values("pk")[:1]
    return (
        items.annotate(my_expired_id=Subquery(expired))
        .order_by(*order)
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )


def _lease(project: Project, item: Item, annotator, now: datetime) -> Assignment:
    order, swapped = get_kind(project.kind).display_order(item.responses, _random)
    fields = {
        "status": Assignment.Status.LEASED,
        "swapped": swapped,
        "order": order,
        "expires_at": now + timedelta(minutes=project.lease_minutes),
        "completed_at": None,
    }
    if item.my_expired_id is not None:
        assignment = Assignment.objects.select_for_update().get(pk=item.my_expired_id)
        for name, value in fields.items():
            setattr(assignment, name, value)
        assignment.save(update_fields=list(fields))
    else:
        assignment = Assignment.objects.create(item=item, annotator=annotator, **fields)
    Item.objects.filter(pk=item.pk).update(lease_count=F("lease_count") + 1)
    item.lease_count += 1
    assignment.item = item
    return assignment


def leases_reclaim(*, now: datetime | None = None, limit: int = RECLAIM_BATCH) -> int:
    """Expire leases past their time and give their items back to the pool; returns how many.

    Cheap when nothing is due (one query on the partial index of live leases). Items locked by
    someone else are left for a later call.
    """
    now = now or timezone.now()
    due = Assignment.objects.filter(status=Assignment.Status.LEASED, expires_at__lte=now)
    item_ids = set(due.order_by("expires_at").values_list("item_id", flat=True)[:limit])
    if not item_ids:
        return 0
    with transaction.atomic():
        locked = list(
            Item.objects.filter(pk__in=item_ids)
            .order_by("pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        leases = list(
            due.filter(item_id__in=locked).select_for_update().values_list("pk", "item_id")
        )
        if not leases:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, _ in leases]).update(
            status=Assignment.Status.EXPIRED
        )
        _add_leases({item_id: -n for item_id, n in Counter(i for _, i in leases).items()})
    return len(leases)


def _add_leases(changes: dict[int, int]) -> None:
    by_change = defaultdict(list)
    for item_id, change in changes.items():
        by_change[change].append(item_id)
    for change, ids in by_change.items():
        Item.objects.filter(pk__in=ids).update(lease_count=F("lease_count") + change)


# Submitting, skipping, releasing ------------------------------------------------------------


def annotation_submit(
    *,
    assignment: Assignment,
    label: dict,
    time_spent_ms: int | None,
    request_id: str | None = None,
    annotator=None,
) -> Annotation:
    """Store the annotator's label for an assignment; see `annotation_submit_or_get`."""
    annotation, _ = annotation_submit_or_get(
        assignment=assignment,
        label=label,
        time_spent_ms=time_spent_ms,
        request_id=request_id,
        annotator=annotator,
    )
    return annotation


def annotation_submit_or_get(
    *,
    assignment: Assignment,
    label: dict,
    time_spent_ms: int | None,
    request_id: str | None = None,
    annotator=None,
) -> tuple[Annotation, bool]:
    """Store one human label for the assignment; returns (annotation, created).

    The label is validated by the project's kind and, for a swapped pair, turned from display
    terms into the item's terms. Submitting again returns the stored annotation unchanged
    (created False). An expired lease can still be submitted while the item has room under the
    overlap; otherwise AssignmentConflict. With `annotator`, someone else's assignment is a
    ServiceError. A gold item records on the assignment whether the label matched.
    """
    _check_owner(assignment, annotator)
    item = assignment.item
    if not (time_spent_ms is None or _is_int(time_spent_ms, 0, MAX_TIME_SPENT_MS)):
        raise ServiceError(
            f"Time spent must be a whole number of milliseconds from 0 to {MAX_TIME_SPENT_MS}.",
            "time_spent_ms",
        )
    if connection.vendor == "postgresql" and assignment.status == Assignment.Status.LEASED:
        annotation = _submit_in_one_statement(
            assignment, label, time_spent_ms, (request_id or "")[:100]
        )
        if annotation is not None:
            return _with_annotator(annotation, annotator), True
    try:
        with transaction.atomic():
            item = (
                Item.objects.select_related("project")
                .select_for_update(of=("self",))
                .get(pk=assignment.item_id)
            )
            locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
            if locked.status == Assignment.Status.SUBMITTED:
                annotation = Annotation.objects.get(assignment=locked)
                annotation.item = item
                return _with_annotator(annotation, annotator), False
            cleaned = clean_label(item=item, label=label, swapped=locked.swapped)
            annotation = _store(locked, item, cleaned, time_spent_ms, request_id or "")
    except IntegrityError:
        # Only the one-to-one link can collide: the label is stored already.
        existing = Annotation.objects.filter(assignment_id=assignment.pk).first()
        if existing is None:
            raise
        return _with_annotator(existing, annotator), False
    assignment.status, assignment.completed_at = locked.status, locked.completed_at
    return _with_annotator(annotation, annotator), True


def _submit_in_one_statement(
    assignment: Assignment, label: dict, time_spent_ms: int | None, request_id: str
) -> Annotation | None:
    """PostgreSQL, a lease read as live: validate, then store in one statement. None when the
    lease changed since it was read (submitted, expired, re-leased): the ORM path decides."""
    item = assignment.item
    kind = item.project.kind
    cleaned = clean_label(item=item, label=label, swapped=assignment.swapped)
    gold = None
    if item.gold_label is not None:
        gold = get_kind(kind).gold_matches(cleaned, item.gold_label)
    now = timezone.now()
    pk = assignment_sql.submit(
        assignment_id=assignment.pk,
        item_id=item.pk,
        swapped=assignment.swapped,
        kind=kind,
        label=cleaned,
        time_spent_ms=time_spent_ms,
        request_id=request_id,
        gold_correct=gold,
        now=now,
    )
    if pk is None:
        return None
    assignment.status, assignment.completed_at = Assignment.Status.SUBMITTED, now
    annotation = Annotation(
        id=pk,
        item=item,
        source=Annotation.Source.HUMAN,
        annotator_id=assignment.annotator_id,
        assignment=assignment,
        kind=kind,
        label=cleaned,
        time_spent_ms=time_spent_ms,
        origin="assignment",
        created_at=now,
    )
    annotation._state.adding, annotation._state.db = False, connection.alias
    return annotation


def _with_annotator(annotation: Annotation, annotator) -> Annotation:
    # The caller's user is the label's author: spare a query for whoever reads annotation.annotator.
    if annotator is not None and annotation.annotator_id == annotator.pk:
        annotation.annotator = annotator
    return annotation


def _store(
    assignment: Assignment, item: Item, label: dict, time_spent_ms: int | None, request_id: str
) -> Annotation:
    now = timezone.now()
    if assignment.status == Assignment.Status.SKIPPED:
        raise AssignmentConflict("You skipped this item; it cannot be labeled any more.")
    leased = assignment.status == Assignment.Status.LEASED
    room = item.gold_label is not None or (
        item.human_label_count + item.lease_count < item.project.overlap
    )
    if not leased and not room:
        raise AssignmentConflict(
            "Your lease on this item expired and others have since labeled it: take the next one."
        )
    annotation = Annotation.objects.create(
        item=item,
        source=Annotation.Source.HUMAN,
        annotator_id=assignment.annotator_id,
        assignment=assignment,
        kind=item.project.kind,
        label=label,
        time_spent_ms=time_spent_ms,
        origin="assignment",
        created_at=now,
    )
    Item.objects.filter(pk=item.pk).update(
        human_label_count=F("human_label_count") + 1,
        lease_count=F("lease_count") - (1 if leased else 0),
    )
    assignment.status = Assignment.Status.SUBMITTED
    assignment.completed_at = now
    assignment.request_id = request_id[:100]
    if item.gold_label is not None:
        assignment.gold_correct = get_kind(item.project.kind).gold_matches(label, item.gold_label)
    assignment.save(update_fields=["status", "completed_at", "request_id", "gold_correct"])
    return annotation


def assignment_skip(*, assignment: Assignment, reason: str, annotator=None) -> Assignment:
    """Skip an item: it is never offered to this annotator again. Skipping twice is harmless."""
    _check_owner(assignment, annotator)
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why you skip this item.", "reason")
    if len(reason) > 500:
        raise ServiceError("The reason is over 500 characters.", "reason")
    return _close(assignment, Assignment.Status.SKIPPED, skip_reason=reason)


def assignment_release(*, assignment: Assignment, annotator=None) -> Assignment:
    """Give a lease back before it expires: the item returns to the pool now, and this
    annotator may get it again later."""
    _check_owner(assignment, annotator)
    return _close(assignment, Assignment.Status.EXPIRED)


def _close(assignment: Assignment, status: str, **fields) -> Assignment:
    with transaction.atomic():
        Item.objects.select_for_update().filter(pk=assignment.item_id).values_list("pk").first()
        locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if locked.status == status:
            return locked
        if locked.status == Assignment.Status.SUBMITTED:
            raise AssignmentConflict("This item is labeled already.")
        if locked.status == Assignment.Status.SKIPPED:
            raise AssignmentConflict("You skipped this item already.")
        if locked.status == Assignment.Status.LEASED:
            _add_leases({locked.item_id: -1})
        locked.status = status
        locked.completed_at = timezone.now() if status == Assignment.Status.SKIPPED else None
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save(update_fields=["status", "completed_at", *fields])
    locked.item = assignment.item
    return locked


def annotation_correct(*, annotation: Annotation, label: dict, annotator) -> Annotation:
    """Re-label one of the annotator's own labels in place (same row, provenance kept,
    `updated_at` set). The label is in display terms of its assignment, as when submitted.
    A gold check keeps the first answer."""
    if annotation.source != Annotation.Source.HUMAN or annotation.annotator_id != annotator.pk:
        raise ServiceError("This is not one of your labels.", "annotation")
    assignment = annotation.assignment
    cleaned = clean_label(
        item=annotation.item, label=label, swapped=bool(assignment and assignment.swapped)
    )
    now = timezone.now()
    with transaction.atomic():
        Annotation.objects.filter(pk=annotation.pk).update(label=cleaned, updated_at=now)
    annotation.label, annotation.updated_at = cleaned, now
    for name in ("choice", "strength"):  # the database's, read again when asked for
        annotation.__dict__.pop(name, None)
    return annotation


def _check_owner(assignment: Assignment, annotator) -> None:
    if annotator is not None and assignment.annotator_id != annotator.pk:
        raise ServiceError("This assignment is someone else's.", "assignment")


def _is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# Labels -------------------------------------------------------------------------------------


def clean_label(*, item: Item, label, swapped: bool = False) -> dict:
    """The canonical label in the item's terms; ServiceError naming the field when invalid."""
    kind = get_kind(item.project.kind)
    try:
        cleaned = kind.clean_label(label, item.responses, kind.clean_config(item.project.config))
    except KindError as exc:
        raise ServiceError(exc.message, exc.field) from None
    return kind.swap_label(cleaned) if swapped else cleaned


def swap_label(kind: str, label: dict) -> dict:
    """A label of a swapped assignment turned between display and item terms (its own
    inverse): the kind's rule (a pair's A and B exchanged; ids need nothing)."""
    return get_kind(kind).swap_label(label)


def label_for_display(annotation: Annotation) -> dict:
    """A stored label in the display terms of its assignment, to reopen it for correction."""
    swapped = bool(annotation.assignment and annotation.assignment.swapped)
    return swap_label(annotation.kind, annotation.label) if swapped else annotation.label


def responses_in_display_order(assignment: Assignment) -> list[dict]:
    """The item's responses in the order this assignment shows them."""
    by_id = {r["id"]: r for r in assignment.item.responses}
    shown = [by_id[rid] for rid in assignment.order if rid in by_id]
    return shown + [r for r in assignment.item.responses if r["id"] not in assignment.order]


# Reads --------------------------------------------------------------------------------------


def project_for_annotator(*, slug: str, user) -> Project | None:
    """The project if the user has a role in it (superusers have one everywhere), in one query.
    The request path of next-item: `Project.role_of` and a project lookup cost three. The same
    rule as annotate.access.project_for_user(user, slug, Role.ANNOTATOR): change both."""
    found = assignment_sql.project_with_role(slug=slug, user_id=user.pk)
    if found is None or (found[1] is None and not user.is_superuser):
        return None
    project, project.member_role = found
    return project


def assignment_for_annotator(*, pk: int, user) -> Assignment | None:
    """The user's own assignment, with its item and project, while they are still in the
    project (annotate.access's membership rule, folded into the same query); one query."""
    assignment = assignment_sql.assignment_with_item(
        pk=pk, user_id=user.pk, member=not user.is_superuser
    )
    if assignment is not None:
        assignment.annotator = user
    return assignment


def gold_accuracy(project: Project, annotator) -> dict:
    """The annotator's gold checks in the project: {"checked", "correct", "accuracy"}."""
    checks = dict(
        Assignment.objects.filter(
            annotator=annotator, item__project=project, gold_correct__isnull=False
        )
        .values_list("gold_correct")
        .annotate(n=Count("id"))
        .order_by()
    )
    correct, checked = checks.get(True, 0), checks.get(True, 0) + checks.get(False, 0)
    return {
        "checked": checked,
        "correct": correct,
        "accuracy": correct / checked if checked else None,
    }


def annotator_progress(project: Project, annotator) -> dict:
    """Progress for the annotator's screen.

    `done` and `skipped` are the annotator's own (a count over their assignments); `complete`
    (items with `overlap` human labels) and `total` are the project's regular items routed to
    people, counted on
    indexes and cached for a few seconds so that many annotators do not recount them.
    """
    mine = dict(
        Assignment.objects.filter(annotator=annotator, item__project=project)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    key = f"assignment:progress:{project.pk}:{project.overlap}"
    counts = cache.get(key)
    if counts is None:
        regular = Item.objects.filter(
            project=project, gold_label__isnull=True, route__in=Item.TO_PEOPLE
        )
        counts = {
            "complete": regular.filter(human_label_count__gte=project.overlap).count(),
            "total": regular.count(),
        }
        cache.set(key, counts, PROGRESS_CACHE_SECONDS)
    return {
        "done": mine.get(Assignment.Status.SUBMITTED, 0),
        "skipped": mine.get(Assignment.Status.SKIPPED, 0),
        **counts,
    }


def annotations_recent(*, project: Project, annotator, limit: int = 10) -> list[Annotation]:
    """The annotator's latest human labels in the project, newest first ("my recent labels")."""
    return list(
        Annotation.objects.filter(
            item__project=project, annotator=annotator, source=Annotation.Source.HUMAN
        )
        .select_related("item", "assignment")
        .order_by("-created_at", "-id")[:limit]
    )


def item_counters_rebuild(*, project: Project) -> int:
    """Recount every item's human labels and live leases from the rows (after a raw delete or a
    data repair); returns the number of items. Not for requests: it reads the whole project."""
    from django.db.models import IntegerField, Value
    from django.db.models.functions import Coalesce

    def counted(queryset):
        counts = queryset.order_by().values("item").annotate(n=Count("id")).values("n")
        return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))

    with transaction.atomic():
        return Item.objects.filter(project=project).update(
            human_label_count=counted(
                Annotation.objects.filter(item=OuterRef("pk"), source=Annotation.Source.HUMAN)
            ),
            lease_count=counted(
                Assignment.objects.filter(item=OuterRef("pk"), status=Assignment.Status.LEASED)
            ),
        )
