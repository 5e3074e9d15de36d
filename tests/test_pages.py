"""The server-rendered pages of annotate: login, projects, imports, import jobs and members."""

import re
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from annotate.kinds import get_kind
from annotate.models import Annotation, ImportJob, Item, Membership, Project, Role

from .factories import (
    AnnotationFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)

GOOD = (
    '{"external_id": "q1", "prompt": "Q1?", "responses": ["a", "b"]}\n'
    '{"external_id": "q2", "prompt": "Q2?", "responses": ["c", "d"]}\n'
)
BAD = GOOD + '{"external_id": "q3", "prompt": "Q3?"}\n'


def upload(content: str, name: str = "items.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode(), content_type="application/octet-stream")


def page(name: str, slug: str = "", **kwargs) -> str:
    args = [slug, *kwargs.values()] if slug else []
    return reverse(f"annotate:{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def project_pages(project, member) -> list[tuple[str, str]]:
    """(method, url) of every page of `project`; `member` is a user with a membership there."""
    job = ImportJob.objects.create(project=project, filename="x.jsonl", file="imports/x.jsonl")
    return [
        ("get", page("project-detail", project.slug)),
        ("get", page("item-import", project.slug)),
        ("post", page("item-import", project.slug)),
        ("get", page("import-job", project.slug, pk=job.pk)),
        ("get", page("members", project.slug)),
        ("post", page("members", project.slug)),
        ("post", page("member-role", project.slug, user_id=member.pk)),
        ("post", page("member-remove", project.slug, user_id=member.pk)),
    ]


# Login and logout -----------------------------------------------------------------------------


def test_login_page_renders(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_login_with_a_bad_password_shows_an_error(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"didn't match" in response.content
    assert "_auth_user_id" not in client.session


def test_login_with_the_right_password_goes_to_the_projects(client, alice):
    data = {"username": "alice", "password": "correct horse battery"}
    response = client.post(reverse("login"), data)
    assert response.status_code == 302
    assert response.url == page("project-list")


def test_logout_by_post_logs_out(as_user, alice):
    client = as_user(alice)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response.url == reverse("login")
    assert client.get(page("project-list")).status_code == 302


def test_anonymous_is_redirected_to_login_from_every_page(client, project, alice):
    pages = [("get", page("project-list")), ("get", page("project-create"))]
    for method, url in pages + project_pages(project, alice):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login") + "?next="), url


# Project list ---------------------------------------------------------------------------------


def test_project_list_shows_only_my_projects(as_user, alice, project, bob_project):
    response = as_user(alice).get(page("project-list"))
    assert response.status_code == 200
    assert list(response.context["projects"]) == [project]
    assert b"Alice&#x27;s pairs" in response.content
    assert b"Bob&#x27;s pairs" not in response.content


def test_project_list_of_a_user_without_projects_says_so(as_user, charlie, project):
    response = as_user(charlie).get(page("project-list"))
    assert list(response.context["projects"]) == []
    assert b"not a member of any project yet" in response.content


def test_superuser_sees_every_project(as_user, project, bob_project):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    response = as_user(root).get(page("project-list"))
    assert set(response.context["projects"]) == {project, bob_project}


def test_project_list_shows_role_and_item_count(as_user, alice, project):
    ItemFactory.create_batch(3, project=project)
    response = as_user(alice).get(page("project-list"))
    listed = response.context["projects"][0]
    assert (listed.my_role, listed.item_count) == (Role.ADMIN, 3)


def test_project_list_queries_do_not_grow_with_projects(
    as_user, alice, django_assert_max_num_queries
):
    client = as_user(alice)
    for _ in range(2):
        MembershipFactory(user=alice, role=Role.ADMIN)
    with django_assert_max_num_queries(8) as few:
        client.get(page("project-list"))
    for _ in range(10):
        ItemFactory(project=MembershipFactory(user=alice).project)
    with django_assert_max_num_queries(len(few)):
        response = client.get(page("project-list"))
    assert len(response.context["projects"]) == 12


# Project page ---------------------------------------------------------------------------------


def test_project_page_shows_counts(as_user, alice, bob, project):
    project.overlap = 2
    project.save()
    items = ItemFactory.create_batch(3, project=project)
    AnnotationFactory(item=items[0], annotator=alice)
    AnnotationFactory(item=items[0], annotator=bob)
    AnnotationFactory(item=items[2], annotator=alice)
    AnnotationFactory(item=items[1], annotator=None, source=Annotation.Source.IMPORTED)
    MembershipFactory(project=project, user=bob, role=Role.ANNOTATOR)
    response = as_user(alice).get(page("project-detail", project.slug))
    assert response.status_code == 200
    counts = response.context["counts"]
    assert counts["items"] == 3
    assert (counts["items_with_human_label"], counts["items_complete"]) == (2, 1)
    assert counts["annotations"]["human"] == 3
    assert counts["annotations"]["imported"] == 1
    assert counts["members"] == {"annotator": 1, "researcher": 0, "admin": 1}
    assert b'id="count-items">3<' in response.content
    assert b"human 3, judge 0, imported 1" in response.content.replace(b"\n", b"")
    assert b"annotator 1, researcher 0, admin 1" in response.content


def test_non_member_gets_404_on_every_project_page(as_user, alice, bob, project):
    client = as_user(bob)
    for method, url in project_pages(project, alice):
        assert getattr(client, method)(url).status_code == 404, url
    assert Membership.objects.get(project=project, user=alice).role == Role.ADMIN


def test_annotator_cannot_open_import_or_members(as_user, charlie, project):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    client = as_user(charlie)
    response = client.get(page("project-detail", project.slug))
    assert response.status_code == 200
    assert page("item-import", project.slug).encode() not in response.content
    assert client.get(page("item-import", project.slug)).status_code == 403
    assert client.get(page("members", project.slug)).status_code == 403


def test_researcher_can_import_but_not_manage_members(as_user, charlie, project):
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    client = as_user(charlie)
    assert client.get(page("item-import", project.slug)).status_code == 200
    assert client.get(page("members", project.slug)).status_code == 403


def test_login_form_posts_with_its_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("login"))
    data = {
        "username": "alice",
        "password": "correct horse battery",
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
    }
    assert client.post(reverse("login"), data).status_code == 302


def test_unknown_project_is_404(as_user, alice):
    assert as_user(alice).get(page("project-detail", "nope")).status_code == 404


def test_guidelines_markdown_is_rendered_sanitised(as_user, alice, project):
    project.guidelines = "# Rules\n\nBe **kind**.\n\n<script>alert('x')</script>"
    project.save()
    response = as_user(alice).get(page("project-detail", project.slug))
    assert b"<strong>kind</strong>" in response.content
    assert b"<h1>Rules</h1>" in response.content
    assert b"<script>alert" not in response.content


# Project create -------------------------------------------------------------------------------


@pytest.fixture
def staff(db):
    return UserFactory(username="staff", is_staff=True)


def test_non_staff_cannot_create_projects(as_user, alice):
    client = as_user(alice)
    assert client.get(page("project-create")).status_code == 403
    assert client.post(page("project-create"), {"name": "X", "kind": "pairwise"}).status_code == 403
    assert not Project.objects.exists()


def test_staff_creates_a_project_with_defaults(as_user, staff):
    client = as_user(staff)
    assert client.get(page("project-create")).status_code == 200
    data = {"name": "My pairs", "kind": "pairwise", "overlap": "2", "config": ""}
    response = client.post(page("project-create"), data)
    project = Project.objects.get()
    assert response.status_code == 302
    assert response.url == project.get_absolute_url()
    assert (project.slug, project.overlap, project.created_by) == ("my-pairs", 2, staff)
    assert project.config  # completed with the kind's defaults
    assert project.role_of(staff) == Role.ADMIN


def test_create_form_as_rendered_works_for_every_kind(as_user, staff):
    client = as_user(staff)
    html = client.get(page("project-create")).content.decode()
    config = re.search(r'<textarea name="config"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    for kind in ("pairwise", "listwise", "spans", "ratings"):
        data = {
            "name": f"My {kind}",
            "kind": kind,
            "overlap": "1",
            "config": unescape(config).removeprefix("\n"),
        }
        response = client.post(page("project-create"), data)
        assert response.status_code == 302, response.context["form"].errors
        assert Project.objects.get(kind=kind).config == get_kind(kind).DEFAULT_CONFIG


def test_bad_config_json_shows_a_form_error(as_user, staff):
    data = {"name": "My pairs", "kind": "pairwise", "overlap": "1", "config": "{not json"}
    response = as_user(staff).post(page("project-create"), data)
    assert response.status_code == 200
    assert response.context["form"].errors["config"]
    assert not Project.objects.exists()


def test_config_that_is_not_an_object_shows_a_form_error(as_user, staff):
    data = {"name": "My pairs", "kind": "pairwise", "overlap": "1", "config": "[1, 2]"}
    response = as_user(staff).post(page("project-create"), data)
    assert "Expected a JSON object" in response.context["form"].errors["config"][0]
    assert not Project.objects.exists()


def test_duplicate_name_shows_a_form_error(as_user, staff, project):
    data = {"name": project.name, "kind": "pairwise", "overlap": "1"}
    response = as_user(staff).post(page("project-create"), data)
    assert response.status_code == 200
    assert "already exists" in response.context["form"].errors["name"][0]
    assert Project.objects.count() == 1


def test_reserved_name_new_is_refused(as_user, staff):
    data = {"name": "New", "kind": "pairwise", "overlap": "1"}
    response = as_user(staff).post(page("project-create"), data)
    assert response.status_code == 200
    assert "reserved" in response.context["form"].errors["name"][0]
    assert not Project.objects.exists()


# Import ---------------------------------------------------------------------------------------


def post_import(client, project, content: str, name: str = "items.jsonl", **options):
    data = {"file": upload(content, name), **options}
    return client.post(page("item-import", project.slug), data)


def test_small_upload_is_imported_at_once_with_a_report(as_user, alice, project, media):
    response = post_import(as_user(alice), project, GOOD)
    assert response.status_code == 200
    assert response.context["report"]["created"] == 2
    assert b"2 items imported, 0 already there (skipped)." in response.content
    assert Item.objects.filter(project=project).count() == 2
    assert not ImportJob.objects.exists()


def test_bad_file_shows_each_error_and_imports_nothing(as_user, alice, project, media):
    response = post_import(as_user(alice), project, BAD)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not imported" in html
    error = response.context["report"]["errors"][0]
    assert (error["line"], error["field"]) == (3, "responses")
    assert '<td class="num">3</td><td><code>responses</code></td>' in html
    assert escape(error["message"]) in html
    assert not Item.objects.exists()


def test_skip_invalid_imports_the_good_rows(as_user, alice, project, media):
    response = post_import(as_user(alice), project, BAD, skip_invalid="on")
    assert response.context["report"]["created"] == 2
    assert b"1 invalid rows" in response.content
    assert Item.objects.filter(project=project).count() == 2


def test_reupload_reports_duplicates(as_user, alice, project, media):
    client = as_user(alice)
    post_import(client, project, GOOD)
    response = post_import(client, project, GOOD)
    assert b"0 items imported, 2 already there (skipped)." in response.content
    assert Item.objects.filter(project=project).count() == 2


def test_reupload_with_labels_for_existing_adds_the_labels(as_user, alice, project, media):
    client = as_user(alice)
    labeled = GOOD.replace("]}", '], "label": {"choice": "A"}}')
    post_import(client, project, labeled)
    response = post_import(client, project, labeled, keep_labels="on")
    assert b"2 labels of items already there not kept" in response.content
    response = post_import(client, project, labeled, labels_for_existing="on")
    assert b"0 items imported, 2 already there (skipped), 2 labels kept." in response.content
    assert Annotation.objects.filter(item__project=project).count() == 2


def test_file_over_the_size_limit_is_refused(as_user, alice, project, media, settings):
    settings.IMPORT_MAX_BYTES = 50
    response = post_import(as_user(alice), project, GOOD)
    assert response.status_code == 413
    assert b"files of up to 50 bytes can be uploaded (IMPORT_MAX_BYTES)" in response.content
    assert not Item.objects.exists()
    assert not ImportJob.objects.exists()


def test_large_upload_becomes_a_job(as_user, alice, project, media, settings):
    settings.IMPORT_ASYNC_BYTES = 10
    response = post_import(as_user(alice), project, GOOD)
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response.url == page("import-job", project.slug, pk=job.pk)
    assert (job.status, job.filename, job.size_bytes) == ("pending", "items.jsonl", len(GOOD))
    assert not Item.objects.exists()


def test_large_upload_job_runs_and_its_page_shows_done(
    as_user, alice, project, media, settings, eager_celery, django_capture_on_commit_callbacks
):
    settings.IMPORT_ASYNC_BYTES = 10
    client = as_user(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_import(client, project, GOOD, name="export.txt", format="jsonl")
    assert ImportJob.objects.get().status == ImportJob.Status.DONE
    assert Item.objects.filter(project=project).count() == 2
    page_response = client.get(response.url)
    assert b'data-status="done"' in page_response.content
    assert b"2 items imported" in page_response.content


def test_job_page_for_htmx_is_the_status_partial_that_polls_while_running(as_user, alice, project):
    job = ImportJob.objects.create(
        project=project, filename="x.jsonl", file="imports/x.jsonl", size_bytes=100, bytes_done=40
    )
    url = page("import-job", project.slug, pk=job.pk)
    client = as_user(alice)
    assert b"<html" in client.get(url).content
    response = client.get(url, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="job-status"')
    assert 'hx-trigger="every 1s"' in html
    assert "HX-Request" in response["Vary"]
    assert "40%" in html


def test_job_page_stops_polling_when_finished(as_user, alice, project):
    job = ImportJob.objects.create(
        project=project,
        filename="x.jsonl",
        file="imports/x.jsonl",
        status=ImportJob.Status.FAILED,
        report={"fatal": "the file holds no items", "summary": "Nothing imported: no items"},
    )
    url = page("import-job", project.slug, pk=job.pk)
    response = as_user(alice).get(url, headers={"HX-Request": "true"})
    assert b"hx-trigger" not in response.content
    assert b"Nothing imported: no items" in response.content


def test_job_of_another_project_is_404(as_user, alice, project):
    other = ProjectFactory()
    job = ImportJob.objects.create(project=other, filename="x.jsonl", file="imports/x.jsonl")
    url = page("import-job", project.slug, pk=job.pk)
    assert as_user(alice).get(url).status_code == 404


# Members --------------------------------------------------------------------------------------


def role_of(project, user) -> str | None:
    return project.memberships.filter(user=user).values_list("role", flat=True).first()


def test_admin_adds_changes_and_removes_a_member(as_user, alice, bob, project):
    client = as_user(alice)
    response = client.post(page("members", project.slug), {"username": "bob", "role": "annotator"})
    assert response.status_code == 302
    assert role_of(project, bob) == Role.ANNOTATOR
    response = client.get(page("members", project.slug))
    assert "bob added as Annotator." in messages_of(response)
    assert b"bob" in response.content

    url = page("member-role", project.slug, user_id=bob.pk)
    response = client.post(url, {"role": "researcher"}, follow=True)
    assert role_of(project, bob) == Role.RESEARCHER
    assert "bob is now Researcher." in messages_of(response)

    url = page("member-remove", project.slug, user_id=bob.pk)
    response = client.post(url, follow=True)
    assert role_of(project, bob) is None
    assert response.redirect_chain[-1][0] == page("members", project.slug)


def test_adding_an_unknown_username_is_a_form_error(as_user, alice, project):
    data = {"username": "nobody", "role": "annotator"}
    response = as_user(alice).post(page("members", project.slug), data)
    assert response.status_code == 200
    assert "No user named 'nobody'." in response.context["form"].errors["username"]
    assert project.memberships.count() == 1


def test_bad_role_is_refused(as_user, alice, bob, project):
    MembershipFactory(project=project, user=bob, role=Role.ANNOTATOR)
    url = page("member-role", project.slug, user_id=bob.pk)
    response = as_user(alice).post(url, {"role": "overlord"}, follow=True)
    assert "Choose one of the roles." in messages_of(response)
    assert role_of(project, bob) == Role.ANNOTATOR


def test_last_admin_cannot_demote_themselves(as_user, alice, project):
    url = page("member-role", project.slug, user_id=alice.pk)
    response = as_user(alice).post(url, {"role": "annotator"}, follow=True)
    assert any("at least one admin" in m for m in messages_of(response))
    assert role_of(project, alice) == Role.ADMIN


def test_last_admin_cannot_demote_themselves_through_the_add_form(as_user, alice, project):
    data = {"username": "alice", "role": "researcher"}
    response = as_user(alice).post(page("members", project.slug), data)
    assert "at least one admin" in response.context["form"].errors["role"][0]
    assert role_of(project, alice) == Role.ADMIN


def test_last_admin_cannot_remove_themselves(as_user, alice, project):
    url = page("member-remove", project.slug, user_id=alice.pk)
    response = as_user(alice).post(url, follow=True)
    assert any("at least one admin" in m for m in messages_of(response))
    assert role_of(project, alice) == Role.ADMIN


def test_admin_who_removes_themselves_goes_to_the_project_list(as_user, alice, bob, project):
    MembershipFactory(project=project, user=bob, role=Role.ADMIN)
    url = page("member-remove", project.slug, user_id=alice.pk)
    response = as_user(alice).post(url)
    assert response.status_code == 302
    assert response.url == page("project-list")
    assert role_of(project, alice) is None
    assert role_of(project, bob) == Role.ADMIN


def test_member_pages_refuse_get_on_writes(as_user, alice, project):
    client = as_user(alice)
    assert client.get(page("member-role", project.slug, user_id=alice.pk)).status_code == 405
    assert client.get(page("member-remove", project.slug, user_id=alice.pk)).status_code == 405


def test_admin_who_demotes_themselves_goes_to_the_project_page(as_user, alice, bob, project):
    MembershipFactory(project=project, user=bob, role=Role.ADMIN)
    url = page("member-role", project.slug, user_id=alice.pk)
    response = as_user(alice).post(url, {"role": "researcher"}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == project.get_absolute_url()
    assert "alice is now Researcher." in messages_of(response)
    assert role_of(project, alice) == Role.RESEARCHER


def test_admin_who_demotes_themselves_through_the_add_form_goes_to_the_project_page(
    as_user, alice, bob, project
):
    MembershipFactory(project=project, user=bob, role=Role.ADMIN)
    data = {"username": "alice", "role": "annotator"}
    response = as_user(alice).post(page("members", project.slug), data)
    assert response.url == project.get_absolute_url()
    assert role_of(project, alice) == Role.ANNOTATOR


def test_htmx_poll_after_logout_redirects_the_whole_page_to_login(client, project):
    response = client.get("/projects/alices-pairs/import/1/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith("/login/?next=")


def test_plain_request_after_logout_is_an_ordinary_redirect(client, project):
    response = client.get("/projects/alices-pairs/import/1/")
    assert response.status_code == 302
    assert not response.has_header("HX-Redirect")


def test_project_page_links_to_datasets_for_researchers_only(client, project, bob):
    MembershipFactory(project=project, user=bob, role=Role.ANNOTATOR)
    datasets = f"/projects/{project.slug}/datasets/"
    client.force_login(project.memberships.get(role=Role.ADMIN).user)
    assert datasets in client.get(project.get_absolute_url()).content.decode()
    client.force_login(bob)
    assert datasets not in client.get(project.get_absolute_url()).content.decode()
