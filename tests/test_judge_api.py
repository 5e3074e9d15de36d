"""The judges REST API: judges, preview, runs and their progress, verdicts and judgments."""

from __future__ import annotations

from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from annotate.models import Judge, Role
from judges.models import JudgeRun, Judgment, Verdict

from .factories import ItemFactory, JudgeFactory, MembershipFactory, api
from .test_api_schema import _nullable_as_json_schema

BASE = "/api/v1/projects/alices-pairs"
KEY_NAME = "PREFHUB_TEST_JUDGE_KEY"
KEY_VALUE = "sk-test-do-not-show-9f8e7d"


@pytest.fixture(autouse=True)
def key_in_environment(monkeypatch):
    monkeypatch.setenv(KEY_NAME, KEY_VALUE)


@pytest.fixture
def judge(project):
    return JudgeFactory(project=project, name="gpt")


@pytest.fixture
def researcher(project, bob):
    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    return bob


@pytest.fixture
def run(project, judge):
    items = [ItemFactory(project=project, external_id=f"r{i}") for i in range(2)]
    run = JudgeRun.objects.create(
        project=project, selection="all", items=2, passes_total=4, status="running"
    )
    run.judges.set([judge])
    for item in items:
        for p in range(2):
            Judgment.objects.create(
                run=run, item=item, judge=judge, pass_index=p, prompt_version="v"
            )
    return run


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


def _call(user, method: str, url: str, body=None):
    response = getattr(api(user), method)(url, body, format="json")
    text = response.content.decode()
    assert KEY_VALUE not in text
    return response


# Who gets what ------------------------------------------------------------------------------

CALLS = [
    ("get", "/judges/", None),
    ("post", "/judges/", {"name": "x", "model_name": "m"}),
    ("get", "/judges/{judge}/", None),
    ("patch", "/judges/{judge}/", {"active": False}),
    ("post", "/judges/{judge}/preview/", {}),
    ("get", "/judge-runs/", None),
    ("post", "/judge-runs/", {"judges": ["{judge}"], "selection": "all"}),
    ("get", "/judge-runs/{run}/", None),
    ("post", "/judge-runs/{run}/cancel/", None),
    ("get", "/judge-runs/{run}/verdicts/", None),
    ("get", "/judge-runs/{run}/judgments/", None),
]
READ_ONLY = {0, 2, 4, 5, 7, 9, 10}


def _fill(call, judge, run):
    method, path, body = call
    if body and body.get("judges"):
        body = {**body, "judges": [judge.pk]}
    return method, BASE + path.format(judge=judge.pk, run=run.pk), body


@pytest.mark.parametrize(("index", "call"), list(enumerate(CALLS)))
def test_non_member_gets_404(charlie, judge, run, index, call):
    method, url, body = _fill(call, judge, run)
    assert _call(charlie, method, url, body).status_code == 404


@pytest.mark.parametrize(("index", "call"), list(enumerate(CALLS)))
def test_annotator_gets_403_and_never_the_key_name(annotator, judge, run, index, call):
    method, url, body = _fill(call, judge, run)
    response = _call(annotator, method, url, body)
    assert response.status_code == 403
    assert KEY_NAME not in response.content.decode()


@pytest.mark.parametrize(("index", "call"), list(enumerate(CALLS)))
def test_researcher_reads_without_the_key_name_and_never_writes(
    researcher, judge, run, index, call
):
    method, url, body = _fill(call, judge, run)
    response = _call(researcher, method, url, body)
    assert response.status_code == (200 if index in READ_ONLY else 403)
    assert KEY_NAME not in response.content.decode()
    judge.refresh_from_db()
    run.refresh_from_db()
    assert (judge.active, run.status) == (True, "running")
    assert Judge.objects.count() == 1 and JudgeRun.objects.count() == 1


def test_anonymous_gets_401(judge):
    assert api().get(f"{BASE}/judges/").status_code == 401


