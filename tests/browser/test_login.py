"""A person logs in, sees only their projects and opens one."""

from annotate.models import Role
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

from .conftest import log_in


def test_annotator_logs_in_and_sees_only_their_projects(page, screenshot, transactional_db):
    alice = UserFactory(username="alice")
    alice.set_password("a long password")
    alice.save()
    mine = ProjectFactory(name="Alice's pairs")
    MembershipFactory(project=mine, user=alice, role=Role.ANNOTATOR)
    ProjectFactory(name="Someone else's")

    log_in(page, "alice", "a long password")
    screenshot("project-list")
    assert page.get_by_role("link", name="Alice's pairs").is_visible()
    assert page.get_by_text("Someone else's").count() == 0

    page.get_by_role("link", name="Alice's pairs").click()
    page.wait_for_url(f"**{mine.get_absolute_url()}")
    screenshot("project")
    assert page.locator("h1").inner_text().startswith("Alice's pairs")


def test_wrong_password_shows_an_error(page, transactional_db):
    UserFactory(username="bob")
    page.goto("/login/")
    page.fill("#id_username", "bob")
    page.fill("#id_password", "not it")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").is_visible()
    assert "/login/" in page.url
