"""The Django admin: an annotation's label edited there is checked like a submitted one."""

import json

import pytest

from annotate.models import Annotation

from .factories import AnnotationFactory, ItemFactory, UserFactory


@pytest.fixture
def admin_client(client, db):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def change(client, annotation, label, **fields):
    data = {
        "item": annotation.item_id,
        "source": annotation.source,
        "annotator": annotation.annotator_id,
        "kind": annotation.kind,
        "label": json.dumps(label),
        "created_at_0": "2026-01-02",
        "created_at_1": "10:00:00",
        **fields,
    }
    return client.post(f"/admin/annotate/annotation/{annotation.pk}/change/", data)


def test_an_edited_label_is_cleaned_and_its_columns_follow(admin_client, project):
    annotation = AnnotationFactory(item=ItemFactory(project=project))
    response = change(admin_client, annotation, {"choice": "b", "strength": 3})
    assert response.status_code == 302
    annotation.refresh_from_db()
    assert annotation.label == {"choice": "B", "strength": 3, "rationale": ""}
    assert (annotation.choice, annotation.strength) == ("B", 3)


@pytest.mark.parametrize(
    ("label", "fields", "message"),
    [
        ({"choice": "A", "strength": "much"}, {}, "label.strength"),
        ({"choice": "C"}, {}, "label.choice"),
        ({"choice": "A", "strength": 2}, {"kind": "listwise"}, "labels pairwise items"),
    ],
)
def test_a_bad_label_is_refused_with_its_field_and_nothing_changes(
    admin_client, project, label, fields, message
):
    annotation = AnnotationFactory(item=ItemFactory(project=project))
    response = change(admin_client, annotation, label, **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    stored = Annotation.objects.get(pk=annotation.pk)
    assert (stored.label, stored.kind, stored.choice, stored.strength) == (
        {"choice": "A", "strength": 2, "rationale": ""},
        "pairwise",
        "A",
        2,
    )


def test_routing_is_shown_in_admin_but_changed_only_by_the_router(admin_client, project):
    from routing import services

    item = ItemFactory(project=project)
    services.policy_for(project)
    page = admin_client.get(f"/admin/annotate/item/{item.pk}/change/")
    assert page.status_code == 200
    assert 'name="route"' not in page.content.decode()  # shown read-only, not a field
    policies = admin_client.get("/admin/routing/routingpolicy/")
    assert policies.status_code == 200 and "All to people" in policies.content.decode()
    assert admin_client.get("/admin/routing/routingpolicy/add/").status_code == 403
    policy = services.policy_for(project)
    posted = admin_client.post(
        f"/admin/routing/routingpolicy/{policy.pk}/change/", {"policy": "all_judge"}
    )
    assert posted.status_code == 403
    policy.refresh_from_db()
    assert policy.policy == "all_human"
