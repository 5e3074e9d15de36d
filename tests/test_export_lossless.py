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
from annotate.services import ServiceError
from annotate.splits import prompt_key
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


# Splits grouped by prompt or by a metadata field ---------------------------------------------


def preference_set(project, questions: int = 8, pairs: int = 6, paraphrase: bool = False):
    """Each question asked with 4 answers, one item per pair of them (6 pairs per question, as
    published sets give them), labelled once without a strength, some pairs tied."""
    ids = ["a", "b", "c", "d"]
    combos = [(x, y) for i, x in enumerate(ids) for y in ids[i + 1 :]][:pairs]
    for n in range(questions):
        for k, (x, y) in enumerate(combos):
            prompt = question(n) + (f" (asked {k} times)" if paraphrase else "")
            item = ItemFactory(
                project=project,
                external_id=f"q{n}-{x}{y}",
                prompt=prompt,
                responses=answers(n, [f"q{n}-{x}", f"q{n}-{y}"]),
                metadata={"question_id": f"Q{n:03}", "source": {"split": "dev", "rank": k}},
            )
            choice = "tie" if (n + k) % 5 == 0 else "AB"[(n + k) % 2]
            AnnotationFactory(
                item=item,
                source="imported",
                annotator=None,
                label={"choice": choice, "strength": None, "rationale": ""},
            )


def sides(rows: dict, key: str = "prompt") -> dict[str, set]:
    return {part: {json.dumps(r[key]) for r in rows[part]} for part in ("train", "test")}


def test_pairs_of_one_prompt_stay_on_one_side_of_the_split(people, tmp_path):
    project = ProjectFactory(kind="pairwise")
    preference_set(project)
    split = {"test_fraction": 0.4, "seed": 3}
    result, rows = export(project, tmp_path, "pairwise", split=split)
    prompts = sides(rows)
    assert prompts["train"] and prompts["test"]
    assert not prompts["train"] & prompts["test"]
    for row in all_rows(rows):
        assert row["split_key"] == prompt_key(row["prompt"])
    assert "Grouped by prompt: `split_key` is the prompt's content hash" in result.card


def test_pairs_lists_and_spans_of_one_prompt_fall_on_the_same_side(people, tmp_path):
    split = {"test_fraction": 0.5, "seed": 11}
    test_prompts = {}
    for kind in ("pairwise", "listwise", "spans"):
        project = ProjectFactory(kind=kind)
        for n in range(10):
            prompt = question(n) if n % 3 else [{"role": "user", "content": question(n)}]
            item = ItemFactory(project=project, prompt=prompt, responses=answers(n, ["1", "2"]))
            body = {
                "pairwise": {"choice": "A", "strength": None, "rationale": ""},
                "listwise": {"ranking": ["2", "1"]},
                "spans": {"spans": [], "missing": "", "corrected": {}},
            }[kind]
            AnnotationFactory(item=item, annotator=people[0], label=body)
        _, rows = export(project, tmp_path, kind, name=kind, split=split)
        test_prompts[kind] = {r["split_key"] for r in rows["test"]}
    assert test_prompts["pairwise"]
    assert test_prompts["pairwise"] == test_prompts["listwise"] == test_prompts["spans"]


def test_split_by_a_metadata_field_keeps_its_items_together(people, tmp_path):
    project = ProjectFactory(kind="pairwise")
    preference_set(project, paraphrase=True)  # every item's prompt differs
    split = {"test_fraction": 0.4, "seed": 3, "by": "metadata.question_id"}
    result, rows = export(project, tmp_path, "pairwise", split=split)
    questions = {part: {r["external_id"].split("-")[0] for r in rows[part]} for part in rows}
    assert questions["train"] and questions["test"]
    assert not questions["train"] & questions["test"]
    assert {r["split_key"] for r in rows["test"]} <= {f"Q{n:03}" for n in range(8)}
    assert "Grouped by `metadata.question_id`" in result.card
    # A nested field, a number: its JSON text is the key.
    split["by"] = "metadata.source.rank"
    _, rows = export(project, tmp_path, "pairwise", "nested", split=split)
    assert {r["split_key"] for r in all_rows(rows)} <= {str(k) for k in range(6)}


