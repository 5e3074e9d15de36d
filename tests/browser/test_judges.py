"""Judges in the browser: an admin configures an OpenAI-compatible judge against
tests/llm_server.py on 127.0.0.1, previews its prompt, runs it, watches the run finish and reads
its calibration; an annotator finds no way in. Celery is eager: the run works inside the request
that starts it, its threads on their own connections to the committed test database."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from annotate.models import Annotation, Role
from judges.models import JudgeRun, Verdict
from tests.factories import (
    AnnotationFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)
from tests.test_judge_runs import BAD, GOOD, knows_the_answer

from .conftest import PASSWORD, log_in


@pytest.fixture
def admin(transactional_db):
    return UserFactory(username="ada")


@pytest.fixture
def paris(admin):
    """A pairwise project that `admin` runs: 4 items, Paris first in q0 and q2, second in q1
    and q3; humans chose the Paris answer on q0-q2 and the other one on q3."""
    project = ProjectFactory(name="Capitals", slug="capitals", kind="pairwise")
    MembershipFactory(project=project, user=admin, role=Role.ADMIN)
    for n in range(4):
        good, bad = {"id": "g", "text": GOOD, "model": "m"}, {"id": "b", "text": BAD, "model": "m"}
        responses = [good, bad] if n % 2 == 0 else [bad, good]
        item = ItemFactory(
            project=project,
            external_id=f"q{n}",
            prompt="What is the capital of France?",
            responses=responses,
        )
        paris_letter = "A" if n % 2 == 0 else "B"
        other = "B" if paris_letter == "A" else "A"
        AnnotationFactory(item=item, label={"choice": other if n == 3 else paris_letter})
    return project


def test_admin_configures_previews_runs_and_calibrates_a_judge(
    page, screenshot, admin, paris, llm_server, eager_celery
):
    llm_server.respond = knows_the_answer
    errors = []

    def on_console(message):
        # The favicon's 404 is the browser's own request, not a page's.
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            errors.append(f"{message.location['url']}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    log_in(page, admin.username, PASSWORD)
    page.goto(paris.get_absolute_url())
    page.get_by_test_id("judges").click()
    expect(page.get_by_role("heading", name="Judges")).to_be_visible()
    page.get_by_role("link", name="New judge").click()

    page.fill("#id_name", "gpt")
    page.select_option("#id_backend", "openai_compat")
    page.fill("#id_model_name", "gpt-x")
    page.fill("#id_base_url", llm_server.openai_url)
    page.fill("#id_price_in_per_mtok", "2.5")
    page.fill("#id_price_out_per_mtok", "10")
    page.fill("#id_budget_usd", "1")

    # Preview renders q1's prompt (the Paris answer second) and saves nothing.
    page.fill("#id_preview_item", "q1")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Preview: item q1")
    first_pass = preview.locator("pre.prompt").nth(1)
    expect(first_pass).to_contain_text(f"[Response A]\n{BAD}\n[End of response A]")
    expect(first_pass).to_contain_text(f"[Response B]\n{GOOD}\n[End of response B]")
    expect(preview.get_by_role("heading", name=re.compile("Pass 1 order g, b"))).to_be_visible()
    screenshot("preview")
    assert not paris.judges.exists()
    assert llm_server.usage()["requests"] == 0
    # The form kept what was typed.
    expect(page.locator("#id_base_url")).to_have_value(llm_server.openai_url)

    page.get_by_role("button", name="Save judge").click()
    expect(page.get_by_text("Judge 'gpt' saved.")).to_be_visible()
    judge = paris.judges.get()
    assert (judge.model_name, judge.base_url) == ("gpt-x", llm_server.openai_url)
    assert judge.budget_usd == 1 and judge.price_in_per_mtok == Decimal("2.5")
    # The prefilled default prompts came back as CRLF; the judge still follows the default.
    assert (judge.system_prompt, judge.prompt_template) == ("", "")

    page.get_by_role("link", name="Start a run").click()
    page.get_by_label("gpt").check()
    page.get_by_label("All items").check()
    # Eager Celery judges the whole run inside this request (a few seconds on a busy machine).
    page.get_by_role("button", name="Start run").click(no_wait_after=True)
    page.wait_for_url(re.compile(r"/judge-runs/\d+/$"), timeout=30_000)

    # The run page polls itself every 2 s while the run is active.
    status = page.locator("#run-status")
    expect(status).to_have_attribute("data-status", "done", timeout=15_000)
    expect(status.locator(".status-done")).to_have_text("Done")
    expect(page.locator("#run-passes")).to_have_text("8 done, 0 failed, 0 pending of 8 passes")
    verdicts = page.locator("#run-verdicts")
    expect(verdicts.locator("dt")).to_have_text(["agreed", "inconsistent", "failed"])
    expect(verdicts.locator("dd")).to_have_text(["4", "0", "0"])
    cost = page.locator("#run-cost").inner_text()
    assert re.fullmatch(r"\d+\.\d{4} USD", cost) and cost != "0.0000 USD", cost
    expect(page.get_by_text("No failed passes.")).to_be_visible()
    expect(page.locator("#run-failures")).to_have_count(0)
    screenshot("run-done")

    run = JudgeRun.objects.get()
    assert run.status == JudgeRun.Status.DONE and run.items == 4
    assert Verdict.objects.filter(status="agreed").count() == 4
    assert Annotation.objects.filter(source="judge").count() == 4
    assert llm_server.usage()["requests"] == 8

    # The judge list shows the spend; its calibration link opens the report.
    page.get_by_role("link", name="Judge runs").click()
    page.get_by_role("link", name="Judges", exact=True).click()
    row = page.locator(f"#judge-{judge.pk}")
    expect(row.locator("td").nth(3)).to_have_text(cost.removesuffix(" USD"))  # spent
    expect(row.locator("td").nth(4)).to_have_text("0.0000")  # reserved
    # The first report of a server process imports scikit-learn and SciPy (~3 s of CPU, kept
    # out of the web process until then): with the suite's two processes on two cores that
    # navigation took over 10 s once.
    row.get_by_role("link", name="Against the humans").click(timeout=30_000)
    expect(page.get_by_role("heading", name="gpt against the humans", exact=True)).to_be_visible()
    expect(page.get_by_test_id("calibration-fit")).to_have_text("Not fit to label alone.")
    table = page.locator("table.calibration-table")
    agreement = table.locator('tr[data-metric="agreement_without_ties"]')
    expect(agreement.locator("td").nth(0)).to_have_text("75.0%")
    expect(agreement.locator("td").nth(2)).to_have_text("4")
    expect(table.locator('tr[data-metric="position_consistency"] td').first).to_have_text("100.0%")
    screenshot("calibration")
    assert errors == [], errors


def test_an_annotator_finds_no_judges(page, screenshot, annotator, paris):
    MembershipFactory(project=paris, user=annotator, role=Role.ANNOTATOR)
    log_in(page, annotator.username, PASSWORD)
    page.goto(paris.get_absolute_url())
    expect(page.get_by_test_id("start-annotating")).to_be_visible()
    expect(page.get_by_test_id("judges")).to_have_count(0)

    response = page.goto(f"/projects/{paris.slug}/judges/")
    assert response.status == 403
    expect(page.get_by_role("heading", name=re.compile("403"))).to_be_visible()
    screenshot("judges-forbidden")
    for path in ("judges/new/", "judge-runs/new/"):
        assert page.goto(f"/projects/{paris.slug}/{path}").status == 403
