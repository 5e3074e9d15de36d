"""The dataset versions page: create, list with status, poll while building, download links."""

from __future__ import annotations

from django.urls import reverse

from annotate.models import Role
from feedback_api.models import DatasetVersion

from .factories import AnnotationFactory, ItemFactory, MembershipFactory, ProjectFactory

FORM = {
    "format": "pairwise",
    "source": "both",
    "min_agreement": "0",
    "keep_single_label": "on",
    "annotators": "",
    "test_fraction": "0.2",
    "seed": "0",
    "split_by": "prompt",
}


def url(project) -> str:
    return reverse("dataset-pages:datasets", args=[project.slug])


def test_page_shows_the_form_with_the_kinds_formats(client, alice, project):
    client.force_login(alice)
    response = client.get(url(project))
    assert response.status_code == 200
    assert b'id="dataset-form"' in response.content
    assert b'value="pairwise"' in response.content
    assert b'value="listwise"' not in response.content
    assert b"No versions yet." in response.content


def test_creating_builds_and_lists_with_download_links(
    client, alice, project, media, eager_celery, django_capture_on_commit_callbacks
):
    for i in range(5):
        AnnotationFactory(item=ItemFactory(project=project, external_id=f"p{i}"))
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(project), FORM)
    assert response.status_code == 302
    version = DatasetVersion.objects.get()
    assert version.status == "done"
    assert version.filters["keep_single_label"] is True
    page = client.get(url(project)).content.decode()
    assert 'data-status="done"' in page
    assert "Version 1 is being built." in page
    assert f"/api/v1/projects/{project.slug}/datasets/1/download/?file=train.parquet" in page
    assert "hx-trigger" not in page
    download = client.get(f"/api/v1/projects/{project.slug}/datasets/1/download/?file=archive")
    assert download.status_code == 200


def test_bad_form_is_shown_again_with_errors(client, alice, project):
    client.force_login(alice)
    response = client.post(url(project), {**FORM, "test_fraction": "2", "since": "nope"})
    assert response.status_code == 400
    assert not DatasetVersion.objects.exists()
    assert response.context["form"].errors.keys() == {"test_fraction", "since"}


def test_since_after_until_is_a_form_error(client, alice, project):
    client.force_login(alice)
    response = client.post(url(project), {**FORM, "since": "2025-02-01", "until": "2025-01-01"})
    assert response.status_code == 400
    assert "until" in response.context["form"].errors


def test_htmx_gets_the_versions_partial_that_polls_while_building(client, alice, project):
    DatasetVersion.objects.create(project=project, number=1, format="pairwise", items_total=10)
    DatasetVersion.objects.filter(number=1).update(status="running", items_done=4)
    client.force_login(alice)
    response = client.get(url(project), headers={"HX-Request": "true"})
    content = response.content.decode()
    assert content.lstrip().startswith('<section id="versions"')
    assert 'hx-trigger="every 2s"' in content
    assert f'hx-get="{url(project)}"' in content
    assert "40%" in content
    assert "<html" not in content


def test_other_kinds_offer_their_formats(client, alice):
    ranks = ProjectFactory(kind="listwise", slug="ranks")
    MembershipFactory(project=ranks, user=alice, role=Role.RESEARCHER)
    client.force_login(alice)
    content = client.get(url(ranks)).content
    assert b'value="listwise"' in content and b'value="listwise-pairs"' in content


def test_someone_elses_project_is_404(client, bob, project):
    client.force_login(bob)
    assert client.get(url(project)).status_code == 404
    assert client.post(url(project), FORM).status_code == 404


def test_annotators_get_403(client, charlie, project):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    client.force_login(charlie)
    assert client.get(url(project)).status_code == 403


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(url(project))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