def test_items_without_the_split_field_are_a_clear_error(people, tmp_path, alice, media):
    project = ProjectFactory(kind="pairwise", slug="qa")
    preference_set(project, questions=2)
    lacking = ItemFactory(project=project, external_id="no-qid", metadata={"question_id": None})
    AnnotationFactory(item=lacking, annotator=people[0])
    split = {"by": "metadata.question_id"}
    with pytest.raises(ServiceError) as error:
        datasets.dataset_version_create(project=project, user=alice, format="pairwise", split=split)
    assert error.value.field == "split.by"
    assert "1 item to export has no metadata.question_id (e.g. no-qid)" in str(error.value)
    with pytest.raises(datasets.ExportError, match="no-qid"):
        export(project, tmp_path, "pairwise", split=split)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ServiceError) as error:
        datasets.clean_split({"by": "question_id"})
    assert error.value.field == "split.by"


def test_split_by_over_the_api_the_page_and_the_command_line(people, alice, client, media):
    from django.core.management import call_command
    from django.urls import reverse

    from annotate.models import Role
    from feedback_api.models import DatasetVersion

    from .factories import MembershipFactory, api

    project = ProjectFactory(kind="pairwise", slug="qa")
    MembershipFactory(project=project, user=alice, role=Role.RESEARCHER)
    preference_set(project, questions=2)
    url = f"/api/v1/projects/{project.slug}/datasets/"
    body = {"format": "pairwise", "split": {"by": "metadata.question_id"}}
    response = api(alice).post(url, body, format="json")
    assert response.status_code == 202
    assert response.json()["split"]["by"] == "metadata.question_id"
    body = {"format": "pairwise", "split": {"by": "metadata.missing"}}
    response = api(alice).post(url, body, format="json")
    assert response.status_code == 400
    assert "metadata.missing" in json.dumps(response.json())

    client.force_login(alice)
    form = {"format": "pairwise", "source": "both", "min_agreement": "0", "test_fraction": "0.5"}
    form |= {"seed": "0", "keep_single_label": "on", "split_by": "metadata.nope"}
    response = client.post(reverse("dataset-pages:datasets", args=[project.slug]), form)
    assert response.status_code == 400
    assert "split_by" in response.context["form"].errors

    call_command("export_dataset", "qa", "--format", "pairwise", "--split-by",
                 "metadata.question_id", verbosity=0)  # fmt: skip
    assert DatasetVersion.objects.order_by("number").last().split["by"] == "metadata.question_id"


def test_training_holds_out_rows_by_the_exports_rule(people, tmp_path):
    from rewards.data import split_rows

    project = ProjectFactory(kind="pairwise")
    preference_set(project)
    split = {"test_fraction": 0.4, "seed": 5}
    _, by_export = export(project, tmp_path, "pairwise", "split", split=split)
    _, whole = export(project, tmp_path, "pairwise", "whole")
    train, held = split_rows(whole["train"], 0.4, 5)
    assert [r["external_id"] for r in held] == [r["external_id"] for r in by_export["test"]]
    assert [r["external_id"] for r in train] == [r["external_id"] for r in by_export["train"]]
    # Rows of an older version have no split_key: their prompt's hash is the same key.
    bare = [{k: v for k, v in r.items() if k != "split_key"} for r in whole["train"]]
    assert [r["external_id"] for r in split_rows(bare, 0.4, 5)[1]] == [
        r["external_id"] for r in held
    ]


def test_training_split_of_few_prompts_still_holds_one_out_without_a_leak():
    from rewards.data import split_rows

    rows = [{"prompt": p, "chosen": "x", "rejected": "y"} for p in ("one", "one", "two", "two")]
    for seed in range(20):
        train, held = split_rows(rows, 0.05, seed)
        assert train and held
        assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    # One prompt only: nothing can be held out without a leak.
    assert all(split_rows(rows[:2], 0.9, seed) == (rows[:2], []) for seed in range(5))


# Item metadata and each response's provenance --------------------------------------------------

