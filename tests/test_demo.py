"""`seed_demo`, which `make run` calls on every start: the demo is complete and idempotent."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from annotate.demo import PASSWORD
from annotate.models import Item, Kind, Membership, Project, Role

pytestmark = pytest.mark.django_db


def seed() -> str:
    from io import StringIO

    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def logs_in(client, username: str, password: str) -> bool:
    # Through the login page: the login lockout (django-axes) needs the request that
    # `client.login()` does not pass to authenticate().
    response = client.post("/login/", {"username": username, "password": password})
    return response.status_code == 302 and "_auth_user_id" in client.session


def test_demo_has_one_project_per_kind_with_a_few_dozen_items():
    seed()
    projects = Project.objects.order_by("kind")
    assert sorted(p.kind for p in projects) == sorted(Kind.values)
    for project in projects:
        assert project.items.count() >= 24
        assert project.guidelines


def test_demo_items_include_chat_prompts_and_gold_answers():
    seed()
    pairwise = Project.objects.get(kind=Kind.PAIRWISE)
    assert any(item.is_chat for item in pairwise.items.all())
    assert pairwise.items.exclude(gold_label=None).exists()


def test_demo_users_have_their_roles_in_every_project():
    seed()
    roles = dict(Membership.objects.values_list("user__username", "role").distinct())
    assert roles == {
        "admin": Role.ADMIN,
        "researcher": Role.RESEARCHER,
        "annotator1": Role.ANNOTATOR,
        "annotator2": Role.ANNOTATOR,
    }
    assert Membership.objects.count() == 4 * 4
    assert get_user_model().objects.get(username="admin").is_superuser


def test_printed_logins_work(client):
    output = seed()
    for username in ("admin", "researcher", "annotator1", "annotator2"):
        assert f"{username}" in output
        assert logs_in(client, username, PASSWORD)
    assert PASSWORD in output


def test_seeding_twice_changes_nothing():
    seed()
    before = (Project.objects.count(), Item.objects.count(), Membership.objects.count())
    output = seed()
    after = (Project.objects.count(), Item.objects.count(), Membership.objects.count())
    assert after == before
    assert get_user_model().objects.count() == 4
    assert "nothing to do" in output


def test_seeding_completes_a_partly_deleted_demo():
    seed()
    Project.objects.get(kind=Kind.SPANS).delete()
    Item.objects.filter(project__kind=Kind.RATINGS).order_by("id")[:1].get().delete()
    seed()
    assert Project.objects.filter(kind=Kind.SPANS).get().items.count() >= 24
    ratings = Project.objects.get(kind=Kind.RATINGS)
    assert ratings.items.count() == Project.objects.get(kind=Kind.LISTWISE).items.count()


def test_seeding_keeps_a_changed_password(client):
    seed()
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("my own secret")
    admin.save()
    seed()
    assert logs_in(client, "admin", "my own secret")
