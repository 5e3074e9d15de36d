"""The judge pages: configure a judge, preview its prompt, start, watch and cancel a run."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from annotate.models import Judge, Role
from judges.models import JudgeRun, Judgment, Verdict

from .factories import ItemFactory, JudgeFactory, MembershipFactory

SLUG = "alices-pairs"
KEY_NAME = "PREFHUB_TEST_JUDGE_KEY"
KEY_VALUE = "sk-test-do-not-show-9f8e7d"


@pytest.fixture(autouse=True)
def key_in_environment(monkeypatch):
    """The key's value is in this process's environment: no page may ever show it."""
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
    items = [ItemFactory(project=project, external_id=f"r{i}") for i in range(3)]
    run = JudgeRun.objects.create(
        project=project, selection="all", items=3, passes_total=6, status="running"
    )
    run.judges.set([judge])
    run.started_at = timezone.now() - timezone.timedelta(seconds=10)
    run.save()
    for item in items:
        for p in range(2):
            Judgment.objects.create(
                run=run, item=item, judge=judge, pass_index=p, prompt_version="v"
            )
    return run


def _form(**overrides) -> dict:
    data = {
        "name": "claude",
        "backend": "anthropic",
        "model_name": "claude-test",
        "base_url": "",
        "api_key_env": "ANTHROPIC_API_KEY",
        "temperature": "0",
        "max_tokens": "512",
        "timeout_s": "30",
        "structured_output": "json_schema",
        "max_concurrency": "4",
        "requests_per_minute": "",
        "tokens_per_minute": "",
        "price_in_per_mtok": "3",
        "price_out_per_mtok": "15",
        "budget_usd": "2.5",
        "passes": "",
        "system_prompt": "",
        "prompt_template": "",
        "use_reference": "on",
        "reward_model_id": "",
        "active": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _page(client, user, url, method="get", data=None):
    client.force_login(user)
    response = getattr(client, method)(url, data or {})
    body = response.content.decode()
    assert KEY_VALUE not in body
    return response, body


# Who sees what ------------------------------------------------------------------------------

PAGES = [
    ("get", f"/projects/{SLUG}/judges/"),
    ("get", f"/projects/{SLUG}/judges/new/"),
    ("get", f"/projects/{SLUG}/judges/{{judge}}/"),
    ("get", f"/projects/{SLUG}/judge-runs/"),
    ("get", f"/projects/{SLUG}/judge-runs/new/"),
    ("get", f"/projects/{SLUG}/judge-runs/{{run}}/"),
    ("post", f"/projects/{SLUG}/judge-runs/{{run}}/cancel/"),
    ("get", f"/projects/{SLUG}/judges/{{judge}}/calibration/"),
]
READ_ONLY = {0, 3, 5, 7}


@pytest.mark.parametrize(("index", "page"), list(enumerate(PAGES)))
def test_non_member_gets_404_on_every_judge_page(client, run, judge, charlie, index, page):
    method, url = page
    response, _ = _page(client, charlie, url.format(judge=judge.pk, run=run.pk), method)
    assert response.status_code == 404


@pytest.mark.parametrize(("index", "page"), list(enumerate(PAGES)))
def test_annotator_gets_403_on_every_judge_page(client, run, judge, annotator, index, page):
    method, url = page
    response, body = _page(client, annotator, url.format(judge=judge.pk, run=run.pk), method)
    assert response.status_code == 403
    assert KEY_NAME not in body


@pytest.mark.parametrize(("index", "page"), list(enumerate(PAGES)))
def test_researcher_reads_but_never_configures(client, run, judge, researcher, index, page):
    method, url = page
    response, body = _page(client, researcher, url.format(judge=judge.pk, run=run.pk), method)
    assert response.status_code == (200 if index in READ_ONLY else 403)
    assert KEY_NAME not in body
    run.refresh_from_db()
    assert run.status == "running"


def test_project_page_links_to_judges_for_researchers_only(client, project, researcher, annotator):
    _, body = _page(client, researcher, f"/projects/{SLUG}/")
    assert f"/projects/{SLUG}/judges/" in body
    _, body = _page(client, annotator, f"/projects/{SLUG}/")
    assert f"/projects/{SLUG}/judges/" not in body


def test_judge_list_shows_budget_spent_and_left(client, alice, judge):
    judge.spent_usd, judge.reserved_usd = Decimal("1.25"), Decimal("0.25")
    judge.save()
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/")
    assert response.status_code == 200
    assert "gpt-test" in body and "1.2500" in body and "3.5000" in body


def test_unknown_judge_and_run_ids_are_404(client, alice, project):
    for url in ("judges/999/", "judges/99999999999999999999/", "judge-runs/7/"):
        response, _ = _page(client, alice, f"/projects/{SLUG}/{url}")
        assert response.status_code == 404


def test_another_projects_judge_is_404(client, alice, project, bob_project):
    other = JudgeFactory(project=bob_project)
    response, _ = _page(client, alice, f"/projects/{SLUG}/judges/{other.pk}/")
    assert response.status_code == 404


# Configure ----------------------------------------------------------------------------------


def test_new_judge_form_is_prefilled_with_the_kinds_prompt(client, alice, project):
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/new/")
    assert response.status_code == 200
    assert "Compare two responses" in body
    assert "NAME of the environment variable" in body


def test_admin_creates_a_judge(client, alice, project):
    response, _ = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", _form())
    assert response.status_code == 302
    judge = Judge.objects.get(project=project, name="claude")
    assert (judge.backend, judge.api_key_env, judge.budget_usd) == (
        "anthropic",
        "ANTHROPIC_API_KEY",
        Decimal("2.5"),
    )
    assert judge.passes is None and judge.requests_per_minute is None


def test_the_untouched_default_prompt_a_browser_sends_back_stays_the_default(
    client, alice, project
):
    """Browsers send a textarea's lines as CRLF: the prefilled default comes back as such."""
    from annotate.kinds import get_kind

    kind = get_kind(project.kind)
    crlf = {
        "system_prompt": kind.judge_system.replace("\n", "\r\n"),
        "prompt_template": kind.judge_template.replace("\n", "\r\n"),
    }
    url = f"/projects/{SLUG}/judges/new/"
    assert _page(client, alice, url, "post", _form(**crlf))[0].status_code == 302
    judge = Judge.objects.get(name="claude")
    assert (judge.system_prompt, judge.prompt_template) == ("", "")
    mine = _form(name="mine", prompt_template="Q:\r\n{{ prompt }}\r\n")
    assert _page(client, alice, url, "post", mine)[0].status_code == 302
    assert Judge.objects.get(name="mine").prompt_template == "Q:\n{{ prompt }}"


