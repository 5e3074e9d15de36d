"""API: items (list with filters and cursor pages, bulk create through the import service, read)
and annotations (list with filters)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Annotation, Item, Role

from .factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory, api

ITEMS = "/api/v1/projects/alices-pairs/items/"
ANNOTATIONS = "/api/v1/projects/alices-pairs/annotations/"


def pair(external_id: str, **extra) -> dict:
    return {
        "external_id": external_id,
        "prompt": "What is 2 + 2?",
        "responses": ["4", "5"],
        **extra,
    }


def walk(client, url: str, **params) -> list[dict]:
    """Every row of a paginated list, following `next`."""
    rows, response = [], client.get(url, params)
    while True:
        assert response.status_code == 200, response.json()
        rows += response.json()["results"]
        if not response.json()["next"]:
            return rows
        response = client.get(response.json()["next"])


# List ---------------------------------------------------------------------------------------


def test_list_items_with_label_counts(alice, project):
    item = ItemFactory(project=project, external_id="q1")
    AnnotationFactory(item=item, annotator=alice)
    AnnotationFactory(item=item, source="imported", annotator=None)
    response = api(alice).get(ITEMS)
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["external_id"] == "q1"
    assert (row["human_labels"], row["labels"]) == (1, 2)
    assert row["responses"][0] == {"id": "1", "text": "Response 1 to item q1.", "model": "m"}


def test_cursor_walks_every_item_once_in_both_orders(alice, project):
    ids = [ItemFactory(project=project).pk for _ in range(23)]
    ItemFactory()  # another project's item
    client = api(alice)
    assert [r["id"] for r in walk(client, ITEMS, page_size=5)] == ids
    assert [r["id"] for r in walk(client, ITEMS, page_size=5, ordering="-id")] == ids[::-1]


def test_previous_link_goes_back_a_page(alice, project):
    ids = [ItemFactory(project=project).pk for _ in range(6)]
    client = api(alice)
    second = client.get(client.get(ITEMS, {"page_size": 3}).json()["next"]).json()
    assert [r["id"] for r in second["results"]] == ids[3:]
    first = client.get(second["previous"]).json()
    assert [r["id"] for r in first["results"]] == ids[:3]


def test_items_created_between_pages_are_not_seen_twice(alice, project):
    ids = [ItemFactory(project=project).pk for _ in range(4)]
    client = api(alice)
    first = client.get(ITEMS, {"page_size": 2}).json()
    ids.append(ItemFactory(project=project).pk)
    rest = walk(client, first["next"])
    assert [r["id"] for r in first["results"] + rest] == ids


def test_huge_page_size_is_cut_to_the_maximum(alice, project):
    ItemFactory(project=project)
    response = api(alice).get(ITEMS, {"page_size": 10**30})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_item_list_query_count_does_not_grow(alice, project, django_assert_max_num_queries):
    for _ in range(20):
        AnnotationFactory(item=ItemFactory(project=project), annotator=alice)
    with django_assert_max_num_queries(4):
        assert len(api(alice).get(ITEMS).json()["results"]) == 20


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": "ten"},
        {"page_size": 0},
        {"page_size": -3},
        {"ordering": "external_id"},
        {"cursor": "not-a-cursor"},
        {"cursor": "cD1hYmM="},  # base64 of p=abc: a position that is no id
        {"cursor": "cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk="},  # an id past 64 bits
        {"created_after": "yesterday"},
        {"created_after": "2024-13-45"},
        {"created_before": "9999-12-31T23:59:59-23:00"},
        {"created_after": "2024-02-01", "created_before": "2024-01-01"},
        {"has_labels": "maybe"},
        {"min_human_labels": "two"},
        {"min_human_labels": -1},
        {"max_human_labels": 10**30},
        {"min_human_labels": 3, "max_human_labels": 1},
        {"external_id": "x" * 256},
        {"external_id": "a\x00b"},
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(alice, project, params):
    ItemFactory(project=project)
    response = api(alice).get(ITEMS, params)
    assert response.status_code == 400, response.content
    assert set(response.json()) & (set(params) | {"non_field_errors"})


def test_unknown_parameters_are_ignored(alice, project):
    ItemFactory(project=project)
    response = api(alice).get(ITEMS, {"colour": "blue"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_filter_by_external_id(alice, project):
    ItemFactory(project=project, external_id="a")
    ItemFactory(project=project, external_id="b")
    rows = api(alice).get(ITEMS, {"external_id": "b"}).json()["results"]
    assert [r["external_id"] for r in rows] == ["b"]


def test_filter_by_labels(alice, annotator, project):
    none = ItemFactory(project=project, external_id="none")
    imported = ItemFactory(project=project, external_id="imported")
    one = ItemFactory(project=project, external_id="one")
    two = ItemFactory(project=project, external_id="two")
    AnnotationFactory(item=imported, source="imported", annotator=None)
    AnnotationFactory(item=one, annotator=alice)
    AnnotationFactory(item=two, annotator=alice)
    AnnotationFactory(item=two, annotator=annotator)
    client = api(alice)

    def ids(**params):
        return [r["external_id"] for r in client.get(ITEMS, params).json()["results"]]

    assert none.external_id == "none"
    assert ids(has_labels="true") == ["imported", "one", "two"]
    assert ids(has_labels="false") == ["none"]
    assert ids(min_human_labels=1) == ["one", "two"]
    assert ids(max_human_labels=0) == ["none", "imported"]
    assert ids(min_human_labels=1, max_human_labels=1) == ["one"]


def test_filter_by_created_range(alice, project):
    now = timezone.now()
    ItemFactory(project=project, external_id="old", created_at=now - timedelta(days=10))
    ItemFactory(project=project, external_id="new", created_at=now)
    client = api(alice)
    since = (now - timedelta(days=1)).isoformat()
    rows = client.get(ITEMS, {"created_after": since}).json()["results"]
    assert [r["external_id"] for r in rows] == ["new"]
    rows = client.get(ITEMS, {"created_before": since}).json()["results"]
    assert [r["external_id"] for r in rows] == ["old"]
    rows = client.get(ITEMS, {"created_after": "2000-01-01"}).json()["results"]
    assert len(rows) == 2


def test_annotator_cannot_list_items(annotator, project):
    assert api(annotator).get(ITEMS).status_code == 403


def test_stranger_cannot_list_items(bob, project):
    assert api(bob).get(ITEMS).status_code == 404


# Read one -----------------------------------------------------------------------------------


def test_read_one_item(alice, project):
    item = ItemFactory(
        project=project,
        prompt=[{"role": "user", "content": "Hi"}],
        gold_label={"choice": "A", "strength": 1, "rationale": ""},
    )
    response = api(alice).get(f"{ITEMS}{item.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["prompt"] == [{"role": "user", "content": "Hi"}]
    assert body["gold_label"]["choice"] == "A"
    assert (body["human_labels"], body["labels"]) == (0, 0)


def test_item_of_another_project_is_404(alice, project, bob_project):
    item = ItemFactory(project=bob_project)
    assert api(alice).get(f"{ITEMS}{item.pk}/").status_code == 404


def test_item_of_someone_elses_project_is_404(bob, project):
    item = ItemFactory(project=project)
    assert api(bob).get(f"{ITEMS}{item.pk}/").status_code == 404


def test_item_id_past_the_database_range_is_404(alice, project):
    assert api(alice).get(f"{ITEMS}{10**30}/").status_code == 404


def test_annotator_cannot_read_items(annotator, project):
    item = ItemFactory(project=project)
    assert api(annotator).get(f"{ITEMS}{item.pk}/").status_code == 403


# Bulk create --------------------------------------------------------------------------------


def test_bulk_create_imports_items(alice, project):
    body = {"items": [pair("q1"), pair("q2", metadata={"source": "api"})]}
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 201, response.json()
    report = response.json()
    assert (report["ok"], report["created"], report["duplicates"]) == (True, 2, 0)
    assert Item.objects.get(project=project, external_id="q2").metadata == {"source": "api"}


def test_bulk_create_is_idempotent_by_external_id(alice, project):
    client = api(alice)
    client.post(ITEMS, {"items": [pair("q1")]}, format="json")
    response = client.post(ITEMS, {"items": [pair("q1"), pair("q2")]}, format="json")
    assert response.status_code == 201
    assert (response.json()["created"], response.json()["duplicates"]) == (1, 1)
    assert Item.objects.filter(project=project).count() == 2


def test_bulk_create_accepts_trl_rows_and_keeps_labels(alice, project):
    body = {
        "items": [{"id": "t1", "prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}],
        "keep_labels": True,
    }
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["labels"] == 1
    assert Annotation.objects.get(item__external_id="t1").source == "imported"


def test_bulk_create_with_a_bad_item_creates_nothing(alice, project):
    body = {"items": [pair("q1"), {"external_id": "q2", "prompt": "?", "responses": ["one"]}]}
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 400
    report = response.json()
    assert report["created"] == 0
    assert report["errors"] == [
        {"line": 2, "field": "responses", "message": report["errors"][0]["message"]}
    ]
    assert not Item.objects.filter(project=project).exists()


def test_bulk_create_skip_invalid_imports_the_good_items(alice, project):
    body = {"items": [pair("q1"), {"external_id": "q2", "prompt": "?"}], "skip_invalid": True}
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 201
    assert (response.json()["created"], response.json()["invalid"]) == (1, 1)


def test_bulk_create_validates_labels_when_kept(alice, project):
    body = {"items": [pair("q1", label={"choice": "C"})], "keep_labels": True}
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "label.choice"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": "q1"}, "items"),
        ({"items": [1, 2]}, "items"),
        ({"items": [pair("q1")], "skip_invalid": "perhaps"}, "skip_invalid"),
        ({"items": [pair("a\x00b")]}, "items"),
    ],
)
def test_bulk_create_with_a_malformed_body_is_400(alice, project, body, field):
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_bulk_create_with_a_lone_surrogate_is_400(alice, project):
    body = rb'{"items": [{"external_id": "q1", "prompt": "\ud800", "responses": ["a", "b"]}]}'
    response = api(alice).post(ITEMS, body, content_type="application/json")
    assert response.status_code == 400
    assert "surrogate" in response.json()["items"][0]


def test_bulk_create_with_invalid_json_is_400(alice, project):
    response = api(alice).post(ITEMS, b"[{", content_type="application/json")
    assert response.status_code == 400


def test_bulk_create_with_a_huge_integer_in_metadata_is_no_server_error(alice, project):
    body = b'{"items": [{"external_id": "q1", "prompt": "?", "responses": ["a", "b"], '
    record = b'"metadata": {"n": ' + b"9" * 40 + b"}"
    response = api(alice).post(ITEMS, body + record + b"}]}", content_type="application/json")
    assert response.status_code in (201, 400)
    assert api(alice).get(ITEMS).status_code == 200


@pytest.mark.parametrize("priority", [b"9" * 40, str(2**40).encode(), b"1.5", b"true"])
def test_bulk_create_with_priority_out_of_range_is_400(alice, project, priority):
    body = b'{"items": [{"external_id": "q1", "prompt": "?", "responses": ["a", "b"], '
    record = b'"priority": ' + priority
    response = api(alice).post(ITEMS, body + record + b"}]}", content_type="application/json")
    assert response.status_code == 400
    assert "priority" in response.content.decode()
    assert not Item.objects.filter(project=project).exists()


def test_bulk_create_with_too_many_items_is_400(alice, project, settings):
    body = {"items": [pair(str(n)) for n in range(10_001)]}
    response = api(alice).post(ITEMS, body, format="json")
    assert response.status_code == 400
    assert "items" in response.json()


def test_annotator_cannot_create_items(annotator, project):
    response = api(annotator).post(ITEMS, {"items": [pair("q1")]}, format="json")
    assert response.status_code == 403
    assert not Item.objects.exists()


def test_stranger_cannot_create_items(bob, project):
    response = api(bob).post(ITEMS, {"items": [pair("q1")]}, format="json")
    assert response.status_code == 404
    assert not Item.objects.exists()


def test_researcher_creates_items(project):
    researcher = UserFactory(username="rita")
    MembershipFactory(project=project, user=researcher, role=Role.RESEARCHER)
    response = api(researcher).post(ITEMS, {"items": [pair("q1")]}, format="json")
    assert response.status_code == 201


# Annotations --------------------------------------------------------------------------------


@pytest.fixture
def labels(alice, annotator, project):
    """Four labels of alice's project: alice's, charlie's, a judge's and an imported one."""
    from annotate.models import Judge

    judge = Judge.objects.create(
        project=project, name="gpt", backend="openai_compat", model_name="m"
    )
    now = timezone.now()
    q1 = ItemFactory(project=project, external_id="q1")
    q2 = ItemFactory(project=project, external_id="q2")
    return {
        "alice": AnnotationFactory(item=q1, annotator=alice, created_at=now - timedelta(days=3)),
        "charlie": AnnotationFactory(item=q1, annotator=annotator),
        "judge": AnnotationFactory(
            item=q2, source="judge", annotator=None, judge=judge, cost_usd="0.001200"
        ),
        "imported": AnnotationFactory(item=q2, source="imported", annotator=None),
    }


def test_list_annotations_with_provenance(alice, labels):
    rows = walk(api(alice), ANNOTATIONS, page_size=3)
    assert [r["id"] for r in rows] == [a.pk for a in labels.values()]
    by_source = {r["source"]: r for r in rows if r["source"] != "human"}
    assert by_source["judge"]["judge"] == "gpt"
    assert by_source["judge"]["annotator"] is None
    assert by_source["judge"]["cost_usd"] == "0.001200"
    assert rows[0]["annotator"] == "alice"
    assert rows[0]["item_external_id"] == "q1"
    assert rows[0]["label"] == {"choice": "A", "strength": 2, "rationale": ""}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "human"}, ["alice", "charlie"]),
        ({"source": "judge"}, ["judge"]),
        ({"source": "imported"}, ["imported"]),
        ({"annotator": "charlie"}, ["charlie"]),
        ({"annotator": "nobody"}, []),
        ({"judge": "gpt"}, ["judge"]),
        ({"item": "q2"}, ["judge", "imported"]),
        ({"item": "q2", "source": "judge"}, ["judge"]),
    ],
)
def test_filter_annotations(alice, labels, params, expected):
    rows = api(alice).get(ANNOTATIONS, params).json()["results"]
    assert [r["id"] for r in rows] == [labels[name].pk for name in expected]


def test_filter_annotations_by_date(alice, labels):
    since = (timezone.now() - timedelta(days=1)).isoformat()
    client = api(alice)
    rows = client.get(ANNOTATIONS, {"created_after": since}).json()["results"]
    assert labels["alice"].pk not in [r["id"] for r in rows]
    assert len(rows) == 3
    rows = client.get(ANNOTATIONS, {"created_before": since}).json()["results"]
    assert [r["id"] for r in rows] == [labels["alice"].pk]


@pytest.mark.parametrize(
    "params",
    [
        {"source": "robot"},
        {"created_after": "last week"},
        {"annotator": "x" * 151},
        {"page_size": "all"},
        {"cursor": "bz0tMQ=="},  # base64 of o=-1: a negative offset
    ],
)
def test_bad_annotation_filters_are_400(alice, labels, params):
    response = api(alice).get(ANNOTATIONS, params)
    assert response.status_code == 400
    assert set(response.json()) & set(params)


def test_annotation_list_query_count_does_not_grow(alice, labels, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        assert len(api(alice).get(ANNOTATIONS).json()["results"]) == 4


def test_annotator_cannot_list_annotations(annotator, labels):
    assert api(annotator).get(ANNOTATIONS).status_code == 403


def test_stranger_cannot_list_annotations(bob, labels):
    assert api(bob).get(ANNOTATIONS).status_code == 404
