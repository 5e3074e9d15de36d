"""PostgreSQL: the usual next-item request sends BEGIN, the membership lock, the lease statement
and COMMIT in one pipeline (annotate.assignment_sql.lease with commit). These tests run outside
a test transaction (transactional_db), where that path is taken."""

from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg.pq import TransactionStatus

from annotate import assignment as engine
from annotate import assignment_sql
from annotate.models import Assignment, Kind, Role

from .factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory
from .threads import at_once

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="pipeline mode is PostgreSQL's"
)


def _annotator(project, name: str = "annotator"):
    user = UserFactory(username=name)
    MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    return user


def _lease_committed(project, user, now, expires):
    """assignment_sql.lease of a regular item with commit=True, as assignment_next sends it."""
    return assignment_sql.lease(
        project_id=project.pk,
        annotator_id=user.pk,
        gold=False,
        overlap=1,
        swapped=False,
        now=now,
        expires=expires,
        commit=True,
    )


def _other_connection():
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=connection.settings_dict["NAME"],
    )


def test_next_is_begin_lock_lease_commit_and_committed(transactional_db, monkeypatch):
    # Due leases were looked for by the first call; none of a slow machine's seconds between
    # the two calls may bring that query back into the count.
    monkeypatch.setattr(engine, "RECLAIM_EVERY", timedelta(days=1))
    project = ProjectFactory(kind=Kind.PAIRWISE, gold_rate=0)
    ItemFactory.create_batch(2, project=project)
    user = _annotator(project)
    engine.assignment_next(project=project, annotator=user)  # statements prepared
    with CaptureQueriesContext(connection) as ctx:
        lease = engine.assignment_next(project=project, annotator=user)
    sql = [query["sql"] for query in ctx.captured_queries]
    assert sql[0] == "BEGIN" and "FOR NO KEY UPDATE" in sql[1]
    assert "SKIP LOCKED" in sql[2] and sql[3] == "COMMIT" and len(sql) == 4
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    # Another session sees the lease: it was committed.
    with _other_connection() as other:
        status = other.execute(
            "SELECT status FROM annotate_assignment WHERE id = %s", [lease.pk]
        ).fetchone()
    assert status == ("leased",)


def test_next_returns_the_own_lease_through_the_pipeline(transactional_db):
    project = ProjectFactory(kind=Kind.PAIRWISE, gold_rate=0)
    ItemFactory.create_batch(3, project=project)
    user = _annotator(project)
    first = engine.assignment_next(project=project, annotator=user)
    again = engine.assignment_next(project=project, annotator=user)
    assert again.pk == first.pk and again.item_id == first.item_id
    assert again.order == first.order and again.swapped == first.swapped
    assert first.item.lease_count == again.item.lease_count == 1
    assert Assignment.objects.count() == 1


def test_parallel_next_of_one_annotator_gives_one_lease(transactional_db):
    project = ProjectFactory(kind=Kind.PAIRWISE, gold_rate=0)
    ItemFactory.create_batch(5, project=project)
    user = _annotator(project)

    def click() -> int:
        return engine.assignment_next(project=project, annotator=user).pk

    leases = at_once([click] * 8)
    assert len(leases) == 8 and len(set(leases)) == 1
    assert Assignment.objects.count() == 1


def test_failed_pipelined_lease_rolls_back_and_the_connection_still_works(transactional_db):
    project = ProjectFactory(kind=Kind.PAIRWISE, gold_rate=0)
    ItemFactory.create_batch(2, project=project)
    user = _annotator(project)
    now = timezone.now()
    with pytest.raises(DatabaseError):
        _lease_committed(project, user, now, expires="not a time")
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert not Assignment.objects.exists()
    # The membership lock went with the rollback: another session can take it at once.
    with _other_connection() as other:
        other.execute("SET lock_timeout = '2s'")
        other.execute(
            "SELECT FROM annotate_membership WHERE user_id = %s FOR NO KEY UPDATE", [user.pk]
        )
    lease = engine.assignment_next(project=project, annotator=user, now=now + timedelta(1))
    assert lease is not None and Assignment.objects.count() == 1


def test_commit_needs_autocommit(transactional_db):
    project = ProjectFactory(kind=Kind.PAIRWISE, gold_rate=0)
    user = _annotator(project)
    now = timezone.now()
    with pytest.raises(RuntimeError), transaction.atomic():
        _lease_committed(project, user, now, expires=now)