META = [
    {"question_id": "Q000", "score": 3, "ratio": 0.5, "gold": True, "mixed": 1,
     "source": {"split": "dev", "passages": ["p1", "p2"]}, "note": "é 中文 🙂 \"q\" \\"},
    {"question_id": "Q001", "score": 4, "ratio": 1, "gold": False, "mixed": "one"},
    {},
]  # fmt: skip


def metadata_project(kind: str, people):
    """Three items with the metadata above, responses with their own ids and model names,
    each labelled once."""
    config = {"aspects": ["helpfulness"]} if kind == "ratings" else {}
    project = ProjectFactory(kind=kind, config=get_kind(kind).clean_config(config))
    size = {"pairwise": 2, "listwise": 3, "spans": 1, "ratings": 2}[kind]
    items = []
    for n, metadata in enumerate(META):
        ids = [f"orig-{n}-{k}" for k in range(size)]
        rated = {rid: {"aspects": {"helpfulness": 2 + k}} for k, rid in enumerate(ids)}
        body = {
            "pairwise": {"choice": "B", "strength": None, "rationale": ""},
            "listwise": {"ranking": [ids[2], ids[0], ids[1]] if size > 2 else ids},
            "spans": {"spans": [], "missing": "", "corrected": {}},
            "ratings": {"responses": rated},
        }[kind]
        item = ItemFactory(
            project=project,
            external_id=f"m{n}",
            prompt=question(n),
            responses=answers(n, ids),
            metadata=metadata,
        )
        AnnotationFactory(item=item, annotator=people[0], label=body)
        items.append(item)
    return project, items


MODELS = {"gpt-x", "llama-y", "mistral-z"}


@pytest.mark.parametrize("fmt", list(datasets.FORMATS))
def test_every_format_exports_item_metadata_and_response_provenance(fmt, people, tmp_path):
    project, items = metadata_project(datasets.FORMATS[fmt], people)
    _, rows = export(project, tmp_path, fmt)
    rows = all_rows(rows)
    by_item = {item.external_id: item for item in items}
    assert {r["external_id"] for r in rows} == set(by_item)
    for row in rows:
        item = by_item[row["external_id"]]
        assert json.loads(row["metadata"]) == item.metadata
        ids = {r["id"]: r["model"] for r in item.responses}
        if "chosen_id" in row:
            assert ids[row["chosen_id"]] == row["chosen_model"]
            assert ids[row["rejected_id"]] == row["rejected_model"]
        elif "response_ids" in row:
            assert dict(zip(row["response_ids"], row["models"], strict=True)) == ids
        elif "response_id" in row:
            assert ids[row["response_id"]] == row["model"]
        else:
            assert {c["id"]: c["model"] for c in row["completions"]} == ids
    assert set(ids.values()) <= MODELS


def test_metadata_fields_are_flattened_into_typed_columns(people, tmp_path):
    project, _ = metadata_project("pairwise", people)
    fields = ["question_id", "score", "ratio", "gold", "mixed", "source", "absent"]
    result = datasets.build_export(
        project=project,
        fmt="pairwise",
        filters={},
        split={"test_fraction": 0.0},
        options={"metadata_fields": fields},
        out_dir=tmp_path / "out",
    )
    table = pq.read_table(tmp_path / "out" / "train.parquet")
    types = {name: str(table.schema.field(f"metadata.{name}").type) for name in fields}
    assert types == {
        "question_id": "string",
        "score": "int64",
        "ratio": "double",
        "gold": "bool",
        "mixed": "string",
        "source": "string",
        "absent": "string",
    }
    rows = table.to_pylist()
    assert [r["metadata.question_id"] for r in rows] == ["Q000", "Q001", None]
    assert [r["metadata.ratio"] for r in rows] == [0.5, 1.0, None]
    assert [r["metadata.mixed"] for r in rows] == ["1", '"one"', None]
    assert rows[0]["metadata.source"] == '{"passages":["p1","p2"],"split":"dev"}'
    assert {r["metadata.absent"] for r in rows} == {None}
    line = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert (line["metadata.score"], line["metadata.gold"]) == (3, True)
    assert "flattened into columns: `metadata.question_id`" in result.card
    assert "- `metadata.score`: int64" in result.card


