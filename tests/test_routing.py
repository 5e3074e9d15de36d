"""Routing: policies decide, the router grants people under the budget, keeps the audit slice,
promotes unsure verdicts, and the assignment engine never leases an item routed to judges.

Verdicts are written as the judges' runner writes them (Verdict rows, reward-model passes with
their scores); the judge runs themselves are tested in test_judge_runs.py and the loop through
a real runner in test_routing_loop.py.
"""

from __future__ import annotations

import pytest

from annotate import assignment
from annotate.models import Item, Role
from judges.models import JudgeRun, Judgment, Verdict
from routing import services
from routing.models import RouteDecision
from routing.services import ServiceError

from .factories import ItemFactory, JudgeFactory, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def judge(project):
    return JudgeFactory(project=project, name="rm", backend="reward_model")


def make_items(project, n, start=0):
    return [ItemFactory(project=project, external_id=f"i{start + k}") for k in range(n)]


def judged(judge, item, status="agreed", scores=None, agreement=None):
    """A verdict of `judge` on `item`, as the runner writes it (with its pass's scores)."""
    run = JudgeRun.objects.filter(project=item.project).first() or JudgeRun.objects.create(
        project=item.project, selection="all"
    )
    if scores is not None:
        Judgment.objects.create(
            run=run,
            item=item,
            judge=judge,
            prompt_version="v1",
            status="done",
            extra={"scores": scores},
        )
    Verdict.objects.create(
        run=run,
        item=item,
        judge=judge,
        prompt_version="v1",
        status=status,
        label={"choice": "A"} if status == "agreed" else None,
        agreement=agreement,
    )


def routes(project) -> dict[str, str]:
    return dict(Item.objects.filter(project=project).values_list("external_id", "route"))


def save(project, **data):
    return services.policy_save(project=project, data={"audit_share": 0.0, **data})


def test_a_new_project_sends_everything_to_people(project):
    make_items(project, 3)
    assert set(routes(project).values()) == {"human"}
    assert services.policy_for(project).policy == "all_human"


def test_all_judge_routes_every_unstarted_item_to_judges_and_new_items_wait(project, judge):
    make_items(project, 4)
    save(project, policy="all_judge", judge=judge)
    assert set(routes(project).values()) == {"judge"}
    project.refresh_from_db()
    assert project.new_item_route == "pending"
    decision = RouteDecision.objects.get(item__external_id="i0")
    assert decision.policy == "all_judge" and decision.route == "judge"


def test_an_item_routed_to_judges_is_never_leased(project, judge, annotator):
    make_items(project, 3)
    save(project, policy="all_judge", judge=judge)
    assert assignment.assignment_next(project=project, annotator=annotator) is None
    Item.objects.filter(external_id="i1").update(route="human")
    got = assignment.assignment_next(project=project, annotator=annotator)
    assert got.item.external_id == "i1"


def test_items_people_started_keep_their_route(project, judge, annotator):
    make_items(project, 3)
    lease = assignment.assignment_next(project=project, annotator=annotator)
    save(project, policy="all_judge", judge=judge)
    r = routes(project)
    assert r.pop(lease.item.external_id) == "human"
    assert set(r.values()) == {"judge"}


def test_confidence_sends_unsure_and_close_items_to_people_and_waits_for_verdicts(project, judge):
    a, b, c, d, e = make_items(project, 5)
    judged(judge, a, scores={"1": 0.0, "2": 3.0})  # sure
    judged(judge, b, scores={"1": 0.0, "2": 0.2})  # close call
    judged(judge, c, status="inconsistent")
    judged(judge, d, status="failed")
    save(project, policy="confidence", judge=judge, params={"max_margin": 1.0})
    assert routes(project) == {
        "i0": "judge",
        "i1": "human",
        "i2": "human",
        "i3": "human",
        "i4": "pending",
    }
    why = RouteDecision.objects.get(item=b)
    assert why.features["margin"] == pytest.approx(0.2) and "margin 0.200" in why.reason
    assert not RouteDecision.objects.filter(item=e).exists()
    judged(judge, e, scores={"1": 2.0, "2": 0.0})
    report = services.route_items(project=project)
    assert routes(project)["i4"] == "judge" and report.routed == {"judge": 1}


def test_the_budget_goes_to_the_riskiest_items_and_is_never_exceeded(project, judge):
    project.overlap = 2
    project.save()
    items = make_items(project, 6)
    for k, item in enumerate(items):
        judged(judge, item, scores={"1": 0.0, "2": 0.1 * (k + 1)})  # all close; i0 closest
    save(project, policy="confidence", judge=judge, budget_labels=5)  # 5 labels: 2 items
    r = routes(project)
    assert [e for e, route in sorted(r.items()) if route == "human"] == ["i0", "i1"]
    over = RouteDecision.objects.get(item=items[2])
    assert over.route == "judge" and over.reason.startswith("human budget spent")
    budget = services.budget(project)
    assert budget["people_items_used"] == 2 and budget["people_items_left"] == 0
    assert budget["labels_allowed"] == 4 and budget["labels_used"] == 4


