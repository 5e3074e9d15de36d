"""The assignment engine: overlap, order, leases and expiry, gold, position swaps, submissions."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotate import assignment as engine
from annotate.assignment import AssignmentConflict
from annotate.models import Annotation, Assignment, Item, Role
from annotate.services import ServiceError

from .factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory

GOOD = {"choice": "A", "strength": 2, "rationale": ""}


@pytest.fixture
def pairs(project):
    project.gold_rate = 0
    project.save()
    return project


def annotators(project, count: int) -> list:
    users = [UserFactory(username=f"annotator{i}") for i in range(count)]
    for user in users:
        MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    return users


def label_all(project, user) -> list[Item]:
    """Next → submit until nothing is left; the items in the order they came."""
    items = []
    while (assignment := engine.assignment_next(project=project, annotator=user)) is not None:
        engine.annotation_submit(assignment=assignment, label=GOOD, time_spent_ms=100)
        items.append(assignment.item)
    return items


def counters(item: Item) -> tuple[int, int]:
    item.refresh_from_db()
    return item.human_label_count, item.lease_count


# Overlap and order --------------------------------------------------------------------------


def test_overlap_respected(pairs):
    pairs.overlap = 2
    pairs.save()
    items = ItemFactory.create_batch(3, project=pairs)
    for user in annotators(pairs, 4):
        label_all(pairs, user)
    for item in items:
        assert item.annotations.filter(source="human").count() == 2
        assert counters(item) == (2, 0)


def test_live_leases_count_toward_overlap(pairs):
    ItemFactory(project=pairs)
    bob, charlie = annotators(pairs, 2)
    assert engine.assignment_next(project=pairs, annotator=bob) is not None
    assert engine.assignment_next(project=pairs, annotator=charlie) is None


def test_priority_then_id_among_unlabeled_items(pairs):
    first = ItemFactory(project=pairs, priority=0)
    high = ItemFactory(project=pairs, priority=5)
    last = ItemFactory(project=pairs, priority=0)
    (user,) = annotators(pairs, 1)
    assert label_all(pairs, user) == [high, first, last]


def test_breadth_first_before_priority(pairs):
    pairs.overlap = 3
    pairs.save()
    urgent = ItemFactory(project=pairs, priority=10)
    plain = ItemFactory(project=pairs, priority=0)
    first, second = annotators(pairs, 2)
    got = engine.assignment_next(project=pairs, annotator=first)
    assert got.item == urgent
    engine.annotation_submit(assignment=got, label=GOOD, time_spent_ms=None)
    assert engine.assignment_next(project=pairs, annotator=second).item == plain


def test_never_the_same_item_twice(pairs):
    pairs.overlap = 5
    pairs.save()
    ItemFactory.create_batch(2, project=pairs)
    (user,) = annotators(pairs, 1)
    first = engine.assignment_next(project=pairs, annotator=user)
    engine.assignment_skip(assignment=first, reason="Not my language")
    second = engine.assignment_next(project=pairs, annotator=user)
    assert second.item != first.item
    engine.annotation_submit(assignment=second, label=GOOD, time_spent_ms=1)
    assert engine.assignment_next(project=pairs, annotator=user) is None


def test_own_lease_returned_first(pairs):
    ItemFactory.create_batch(3, project=pairs)
    (user,) = annotators(pairs, 1)
    first = engine.assignment_next(project=pairs, annotator=user)
    again = engine.assignment_next(project=pairs, annotator=user)
    assert again.pk == first.pk
    assert Assignment.objects.filter(annotator=user).count() == 1
    assert counters(first.item) == (0, 1)


def test_lease_expiry_follows_project_setting(pairs):
    pairs.lease_minutes = 5
    pairs.save()
    ItemFactory(project=pairs)
    (user,) = annotators(pairs, 1)
    now = timezone.now()
    got = engine.assignment_next(project=pairs, annotator=user, now=now)
    assert got.expires_at == now + timedelta(minutes=5)


# Leases -------------------------------------------------------------------------------------


def test_expired_lease_returns_item(pairs):
    item = ItemFactory(project=pairs)
    bob, charlie = annotators(pairs, 2)
    now = timezone.now()
    lost = engine.assignment_next(project=pairs, annotator=bob, now=now)
    later = now + timedelta(minutes=pairs.lease_minutes + 1)
    taken = engine.assignment_next(project=pairs, annotator=charlie, now=later)
    assert taken.item == item
    lost.refresh_from_db()
    assert lost.status == Assignment.Status.EXPIRED
    assert counters(item) == (0, 1)
    with pytest.raises(AssignmentConflict, match="expired"):
        engine.annotation_submit(assignment=lost, label=GOOD, time_spent_ms=None)
    assert counters(item) == (0, 1)


def test_expired_lease_can_be_submitted_while_item_has_room(pairs):
    item = ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    now = timezone.now()
    lease = engine.assignment_next(project=pairs, annotator=bob, now=now)
    assert engine.leases_reclaim(now=now + timedelta(hours=1)) == 1
    assert counters(item) == (0, 0)
    engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=5)
    assert counters(item) == (1, 0)


def test_own_expired_lease_is_leased_again(pairs):
    item = ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    now = timezone.now()
    first = engine.assignment_next(project=pairs, annotator=bob, now=now)
    again = engine.assignment_next(project=pairs, annotator=bob, now=now + timedelta(hours=1))
    assert again.pk == first.pk and again.item == item
    assert again.status == Assignment.Status.LEASED
    assert again.expires_at > now + timedelta(hours=1)
    assert counters(item) == (0, 1)


def test_release_returns_item_now(pairs):
    item = ItemFactory(project=pairs)
    bob, charlie = annotators(pairs, 2)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    engine.assignment_release(assignment=lease, annotator=bob)
    assert counters(item) == (0, 0)
    assert engine.assignment_next(project=pairs, annotator=charlie).item == item


# Submitting ---------------------------------------------------------------------------------


def test_double_submit_stores_one_annotation(pairs):
    item = ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    first, created = engine.annotation_submit_or_get(
        assignment=lease, label=GOOD, time_spent_ms=10, request_id="r1"
    )
    again, created_again = engine.annotation_submit_or_get(
        assignment=lease, label={"choice": "B", "strength": 1}, time_spent_ms=99
    )
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk and again.label["choice"] == first.label["choice"]
    assert Annotation.objects.filter(item=item).count() == 1
    assert counters(item) == (1, 0)
    lease.refresh_from_db()
    assert lease.status == Assignment.Status.SUBMITTED and lease.request_id == "r1"


def test_annotation_keeps_provenance(pairs):
    ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    annotation = engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=1234)
    assert annotation.source == Annotation.Source.HUMAN
    assert (annotation.annotator, annotation.assignment) == (bob, lease)
    assert (annotation.kind, annotation.time_spent_ms) == ("pairwise", 1234)


@pytest.mark.parametrize(
    ("swapped", "shown", "stored"), [(True, "A", "B"), (True, "B", "A"), (False, "A", "A")]
)
def test_swapped_label_stored_unswapped(pairs, monkeypatch, swapped, shown, stored):
    item = ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    monkeypatch.setattr(engine._random, "random", lambda: 0.0 if swapped else 0.9)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    ids = [r["id"] for r in item.responses]
    assert lease.swapped is swapped
    assert lease.order == (ids[::-1] if swapped else ids)
    shown_ids = [r["id"] for r in engine.responses_in_display_order(lease)]
    assert shown_ids == lease.order
    label = {"choice": shown, "strength": 3}
    annotation = engine.annotation_submit(assignment=lease, label=label, time_spent_ms=None)
    assert annotation.label["choice"] == stored
    assert engine.label_for_display(annotation)["choice"] == shown


def test_ties_are_not_swapped(pairs, monkeypatch):
    ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    monkeypatch.setattr(engine._random, "random", lambda: 0.0)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    annotation = engine.annotation_submit(
        assignment=lease, label={"choice": "tie"}, time_spent_ms=None
    )
    assert annotation.label == {"choice": "tie", "strength": None, "rationale": ""}


@pytest.mark.parametrize("swapped", [False, True])
def test_the_choice_and_strength_columns_follow_the_stored_label(pairs, monkeypatch, swapped):
    ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    monkeypatch.setattr(engine._random, "random", lambda: 0.0 if swapped else 0.9)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    label = {"choice": "A", "strength": 3}
    annotation = engine.annotation_submit(assignment=lease, label=label, time_spent_ms=None)
    stored = "B" if swapped else "A"
    assert Annotation.objects.values_list("choice", "strength").get() == (stored, 3)
    engine.annotation_correct(annotation=annotation, label={"choice": "tie"}, annotator=bob)
    assert (annotation.choice, annotation.strength) == ("tie", None)
    engine.annotation_correct(
        annotation=annotation, label={"choice": "B", "strength": 1}, annotator=bob
    )
    assert Annotation.objects.values_list("choice", "strength").get() == (
        "A" if swapped else "B",
        1,
    )


def test_listwise_order_is_a_permutation(alice):
    project = ProjectFactory(kind="listwise", gold_rate=0)
    item = ItemFactory(project=project)
    (bob,) = annotators(project, 1)
    lease = engine.assignment_next(project=project, annotator=bob)
    assert sorted(lease.order) == sorted(r["id"] for r in item.responses)
    assert lease.swapped is False
    ranking = list(reversed(lease.order))
    annotation = engine.annotation_submit(
        assignment=lease, label={"ranking": ranking}, time_spent_ms=None
    )
    assert annotation.label == {"ranking": ranking}
    # The pairwise columns stay empty for the other kinds.
    assert Annotation.objects.values_list("choice", "strength").get() == (None, None)


@pytest.mark.parametrize(
    ("label", "field"),
    [
        ("A", "label"),
        ({}, "label.choice"),
        ({"choice": "C"}, "label.choice"),
        ({"choice": "A", "strength": 4}, "label.strength"),
        ({"choice": "A", "strength": 1, "extra": 1}, "label.extra"),
    ],
)
def test_bad_label_names_the_field(pairs, label, field):
    item = ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    with pytest.raises(ServiceError) as exc:
        engine.annotation_submit(assignment=lease, label=label, time_spent_ms=None)
    assert exc.value.field == field
    assert counters(item) == (0, 1)
    assert not Annotation.objects.exists()


@pytest.mark.parametrize("time_spent_ms", [-1, 2**31, "10", True, 1.5])
def test_bad_time_spent(pairs, time_spent_ms):
    ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    with pytest.raises(ServiceError) as exc:
        engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=time_spent_ms)
    assert exc.value.field == "time_spent_ms"


def test_wrong_user_cannot_submit_skip_or_release(pairs):
    item = ItemFactory(project=pairs)
    bob, charlie = annotators(pairs, 2)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    with pytest.raises(ServiceError, match="someone else"):
        engine.annotation_submit(
            assignment=lease, label=GOOD, time_spent_ms=None, annotator=charlie
        )
    with pytest.raises(ServiceError, match="someone else"):
        engine.assignment_skip(assignment=lease, reason="no", annotator=charlie)
    with pytest.raises(ServiceError, match="someone else"):
        engine.assignment_release(assignment=lease, annotator=charlie)
    assert counters(item) == (0, 1)


# Skipping -----------------------------------------------------------------------------------


def test_skip(pairs):
    item = ItemFactory(project=pairs)
    bob, charlie = annotators(pairs, 2)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    skipped = engine.assignment_skip(assignment=lease, reason="  Offensive content ")
    assert (skipped.status, skipped.skip_reason) == (Assignment.Status.SKIPPED, "Offensive content")
    assert skipped.completed_at is not None
    assert counters(item) == (0, 0)
    assert engine.assignment_skip(assignment=lease, reason="again").status == "skipped"
    with pytest.raises(AssignmentConflict):
        engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=None)
    assert engine.assignment_next(project=pairs, annotator=bob) is None
    assert engine.assignment_next(project=pairs, annotator=charlie).item == item


def test_skip_needs_a_reason(pairs):
    ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    with pytest.raises(ServiceError) as exc:
        engine.assignment_skip(assignment=lease, reason="  ")
    assert exc.value.field == "reason"


def test_cannot_skip_a_submitted_item(pairs):
    ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=None)
    with pytest.raises(AssignmentConflict):
        engine.assignment_skip(assignment=lease, reason="too late")


# Gold ---------------------------------------------------------------------------------------


def test_gold_rate(pairs):
    pairs.gold_rate = 0.25
    pairs.save()
    ItemFactory.create_batch(40, project=pairs)
    ItemFactory.create_batch(20, project=pairs, gold_label={"choice": "A", "strength": 2})
    (bob,) = annotators(pairs, 1)
    got = []
    for _ in range(40):
        lease = engine.assignment_next(project=pairs, annotator=bob)
        engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=None)
        got.append(lease.item.gold_label is not None)
    assert sum(got) == 10
    # Spread out, not bunched: never more than one gold item in a row at this rate.
    assert not any(a and b for a, b in zip(got, got[1:], strict=False))


def test_gold_items_ignore_overlap_and_come_once_each(pairs):
    pairs.gold_rate = 1.0
    pairs.save()
    gold = ItemFactory(project=pairs, gold_label={"choice": "A", "strength": 1})
    regular = ItemFactory(project=pairs)
    for user in annotators(pairs, 3):
        assert label_all(pairs, user)[0] == gold
    assert counters(gold) == (3, 0)
    assert counters(regular) == (1, 0)


def test_no_gold_items_left_gives_regular_ones(pairs):
    pairs.gold_rate = 1.0
    pairs.save()
    regular = ItemFactory(project=pairs)
    (bob,) = annotators(pairs, 1)
    assert label_all(pairs, bob) == [regular]


def test_gold_accuracy(pairs, monkeypatch):
    pairs.gold_rate = 1.0
    pairs.save()
    ItemFactory.create_batch(4, project=pairs, gold_label={"choice": "A", "strength": 3})
    (bob,) = annotators(pairs, 1)
    assert engine.gold_accuracy(pairs, bob) == {"checked": 0, "correct": 0, "accuracy": None}
    for i in range(4):
        lease = engine.assignment_next(project=pairs, annotator=bob)
        real = "A" if i < 3 else "B"
        # The annotator answers in display terms; the check is on the real responses.
        shown = engine.swap_label("pairwise", {"choice": real})["choice"] if lease.swapped else real
        label = {"choice": shown, "strength": 1}
        engine.annotation_submit(assignment=lease, label=label, time_spent_ms=None)
    assert engine.gold_accuracy(pairs, bob) == {"checked": 4, "correct": 3, "accuracy": 0.75}


# Corrections, progress ----------------------------------------------------------------------


def test_annotation_correct_updates_in_place(pairs, monkeypatch):
    ItemFactory(project=pairs)
    bob, charlie = annotators(pairs, 2)
    monkeypatch.setattr(engine._random, "random", lambda: 0.0)
    lease = engine.assignment_next(project=pairs, annotator=bob)
    annotation = engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=None)
    assert engine.annotations_recent(project=pairs, annotator=bob) == [annotation]
    with pytest.raises(ServiceError):
        engine.annotation_correct(annotation=annotation, label=GOOD, annotator=charlie)
    with pytest.raises(ServiceError) as exc:
        engine.annotation_correct(annotation=annotation, label={"choice": "X"}, annotator=bob)
    assert exc.value.field == "label.choice"
    fixed = engine.annotation_correct(
        annotation=annotation, label={"choice": "B", "strength": 1}, annotator=bob
    )
    stored = Annotation.objects.get()
    assert stored.pk == annotation.pk == fixed.pk
    assert stored.label == {"choice": "A", "strength": 1, "rationale": ""}  # shown B is real A
    assert stored.updated_at is not None and stored.created_at < stored.updated_at
    assert (stored.annotator, stored.assignment) == (bob, lease)


def test_annotator_progress(pairs):
    pairs.overlap = 2
    pairs.save()
    ItemFactory.create_batch(3, project=pairs)
    ItemFactory(project=pairs, gold_label={"choice": "A", "strength": 1})
    bob, charlie = annotators(pairs, 2)
    label_all(pairs, bob)
    lease = engine.assignment_next(project=pairs, annotator=charlie)
    engine.assignment_skip(assignment=lease, reason="unclear")
    engine.annotation_submit(
        assignment=engine.assignment_next(project=pairs, annotator=charlie),
        label=GOOD,
        time_spent_ms=None,
    )
    engine.cache.clear()
    mine = engine.annotator_progress(pairs, charlie)
    assert mine == {"done": 1, "skipped": 1, "complete": 1, "total": 3}
    assert engine.annotator_progress(pairs, bob)["done"] == 3


def test_item_counters_rebuild_agrees(pairs):
    pairs.overlap = 2
    pairs.save()
    items = ItemFactory.create_batch(4, project=pairs)
    bob, charlie = annotators(pairs, 2)
    label_all(pairs, bob)
    engine.assignment_next(project=pairs, annotator=charlie)
    before = [counters(item) for item in items]
    Item.objects.update(human_label_count=0, lease_count=0)
    assert engine.item_counters_rebuild(project=pairs) == 4
    assert [counters(item) for item in items] == before


# Cost ---------------------------------------------------------------------------------------


def _queries_for_next(project, user) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert engine.assignment_next(project=project, annotator=user) is not None
    return len(ctx.captured_queries)


def _grown_project(count: int):
    project = ProjectFactory(gold_rate=0.5, overlap=2)
    Item.objects.bulk_create(
        Item(
            project=project,
            external_id=f"x{i}",
            prompt="Q?",
            responses=[{"id": "1", "text": "a"}, {"id": "2", "text": "b"}],
            gold_label={"choice": "A"} if i % 10 == 0 else None,
        )
        for i in range(count)
    )
    return project


def test_queries_for_next_do_not_grow_with_the_project(
    db, django_assert_max_num_queries, monkeypatch
):
    # Due leases are looked for on every call here, not every few seconds, so that a slow
    # machine crossing that interval does not change the count.
    monkeypatch.setattr(engine, "RECLAIM_EVERY", timedelta(0))
    small, large = _grown_project(10), _grown_project(500)
    (small_user,) = annotators(small, 1)
    large_user = UserFactory(username="large")
    MembershipFactory(project=large, user=large_user)
    small_counts = []
    for _ in range(4):
        small_counts.append(_queries_for_next(small, small_user))
        lease = Assignment.objects.filter(annotator=small_user, status="leased").get()
        engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=None)
    most = max(small_counts)
    assert most <= 10  # savepoints included: the test runs inside a transaction
    for _ in range(4):
        with django_assert_max_num_queries(most):
            lease = engine.assignment_next(project=large, annotator=large_user)
        engine.annotation_submit(assignment=lease, label=GOOD, time_spent_ms=None)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans only")
@pytest.mark.parametrize("routed", [False, True], ids=["no-routing", "half-to-judges"])
def test_next_item_query_is_an_index_scan_with_limit(db, routed):
    project = _grown_project(20_000)
    if routed:
        # Routing on: every other item routed to judges only, out of item_next_idx.
        Item.objects.annotate(odd=F("id") % 2).filter(
            project=project, gold_label__isnull=True, odd=1
        ).update(route="judge")
    user = UserFactory(username="planner")
    MembershipFactory(project=project, user=user)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_item")
        cursor.execute("ANALYZE annotate_assignment")
    project.gold_rate = 0
    project.save()
    with CaptureQueriesContext(connection) as ctx:
        engine.assignment_next(project=project, annotator=user)
    (sql,) = [q["sql"] for q in ctx.captured_queries if "SKIP LOCKED" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # The candidate: an index scan in the wanted order, probing the annotator's assignment
    # per row, not an anti join over all their assignments.
    candidate = plan.partition("CTE candidate")[2].partition("CTE leased")[0]
    assert "Index Scan using item_next_idx" in candidate, plan
    assert "Sort" not in candidate and "Anti Join" not in candidate, plan
    assert "Seq Scan on annotate_item" not in plan, plan