def test_unknown_ids_are_404(alice, project):
    for path in ("/judges/5/", "/judges/abc/", "/judge-runs/5/", "/judge-runs/5/verdicts/"):
        assert _call(alice, "get", BASE + path).status_code == 404


# Judges -------------------------------------------------------------------------------------


def test_admin_lists_judges_with_the_key_name_and_budget(alice, judge, conforms):
    judge.spent_usd = Decimal("1.5")
    judge.save()
    response = _call(alice, "get", f"{BASE}/judges/")
    conforms(response, "/api/v1/projects/{slug}/judges/", "get")
    (body,) = response.json()
    assert (body["api_key_env"], body["budget_left_usd"]) == (KEY_NAME, "3.500000")


def test_researchers_judge_has_no_key_field_and_matches_the_schema(researcher, judge, conforms):
    response = _call(researcher, "get", f"{BASE}/judges/{judge.pk}/")
    assert "api_key_env" not in response.json()
    conforms(response, "/api/v1/projects/{slug}/judges/{id}/", "get")


def test_admin_creates_and_changes_a_judge(alice, project, conforms):
    body = {
        "name": "claude",
        "backend": "anthropic",
        "model_name": "claude-test",
        "api_key_env": "ANTHROPIC_API_KEY",
        "budget_usd": "3",
        "passes": None,
    }
    created = _call(alice, "post", f"{BASE}/judges/", body)
    assert created.status_code == 201, created.json()
    conforms(created, "/api/v1/projects/{slug}/judges/", "post")
    judge = Judge.objects.get(project=project, name="claude")
    assert (judge.budget_usd, judge.passes) == (Decimal(3), None)
    changed = _call(alice, "patch", f"{BASE}/judges/{judge.pk}/", {"temperature": 0.5})
    assert changed.status_code == 200
    conforms(changed, "/api/v1/projects/{slug}/judges/{id}/", "patch")
    judge.refresh_from_db()
    assert (judge.temperature, judge.name) == (0.5, "claude")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"name": "k", "model_name": "m", "api_key_env": "sk-abc def"},
            "api_key_env",
            "not the key",
        ),
        ({"name": "k", "model_name": "m", "temperature": 9}, "temperature", "from 0 to 2"),
        ({"name": "k", "model_name": "m", "max_tokens": "many"}, "max_tokens", "valid integer"),
        (
            {"name": "k", "model_name": "m", "prompt_template": "{% for %}"},
            "prompt_template",
            "parse",
        ),
        ({"name": "k", "backend": "jury", "members": [99]}, "members", "no judge 99"),
        ({"name": "k", "backend": "reward_model"}, "reward_model_id", "reward model"),
        ({"model_name": "m"}, "name", "needs a name"),
    ],
)
def test_bad_judge_settings_are_a_400_on_the_field_and_save_nothing(
    alice, project, conforms, body, field, message
):
    response = _call(alice, "post", f"{BASE}/judges/", body)
    assert response.status_code == 400
    assert message in response.json()[field][0]
    conforms(response, "/api/v1/projects/{slug}/judges/", "post")
    assert not Judge.objects.exists()


def test_a_bad_change_leaves_the_judge_as_it_was(alice, judge):
    response = _call(alice, "patch", f"{BASE}/judges/{judge.pk}/", {"base_url": "file:///etc"})
    assert response.status_code == 400 and "base_url" in response.json()
    judge.refresh_from_db()
    assert judge.base_url == "https://llm.example.com/v1"