def test_metadata_fields_over_the_command_line_and_the_api(people, alice, media, tmp_path):
    from django.core.management import call_command

    from annotate.models import Role

    from .factories import MembershipFactory, api

    project, _ = metadata_project("listwise", people)
    MembershipFactory(project=project, user=alice, role=Role.RESEARCHER)
    call_command("export_dataset", project.slug, "--format", "listwise", "--metadata-fields",
                 "question_id,score", "--test-fraction", "0", "--out", str(tmp_path / "cli"),
                 verbosity=0)  # fmt: skip
    first = json.loads((tmp_path / "cli" / "train.jsonl").read_text().splitlines()[0])
    assert (first["metadata.question_id"], first["metadata.score"]) == ("Q000", 3)
    url = f"/api/v1/projects/{project.slug}/datasets/"
    body = {"format": "listwise", "options": {"metadata_fields": ["question_id"]}}
    response = api(alice).post(url, body, format="json")
    assert response.status_code == 202
    assert response.json()["options"] == {"metadata_fields": ["question_id"]}
    body = {"format": "listwise", "options": {"metadata_fields": ["source.split"]}}
    response = api(alice).post(url, body, format="json")
    assert response.status_code == 400
    assert "options.metadata_fields" in response.json()


# Pairwise labels without a strength ------------------------------------------------------------


def pick(choice: str, strength: int | None) -> dict:
    return {"choice": choice, "strength": strength, "rationale": ""}


def test_margin_column_only_when_every_exported_majority_has_a_strength(people, tmp_path):
    project = ProjectFactory(kind="pairwise")
    mixed = ItemFactory(project=project, external_id="mixed", prompt=question(1))
    AnnotationFactory(item=mixed, annotator=people[0], label=pick("A", None))
    AnnotationFactory(item=mixed, annotator=people[1], label=pick("A", 2))
    known = ItemFactory(project=project, external_id="known", prompt=question(2))
    AnnotationFactory(item=known, annotator=people[0], label=pick("B", 3))
    AnnotationFactory(item=known, annotator=people[1], label=pick("B", 1))
    _, rows = export(project, tmp_path, "pairwise", "with")
    assert [(r["external_id"], r["margin"]) for r in all_rows(rows)] == [
        ("mixed", 2.0),
        ("known", 2.0),
    ]
    # A decided label with no strength, alone: no margin can be given, so no row has one.
    unknown = ItemFactory(project=project, external_id="unknown", prompt=question(3))
    AnnotationFactory(item=unknown, annotator=people[2], label=pick("A", None))
    result, rows = export(project, tmp_path, "pairwise", "without")
    assert [r["external_id"] for r in all_rows(rows)] == ["mixed", "known", "unknown"]
    assert all("margin" not in r for r in all_rows(rows))
    assert "margin" not in pq.read_table(tmp_path / "without" / "train.parquet").column_names
    assert "- `margin`" not in result.card
    # Left out as a single-label item, it has no say in the column.
    filters = {"keep_single_label": False}
    _, rows = export(project, tmp_path, "pairwise", "dropped", filters=filters)
    assert [(r["external_id"], r["margin"]) for r in all_rows(rows)] == [
        ("mixed", 2.0),
        ("known", 2.0),
    ]


def test_a_set_without_strengths_exports_every_decided_pair_and_counts_ties(people, tmp_path):
    project = ProjectFactory(kind="pairwise")
    preference_set(project)  # 8 questions x 6 pairs, labelled once, no strength
    result, rows = export(project, tmp_path, "pairwise")
    ties = sum(1 for n in range(8) for k in range(6) if (n + k) % 5 == 0)
    assert len(all_rows(rows)) == 48 - ties
    assert result.stats["left_out.ties"] == ties
    assert all("margin" not in r and r["agreement"] is None for r in all_rows(rows))
    for row in all_rows(rows):
        n = int(row["external_id"][1])
        assert {row["chosen_id"], row["rejected_id"]} <= {f"q{n}-{x}" for x in "abcd"}
        assert json.loads(row["metadata"])["question_id"] == f"Q{n:03}"
