"""Routing in the browser: an admin sends people what the judge is unsure of under a budget of
labels, sees the budget spent, presses Route now once the judge has judged the waiting item
(Celery eager: the pass runs on commit of that request) and reads the decisions and the report."""

import re

import pytest
from playwright.sync_api import expect

from annotate.models import Item, Role
from judges.models import JudgeRun, Verdict
from tests.factories import (
    AnnotationFactory,
    ItemFactory,
    JudgeFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)

from .conftest import PASSWORD, log_in


@pytest.fixture
def admin(transactional_db):
    return UserFactory(username="ada")


def _verdict(judge, item, status):
    run = JudgeRun.objects.filter(project=item.project).first() or JudgeRun.objects.create(
        project=item.project, selection="all"
    )
    label = {"choice": "A"} if status == "agreed" else None
    Verdict.objects.create(
        run=run, item=item, judge=judge, prompt_version="v1", status=status, label=label
    )


@pytest.fixture
def judged(admin):
    """Six items: the judge was inconsistent on q0-q2, agreed on q3 and q4, has not judged q5;
    people labelled q0 and q3."""
    project = ProjectFactory(name="Routed", slug="routed", kind="pairwise", gold_rate=0)
    MembershipFactory(project=project, user=admin, role=Role.ADMIN)
    judge = JudgeFactory(project=project, name="gpt")
    items = [ItemFactory(project=project, external_id=f"q{n}") for n in range(6)]
    for n, item in enumerate(items[:5]):
        _verdict(judge, item, "inconsistent" if n < 3 else "agreed")
    for item in (items[0], items[3]):
        AnnotationFactory(item=item, label={"choice": "A", "strength": 2, "rationale": ""})
    return project, judge, items


def test_admin_routes_by_confidence_under_a_budget(page, screenshot, admin, judged, eager_celery):
    project, judge, items = judged
    log_in(page, admin.username, PASSWORD)
    page.goto(project.get_absolute_url())
    page.get_by_test_id("routing").click()
    expect(page.get_by_role("heading", name="Routing", exact=True)).to_be_visible()
    expect(page.locator("#current-policy")).to_have_text("All to people")

    page.select_option("#id_policy", "confidence")
    page.select_option("#id_judge", str(judge.pk))
    page.fill("#id_budget_labels", "2")
    page.fill("#id_audit_share", "0")
    page.get_by_role("button", name="Save routing").click()
    expect(
        page.get_by_text("Routing saved: People get what the judges are unsure of.")
    ).to_be_visible()
    expect(page.locator("#current-policy")).to_have_text("People get what the judges are unsure of")

    # Two labels of budget: the two riskiest unsure items go to people, the third to the judge.
    people = page.locator("#budget-people-items td")
    expect(people).to_have_text(["2", "2", "0"])
    expect(page.locator('#budget-items dd[data-route="pending"]')).to_have_text("1")
    expect(page.locator("#budget-judge")).to_contain_text("Spend of gpt")
    expect(page.locator("#decisions tbody tr")).to_have_count(5)
    expect(page.locator('#decisions tr[data-item="q2"]')).to_contain_text("human budget spent")
    screenshot("saved")

    # The judge's verdict on q5 arrives; Route now decides it (eager: on commit, in-process).
    _verdict(judge, items[5], "agreed")
    page.get_by_test_id("route-now").click()
    expect(page.get_by_text(re.compile(r"Routing queued \(task [0-9a-f-]{36}\)"))).to_be_visible()
    row = page.locator('#decisions tr[data-item="q5"]')
    expect(row.locator("td").nth(1)).to_have_text("Judges only")
    expect(row).to_contain_text("on demand by ada")
    expect(page.locator('#budget-items dd[data-route="pending"]')).to_have_text("0")
    screenshot("routed")
    assert Item.objects.get(external_id="q5").route == "judge"
    routes = dict(Item.objects.filter(project=project).values_list("external_id", "route"))
    assert sorted(e for e, r in routes.items() if r == "human") == ["q0", "q1"]

    # The report: q0 and q3 have both kinds of labels.
    page.get_by_test_id("routing-report").click()
    expect(page.get_by_test_id("report-items")).to_have_text("2")
    expect(page.locator("#routing-chart polyline")).to_have_count(3)
    expect(page.locator('#report-table tr[data-budget="yes"] td').first).to_have_text("0.3333")
    screenshot("report")
