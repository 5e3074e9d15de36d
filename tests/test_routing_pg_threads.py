"""Routing with many workers at once on PostgreSQL: the human budget holds while routing passes,
policy changes and imports run together, and an item routed to judges is never leased to a
person while routes flip under many annotators. (SQLite serialises writes; test_routing.py says
all there is to say there.)

Why no lease can land on an item routed away: a route leaves "human"/"both" only by
policy_save's `UPDATE ... SET route = 'pending' WHERE human_label_count = 0 AND lease_count = 0`,
run under the policy row's lock. A lease locks its item (FOR UPDATE SKIP LOCKED, `route IN
('human', 'both')` among the conditions) and raises lease_count in the same transaction. Under
READ COMMITTED each side re-checks its conditions on the row the other committed (PostgreSQL's
EvalPlanQual): an UPDATE that waited on a leased row skips it (lease_count is 1 now), a lease
that meets a row the router holds passes it over, and one that meets a row it has routed away
re-reads route and passes it over. The two interleavings are forced one at a time below.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from functools import partial

import pytest
from django.db import connection, connections, transaction

from annotate import assignment as engine
from annotate.models import Assignment, Item, Project, Role
from annotate.services import item_import
from routing import services
from routing.models import RoutingPolicy

from .factories import ItemFactory, JudgeFactory, MembershipFactory, ProjectFactory, UserFactory
from .threads import at_once

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and READ COMMITTED re-checks are PG's"
)

LABEL = {"choice": "A", "strength": 1, "rationale": ""}
BUDGET = 25  # items people may label (overlap 1)


def people_routed(project) -> int:
    """Non-gold items routed to people, counted in one statement (one snapshot)."""
    return Item.objects.filter(
        project=project, gold_label__isnull=True, route__in=Item.TO_PEOPLE
    ).count()


def import_batch(project_id: int, start: int, n: int) -> None:
    rows = "".join(
        json.dumps({"id": f"new-{start + k}", "prompt": f"p{start + k}", "responses": ["a", "b"]})
        + "\n"
        for k in range(n)
    )
    project = Project.objects.get(pk=project_id)  # as a request would: read fresh
    report = item_import(project=project, stream=io.BytesIO(rows.encode()), filename="x.jsonl")
    assert report.created == n, report


# Budget ------------------------------------------------------------------------------------


def test_the_budget_holds_with_routers_policy_changes_and_imports_at_once(transactional_db):
    project = ProjectFactory(overlap=1, gold_rate=0)
    judge = JudgeFactory(project=project, name="router-judge")
    ItemFactory.create_batch(40, project=project)
    ItemFactory.create_batch(5, project=project, gold_label={"choice": "A"})  # never counted
    settings = itertools.cycle(
        [
            {"policy": "random", "params": {"fraction": 1.0}},
            {"policy": "all_human"},
            {"policy": "random", "params": {"fraction": 0.5}, "seed": 3},
            {"policy": "all_judge"},
        ]
    )
    lock = threading.Lock()
    done = threading.Event()
    seen: list[int] = []

    def change_policy() -> None:
        for _ in range(6):
            with lock:
                data = next(settings)
            services.policy_save(
                project=Project.objects.get(pk=project.pk),
                data={**data, "judge": judge, "budget_labels": BUDGET, "audit_share": 0.0},
            )

    def route() -> None:
        for _ in range(8):
            services.route_items(project=Project.objects.get(pk=project.pk), trigger="thread")

    def watch() -> None:
        try:
            while not done.is_set():
                seen.append(people_routed(project))
                time.sleep(0.005)
        finally:
            connections.close_all()

    def imports(start: int) -> None:
        for k in range(6):
            import_batch(project.pk, start + 10 * k, 10)

    services.policy_save(
        project=project,
        data={"policy": "all_human", "judge": judge, "budget_labels": BUDGET, "audit_share": 0.0},
    )
    assert people_routed(project) == BUDGET
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        at_once(
            [change_policy, change_policy]
            + [route] * 4
            + [partial(imports, 0), partial(imports, 1000)],
            timeout=240,
        )
    finally:
        done.set()
        watcher.join()
    assert len(seen) > 10 and max(seen) <= BUDGET, max(seen)
    assert Item.objects.filter(project=project).count() == 45 + 120
    # After a last pass under a policy that wants people for every item, the budget is spent
    # exactly: not exceeded, not left unused.
    services.policy_save(
        project=project,
        data={"policy": "all_human", "judge": judge, "budget_labels": BUDGET, "audit_share": 0.0},
    )
    services.route_items(project=project)
    assert people_routed(project) == BUDGET
    assert services.budget(project)["people_items_left"] == 0


# Never leased when routed to judges --------------------------------------------------------


def test_an_item_routed_to_judges_is_never_leased_while_routes_flip(transactional_db):
    project = ProjectFactory(overlap=1, gold_rate=0, lease_minutes=600)
    judge = JudgeFactory(project=project, name="router-judge")
    ItemFactory.create_batch(300, project=project)
    users = [UserFactory(username=f"annotator{i}") for i in range(8)]
    for user in users:
        MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    flips = itertools.cycle(
        [
            {"policy": "all_judge"},
            {"policy": "all_human"},
            {"policy": "random", "params": {"fraction": 0.5}},
            {"policy": "random", "params": {"fraction": 0.5}, "seed": 9},
        ]
    )
    leased: list[tuple[int, str]] = []  # (item, route read right after the lease)
    lock = threading.Lock()

    def annotate(user) -> None:
        for _ in range(40):
            lease = engine.assignment_next(project=project, annotator=user)
            if lease is None:
                time.sleep(0.002)
                continue
            route = Item.objects.values_list("route", flat=True).get(pk=lease.item_id)
            with lock:
                leased.append((lease.item_id, route))
            if lease.item_id % 2:  # half submitted, half kept leased
                engine.annotation_submit(
                    assignment=lease, label=LABEL, time_spent_ms=1, annotator=user
                )

    def router() -> None:
        for data in itertools.islice(flips, 24):
            services.policy_save(
                project=Project.objects.get(pk=project.pk),
                data={**data, "judge": judge, "audit_share": 0.1},
            )

    at_once([partial(annotate, user) for user in users] + [router], timeout=240)

    assert len(leased) > 50
    # A started item keeps its route, so the route read after the lease is the one it was
    # leased under: always one for people.
    assert {route for _, route in leased} <= set(Item.TO_PEOPLE)
    started = Item.objects.filter(assignments__isnull=False).distinct()
    assert set(started.values_list("route", flat=True)) <= set(Item.TO_PEOPLE)
    assert not Assignment.objects.filter(item__route__in=["judge", "pending"]).exists()
    # The flips did move what nobody had started.
    assert RoutingPolicy.objects.get(project=project).routed_at is not None
    assert Item.objects.filter(project=project, route="judge").exists() or (
        services.policy_for(project).policy != "all_judge"
    )


# The two interleavings of a lease and a policy change, forced -----------------------------------


def waiting_on_a_lock(pid: int, timeout: float = 10) -> bool:
    """Whether backend `pid` is (within `timeout`) waiting for a lock."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return True
            time.sleep(0.01)
    return False