def test_admin_edits_a_judge(client, alice, judge):
    data = _form(name="gpt", backend="openai_compat", model_name="gpt-5", api_key_env=KEY_NAME)
    response, _ = _page(client, alice, f"/projects/{SLUG}/judges/{judge.pk}/", "post", data)
    assert response.status_code == 302
    judge.refresh_from_db()
    assert judge.model_name == "gpt-5"


def test_edit_page_shows_the_key_variable_name_to_admins_only(client, alice, judge):
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/{judge.pk}/")
    assert response.status_code == 200
    assert KEY_NAME in body


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("api_key_env", "sk-live-1234 5678", "not the key itself"),
        ("base_url", "ftp://example.com", "http://"),
        ("temperature", "7", "must be from 0 to 2"),
        ("model_name", "", "name the model"),
        ("prompt_template", "{% if %}", "does not parse"),
        ("passes", "9", "must be from 1 to 4"),
        ("max_tokens", "lots", "whole number"),
    ],
)
def test_bad_input_is_shown_on_its_field_and_saves_nothing(
    client, alice, project, field, value, message
):
    data = _form(**{field: value})
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", data)
    assert response.status_code == 400
    form = response.context["form"]
    assert message in " ".join(form.errors[field])
    assert f'id="field-{field}"' in body
    assert not Judge.objects.filter(project=project).exists()


def test_duplicate_name_is_refused_on_the_name(client, alice, judge):
    data = _form(name="gpt")
    response, _ = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", data)
    assert response.status_code == 400
    assert "already has a judge" in response.context["form"].errors["name"][0]