def test_a_share_budget_counts_every_item_of_the_project(project, judge):
    items = make_items(project, 10)
    for item in items:
        judged(judge, item, status="inconsistent")
    save(project, policy="confidence", judge=judge, budget_share=0.3)
    assert list(routes(project).values()).count("human") == 3


def test_the_audit_slice_goes_to_both_whatever_the_policy_and_budget(project, judge):
    make_items(project, 200)
    save(project, policy="all_judge", judge=judge, audit_share=0.1, budget_labels=0)
    audited = RouteDecision.objects.filter(audit=True)
    assert 10 <= audited.count() <= 30  # 10% of 200 by hash
    assert set(audited.values_list("item__route", flat=True)) == {"both"}
    assert not Item.objects.filter(route="human").exists()
    # The same seed draws the same slice again.
    first = set(audited.values_list("item_id", flat=True))
    save(project, policy="all_judge", judge=judge, audit_share=0.1, budget_labels=0)
    assert set(RouteDecision.objects.filter(audit=True).values_list("item_id", flat=True)) == first


def test_an_inconsistent_verdict_arriving_later_promotes_the_item_while_budget_lasts(
    project, judge
):
    a, b, c = make_items(project, 3)
    save(project, policy="random", judge=judge, params={"fraction": 0.0}, budget_labels=1)
    assert set(routes(project).values()) == {"judge"}
    judged(judge, a, status="inconsistent")
    judged(judge, b, status="failed")
    judged(judge, c)
    report = services.route_items(project=project, trigger="after judge run 1")
    assert report.promoted == 1
    r = routes(project)
    assert sorted(r.values()) == ["human", "judge", "judge"] and r["i2"] == "judge"
    promoted = RouteDecision.objects.get(promoted=True)
    assert promoted.route == "human" and promoted.trigger == "after judge run 1"
    # More budget later: the other unsure item is promoted on the next pass.
    save_budget = services.policy_for(project)
    save_budget.budget_labels = 5
    save_budget.save()
    services.route_items(project=project)
    assert sorted(routes(project).values()) == ["human", "human", "judge"]


def test_random_sends_the_fraction_drawn_by_hash(project, judge):
    make_items(project, 400)
    save(project, policy="random", judge=judge, params={"fraction": 0.25})
    people = list(routes(project).values()).count("human")
    assert 70 <= people <= 130


def test_imported_items_wait_for_the_router_under_a_judge_policy(project, judge):
    import io

    from annotate.services import item_import

    save(project, policy="all_judge", judge=judge)
    line = b'{"id": "new", "prompt": "p", "responses": ["a", "b"]}\n'
    report = item_import(project=project, stream=io.BytesIO(line), filename="x.jsonl")
    assert report.created == 1
    assert routes(project) == {"new": "pending"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"policy": "nope"}, "policy"),
        ({"policy": "random", "params": {"fraction": 2}}, "params"),
        ({"policy": "random", "params": {"bogus": 1}}, "params"),
        ({"policy": "confidence"}, "judge"),
        ({"policy": "all_human", "budget_share": 1.5}, "budget_share"),
        ({"policy": "all_human", "budget_labels": -1}, "budget_labels"),
        ({"policy": "all_human", "audit_share": "x"}, "audit_share"),
    ],
)
def test_bad_settings_name_the_field_and_change_nothing(project, data, field):
    make_items(project, 2)
    with pytest.raises(ServiceError) as error:
        services.policy_save(project=project, data=data)
    assert error.value.field == field
    assert set(routes(project).values()) == {"human"}
    assert services.policy_for(project).policy == "all_human"


def test_a_judge_of_another_project_is_refused(project, bob_project):
    other = JudgeFactory(project=bob_project)
    with pytest.raises(ServiceError) as error:
        services.policy_save(project=project, data={"policy": "all_judge", "judge": other})
    assert error.value.field == "judge"


def test_annotator_role_does_not_matter_to_the_router(project, judge, charlie):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    make_items(project, 2)
    save(project, policy="all_human", judge=judge)
    assert set(routes(project).values()) == {"human"}


def test_items_imported_under_a_capped_policy_wait_for_the_router(project, judge):
    import io

    from annotate.services import item_import

    save(project, policy="all_human", judge=judge, budget_labels=2)
    lines = b"".join(
        b'{"id": "n%d", "prompt": "p", "responses": ["a", "b"]}\n' % k for k in range(5)
    )
    item_import(project=project, stream=io.BytesIO(lines), filename="x.jsonl")
    # They wait: going straight to people would skip the cap.
    assert set(routes(project).values()) == {"pending"}
    services.route_items(project=project)
    assert list(routes(project).values()).count("human") == 2