def test_a_policy_change_waiting_on_a_lease_leaves_the_leased_item_to_people(transactional_db):
    project = ProjectFactory(overlap=1, gold_rate=0)
    judge = JudgeFactory(project=project, name="router-judge")
    items = ItemFactory.create_batch(3, project=project)
    user = UserFactory(username="first")
    MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    leased, release, router_pid = threading.Event(), threading.Event(), []
    got = []

    def lease() -> None:
        with transaction.atomic():
            got.append(engine.assignment_next(project=project, annotator=user))
            leased.set()
            release.wait(20)  # the lease stays uncommitted while the router waits on its row

    def change() -> None:
        leased.wait(20)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            router_pid.append(cursor.fetchone()[0])
        services.policy_save(
            project=Project.objects.get(pk=project.pk),
            data={"policy": "all_judge", "judge": judge, "audit_share": 0.0},
        )

    def referee() -> None:
        leased.wait(20)
        while not router_pid:
            time.sleep(0.005)
        assert waiting_on_a_lock(router_pid[0]), "the policy change did not wait on the lease"
        release.set()

    at_once([lease, change, referee], timeout=60)
    (lease_row,) = got
    routes = dict(Item.objects.values_list("pk", "route"))
    assert routes.pop(lease_row.item_id) == "human"
    assert set(routes.values()) == {"judge"} and len(routes) == len(items) - 1


def test_a_lease_meeting_items_being_routed_away_gets_none_of_them(transactional_db):
    project = ProjectFactory(overlap=1, gold_rate=0)
    judge = JudgeFactory(project=project, name="router-judge")
    ItemFactory.create_batch(3, project=project)
    user = UserFactory(username="second")
    MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    routed, release = threading.Event(), threading.Event()
    got = []

    def change() -> None:
        with transaction.atomic():
            services.policy_save(
                project=Project.objects.get(pk=project.pk),
                data={"policy": "all_judge", "judge": judge, "audit_share": 0.0},
            )
            routed.set()
            release.wait(20)  # routed, not committed: the items' rows are held

    def lease() -> None:
        routed.wait(20)
        got.append(engine.assignment_next(project=project, annotator=user))  # skips held rows
        release.set()
        time.sleep(0.05)
        got.append(engine.assignment_next(project=project, annotator=user))  # reads the commit

    at_once([change, lease], timeout=60)
    assert got[0] is None
    time.sleep(0.1)
    assert engine.assignment_next(project=project, annotator=user) is None
    assert set(Item.objects.values_list("route", flat=True)) == {"judge"}
    assert not Assignment.objects.exists()


def test_a_policy_change_waits_for_an_import_in_flight_and_routes_its_items(transactional_db):
    project = ProjectFactory(overlap=1, gold_rate=0)
    judge = JudgeFactory(project=project, name="router-judge")
    imported, release, router_pid = threading.Event(), threading.Event(), []

    def importing() -> None:
        # Everything to people, no cap: the batch reads "human" for its items.
        with transaction.atomic():
            import_batch(project.pk, 0, 10)
            imported.set()
            release.wait(20)  # the batch stays uncommitted while the policy changes

    def change() -> None:
        imported.wait(20)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            router_pid.append(cursor.fetchone()[0])
        services.policy_save(
            project=Project.objects.get(pk=project.pk),
            data={"policy": "all_human", "judge": judge, "budget_labels": 3, "audit_share": 0.0},
        )

    def referee() -> None:
        imported.wait(20)
        while not router_pid:
            time.sleep(0.005)
        try:
            assert waiting_on_a_lock(router_pid[0], timeout=5), "the change did not wait"
        finally:
            release.set()

    at_once([importing, change, referee], timeout=60)
    assert Item.objects.count() == 10
    assert people_routed(project) == 3  # the cap holds for the items imported meanwhile
