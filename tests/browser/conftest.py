"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Screenshots go to test-artifacts/screenshots/ (ignored by git) so that pages can be looked at.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = os.getenv("PREFHUB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"

# Playwright's sync API runs an event loop in this thread; the tests' own ORM calls between
# browser steps are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A page whose test fails if the Content-Security-Policy blocked anything on it: every
    browser test shows that the pages work under the policy."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    blocked = []

    def on_console(message):
        if "Content Security Policy" in message.text:
            blocked.append(f"{message.location['url']}: {message.text}")

    page.on("console", on_console)
    yield page
    context.close()
    assert blocked == [], blocked


@pytest.fixture
def screenshot(page, request):
    """screenshot("name") saves the page as test-artifacts/screenshots/<test>-<name>.png;
    screenshot("name", on=other_page) saves another page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str, on=None) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        (on or page).screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def caret_page(browser, live_server):
    """A page in a Chromium with caret browsing on (F7 in a desktop Chromium), where the arrow
    keys move a caret through the text and Shift+arrows select it: how a keyboard-only
    annotator marks a span. A browser of its own: caret browsing is a launch flag."""
    caret = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*FLAGS, "--enable-caret-browsing"]
    )
    context = caret.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    caret.close()


def log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


# Annotating ---------------------------------------------------------------------------------

PASSWORD = "correct horse battery"  # UserFactory's

# True once #work shows another assignment than `previous` (or none) and annotate.js has set
# the new form up (it stamps data-shown-at on it); htmx swaps #work after every submit.
_WORK_READY = """previous => {
  const work = document.querySelector('[data-testid="work"]');
  if (!work || (work.dataset.assignment || "") === previous) return false;
  const form = document.getElementById("annotate-form");
  return !form || !!form.dataset.shownAt;
}"""


@pytest.fixture
def annotator(transactional_db):
    """An annotator who logs in with PASSWORD (the live server runs in another thread, so
    browser tests use transactional_db)."""
    from tests.factories import UserFactory

    return UserFactory(username="annie")


def make_project(kind: str, member, responses: list[list], *, config: dict | None = None, **fields):
    """A project of `kind` where `member` annotates, with one item per entry of `responses`
    (each a list of response texts; ids "r1", "r2", ...), served in that order."""
    from annotate.kinds import get_kind
    from annotate.models import Role
    from tests.factories import ItemFactory, MembershipFactory, ProjectFactory

    project = ProjectFactory(
        kind=kind, config=get_kind(kind).clean_config(config or {}), gold_rate=0, **fields
    )
    MembershipFactory(project=project, user=member, role=Role.ANNOTATOR)
    for n, texts in enumerate(responses, start=1):
        ItemFactory(
            project=project,
            external_id=f"{kind}-{n}",
            prompt=f"{kind} question {n}?",
            responses=[{"id": f"r{i}", "text": t, "model": "m"} for i, t in enumerate(texts, 1)],
        )
    return project


def wait_for_work(page, previous: str = "") -> str:
    """Wait until #work shows an assignment other than `previous` (or the nothing-left page),
    ready for keys; returns its data-assignment ("" when nothing is left)."""
    page.wait_for_function(_WORK_READY, arg=previous)
    return page.get_by_test_id("work").get_attribute("data-assignment") or ""


def open_annotate(page, project, user) -> str:
    """Log in, open the project page and press its Start button; returns the assignment id."""
    log_in(page, user.username, PASSWORD)
    page.goto(project.get_absolute_url())
    page.get_by_test_id("start-annotating").click()
    return wait_for_work(page)


def tab_until(page, predicate: str, limit: int = 80) -> None:
    """Press Tab (the keyboard only) until `predicate`, a JS function of the focused element,
    is true."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"({predicate})(document.activeElement)"):
            return
    raise AssertionError(f"Tab never reached an element where {predicate}")


def tab_to(page, testid: str) -> None:
    """Press Tab until the element with data-testid `testid` has the focus."""
    tab_until(page, f"el => el.dataset.testid === {testid!r}")


def current_assignment(page):
    """The Assignment that the page shows, from the database."""
    from annotate.models import Assignment

    pk = page.get_by_test_id("work").get_attribute("data-assignment")
    return Assignment.objects.select_related("item").get(pk=pk)


def annotation_of(assignment):
    from annotate.models import Annotation

    return Annotation.objects.get(assignment=assignment)
