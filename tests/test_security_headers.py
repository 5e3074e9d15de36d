"""The Content-Security-Policy on every page, and leases that only the annotator can take."""

import pytest
from django.urls import reverse

from annotate.models import Assignment, Role

from .factories import ItemFactory, MembershipFactory, ProjectFactory

DEFAULT_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
}


def policy(response) -> dict[str, str]:
    parts = [p.strip().split(" ", 1) for p in response["Content-Security-Policy"].split(";")]
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts if p[0]}


@pytest.fixture
def pairs(alice):
    project = ProjectFactory(kind="pairwise", gold_rate=0)
    MembershipFactory(project=project, user=alice, role=Role.ANNOTATOR)
    ItemFactory(project=project, responses=[{"id": "1", "text": "a"}, {"id": "2", "text": "b"}])
    return project


@pytest.mark.parametrize("url", ["/login/", "/", "/api/v1/docs/", "/api/v1/schema/", "/admin/"])
def test_every_page_has_the_policy(client, alice, url):
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code in (200, 302)
    assert DEFAULT_POLICY.items() <= policy(response).items()


def test_the_annotate_page_has_the_policy_and_no_inline_script(client, alice, pairs):
    client.force_login(alice)
    response = client.get(reverse("annotate:annotate", args=[pairs.slug]))
    assert DEFAULT_POLICY.items() <= policy(response).items()
    html = response.content.decode()
    # Every <script> has a src, or is JSON data (json_script).
    for tag in html.split("<script")[1:]:
        head = tag.split(">", 1)[0]
        assert " src=" in head or 'type="application/json"' in head, head
    assert " style=" not in html


def test_a_project_that_loads_images_widens_img_src_on_its_pages(client, alice, pairs):
    pairs.load_images = True
    pairs.save()
    client.force_login(alice)
    for url in (reverse("annotate:annotate", args=[pairs.slug]), pairs.get_absolute_url()):
        assert policy(client.get(url))["img-src"] == "'self' data: https: http:"


@pytest.mark.parametrize(
    "site, dest",
    [
        ("cross-site", "document"),  # a link on another site
        ("cross-site", "image"),  # an image on another site
        ("same-origin", "image"),  # an image in a response on our own page
        ("same-site", "document"),  # another host of the same site
        ("same-origin", "iframe"),
    ],
)
def test_a_get_the_annotator_did_not_make_takes_no_lease(client, alice, pairs, site, dest):
    client.force_login(alice)
    url = reverse("annotate:annotate", args=[pairs.slug])
    response = client.get(url, HTTP_SEC_FETCH_SITE=site, HTTP_SEC_FETCH_DEST=dest)
    assert response.status_code == 200
    assert not Assignment.objects.exists()
    assert 'data-testid="start-here-link"' in response.content.decode()


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_DEST": "document"},
        {"HTTP_SEC_FETCH_SITE": "none", "HTTP_SEC_FETCH_DEST": "document"},
        {
            "HTTP_SEC_FETCH_SITE": "same-origin",
            "HTTP_SEC_FETCH_DEST": "empty",
            "HTTP_HX_REQUEST": "1",
        },
        {},
    ],
)
def test_opening_the_page_takes_a_lease(client, alice, pairs, headers):
    client.force_login(alice)
    response = client.get(reverse("annotate:annotate", args=[pairs.slug]), **headers)
    assert response.status_code == 200
    assert Assignment.objects.filter(annotator=alice, status=Assignment.Status.LEASED).count() == 1
