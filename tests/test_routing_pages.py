"""The routing pages: the policy and budget (admins change them, researchers look), "Route now",
the latest decisions, and the routing report with its CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest

from annotate.models import Item, Role
from judges.models import JudgeRun, Verdict
from routing import selectors, services
from routing.models import RouteDecision, RoutingPolicy

from .factories import (
    AnnotationFactory,
    ItemFactory,
    JudgeFactory,
    MembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SLUG = "alices-pairs"
SETTINGS = f"/projects/{SLUG}/routing/"
ROUTE = f"/projects/{SLUG}/routing/route/"
REPORT = f"/projects/{SLUG}/routing/report/"


@pytest.fixture
def judge(project):
    return JudgeFactory(project=project, name="gpt")


@pytest.fixture
def researcher(project, bob):
    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    return bob


def make_items(project, n, start=0):
    return [ItemFactory(project=project, external_id=f"i{start + k}") for k in range(n)]


def verdict(judge, item, status="agreed", choice="A"):
    run = JudgeRun.objects.filter(project=item.project).first() or JudgeRun.objects.create(
        project=item.project, selection="all"
    )
    Verdict.objects.create(
        run=run,
        item=item,
        judge=judge,
        prompt_version="v1",
        status=status,
        label={"choice": choice} if status == "agreed" else None,
    )


@pytest.fixture
def report_case(project, judge):
    """Four items people labelled A and the judge judged: agrees on i0 and i3, says B on i1,
    is inconsistent on i2; a fifth item without labels. The budget, 2 labels of 5 items, is a
    share of 0.4. By hand (risks ranked high first, ties by item):
    - oracle (i1, i2 first): 0.5, 0.75 at 10% and 25% (1 item), 1.0 from 40% (2 items);
    - confidence (i2 first, the rest tied at 0): 0.5, then 0.75 up to 50% (i2 and i0 to
      people), 1.0 at 75% (i2, i0, i1) and 100%."""
    project.overlap = 1
    project.save()
    items = make_items(project, 5)
    for item in items[:4]:
        AnnotationFactory(item=item, label={"choice": "A", "strength": 2, "rationale": ""})
    verdict(judge, items[0])
    verdict(judge, items[1], choice="B")
    verdict(judge, items[2], status="inconsistent")
    verdict(judge, items[3])
    services.policy_save(
        project=project,
        data={"policy": "all_human", "judge": judge, "budget_labels": 2, "audit_share": 0},
    )
    return items


HAND = {
    # share: (confidence, oracle)
    "0.0000": ("0.5000", "0.5000"),
    "0.1000": ("0.7500", "0.7500"),
    "0.2500": ("0.7500", "0.7500"),
    "0.4000": ("0.7500", "1.0000"),
    "0.5000": ("0.7500", "1.0000"),
    "0.7500": ("1.0000", "1.0000"),
    "1.0000": ("1.0000", "1.0000"),
}


def _form(**overrides) -> dict:
    data = {
        "policy": "all_human",
        "judge": "",
        "budget_labels": "",
        "budget_share": "",
        "audit_share": "0",
        "seed": "0",
        "fraction": "",
        "max_margin": "",
        "min_jury_agreement": "",
    }
    data.update(overrides)
    return data


def routes(project) -> dict[str, str]:
    return dict(Item.objects.filter(project=project).values_list("external_id", "route"))


# Who sees what ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [SETTINGS, REPORT, REPORT + "?format=csv"])
def test_a_non_member_gets_404_and_an_annotator_403(client, project, annotator, bob, url):
    client.force_login(bob)
    assert client.get(url).status_code == 404
    client.force_login(annotator)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", [SETTINGS, ROUTE])
def test_only_admins_post(client, project, annotator, researcher, url):
    make_items(project, 2)
    stranger = UserFactory(username="dave")
    for user, code in ((stranger, 404), (annotator, 403), (researcher, 403)):
        client.force_login(user)
        assert client.post(url, _form(policy="all_judge")).status_code == code
    assert services.policy_for(project).policy == "all_human"
    assert set(routes(project).values()) == {"human"}


def test_login_is_required(client, project):
    response = client.get(SETTINGS)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_researcher_sees_settings_and_budget_without_the_form(client, project, researcher):
    make_items(project, 3)
    client.force_login(researcher)
    response = client.get(SETTINGS)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'id="routing-settings"' in text and 'id="routing-form"' not in text
    assert 'data-testid="route-now"' not in text
    assert "Only the project's admins change routing" in text


def test_looking_creates_no_policy(client, alice, project):
    client.force_login(alice)
    for url in (SETTINGS, REPORT, REPORT + "?format=csv"):
        assert client.get(url).status_code == 200
    assert not RoutingPolicy.objects.filter(project=project).exists()


def test_the_project_page_links_to_routing_for_researchers_only(client, project, annotator):
    client.force_login(annotator)
    assert SETTINGS not in client.get(f"/projects/{SLUG}/").content.decode()
    client.force_login(project.memberships.get(role=Role.ADMIN).user)
    assert SETTINGS in client.get(f"/projects/{SLUG}/").content.decode()


# Settings -----------------------------------------------------------------------------------


def test_an_admin_sets_confidence_with_a_budget_and_sees_it_spent(client, alice, project, judge):
    items = make_items(project, 4)
    for k, item in enumerate(items):
        verdict(judge, item, status="inconsistent" if k < 3 else "agreed")
    client.force_login(alice)
    response = client.post(
        SETTINGS,
        _form(policy="confidence", judge=judge.pk, budget_labels="2", max_margin="0.5"),
        follow=True,
    )
    assert response.redirect_chain[-1][0] == SETTINGS
    assert "Routing saved: People get what the judges are unsure of." in response.content.decode()
    row = services.policy_for(project)
    assert (row.policy, row.judge, row.budget_labels, row.updated_by) == (
        "confidence",
        judge,
        2,
        alice,
    )
    assert row.params == {"max_margin": 0.5, "min_jury_agreement": 0.75}
    assert sorted(routes(project).values()) == ["human", "human", "judge", "judge"]
    text = response.content.decode()
    people = re.search(r'id="budget-people-items">(.*?)</tr>', text, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', people) == ["2", "2", "0"]
    labels = re.search(r'id="budget-labels">(.*?)</tr>', text, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', labels) == ["2", "2", "0"]
    judge_row = re.search(r'id="budget-judge">(.*?)</tr>', text, re.S).group(1)
    assert "Spend of gpt" in judge_row and "5.0000" in judge_row
    # The latest decisions, with their reasons.
    assert text.count('<tr id="decision-') == 4
    assert "the judge&#x27;s verdict is inconsistent" in text
    assert "human budget spent" in text


def test_the_random_fraction_is_saved_and_other_policies_params_dropped(
    client, alice, project, judge
):
    make_items(project, 2)
    client.force_login(alice)
    form = _form(policy="random", judge=judge.pk, fraction="0.3", max_margin="7")
    assert client.post(SETTINGS, form).status_code == 302
    assert services.policy_for(project).params == {"fraction": 0.3}
    # The form shows the saved values back.
    text = client.get(SETTINGS).content.decode()
    assert 'name="fraction" value="0.3"' in text


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        (_form(policy="confidence"), "judge", "this policy needs a judge"),
        (_form(policy="random", judge="{judge}", fraction="2"), "fraction", "between 0 and 1"),
        (_form(max_margin="-1", policy="learned", judge="{judge}"), "max_margin", "between 0"),
        (_form(budget_share="1.5"), "budget_share", "a share from 0 to 1"),
        (_form(budget_labels="-1"), "budget_labels", "a whole number of labels"),
        (_form(audit_share="x"), "audit_share", "Enter a number"),
        (_form(policy="nope"), "policy", "Select a valid choice"),
    ],
)
def test_bad_settings_show_on_their_field_and_change_nothing(
    client, alice, project, judge, form, field, message
):
    make_items(project, 2)
    client.force_login(alice)
    form = {k: (str(judge.pk) if v == "{judge}" else v) for k, v in form.items()}
    response = client.post(SETTINGS, form)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == [field] and message in errors[field][0]
    assert f'id="field-{field}"' in response.content.decode()
    assert services.policy_for(project).policy == "all_human"
    assert set(routes(project).values()) == {"human"}


def test_a_judge_of_another_project_cannot_be_picked(client, alice, project, bob_project):
    other = JudgeFactory(project=bob_project)
    client.force_login(alice)
    response = client.post(SETTINGS, _form(policy="all_judge", judge=other.pk))
    assert response.status_code == 400
    assert "judge" in response.context["form"].errors


def test_an_inactive_judge_is_not_offered(client, alice, project, judge):
    JudgeFactory(project=project, name="off", active=False)
    client.force_login(alice)
    names = [j.name for j in client.get(SETTINGS).context["form"].fields["judge"].queryset]
    assert names == ["gpt"]


# Route now ----------------------------------------------------------------------------------


def test_route_now_queues_the_task_on_commit_and_routes_nothing_in_the_request(
    client, alice, project, judge, monkeypatch, django_capture_on_commit_callbacks
):
    make_items(project, 3)
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    ItemFactory(project=project, external_id="late", route="pending")
    sent = []
    monkeypatch.setattr(
        "routing.tasks.route.apply_async", lambda args, task_id: sent.append((args, task_id))
    )
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(ROUTE, follow=True)
    assert routes(project)["late"] == "pending" and sent == []
    for callback in callbacks:
        callback()
    [(args, task_id)] = sent
    assert args == (project.pk, "on demand by alice")
    assert f"Routing queued (task {task_id})" in response.content.decode()


def test_route_now_with_a_worker_routes_the_waiting_items(client, alice, project, judge):
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    ItemFactory(project=project, external_id="late", route="pending")
    client.force_login(alice)
    # eager_celery is not needed: the route task is called as the worker would.
    from routing.tasks import route

    route(project.pk, "on demand by alice")
    assert routes(project)["late"] == "judge"
    text = client.get(SETTINGS).content.decode()
    assert 'data-item="late"' in text and "on demand by alice" in text


def test_route_now_is_post_only(client, alice, project):
    client.force_login(alice)
    assert client.get(ROUTE).status_code == 405


def test_decisions_are_paginated_newest_first(client, alice, project, judge):
    make_items(project, 55)
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    client.force_login(alice)
    first = client.get(SETTINGS).content.decode()
    second = client.get(SETTINGS, {"page": 2}).content.decode()
    assert first.count('<tr id="decision-') == 50 and second.count('<tr id="decision-') == 5
    assert "page 1 of 2" in first and 'rel="next" href="?page=2"' in first
    shown = re.findall(r'data-item="([^"]+)"', first + second)
    assert sorted(shown) == sorted(f"i{k}" for k in range(55))
    # A page past the end shows the last one, not an error.
    assert client.get(SETTINGS, {"page": "99"}).status_code == 200


def test_the_settings_page_queries_do_not_grow_with_decisions(
    client, alice, project, judge, django_assert_max_num_queries
):
    make_items(project, 60)
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    client.force_login(alice)
    with django_assert_max_num_queries(13):  # the page, its policy, budget, router, decisions
        assert client.get(SETTINGS).status_code == 200


# The report ---------------------------------------------------------------------------------


def _page_table(text: str) -> list[list[str]]:
    table = re.search(r'<table class="list" id="report-table">(.*?)</table>', text, re.S).group(1)
    head = re.findall(r'<th scope="col" class="num">([^<]*)</th>', table)
    rows = [
        re.findall(r'<td class="num">([^<]*)</td>', row)
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("</thead>")[1], re.S)
    ]
    return [head, *rows]


def test_the_report_says_na_with_no_double_labelled_items(client, alice, project, judge):
    make_items(project, 3)
    client.force_login(alice)
    text = client.get(REPORT).content.decode()
    assert 'id="report-empty"' in text and "n/a" in text and "(0 items)" in text
    assert 'id="routing-chart"' not in text
    table = _page_table(text)
    assert table[0] == ["share_to_people", "random", "confidence", "oracle", "budget"]
    assert all(row[1:4] == ["n/a", "n/a", "n/a"] for row in table[1:])


def test_the_report_numbers_match_the_hand_computed_case(client, alice, project, report_case):
    client.force_login(alice)
    response = client.get(REPORT)
    text = response.content.decode()
    assert re.search(r'data-testid="report-items">4<', text)
    assert "the judge agrees with the people on 2" in text
    assert 'id="report-budget">40%<' in text
    table = _page_table(text)
    assert table[0] == ["share_to_people", "random", "confidence", "oracle", "budget"]
    got = {row[0]: (row[2], row[3]) for row in table[1:]}
    assert got == HAND
    # Random: every item to the judge, then every item to people, whatever the draws.
    assert (table[1][1], table[-1][1]) == ("0.5000", "1.0000")
    # The budget's share is marked, in the table and on the chart.
    assert [row[0] for row in table[1:] if row[-1] == "yes"] == ["0.4000"]
    assert 'id="chart-budget"' in text and "budget 40%" in text
    assert text.count("<polyline") == 3


def test_the_csv_holds_the_pages_numbers(client, alice, project, report_case):
    client.force_login(alice)
    page = _page_table(client.get(REPORT).content.decode())
    response = client.get(REPORT, {"format": "csv"})
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == f'attachment; filename="routing-{SLUG}.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == page


def test_a_researcher_reads_the_report(client, researcher, report_case):
    client.force_login(researcher)
    assert client.get(REPORT).status_code == 200


def test_a_learned_ranking_plugs_in_as_one_more_curve(project, report_case):
    # The learned router's seam: a ranker of the double-labelled rows (here: i1 riskiest).
    def learned(rows):
        return [1.0 if r.item.external_id == "i1" else 0.0 for r in rows]

    report = selectors.routing_report(project, rankers={"learned": learned})
    assert list(report["curves"]) == ["random", "confidence", "learned", "oracle"]
    # i1 first, then i0, i2, i3 in order: 0.5; 0.75 at one item; 0.75 at two (i1, i0).
    assert report["curves"]["learned"][:4] == [0.5, 0.75, 0.75, 0.75]
    assert report["table"][0] == [
        "share_to_people",
        "random",
        "confidence",
        "learned",
        "oracle",
        "budget",
    ]


def test_decisions_are_kept_for_the_report_page_link(client, alice, project, judge):
    make_items(project, 1)
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    client.force_login(alice)
    assert REPORT in client.get(SETTINGS).content.decode()
    assert RouteDecision.objects.count() == 1
