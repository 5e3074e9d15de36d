"""What goes into an export comes out (issue 14): ties inside rankings, agreement of a single
label, splits grouped by prompt or by a metadata field, item metadata and each response's
provenance, pairwise labels without a strength.

The data is shaped like a published preference set: a question asked several times (one item
per pair of answers, or per list), long retrieval prompts, answers from named models with
their own ids, rankings with ties, most items labelled once, metadata per item."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from annotate.kinds import get_kind
from feedback_api import datasets

from .factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

PASSAGES = " ".join(
    f"Passage {k}: the river rises in spring and floods the valley." for k in range(40)
)


def question(n: int) -> str:
    """A retrieval prompt: long passages, the question after them."""
    return f"{PASSAGES}\n\nQuestion {n}: when does the river flood?"


def answers(n: int, ids: list[str]) -> list[dict]:
    models = ["gpt-x", "llama-y", "mistral-z", "qwen-w"]
    return [
        {"id": rid, "text": f"Answer {rid} to question {n}.", "model": models[k % 4]}
        for k, rid in enumerate(ids)
    ]


def export(project, tmp_path, fmt, name="out", filters=None, split=None):
    result = datasets.build_export(
        project=project,
        fmt=fmt,
        filters=filters or {},
        split=split or {"test_fraction": 0.0, "seed": 0},
        out_dir=tmp_path / name,
    )
    folder = tmp_path / name
    rows = {
        part: [json.loads(line) for line in (folder / f"{part}.jsonl").read_text().splitlines()]
        for part in ("train", "test")
    }
    return result, rows


def all_rows(rows: dict) -> list[dict]:
    return rows["train"] + rows["test"]


@pytest.fixture
def people(db):
    return [UserFactory(username=name) for name in ("ann", "ben", "cat")]


# Ties inside rankings -----------------------------------------------------------------------


@pytest.fixture
def rankings(people):
    project = ProjectFactory(
        kind="listwise", config=get_kind("listwise").clean_config({"allow_ties": True})
    )
    ids = ["q7-a", "q7-b", "q7-c", "q7-d"]
    tied = ItemFactory(
        project=project, external_id="tied", prompt=question(7), responses=answers(7, ids)
    )
    AnnotationFactory(
        item=tied, annotator=people[0], label={"ranking": ["q7-b", ["q7-a", "q7-c"], "q7-d"]}
    )
    ids = ["q8-a", "q8-b", "q8-c", "q8-d"]
    all_tied = ItemFactory(
        project=project, external_id="all-tied", prompt=question(8), responses=answers(8, ids)
    )
    AnnotationFactory(item=all_tied, annotator=people[0], label={"ranking": [ids]})
    return project


def test_listwise_ranking_keeps_a_labels_ties_as_groups(rankings, tmp_path):
    result, rows = export(rankings, tmp_path, "listwise")
    tied, all_tied = all_rows(rows)
    assert tied["response_ids"] == ["q7-a", "q7-b", "q7-c", "q7-d"]
    assert tied["ranking"] == [[1], [0, 2], [3]]
    scores = tied["scores"]
    assert scores[1] > scores[0] == scores[2] > scores[3]
    # All four tied: one group, not 1 > 2 > 3 > 4.
    assert all_tied["ranking"] == [[0, 1, 2, 3]]
    assert len(set(all_tied["scores"])) == 1
    assert result.stats["items.with_ties"] == 2
    assert "`[[1], [0, 2]]` ranks response 1 first" in result.card


def test_listwise_pairs_leave_tied_pairs_out_and_count_them(rankings, tmp_path):
    result, rows = export(rankings, tmp_path, "listwise-pairs")
    pairs = [
        (r["chosen_id"], r["rejected_id"], r["rank_chosen"], r["rank_rejected"])
        for r in all_rows(rows)
    ]
    assert pairs == [
        ("q7-b", "q7-a", 0, 1),
        ("q7-b", "q7-c", 0, 1),
        ("q7-b", "q7-d", 0, 2),
        ("q7-a", "q7-d", 1, 2),
        ("q7-c", "q7-d", 1, 2),
    ]
    # One tied pair in "tied", six in "all-tied", which gives no pair at all.
    assert result.stats["left_out.tied_pairs"] == 7
    assert result.stats["left_out.all_tied"] == 1
    assert "| left_out.tied_pairs | 7 |" in result.card
    assert "Tied pairs are left out" in result.card


def test_rankings_that_cancel_out_are_a_tie_not_the_item_order(people, tmp_path):
    project = ProjectFactory(kind="listwise")
    item = ItemFactory(project=project, responses=answers(1, ["x", "y", "z"]))
    AnnotationFactory(item=item, annotator=people[0], label={"ranking": ["x", "y", "z"]})
    AnnotationFactory(item=item, annotator=people[1], label={"ranking": ["y", "x", "z"]})
    _, rows = export(project, tmp_path, "listwise")
    (row,) = all_rows(rows)
    assert row["ranking"] == [[0, 1], [2]]
    # 6 (label, pair) comparisons; each label orders x and y where the aggregate ties them.
    assert row["agreement"] == pytest.approx(4 / 6, abs=1e-6)


def test_listwise_parquet_ranking_is_a_list_of_groups(rankings, tmp_path):
    export(rankings, tmp_path, "listwise")
    table = pq.read_table(tmp_path / "out" / "train.parquet")
    assert str(table.schema.field("ranking").type) == "list<element: list<element: int32>>"
    assert table.column("ranking").to_pylist()[0] == [[1], [0, 2], [3]]


# Agreement of a single label ----------------------------------------------------------------


def one_label_per_kind(people) -> dict[str, object]:
    """A project of each kind with one item labelled once (with a tie where the kind has one)
    and one item labelled twice, the same way."""
    bodies = {
        "pairwise": {"choice": "B", "strength": None, "rationale": ""},
        "listwise": {"ranking": [["1", "2"], "3"]},
        "spans": {
            "spans": [{"response": "1", "start": 0, "end": 6, "label": "irrelevant"}],
            "missing": "",
            "corrected": {},
        },
        "ratings": {
            "responses": {
                "1": {"aspects": {"helpfulness": 4}},
                "2": {"aspects": {"helpfulness": 2}},
            }
        },
    }
    projects = {}
    for kind, body in bodies.items():
        config = {"allow_ties": True} if kind == "listwise" else {}
        if kind == "ratings":
            config = {"aspects": ["helpfulness"]}
        project = ProjectFactory(kind=kind, config=get_kind(kind).clean_config(config))
        size = {"pairwise": 2, "listwise": 3, "spans": 1, "ratings": 2}[kind]
        ids = [str(k) for k in range(1, size + 1)]
        once, twice = (
            ItemFactory(
                project=project, external_id=ext, prompt=question(n), responses=answers(n, ids)
            )
            for n, ext in ((1, "once"), (2, "twice"))
        )
        AnnotationFactory(item=once, annotator=people[0], label=body)
        for person in people[:2]:
            AnnotationFactory(item=twice, annotator=person, label=body)
        projects[kind] = project
    return projects


@pytest.mark.parametrize("fmt", list(datasets.FORMATS))
def test_a_single_label_has_no_agreement_in_any_format(fmt, people, tmp_path):
    project = one_label_per_kind(people)[datasets.FORMATS[fmt]]
    result, rows = export(project, tmp_path, fmt)
    agreements = {(r["external_id"], r["n_labels"], r["agreement"]) for r in all_rows(rows)}
    assert agreements == {("once", 1, None), ("twice", 2, 1.0)}
    assert result.stats["items_by_labels"] == {"1": 1, "2": 1}
    assert result.stats["agreement"] == {"mean": 1.0, "min": 1.0, "unanimous": 1, "items": 1}
    assert "Exported items by number of labels: 1 label: 1, 2 labels: 1." in result.card
    assert "Of the 1 items with several labels: mean agreement 1.000" in result.card


def test_min_agreement_keeps_single_label_items_unless_asked_to_drop_them(people, tmp_path):
    project = ProjectFactory(kind="pairwise")
    for n in range(3):
        AnnotationFactory(
            item=ItemFactory(project=project, external_id=f"once-{n}", prompt=question(n)),
            annotator=people[0],
            label={"choice": "A", "strength": None, "rationale": ""},
        )
    split = ItemFactory(project=project, external_id="split", prompt=question(9))
    for person, choice in zip(people, "ABB", strict=True):
        AnnotationFactory(item=split, annotator=person, label={"choice": choice, "strength": 1})
    result, rows = export(project, tmp_path, "pairwise", filters={"min_agreement": 0.7})
    assert [r["external_id"] for r in all_rows(rows)] == ["once-0", "once-1", "once-2"]
    assert result.stats["left_out.below_min_agreement"] == 1
    assert "Items with one label were kept" in result.card

    filters = {"min_agreement": 0.6, "keep_single_label": False}
    result, rows = export(project, tmp_path, "pairwise", "dropped", filters=filters)
    assert [r["external_id"] for r in all_rows(rows)] == ["split"]
    assert result.stats["left_out.single_label"] == 3
    assert "left_out.below_min_agreement" not in result.stats
    assert "Items with one label were left out" in result.card
    # The margin column: the dropped single labels (no strength) have no say in it.
    assert all_rows(rows)[0]["margin"] == 1.0


def test_drop_single_label_from_the_command_line(people, tmp_path, settings):
    from django.core.management import call_command

    settings.MEDIA_ROOT = tmp_path / "media"
    project = one_label_per_kind(people)["ratings"]
    call_command("export_dataset", project.slug, "--format", "ratings", "--drop-single-label",
                 "--test-fraction", "0", "--out", str(tmp_path / "cli"), verbosity=0)  # fmt: skip
    rows = (tmp_path / "cli" / "train.jsonl").read_text().splitlines()
    assert [json.loads(r)["external_id"] for r in rows] == ["twice"]
