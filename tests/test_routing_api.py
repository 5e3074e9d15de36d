"""The routing REST API: the policy and budget, routing on demand, the decisions, an item's
decision, and the routing report."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from annotate.models import Item, Role
from routing import selectors, services
from routing.models import RoutingPolicy

from .factories import ItemFactory, JudgeFactory, MembershipFactory, UserFactory, api
from .test_api_schema import _nullable_as_json_schema
from .test_routing_pages import HAND, make_items, report_case, verdict  # noqa: F401

pytestmark = pytest.mark.django_db

BASE = "/api/v1/projects/alices-pairs"


@pytest.fixture
def judge(project):
    return JudgeFactory(project=project, name="gpt")


@pytest.fixture
def researcher(project, bob):
    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    return bob


@pytest.fixture
def conforms(alice):
    """conforms(response, path, method): the body matches the schema the API documents."""
    openapi = api(alice).get("/api/v1/schema/", {"format": "json"}).json()
    components = _nullable_as_json_schema(openapi["components"])

    def check(response, path: str, method: str) -> None:
        responses = openapi["paths"][path][method]["responses"]
        code = str(response.status_code)
        assert code in responses, f"{method.upper()} {path}: {code} is not documented"
        schema = responses[code]["content"]["application/json"]["schema"]
        document = {**_nullable_as_json_schema(schema), "components": components}
        found = list(Draft202012Validator(document).iter_errors(response.json()))
        assert not found, "\n".join(f"{list(e.path)}: {e.message}" for e in found)

    return check


def routes(project) -> dict[str, str]:
    return dict(Item.objects.filter(project=project).values_list("external_id", "route"))


# Who gets what ------------------------------------------------------------------------------

CALLS = [
    ("get", "/routing/", None),
    ("put", "/routing/", {"policy": "all_judge", "judge": "{judge}"}),
    ("post", "/routing/route/", None),
    ("get", "/routing/decisions/", None),
    ("get", "/routing/report/", None),
    ("get", "/items/i0/route/", None),
]
WRITES = {"put", "post"}


def _call(user, method, path, body, judge):
    if isinstance(body, dict):
        body = {k: (judge.pk if v == "{judge}" else v) for k, v in body.items()}
    return getattr(api(user), method)(BASE + path, body, format="json")


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_a_non_member_gets_404_an_annotator_403_and_anonymous_401(
    project, annotator, judge, method, path, body
):
    make_items(project, 1)
    stranger = UserFactory(username="dave")
    assert _call(None, method, path, body, judge).status_code == 401
    assert _call(stranger, method, path, body, judge).status_code == 404
    assert _call(annotator, method, path, body, judge).status_code == 403
    assert services.policy_for(project).policy == "all_human"


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_researchers_read_and_only_admins_write(
    project, researcher, judge, method, path, body, django_capture_on_commit_callbacks
):
    make_items(project, 1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _call(researcher, method, path, body, judge)
    if method in WRITES:
        assert response.status_code == 403
        assert callbacks == []
    else:
        assert response.status_code == 200
    assert services.policy_for(project).policy == "all_human"
    assert set(routes(project).values()) == {"human"}


# Settings -----------------------------------------------------------------------------------


def test_get_shows_the_settings_the_budget_and_the_policies(alice, project, conforms):
    make_items(project, 3)
    response = api(alice).get(f"{BASE}/routing/")
    assert response.status_code == 200
    conforms(response, "/api/v1/projects/{slug}/routing/", "get")
    body = response.json()
    assert (body["policy"], body["judge"], body["audit_share"]) == ("all_human", None, 0.1)
    assert body["budget"]["items"] == 3 and body["budget"]["people_items_allowed"] is None
    assert body["budget"]["by_route"] == {"human": 3, "judge": 0, "both": 0, "pending": 0}
    assert "judge_spend" not in body["budget"]
    assert {p["name"]: p["params"] for p in body["policies"]}["random"] == {"fraction": 0.25}
    # Reading created nothing: a project never configured is never routed after a judge run.
    assert not RoutingPolicy.objects.filter(project=project).exists()


def test_an_admin_puts_confidence_with_a_budget(alice, project, judge, conforms):
    items = make_items(project, 4)
    for k, item in enumerate(items):
        verdict(judge, item, status="inconsistent" if k < 3 else "agreed")
    body = {
        "policy": "confidence",
        "judge": judge.pk,
        "params": {"max_margin": 0.5},
        "budget_labels": 2,
        "audit_share": 0,
    }
    response = api(alice).put(f"{BASE}/routing/", body, format="json")
    assert response.status_code == 200, response.json()
    conforms(response, "/api/v1/projects/{slug}/routing/", "put")
    got = response.json()
    assert got["params"] == {"max_margin": 0.5, "min_jury_agreement": 0.75}
    assert got["updated_by"] == "alice" and got["judge"] == judge.pk
    assert got["budget"]["people_items_used"] == 2 and got["budget"]["labels_left"] == 0
    assert got["budget"]["judge_spend"]["judge"] == "gpt"
    assert sorted(routes(project).values()) == ["human", "human", "judge", "judge"]


def test_omitted_settings_keep_their_values(alice, project, judge):
    make_items(project, 2)
    client = api(alice)
    first = {"policy": "random", "judge": judge.pk, "params": {"fraction": 0.5}, "seed": 7}
    assert client.put(f"{BASE}/routing/", first, format="json").status_code == 200
    response = client.put(f"{BASE}/routing/", {"budget_share": 0.5}, format="json")
    assert response.status_code == 200
    row = services.policy_for(project)
    assert (row.policy, row.judge, row.params, row.seed) == ("random", judge, {"fraction": 0.5}, 7)
    assert row.budget_share == 0.5
    # Another policy without params takes its defaults, not the old policy's.
    assert (
        client.put(f"{BASE}/routing/", {"policy": "confidence"}, format="json").status_code == 200
    )
    assert services.policy_for(project).params == {"max_margin": 1.0, "min_jury_agreement": 0.75}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"policy": "nope"}, "policy"),
        ({"policy": "random", "judge": "{judge}", "params": {"fraction": 2}}, "params"),
        ({"policy": "random", "judge": "{judge}", "params": {"bogus": 1}}, "params"),
        ({"policy": "random", "judge": "{judge}", "params": {"fraction": "x"}}, "params"),
        ({"policy": "confidence"}, "judge"),
        ({"policy": "all_judge", "judge": "{other}"}, "judge"),
        ({"policy": "all_judge", "judge": 2**63}, "judge"),
        ({"budget_share": 1.5}, "budget_share"),
        ({"budget_labels": -1}, "budget_labels"),
        ({"budget_labels": 2**40}, "budget_labels"),
        ({"audit_share": "x"}, "audit_share"),
        ({"seed": 2**40}, "seed"),
    ],
)
def test_bad_settings_are_a_400_on_the_field_and_change_nothing(
    alice, project, judge, bob_project, conforms, body, field
):
    make_items(project, 2)
    other = JudgeFactory(project=bob_project)
    marks = {"{judge}": judge.pk, "{other}": other.pk}
    body = {k: marks.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = api(alice).put(f"{BASE}/routing/", body, format="json")
    assert response.status_code == 400
    conforms(response, "/api/v1/projects/{slug}/routing/", "put")
    assert list(response.json()) == [field]
    assert services.policy_for(project).policy == "all_human"
    assert set(routes(project).values()) == {"human"}


def test_the_body_must_be_json(alice, project):
    response = api(alice).put(f"{BASE}/routing/", "policy=all_judge", content_type="text/plain")
    assert response.status_code == 415


# Routing on demand --------------------------------------------------------------------------


def test_post_route_queues_the_task_on_commit_with_the_id_it_answers(
    alice, project, judge, monkeypatch, django_capture_on_commit_callbacks, conforms
):
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    ItemFactory(project=project, external_id="late", route="pending")
    sent = []
    monkeypatch.setattr(
        "routing.tasks.route.apply_async", lambda args, task_id: sent.append((args, task_id))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).post(f"{BASE}/routing/route/")
    assert response.status_code == 202
    conforms(response, "/api/v1/projects/{slug}/routing/route/", "post")
    assert sent == [((project.pk, "on demand by alice (API)"), response.json()["task_id"])]
    # Nothing was routed in the request.
    assert routes(project)["late"] == "pending"


def test_post_route_with_an_eager_worker_routes(
    alice, project, judge, eager_celery, django_capture_on_commit_callbacks
):
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    late = ItemFactory(project=project, external_id="late", route="pending")
    # Judged already: the pass starts no judge run (the loop is tested in test_routing.py).
    verdict(judge, late)
    # The test's transaction never commits: run the on-commit hooks as a commit would.
    with django_capture_on_commit_callbacks(execute=True):
        assert api(alice).post(f"{BASE}/routing/route/").status_code == 202
    assert routes(project)["late"] == "judge"
    assert RoutingPolicy.objects.get(project=project).routed_at is not None


# Decisions ----------------------------------------------------------------------------------


@pytest.fixture
def routed(project, judge):
    """i0-i3 routed to judges, i4 and i5 to people (the random policy's draws, seed 0)."""
    items = make_items(project, 6)
    for item in items[:4]:
        verdict(judge, item)
    services.policy_save(
        project=project,
        data={"policy": "random", "judge": judge, "params": {"fraction": 0.3}, "audit_share": 0},
    )
    return items


def test_decisions_page_by_id_and_filter_by_route(alice, project, routed, conforms):
    client = api(alice)
    response = client.get(f"{BASE}/routing/decisions/", {"page_size": 4})
    assert response.status_code == 200
    conforms(response, "/api/v1/projects/{slug}/routing/decisions/", "get")
    first = response.json()
    assert len(first["results"]) == 4 and first["next"]
    rest = client.get(first["next"]).json()
    rows = first["results"] + rest["results"]
    assert sorted(r["external_id"] for r in rows) == [f"i{k}" for k in range(6)]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert {r["route"] for r in rows} == set(routes(project).values())
    row = rows[0]
    assert row["policy"] == "random" and "random draw" in row["reason"]
    assert set(row["features"]) == {"draw"} and row["trigger"] == "policy changed"
    people = client.get(f"{BASE}/routing/decisions/", {"route": "human"}).json()["results"]
    expected = sorted(e for e, r in routes(project).items() if r == "human")
    assert sorted(r["external_id"] for r in people) == expected


@pytest.mark.parametrize("query", [{"route": "nope"}, {"ordering": "risk"}, {"cursor": "x"}])
def test_bad_decision_queries_are_a_400_naming_the_parameter(alice, project, query):
    response = api(alice).get(f"{BASE}/routing/decisions/", query)
    assert response.status_code == 400
    assert list(response.json()) == list(query)


def test_decision_list_queries_do_not_grow(alice, project, judge, django_assert_max_num_queries):
    make_items(project, 40)
    services.policy_save(project=project, data={"policy": "all_judge", "judge": judge})
    with django_assert_max_num_queries(5):
        response = api(alice).get(f"{BASE}/routing/decisions/")
    assert len(response.json()["results"]) == 40


# An item's decision -------------------------------------------------------------------------


def test_an_items_route_and_decision(alice, project, routed, conforms):
    response = api(alice).get(f"{BASE}/items/i0/route/")
    assert response.status_code == 200
    conforms(response, "/api/v1/projects/{slug}/items/{external_id}/route/", "get")
    body = response.json()
    assert body["external_id"] == "i0" and body["route"] == routes(project)["i0"]
    decision = body["route_decision"]
    assert decision["route"] == body["route"] and decision["policy"] == "random"
    assert 0 <= decision["risk"] <= 1 and "draw" in decision["features"]
    assert decision["audit"] is False and decision["promoted"] is False


def test_an_item_never_routed_has_a_null_decision(alice, project, conforms):
    ItemFactory(project=project, external_id="a/b c")
    response = api(alice).get(f"{BASE}/items/a/b%20c/route/")
    assert response.status_code == 200
    conforms(response, "/api/v1/projects/{slug}/items/{external_id}/route/", "get")
    assert response.json() == {"external_id": "a/b c", "route": "human", "route_decision": None}


@pytest.mark.parametrize("external_id", ["nope", "x%00y", "y" * 300])
def test_an_unknown_item_is_a_404(alice, project, external_id):
    ItemFactory(project=project, external_id="i0")
    assert api(alice).get(f"{BASE}/items/{external_id}/route/").status_code == 404


def test_another_projects_item_is_a_404(alice, project, bob_project):
    ItemFactory(project=bob_project, external_id="theirs")
    assert api(alice).get(f"{BASE}/items/theirs/route/").status_code == 404


def test_the_item_list_shows_each_items_route(alice, project, routed):
    rows = api(alice).get(f"{BASE}/items/").json()["results"]
    assert {r["external_id"]: r["route"] for r in rows} == routes(project)


# The report ---------------------------------------------------------------------------------


def test_the_report_is_na_without_double_labelled_items(alice, project, conforms):
    make_items(project, 2)
    response = api(alice).get(f"{BASE}/routing/report/")
    assert response.status_code == 200
    conforms(response, "/api/v1/projects/{slug}/routing/report/", "get")
    body = response.json()
    assert body["items"] == 0 and body["judge"] is None
    assert all(v is None for curve in body["curves"].values() for v in curve)


def test_the_report_holds_the_pages_numbers(alice, project, report_case, conforms):  # noqa: F811
    response = api(alice).get(f"{BASE}/routing/report/")
    conforms(response, "/api/v1/projects/{slug}/routing/report/", "get")
    body = response.json()
    assert (body["items"], body["judge_agrees"], body["budget_share"]) == (4, 2, 0.4)
    got = {
        f"{share:.4f}": (f"{c:.4f}", f"{o:.4f}")
        for share, c, o in zip(
            body["shares"], body["curves"]["confidence"], body["curves"]["oracle"], strict=True
        )
    }
    assert got == HAND
    assert body["curves"] == selectors.routing_report(project)["curves"]
    assert RoutingPolicy.objects.get(project=project).budget_labels == 2


def test_an_empty_route_filter_is_refused_as_its_schema_says(alice, project):
    response = api(alice).get(f"{BASE}/routing/decisions/", {"route": ""})
    assert response.status_code == 400
    assert "route" in response.json()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"policy": "random", "audit_share": True}, "audit_share"),
        ({"policy": "random", "budget_share": False}, "budget_share"),
    ],
)
def test_the_settings_take_what_the_schema_says_no_more(alice, project, judge, body, field):
    """A boolean is not a share (DRF would take it as 0 or 1): a 400 naming the field, and the
    settings stay as they were."""
    response = api(alice).put(f"{BASE}/routing/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not RoutingPolicy.objects.filter(project=project).exists()
