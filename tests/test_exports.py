"""Dataset exports: each format, the filters, aggregation, split and determinism."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import io
import json
import warnings
import zipfile

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotate.kinds import get_kind
from annotate.kinds.aggregate import aggregate_rankings, majority_spans, majority_vote
from annotate.models import Annotation, Judge, Role
from annotate.services import ServiceError
from feedback_api import datasets
from feedback_api.datasets.exporters import get_exporter
from feedback_api.datasets.selection import prompt_key
from feedback_api.models import DatasetVersion

from .factories import (
    AnnotationFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)


def pair_label(item, choice="A", strength=2, **kwargs):
    label = {"choice": choice, "strength": strength, "rationale": ""}
    return AnnotationFactory(item=item, label=label, **kwargs)


def export(project, tmp_path, fmt="pairwise", name="out", **kwargs):
    filters = kwargs.pop("filters", {})
    split = kwargs.pop("split", {"test_fraction": 0.0, "seed": 0})
    result = datasets.build_export(
        project=project, fmt=fmt, filters=filters, split=split, out_dir=tmp_path / name, **kwargs
    )
    return result, tmp_path / name


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rows_of(project, tmp_path, fmt="pairwise", **kwargs) -> list[dict]:
    result, folder = export(project, tmp_path, fmt, **kwargs)
    return read_jsonl(folder / "train.jsonl") + read_jsonl(folder / "test.jsonl")


# Pairwise -----------------------------------------------------------------------------------


def test_pairwise_rows_are_trl_prompt_chosen_rejected_with_margin_and_provenance(project, tmp_path):
    item = ItemFactory(project=project, external_id="x1", prompt="Why?")
    annotator = UserFactory(username="ann")
    pair_label(item, "B", 3, annotator=annotator)
    (row,) = rows_of(project, tmp_path)
    assert row["prompt"] == "Why?"
    assert row["chosen"] == item.responses[1]["text"]
    assert row["rejected"] == item.responses[0]["text"]
    assert (row["chosen_id"], row["rejected_id"], row["margin"]) == ("2", "1", 3.0)
    assert row["external_id"] == "x1"
    assert (row["n_labels"], row["agreement"], row["sources"]) == (1, None, ["human"])
    assert (row["annotators"], row["judges"]) == (["ann"], [])


def test_pairwise_ties_are_left_out_and_counted_in_the_card(project, tmp_path):
    pair_label(ItemFactory(project=project), "tie", None)
    pair_label(ItemFactory(project=project), "A")
    result, _ = export(project, tmp_path)
    assert result.train_rows == 1
    assert result.stats["left_out.ties"] == 1
    assert result.stats["labels.tie"] == 1
    assert "| left_out.ties | 1 |" in result.card


def test_majority_vote_sets_choice_agreement_and_margin_from_the_majority(project, tmp_path):
    item = ItemFactory(project=project)
    pair_label(item, "A", 1)
    pair_label(item, "A", 3)
    pair_label(item, "B", 3)
    (row,) = rows_of(project, tmp_path)
    assert row["chosen_id"] == "1"
    assert row["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    assert row["margin"] == 2.0
    assert row["n_labels"] == 3


def test_no_majority_leaves_the_item_out(project, tmp_path):
    item = ItemFactory(project=project)
    pair_label(item, "A")
    pair_label(item, "B")
    result, _ = export(project, tmp_path)
    assert result.train_rows == 0
    assert result.stats["left_out.no_majority"] == 1


def test_majority_vote_function():
    assert majority_vote(["A", "A", "B"]) == ("A", pytest.approx(2 / 3))
    assert majority_vote(["A", "B"])[0] is None
    assert majority_vote(["tie", "tie", "A"])[0] == "tie"


def test_min_agreement_filter_leaves_out_items_that_agree_less(project, tmp_path):
    split = ItemFactory(project=project, external_id="split")
    pair_label(split, "A")
    pair_label(split, "A")
    pair_label(split, "B")
    pair_label(ItemFactory(project=project, external_id="unanimous"), "A")
    result, folder = export(project, tmp_path, filters={"min_agreement": 0.7})
    assert [r["external_id"] for r in read_jsonl(folder / "train.jsonl")] == ["unanimous"]
    assert result.stats["left_out.below_min_agreement"] == 1


def test_imported_labels_without_strength_leave_out_the_margin_column(project, tmp_path):
    item = ItemFactory(project=project)
    AnnotationFactory(
        item=item,
        source=Annotation.Source.IMPORTED,
        annotator=None,
        label={"choice": "A", "strength": None, "rationale": ""},
    )
    pair_label(ItemFactory(project=project), "B", 3)
    result, folder = export(project, tmp_path)
    rows = read_jsonl(folder / "train.jsonl")
    assert [r["sources"] for r in rows] == [["imported"], ["human"]]
    # A null margin is rejected by TRL's margin loss: no row has the column then.
    assert all("margin" not in r for r in rows)
    assert "margin" not in pq.read_table(folder / "train.parquet").column_names
    assert "only when every exported row has one" in result.card
    assert "- `margin`" not in result.card


def test_margin_column_stays_when_labels_without_strength_are_not_exported(project, tmp_path):
    outvoted = ItemFactory(project=project, external_id="outvoted")
    pair_label(outvoted, "A", 2)
    pair_label(outvoted, "A", 3)
    pair_label(outvoted, "B", None, source="imported", annotator=None)
    pair_label(ItemFactory(project=project, external_id="tie"), "tie", None)
    result, folder = export(project, tmp_path)
    (row,) = read_jsonl(folder / "train.jsonl")
    assert (row["external_id"], row["margin"]) == ("outvoted", 2.5)
    assert "- `margin`: double" in result.card
    # An item whose majority has no strength: the column goes, unless min_agreement drops it.
    below = ItemFactory(project=project, external_id="below")
    pair_label(below, "A", None, source="imported", annotator=None)
    pair_label(below, "A", None, source="imported", annotator=None)
    pair_label(below, "B", 1)
    pair_label(ItemFactory(project=project, external_id="sure"), "A", 1)
    _, folder = export(project, tmp_path, filters={"min_agreement": 0.9}, name="strict")
    assert [(r["external_id"], r["margin"]) for r in read_jsonl(folder / "train.jsonl")] == [
        ("sure", 1.0)
    ]
    _, folder = export(project, tmp_path, filters={"min_agreement": 0.6}, name="loose")
    rows = read_jsonl(folder / "train.jsonl")
    assert [r["external_id"] for r in rows] == ["outvoted", "below", "sure"]
    assert all("margin" not in r for r in rows)


def test_margin_column_needs_only_one_strength_in_each_exported_majority(project, tmp_path):
    # One of two majority labels has a strength: the margin is its strength.
    partly = ItemFactory(project=project, external_id="partly")
    pair_label(partly, "B", 3)
    pair_label(partly, "B", None, source="imported", annotator=None)
    # No majority (one A, one B, neither with a strength): no row, so no say in the column.
    split = ItemFactory(project=project, external_id="split")
    pair_label(split, "A", None, source="imported", annotator=None)
    pair_label(split, "B", None, source="imported", annotator=None)
    result, folder = export(project, tmp_path)
    assert [(r["external_id"], r["margin"]) for r in read_jsonl(folder / "train.jsonl")] == [
        ("partly", 3.0)
    ]
    assert result.stats["left_out.no_majority"] == 1
    # A label left out by a filter has no say either; with it, the item has no strength.
    lone = ItemFactory(project=project, external_id="lone")
    pair_label(lone, "A", None, source="imported", annotator=None)
    _, folder = export(project, tmp_path, filters={"source": "human"}, name="human")
    assert [(r["external_id"], r["margin"]) for r in read_jsonl(folder / "train.jsonl")] == [
        ("partly", 3.0)
    ]
    _, folder = export(project, tmp_path, name="all")
    rows = read_jsonl(folder / "train.jsonl")
    assert [r["external_id"] for r in rows] == ["partly", "lone"]
    assert all("margin" not in r for r in rows)


def test_items_below_min_agreement_are_not_in_the_format_counts(project, tmp_path):
    split = ItemFactory(project=project, external_id="split")
    pair_label(split, "A")
    pair_label(split, "A")
    pair_label(split, "B")
    pair_label(ItemFactory(project=project, external_id="unanimous"), "B")
    result, _ = export(project, tmp_path, filters={"min_agreement": 0.7})
    assert result.train_rows == 1
    assert result.stats["chosen.B"] == 1
    assert "chosen.A" not in result.stats
    assert "| chosen.A |" not in result.card
    assert result.stats["left_out.below_min_agreement"] == 1
    # Labels read are still counted, exported or not.
    assert (result.stats["labels.A"], result.stats["labels.B"]) == (2, 2)


def test_listwise_counts_only_exported_items(listwise, tmp_path):
    split = ItemFactory(project=listwise)
    rank(split, "1", "2", "3")
    rank(split, "3", "2", "1")
    rank(ItemFactory(project=listwise), "1", "2", "3")
    result, _ = export(listwise, tmp_path, "listwise", filters={"min_agreement": 0.9})
    assert (result.train_rows, result.stats["items.ranked"]) == (1, 1)
    assert result.stats["responses.3"] == 1


def test_chat_prompts_make_every_row_conversational(project, tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    pair_label(ItemFactory(project=project, external_id="a", prompt=chat), "A")
    pair_label(ItemFactory(project=project, external_id="b", prompt="Plain?"), "B")
    first, second = rows_of(project, tmp_path)
    assert first["prompt"] == chat
    assert first["chosen"] == [{"role": "assistant", "content": "Response 1 to item a."}]
    assert first["rejected"] == [{"role": "assistant", "content": "Response 2 to item a."}]
    assert second["prompt"] == [{"role": "user", "content": "Plain?"}]
    table = pq.read_table(tmp_path / "out" / "train.parquet")
    assert table.column("prompt").to_pylist()[0] == chat


# Filters ------------------------------------------------------------------------------------


@pytest.fixture
def judge(project):
    return Judge.objects.create(
        project=project, name="gpt-judge", backend="openai_compat", model_name="m"
    )


def test_source_filter_picks_human_judge_or_both(project, tmp_path, judge):
    item = ItemFactory(project=project)
    pair_label(item, "A", annotator=UserFactory(username="h1"))
    pair_label(item, "B", source=Annotation.Source.JUDGE, annotator=None, judge=judge)
    pair_label(item, "B", source=Annotation.Source.JUDGE, annotator=None, judge=judge)
    (human,) = rows_of(project, tmp_path, filters={"source": "human"}, name="h")
    (judged,) = rows_of(project, tmp_path, filters={"source": "judge"}, name="j")
    (both,) = rows_of(project, tmp_path, filters={"source": "both"}, name="b")
    assert (human["chosen_id"], human["n_labels"], human["judges"]) == ("1", 1, [])
    assert (judged["chosen_id"], judged["n_labels"], judged["judges"]) == ("2", 2, ["gpt-judge"])
    assert (both["n_labels"], both["sources"]) == (3, ["human", "judge"])


def test_people_first_takes_peoples_labels_where_an_item_has_them_else_the_judges(
    project, tmp_path, judge
):
    """A routed project's final labels: people decide the items they labelled (the judge's
    disagreeing label does not split the vote), the judges the rest."""
    both, judged, imported = (ItemFactory(project=project, external_id=e) for e in "xyz")
    pair_label(both, "A", annotator=UserFactory(username="h1"))
    pair_label(both, "B", source=Annotation.Source.JUDGE, annotator=None, judge=judge)
    pair_label(judged, "B", source=Annotation.Source.JUDGE, annotator=None, judge=judge)
    pair_label(imported, "A", strength=None, source=Annotation.Source.IMPORTED, annotator=None)
    pair_label(imported, "B", source=Annotation.Source.JUDGE, annotator=None, judge=judge)
    rows = rows_of(project, tmp_path, filters={"source": "people_first"}, name="p")
    by_id = {r["external_id"]: r for r in rows}
    assert (by_id["x"]["chosen_id"], by_id["x"]["sources"], by_id["x"]["n_labels"]) == (
        "1",
        ["human"],
        1,
    )
    assert (by_id["y"]["chosen_id"], by_id["y"]["sources"]) == ("2", ["judge"])
    assert (by_id["z"]["chosen_id"], by_id["z"]["sources"]) == ("1", ["imported"])
    # Under "both" the judge's label splits the first item's vote: it is left out.
    assert "x" not in {r["external_id"] for r in rows_of(project, tmp_path, name="b")}


@pytest.mark.parametrize("fmt", ["pairwise", "listwise", "listwise-pairs"])
def test_each_row_says_whether_people_judges_or_both_labelled_it_and_the_card_counts_them(
    fmt, tmp_path, judge
):
    project = ProjectFactory(kind=datasets.FORMATS[fmt])
    judge.project = project
    judge.save()
    body = {"ranking": ["1", "2", "3"]} if project.kind == "listwise" else None
    expected = {
        "people": ("human",),
        "judges": ("judge",),
        "both": ("human", "judge"),
        "imported": ("imported",),
        "imported-and-people": ("imported", "human"),
    }
    for name, sources in expected.items():
        item = ItemFactory(project=project, external_id=name)
        for source in sources:
            who = {"annotator": None, "judge": judge} if source == "judge" else {}
            who = {"annotator": None} if source == "imported" else who
            extra = {"label": body} if body else {}
            AnnotationFactory(item=item, source=source, **who, **extra)
    result, folder = export(project, tmp_path, fmt)
    rows = read_jsonl(folder / "train.jsonl")
    mixes = {r["external_id"]: r["label_sources"] for r in rows}
    assert mixes == {
        "people": "human",
        "judges": "judge",
        "both": "both",
        "imported": "imported",
        "imported-and-people": "human",
    }
    per_item = len(rows) // 5  # listwise-pairs: 3 pairs per item
    assert result.stats["rows.label_sources.human"] == 2 * per_item
    assert result.stats["rows.label_sources.both"] == per_item
    assert "- Rows by label source (`label_sources`): human " in result.card
    assert "`imported` when the row has only those" in result.card
    table = pq.read_table(folder / "train.parquet")
    assert table.column("label_sources").to_pylist() == [r["label_sources"] for r in rows]


def test_annotator_filter_keeps_only_their_labels(project, tmp_path):
    item = ItemFactory(project=project)
    pair_label(item, "A", annotator=UserFactory(username="kept"))
    pair_label(item, "B", annotator=UserFactory(username="other"))
    pair_label(ItemFactory(project=project), "A", annotator=UserFactory(username="other2"))
    (row,) = rows_of(project, tmp_path, filters={"annotators": ["kept"]})
    assert (row["annotators"], row["chosen_id"]) == (["kept"], "1")


def test_date_range_filters_labels_by_day(project, tmp_path):
    day = timezone.make_aware(dt.datetime(2025, 3, 10, 12))
    for offset, ext in ((-1, "before"), (0, "on"), (1, "after")):
        label = pair_label(ItemFactory(project=project, external_id=ext), "A")
        Annotation.objects.filter(pk=label.pk).update(created_at=day + dt.timedelta(days=offset))
    rows = rows_of(project, tmp_path, filters={"since": "2025-03-10", "until": "2025-03-10"})
    assert [r["external_id"] for r in rows] == ["on"]
    rows = rows_of(project, tmp_path, filters={"since": "2025-03-10"}, name="since")
    assert [r["external_id"] for r in rows] == ["on", "after"]


def test_exclude_gold_leaves_out_gold_items(project, tmp_path):
    pair_label(ItemFactory(project=project, external_id="gold", gold_label={"choice": "A"}), "A")
    pair_label(ItemFactory(project=project, external_id="plain"), "A")
    assert len(rows_of(project, tmp_path, name="all")) == 2
    rows = rows_of(project, tmp_path, filters={"exclude_gold": True})
    assert [r["external_id"] for r in rows] == ["plain"]


def test_items_without_labels_and_other_projects_are_not_exported(project, bob_project, tmp_path):
    ItemFactory(project=project)
    pair_label(ItemFactory(project=bob_project), "A")
    pair_label(ItemFactory(project=project, external_id="mine"), "A")
    assert [r["external_id"] for r in rows_of(project, tmp_path)] == ["mine"]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"source": "robots"}, "filters.source"),
        ({"min_agreement": 2}, "filters.min_agreement"),
        ({"min_agreement": "high"}, "filters.min_agreement"),
        ({"since": "yesterday"}, "filters.since"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "filters.until"),
        ({"annotators": [1, 2]}, "filters.annotators"),
        ({"exclude_gold": "yes"}, "filters.exclude_gold"),
        ({"colour": "red"}, "filters.colour"),
    ],
)
def test_bad_filters_name_the_field(filters, field):
    with pytest.raises(ServiceError) as error:
        datasets.clean_filters(filters)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("split", "field"),
    [
        ({"test_fraction": 1}, "split.test_fraction"),
        ({"test_fraction": -0.1}, "split.test_fraction"),
        ({"seed": -1}, "split.seed"),
        ({"seed": 1.5}, "split.seed"),
    ],
)
def test_bad_split_names_the_field(split, field):
    with pytest.raises(ServiceError) as error:
        datasets.clean_split(split)
    assert error.value.field == field


def test_format_must_suit_the_project_kind(project, alice):
    with pytest.raises(ServiceError) as error:
        datasets.dataset_version_create(project=project, user=alice, format="ratings")
    assert error.value.field == "format"


# Listwise -----------------------------------------------------------------------------------


@pytest.fixture
def listwise(alice):
    project = ProjectFactory(kind="listwise", slug="ranks")
    MembershipFactory(project=project, user=alice, role=Role.ADMIN)
    return project


def rank(item, *ranking):
    return AnnotationFactory(item=item, label={"ranking": list(ranking)})


def test_bradley_terry_aggregates_conflicting_rankings():
    groups, scores, agreement = aggregate_rankings(
        ["a", "b", "c"], [["a", "b", "c"], ["a", "b", "c"], ["b", "a", "c"]]
    )
    assert groups == [["a"], ["b"], ["c"]]
    assert scores["a"] > scores["b"] > scores["c"]
    # 9 (label, pair) comparisons, one disagrees (b over a).
    assert agreement == pytest.approx(8 / 9)


def test_bradley_terry_of_one_ranking_is_that_ranking_with_its_ties():
    assert aggregate_rankings(["a", "b", "c"], [["c", "a", "b"]])[0] == [["c"], ["a"], ["b"]]
    groups, _, agreement = aggregate_rankings(["a", "b"], [[["a", "b"]], [["a", "b"]]])
    assert groups == [["a", "b"]]
    assert agreement == 1.0


def test_listwise_rows_have_responses_and_ranking_as_indices(listwise, tmp_path):
    item = ItemFactory(project=listwise, external_id="r1")
    rank(item, "3", "1", "2")
    rank(item, "3", "1", "2")
    rank(item, "1", "3", "2")
    (row,) = rows_of(listwise, tmp_path, "listwise")
    assert row["responses"] == [r["text"] for r in item.responses]
    assert row["response_ids"] == ["1", "2", "3"]
    assert row["ranking"] == [[2], [0], [1]]
    assert row["agreement"] == pytest.approx(8 / 9, abs=1e-6)
    assert len(row["scores"]) == 3


def test_listwise_pairs_derive_every_pair_from_the_ranking(listwise, tmp_path):
    item = ItemFactory(project=listwise)
    rank(item, "2", "3", "1")
    rows = rows_of(listwise, tmp_path, "listwise-pairs")
    pairs = [(r["chosen_id"], r["rejected_id"], r["rank_chosen"], r["rank_rejected"]) for r in rows]
    assert pairs == [("2", "3", 0, 1), ("2", "1", 0, 2), ("3", "1", 1, 2)]
    assert rows[0]["chosen"] == item.responses[1]["text"]


# Spans --------------------------------------------------------------------------------------


@pytest.fixture
def spans_project(alice):
    project = ProjectFactory(kind="spans", slug="spans")
    MembershipFactory(project=project, user=alice, role=Role.ADMIN)
    return project


def span(start, end, label="irrelevant", correction=None):
    return {"response": "1", "start": start, "end": end, "label": label, "correction": correction}


def test_majority_spans_keep_characters_most_labels_mark():
    kept, agreement = majority_spans(
        [[span(0, 10)], [span(5, 10)], [span(5, 8), span(12, 14, "redundant")]], 3
    )
    assert kept == [(5, 10, "irrelevant")]
    assert 0 < agreement < 1
    assert majority_spans([[], []], 2) == ([], 1.0)


def test_spans_rows_are_one_per_response_with_spans_categories_and_corrections(
    spans_project, tmp_path
):
    item = ItemFactory(project=spans_project, external_id="s1")
    text = item.responses[0]["text"]
    for _ in range(2):
        AnnotationFactory(
            item=item,
            label={
                "spans": [span(0, 8, "unverifiable", "Answer")],
                "missing": "No source.",
                "corrected": {"1": "Fixed text."},
            },
        )
    AnnotationFactory(item=item, label={"spans": [], "missing": "", "corrected": {}})
    (row,) = rows_of(spans_project, tmp_path, "spans")
    assert (row["response"], row["response_id"]) == (text, "1")
    assert row["spans"] == [
        {
            "start": 0,
            "end": 8,
            "label": "unverifiable",
            "category": "factual",
            "text": text[0:8],
            "correction": "Answer",
        }
    ]
    assert (row["corrections"], row["missing"]) == (["Fixed text."], ["No source."])
    assert row["agreement"] == pytest.approx(2 / 3, abs=1e-6)


# Ratings ------------------------------------------------------------------------------------


@pytest.fixture
def ratings_project(alice):
    config = get_kind("ratings").clean_config({"aspects": ["helpfulness", "honesty"]})
    project = ProjectFactory(kind="ratings", slug="ratings", config=config)
    MembershipFactory(project=project, user=alice, role=Role.ADMIN)
    return project


def rate(item, scores: dict[str, tuple[int, int]], rationale=""):
    responses = {
        rid: {"aspects": {"helpfulness": h, "honesty": o}, "rationale": rationale}
        for rid, (h, o) in scores.items()
    }
    return AnnotationFactory(item=item, label={"responses": responses})


def test_ratings_rows_hold_mean_scores_and_rationales(ratings_project, tmp_path):
    item = ItemFactory(project=ratings_project, responses=[{"id": "a", "text": "A", "model": "m1"}])
    rate(item, {"a": (4, 5)}, "good")
    rate(item, {"a": (2, 5)})
    (row,) = rows_of(ratings_project, tmp_path, "ratings")
    (completion,) = row["completions"]
    assert completion["ratings"] == {"helpfulness": 3.0, "honesty": 5.0}
    assert completion["mean_score"] == 4.0
    assert (completion["rationales"], completion["model"]) == (["good"], "m1")
    assert row["agreement"] == pytest.approx(1 - 2 / 4 / 4)


def test_ratings_pairs_take_the_best_against_a_worse_and_leave_out_ties(ratings_project, tmp_path):
    three = [{"id": i, "text": f"text {i}", "model": ""} for i in ("a", "b", "c")]
    best = ItemFactory(project=ratings_project, external_id="best", responses=three)
    rate(best, {"a": (2, 2), "b": (5, 4), "c": (1, 1)})
    tied = ItemFactory(project=ratings_project, external_id="tied", responses=three[:2])
    rate(tied, {"a": (3, 3), "b": (3, 3)})
    result, folder = export(ratings_project, tmp_path, "ratings-pairs")
    (row,) = read_jsonl(folder / "train.jsonl")
    assert (row["chosen_id"], row["score_chosen"]) == ("b", 4.5)
    assert row["rejected_id"] in ("a", "c")
    assert row["score_rejected"] < 4.5
    assert result.stats["left_out.ties"] == 1


# Split, determinism, streaming --------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_by_prompt(project, tmp_path):
    for i in range(60):
        pair_label(ItemFactory(project=project, external_id=f"e{i:03}", prompt=f"Q{i}?"), "A")
    split = {"test_fraction": 0.3, "seed": 7}
    _, folder = export(project, tmp_path, split=split, name="one")
    train = {r["external_id"] for r in read_jsonl(folder / "train.jsonl")}
    test = {r["external_id"] for r in read_jsonl(folder / "test.jsonl")}
    assert not train & test
    assert len(train | test) == 60
    assert 5 <= len(test) <= 35
    expected = {
        f"e{i:03}"
        for i in range(60)
        if datasets.in_test_split(prompt_key(f"Q{i}?"), seed=7, fraction=0.3)
    }
    assert test == expected
    _, other = export(project, tmp_path, split={"test_fraction": 0.3, "seed": 8}, name="two")
    assert {r["external_id"] for r in read_jsonl(other / "test.jsonl")} != test


def test_exporting_twice_gives_the_same_bytes_and_checksum(project, tmp_path):
    chat = [{"role": "user", "content": "Héllo ✓"}]
    for i in range(25):
        item = ItemFactory(project=project, prompt=chat if i % 5 == 0 else f"Q{i}")
        pair_label(item, "AB"[i % 2], 1 + i % 3)
        pair_label(item, "A", None if i % 4 else 2, source="imported", annotator=None)
    split = {"test_fraction": 0.2, "seed": 1}
    first, one = export(project, tmp_path, split=split, name="one", chunk_size=4)
    second, two = export(project, tmp_path, split=split, name="two", chunk_size=1000)
    assert first.checksum == second.checksum
    assert first.files == second.files
    for name in ("train.jsonl", "test.jsonl", "train.parquet", "test.parquet", "README.md"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    assert (one / "dataset.zip").read_bytes() == (two / "dataset.zip").read_bytes()


def test_archive_holds_the_data_files_and_the_card(project, tmp_path):
    pair_label(ItemFactory(project=project), "A")
    result, folder = export(project, tmp_path)
    with zipfile.ZipFile(folder / "dataset.zip") as archive:
        names = archive.namelist()
        assert names == ["train.jsonl", "test.jsonl", "train.parquet", "test.parquet", "README.md"]
        assert archive.read("README.md").decode() == result.card
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert archive.testzip() is None
        for name in names:  # train.jsonl is deflated while written: the same bytes as its file
            data = archive.read(name)
            assert data == (folder / name).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            assert result.files[name] == {"name": name, "bytes": len(data), "sha256": digest}
    card = result.card
    for words in ("## Counts", "## Agreement", "## Provenance", "## Filters", "human labels: 1"):
        assert words in card
    table = pq.read_table(folder / "train.parquet")
    assert table.num_rows == 1
    assert table.column_names[:3] == ["prompt", "chosen", "rejected"]


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_failed_build_leaves_no_archive_and_no_open_file(project, tmp_path, monkeypatch):
    for i in range(30):
        pair_label(ItemFactory(project=project, prompt=f"Q{i}"), "A")
    exporter = get_exporter("pairwise")
    calls = []

    def convert(self, batch):  # the second page fails, with train.jsonl's member open
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(self, batch)

    real = exporter.convert
    monkeypatch.setattr(exporter, "convert", convert)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(RuntimeError, match="disk full"):
            export(project, tmp_path, chunk_size=10)
        gc.collect()  # a file left open is closed here, with a ResourceWarning
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not (tmp_path / "out").exists()
    monkeypatch.undo()
    result, folder = export(project, tmp_path)  # the next build of the same folder works
    assert result.train_rows + result.test_rows == 30
    with zipfile.ZipFile(folder / "dataset.zip") as archive:
        assert archive.testzip() is None


# The task -----------------------------------------------------------------------------------


def test_creating_a_version_enqueues_the_build_which_finishes_it(
    project, alice, media, eager_celery, django_capture_on_commit_callbacks
):
    for i in range(12):
        pair_label(ItemFactory(project=project), "A" if i % 3 else "tie", None if i % 3 == 0 else 2)
    with django_capture_on_commit_callbacks(execute=True):
        version = datasets.dataset_version_create(
            project=project, user=alice, format="pairwise", split={"test_fraction": 0.25}
        )
        assert version.status == DatasetVersion.Status.PENDING
    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.DONE
    assert (version.number, version.progress, version.items_done) == (1, 1.0, 12)
    assert version.train_rows + version.test_rows == 8
    assert version.stats["left_out.ties"] == 4
    assert len(version.checksum) == 64
    assert version.task_id
    archive = version.file_path("archive")
    assert archive.name == "alices-pairs-v1-pairwise.zip"
    assert archive.exists()
    with django_capture_on_commit_callbacks(execute=True):
        again = datasets.dataset_version_create(
            project=project, user=alice, format="pairwise", split={"test_fraction": 0.25}
        )
    again.refresh_from_db()
    assert again.number == 2
    assert again.checksum == version.checksum


def test_a_failed_build_records_its_error(project, alice, media, monkeypatch):
    version = datasets.dataset_version_create(
        project=project, user=alice, format="pairwise", enqueue=False
    )

    def broken(**kwargs):
        raise datasets.ExportError("disk full")

    monkeypatch.setattr(datasets, "build_export", broken)
    version = datasets.dataset_version_build(version_id=version.pk)
    assert version.status == DatasetVersion.Status.FAILED
    assert "disk full" in version.error
    # Immutable: building a finished version again leaves it as it is.
    assert datasets.dataset_version_build(version_id=version.pk).status == "failed"


# The command --------------------------------------------------------------------------------


def test_export_dataset_command_builds_a_version_and_copies_the_files(project, media, tmp_path):
    for i in range(6):
        pair_label(ItemFactory(project=project, external_id=f"c{i}"), "B", 1)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "export_dataset",
        "alices-pairs",
        "--format",
        "pairwise",
        "--source",
        "human",
        "--min-agreement",
        "0.5",
        "--test-fraction",
        "0.5",
        "--seed",
        "2",
        "--out",
        str(tmp_path / "copy"),
        stdout=out,
        stderr=err,
    )
    version = DatasetVersion.objects.get()
    assert version.status == "done"
    assert version.filters["source"] == "human"
    assert version.split == {"test_fraction": 0.5, "seed": 2, "by": "prompt"}
    assert f"sha256 {version.checksum}" in out.getvalue()
    assert f"{version.train_rows} train rows, {version.test_rows} test rows" in out.getvalue()
    assert "6/6" in err.getvalue()
    copied = sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert "alices-pairs-v1-pairwise.zip" in copied and "train.parquet" in copied


def test_export_dataset_command_rejects_bad_input(project, media):
    with pytest.raises(CommandError, match="filters.since"):
        call_command("export_dataset", "alices-pairs", "--format", "pairwise", "--since", "x")
    with pytest.raises(CommandError, match="format"):
        call_command("export_dataset", "alices-pairs", "--format", "spans")
    with pytest.raises(CommandError, match="No project"):
        call_command("export_dataset", "nope", "--format", "pairwise")
