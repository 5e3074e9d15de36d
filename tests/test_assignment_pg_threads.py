"""Many annotators at once on PostgreSQL: row locks with SKIP LOCKED keep overlap exact and
lose no submission. (SQLite serialises writes; there the plain tests say all there is to say.)"""

import threading
from collections import Counter
from functools import partial

import pytest
from django.db import connection

from annotate import assignment as engine
from annotate.models import Annotation, Assignment, Item, Role

from .factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory
from .threads import at_once

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and SKIP LOCKED are PostgreSQL's"
)

THREADS = 16
ITEMS = 60
OVERLAP = 2
LABEL = {"choice": "A", "strength": 1}


def test_parallel_annotators_never_over_assign(transactional_db):
    project = ProjectFactory(overlap=OVERLAP, gold_rate=0)
    ItemFactory.create_batch(ITEMS, project=project)
    users = [UserFactory(username=f"worker{i}") for i in range(THREADS)]
    for user in users:
        MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    submitted: list[tuple[int, int, int]] = []  # (assignment, annotation, item)
    lock = threading.Lock()

    def annotate(user) -> None:
        while (lease := engine.assignment_next(project=project, annotator=user)) is not None:
            annotation = engine.annotation_submit(
                assignment=lease, label=LABEL, time_spent_ms=1, annotator=user
            )
            with lock:
                submitted.append((lease.pk, annotation.pk, lease.item_id))

    at_once([partial(annotate, user) for user in users], timeout=120)

    # Every item got exactly `overlap` labels: none more, and the pool was emptied.
    per_item = Counter(item_id for _, _, item_id in submitted)
    assert len(submitted) == ITEMS * OVERLAP
    assert set(per_item.values()) == {OVERLAP} and len(per_item) == ITEMS
    # No duplicate lease: one assignment per (item, annotator), each submitted once.
    pairs = Assignment.objects.values_list("item_id", "annotator_id")
    assert len(pairs) == len(set(pairs)) == ITEMS * OVERLAP
    assert not Assignment.objects.exclude(status=Assignment.Status.SUBMITTED).exists()
    # Every submit was stored, linked to its assignment.
    stored = dict(Annotation.objects.values_list("pk", "assignment_id"))
    assert {(a, n) for a, n, _ in submitted} == {(a, n) for n, a in stored.items()}
    # The counters agree with the rows.
    for item in Item.objects.all():
        assert (item.human_label_count, item.lease_count) == (OVERLAP, 0)
    # Work was spread over the annotators, not done by one.
    assert len({a.annotator_id for a in Assignment.objects.all()}) > 1


def test_parallel_double_submits_store_one_annotation(transactional_db):
    project = ProjectFactory(overlap=1, gold_rate=0)
    item = ItemFactory(project=project)
    user = UserFactory(username="clicker")
    MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    lease = engine.assignment_next(project=project, annotator=user)

    def click():
        return engine.annotation_submit_or_get(assignment=lease, label=LABEL, time_spent_ms=1)

    results = at_once([click] * 8)
    assert sum(created for _, created in results) == 1
    assert len({annotation.pk for annotation, _ in results}) == 1
    assert Annotation.objects.count() == 1
    item.refresh_from_db()
    assert (item.human_label_count, item.lease_count) == (1, 0)