def test_jury_needs_two_members(client, alice, project, judge):
    data = _form(name="jury", backend="jury", model_name="", members=[judge.pk])
    response, _ = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", data)
    assert "at least two" in response.context["form"].errors["members"][0]
    other = JudgeFactory(project=project, name="other")
    data["members"] = [judge.pk, other.pk]
    response, _ = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", data)
    assert response.status_code == 302
    assert set(Judge.objects.get(name="jury").members.all()) == {judge, other}


# Preview ------------------------------------------------------------------------------------


def test_preview_shows_each_pass_escaped_and_saves_nothing(client, alice, project):
    ItemFactory(project=project, external_id="first", prompt="<b>first</b>?")
    ItemFactory(project=project, external_id="second", prompt="Second?")
    data = _form(preview="1", system_prompt="Be fair.")
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", data)
    assert response.status_code == 200
    assert [p["pass"] for p in response.context["preview"]["passes"]] == [0, 1]
    assert "&lt;b&gt;first&lt;/b&gt;?" in body and "<b>first</b>" not in body
    assert "Be fair." in body
    assert not Judge.objects.filter(project=project).exists()


def test_preview_of_a_named_item_keeps_the_saved_judge(client, alice, project, judge):
    ItemFactory(project=project, external_id="first")
    ItemFactory(project=project, external_id="second", prompt="The second one?")
    data = _form(name="gpt", backend="openai_compat", preview="1", preview_item="second")
    data["prompt_template"] = "Q: {{ prompt }}"
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/{judge.pk}/", "post", data)
    assert "Q: The second one?" in body
    judge.refresh_from_db()
    assert (judge.name, judge.backend, judge.prompt_template) == ("gpt", "openai_compat", "")


def test_preview_of_an_unknown_item_says_so(client, alice, project):
    ItemFactory(project=project)
    data = _form(preview="1", preview_item="nope")
    response, body = _page(client, alice, f"/projects/{SLUG}/judges/new/", "post", data)
    assert "no item with external id" in body
    assert response.context["preview"] is None


# Runs ---------------------------------------------------------------------------------------


def test_starting_a_run_plans_one_judgment_per_item_and_pass(client, alice, project, judge):
    items = [ItemFactory(project=project) for _ in range(3)]
    data = {"judges": [judge.pk], "selection": "all", "limit": "2"}
    response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/new/", "post", data)
    run = JudgeRun.objects.get(project=project)
    assert response.status_code == 302
    assert response.url == f"/projects/{SLUG}/judge-runs/{run.pk}/"
    planned = set(run.judgments.values_list("item_id", "pass_index"))
    assert planned == {(i.pk, p) for i in items[:2] for p in (0, 1)}
    assert (run.items, run.passes_total, run.created_by) == (2, 4, alice)


def test_run_by_external_ids_needs_ids(client, alice, project, judge):
    ItemFactory(project=project, external_id="x1")
    data = {"judges": [judge.pk], "selection": "ids", "external_ids": ""}
    response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/new/", "post", data)
    assert response.status_code == 400
    assert "external ids" in response.context["form"].errors["external_ids"][0]
    assert not JudgeRun.objects.exists()
    data["external_ids"] = "x1\nmissing"
    response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/new/", "post", data)
    assert JudgeRun.objects.get().passes_total == 2


def test_a_run_page_reads_a_metadata_filter_line_by_line(client, alice, project, judge):
    ItemFactory(project=project, external_id="a", metadata={"domain": "math", "level": 3})
    ItemFactory(project=project, external_id="b", metadata={"domain": "math", "level": "3"})
    ItemFactory(project=project, external_id="c", metadata={"domain": "code", "level": 3})
    data = {"judges": [judge.pk], "selection": "all", "metadata_filter": "level = 3"}
    data["metadata_filter"] = "domain = math\n\n level=3 "
    response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/new/", "post", data)
    run = JudgeRun.objects.get()
    assert response.status_code == 302
    assert run.metadata_filter == {"domain": "math", "level": 3}
    assert set(run.judgments.values_list("item__external_id", flat=True)) == {"a"}
    _, body = _page(client, alice, response.url, "get")
    assert "domain = math" in body and "level = 3" in body

    for bad, message in (("domain math", "line 1"), ("a.. = 1", "not a field name")):
        data["metadata_filter"] = bad
        response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/new/", "post", data)
        assert response.status_code == 400
        assert message in response.context["form"].errors["metadata_filter"][0]
    assert JudgeRun.objects.count() == 1