def test_preview_renders_each_pass_of_the_named_item(alice, project, judge, conforms):
    ItemFactory(project=project, external_id="one", prompt="First?")
    ItemFactory(project=project, external_id="two", prompt="Second?")
    url = f"{BASE}/judges/{judge.pk}/preview/"
    response = _call(alice, "post", url, {"item": "two"})
    conforms(response, "/api/v1/projects/{slug}/judges/{id}/preview/", "post")
    body = response.json()
    assert body["item"] == "two"
    assert [p["pass_index"] for p in body["passes"]] == [0, 1]
    assert "Second?" in body["passes"][0]["messages"][1]["content"]
    assert body["passes"][0]["order"] == list(reversed(body["passes"][1]["order"]))
    missing = _call(alice, "post", url, {"item": "nope"})
    assert missing.status_code == 400 and "item" in missing.json()


# Runs ---------------------------------------------------------------------------------------


def test_starting_a_run_plans_items_times_passes(alice, project, judge, conforms):
    items = [ItemFactory(project=project, external_id=f"s{i}") for i in range(3)]
    body = {"judges": [judge.pk], "selection": "ids", "external_ids": ["s0", "s2"]}
    response = _call(alice, "post", f"{BASE}/judge-runs/", body)
    assert response.status_code == 201, response.json()
    conforms(response, "/api/v1/projects/{slug}/judge-runs/", "post")
    run = JudgeRun.objects.get(pk=response.json()["id"])
    planned = set(run.judgments.values_list("item_id", "pass_index"))
    assert planned == {(items[i].pk, p) for i in (0, 2) for p in (0, 1)}
    progress = response.json()["progress"]
    assert (progress["passes_total"], progress["passes_pending"]) == (4, 4)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"judges": [], "selection": "all"}, "judges"),
        ({"judges": [12345], "selection": "all"}, "judges"),
        ({"judges": ["{judge}"], "selection": "some"}, "selection"),
        ({"judges": ["{judge}"], "selection": "ids"}, "external_ids"),
        ({"judges": ["{judge}"], "selection": "all", "limit": 0}, "limit"),
        (
            {"judges": ["{judge}"], "selection": "all", "metadata_filter": {"a": None}},
            "metadata_filter",
        ),
        ({"judges": ["{judge}"], "selection": "all", "metadata_filter": [1]}, "metadata_filter"),
        (
            {"judges": ["{judge}"], "selection": "all", "metadata_filter": {"a.": 1}},
            "metadata_filter",
        ),
    ],
)
def test_bad_run_requests_are_a_400_on_the_field(alice, project, judge, body, field):
    ItemFactory(project=project)
    body = {**body, "judges": [judge.pk if j == "{judge}" else j for j in body["judges"]]}
    response = _call(alice, "post", f"{BASE}/judge-runs/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert not JudgeRun.objects.exists()


def test_a_run_by_metadata_filter_plans_the_matching_items(alice, project, judge, conforms):
    ItemFactory(project=project, external_id="m1", metadata={"topic": {"name": "math"}})
    ItemFactory(project=project, external_id="c1", metadata={"topic": {"name": "code"}})
    body = {"judges": [judge.pk], "selection": "all", "metadata_filter": {"topic.name": "math"}}
    response = _call(alice, "post", f"{BASE}/judge-runs/", body)
    assert response.status_code == 201, response.json()
    conforms(response, "/api/v1/projects/{slug}/judge-runs/", "post")
    assert response.json()["metadata_filter"] == {"topic.name": "math"}
    run = JudgeRun.objects.get(pk=response.json()["id"])
    assert set(run.judgments.values_list("item__external_id", flat=True)) == {"m1"}


def test_another_projects_judge_cannot_run_here(alice, project, bob_project):
    other = JudgeFactory(project=bob_project)
    body = {"judges": [other.pk], "selection": "all"}
    response = _call(alice, "post", f"{BASE}/judge-runs/", body)
    assert response.status_code == 400 and "judges" in response.json()


def test_run_progress_counts_judgments_and_verdicts(alice, run, judge, conforms):
    first, second, third, _ = run.judgments.all()
    Judgment.objects.filter(pk__in=[first.pk, second.pk]).update(
        status="done", tokens_in=50, tokens_out=5, cost_usd=Decimal("0.002")
    )
    Judgment.objects.filter(pk=third.pk).update(status="failed", error="unparseable reply: x")
    Verdict.objects.create(
        run=run,
        item=first.item,
        judge=judge,
        prompt_version="v",
        status="agreed",
        label={"choice": "A", "strength": 2, "rationale": ""},
    )
    response = _call(alice, "get", f"{BASE}/judge-runs/{run.pk}/")
    conforms(response, "/api/v1/projects/{slug}/judge-runs/{id}/", "get")
    progress = response.json()["progress"]
    assert (progress["passes_done"], progress["passes_failed"], progress["passes_pending"]) == (
        2,
        1,
        1,
    )
    assert progress["verdicts"] == {"agreed": 1, "inconsistent": 0, "failed": 0}
    assert (progress["tokens_in"], progress["cost_usd"]) == (100, "0.004000")
    assert progress["parse_failure_rate"] == pytest.approx(1 / 3)
    assert progress["failures"][0]["error"] == "unparseable reply: x"
    assert progress["budgets"][0]["run_cost_usd"] == "0.004000"


def test_runs_verdicts_and_judgments_are_paginated(alice, run, judge, conforms):
    Verdict.objects.create(
        run=run, item=run.judgments.first().item, judge=judge, prompt_version="v", status="failed"
    )
    listed = _call(alice, "get", f"{BASE}/judge-runs/")
    conforms(listed, "/api/v1/projects/{slug}/judge-runs/", "get")
    assert [r["id"] for r in listed.json()["results"]] == [run.pk]
    verdicts = _call(alice, "get", f"{BASE}/judge-runs/{run.pk}/verdicts/")
    conforms(verdicts, "/api/v1/projects/{slug}/judge-runs/{id}/verdicts/", "get")
    assert verdicts.json()["results"][0]["status"] == "failed"
    page = _call(alice, "get", f"{BASE}/judge-runs/{run.pk}/judgments/", {"page_size": 3})
    conforms(page, "/api/v1/projects/{slug}/judge-runs/{id}/judgments/", "get")
    assert len(page.json()["results"]) == 3 and page.json()["next"]
    rest = api(alice).get(page.json()["next"]).json()["results"]
    assert len(rest) == 1 and rest[0]["external_id"] == "r1"


def test_cancel_stops_an_active_run_and_is_harmless_after(alice, run, conforms):
    response = _call(alice, "post", f"{BASE}/judge-runs/{run.pk}/cancel/")
    conforms(response, "/api/v1/projects/{slug}/judge-runs/{id}/cancel/", "post")
    assert response.json()["status"] == "cancelled"
    again = _call(alice, "post", f"{BASE}/judge-runs/{run.pk}/cancel/")
    assert again.json()["status"] == "cancelled"


def test_another_projects_run_is_404(alice, project, bob_project):
    other = JudgeRun.objects.create(project=bob_project, selection="all")
    for path in (f"/judge-runs/{other.pk}/", f"/judge-runs/{other.pk}/judgments/"):
        assert _call(alice, "get", BASE + path).status_code == 404
    assert _call(alice, "post", f"{BASE}/judge-runs/{other.pk}/cancel/").status_code == 404
    other.refresh_from_db()
    assert other.status == "pending"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": 7, "model_name": "m"}, "name"),
        ({"name": "j", "model_name": 4}, "model_name"),
        ({"name": "j", "model_name": "m", "temperature": False}, "temperature"),
        ({"name": "j", "model_name": "m", "system_prompt": 0}, "system_prompt"),
    ],
)
def test_judge_settings_take_what_the_schema_says_no_more(alice, project, body, field):
    """A number is not a name or a prompt, a boolean not a temperature: DRF would take them
    (as "7", 0.0): a 400 naming the field, and no judge is made."""
    from annotate.models import Judge

    response = api(alice).post(f"{BASE}/judges/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Judge.objects.filter(project=project).exists()