def test_run_of_a_judge_past_its_budget_is_refused(client, alice, project, judge):
    ItemFactory(project=project)
    judge.spent_usd = judge.budget_usd
    judge.save()
    data = {"judges": [judge.pk], "selection": "all"}
    response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/new/", "post", data)
    assert "spent its budget" in response.context["form"].errors["judges"][0]
    assert not JudgeRun.objects.exists()


def test_run_page_shows_progress_verdicts_money_and_failures(client, alice, run, judge):
    judgments = list(run.judgments.all())
    for j in judgments[:3]:
        Judgment.objects.filter(pk=j.pk).update(
            status="done", tokens_in=100, tokens_out=10, cost_usd=Decimal("0.01")
        )
    Judgment.objects.filter(pk=judgments[3].pk).update(
        status="failed", error="unparseable reply: no JSON <object>", finished_at=timezone.now()
    )
    Judgment.objects.filter(pk=judgments[4].pk).update(status="failed", error="gave up")
    Verdict.objects.create(
        run=run, item=judgments[0].item, judge=judge, prompt_version="v", status="agreed"
    )
    Verdict.objects.create(
        run=run, item=judgments[2].item, judge=judge, prompt_version="v", status="inconsistent"
    )
    judge.spent_usd, judge.reserved_usd = Decimal("0.03"), Decimal("0.5")
    judge.save()
    response, body = _page(client, alice, f"/projects/{SLUG}/judge-runs/{run.pk}/")
    progress = response.context["progress"]
    assert (progress["passes_done"], progress["passes_failed"], progress["passes_pending"]) == (
        3,
        2,
        1,
    )
    assert progress["verdicts"] == {"agreed": 1, "inconsistent": 1, "failed": 0}
    assert progress["parse_failure_rate"] == pytest.approx(1 / 5)
    assert progress["budgets"][0]["left_usd"] == Decimal("4.47")
    assert "3 done, 2 failed, 1 pending of 6 passes" in body
    assert "tokens 300 in / 30 out" in body and "0.0300 USD" in body
    assert "unparseable reply: no JSON &lt;object&gt;" in body
    assert 'hx-trigger="every 2s"' in body and "Cancel run" in body


def test_run_page_polls_only_its_partial_with_htmx(client, alice, run):
    client.force_login(alice)
    response = client.get(f"/projects/{SLUG}/judge-runs/{run.pk}/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="run-status"')
    assert "<html" not in body


def test_cancel_stops_the_run_and_ends_the_polling(client, alice, run):
    response, _ = _page(client, alice, f"/projects/{SLUG}/judge-runs/{run.pk}/cancel/", "post")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"
    response, body = _page(client, alice, f"/projects/{SLUG}/judge-runs/{run.pk}/")
    assert "every 2s" not in body and "Cancel run" not in body


def test_run_list_shows_the_projects_runs_only(client, alice, run, bob_project):
    JudgeRun.objects.create(project=bob_project, selection="all")
    response, body = _page(client, alice, f"/projects/{SLUG}/judge-runs/")
    assert list(response.context["runs"]) == [run]
    assert "gpt" in body


def test_list_pages_cost_the_same_queries_for_more_rows(
    client, alice, project, judge, django_assert_max_num_queries
):
    def runs_and_judges(n):
        for _ in range(n):
            other = JudgeFactory(project=project)
            JudgeRun.objects.create(project=project, selection="all").judges.set([judge, other])

    client.force_login(alice)
    runs_and_judges(1)
    with django_assert_max_num_queries(20) as few:
        client.get(f"/projects/{SLUG}/judge-runs/")
        client.get(f"/projects/{SLUG}/judges/")
    runs_and_judges(5)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(f"/projects/{SLUG}/judge-runs/")
        client.get(f"/projects/{SLUG}/judges/")
