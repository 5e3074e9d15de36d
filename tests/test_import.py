"""Importing items through the service: formats, shapes, labels, errors, idempotence, limits."""

import hashlib
import io
import json
import tracemalloc

import pytest

from annotate.importing import MAX_REPORTED_ERRORS, RowError
from annotate.models import Annotation, Item
from annotate.services import ServiceError, item_import, item_import_path

from .factories import ItemFactory, ProjectFactory


def run_import(project, content: str | bytes, filename: str = "items.jsonl", **options):
    data = content.encode() if isinstance(content, str) else content
    return item_import(
        project=project, stream=io.BytesIO(data), filename=filename, size=len(data), **options
    )


def jsonl(*records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def row(n: int, **fields) -> dict:
    return {
        "external_id": f"q{n}",
        "prompt": f"Question {n}?",
        "responses": ["yes", "no"],
        **fields,
    }


def errors(report) -> list[tuple[int, str]]:
    return [(e.line, e.field) for e in report.errors]


def stored(project) -> dict[str, Item]:
    return {item.external_id: item for item in Item.objects.filter(project=project)}


# Our own shape --------------------------------------------------------------------------------


def test_our_shape_jsonl_is_imported(project):
    content = jsonl(
        {
            "external_id": "q1",
            "prompt": "What is 2+2?",
            "responses": [{"id": "a", "text": "4", "model": "m1"}, {"text": "5"}],
            "metadata": {"source": "arith"},
            "priority": "3",
            "split": "train",
        },
        row(2),
    )
    report = run_import(project, content)
    assert report.ok
    assert (report.rows, report.created, report.duplicates, report.invalid) == (2, 2, 0, 0)
    item = stored(project)["q1"]
    assert item.prompt == "What is 2+2?"
    assert item.responses == [
        {"id": "a", "text": "4", "model": "m1"},
        {"id": "2", "text": "5", "model": ""},
    ]
    assert item.metadata == {"source": "arith", "split": "train"}
    assert item.priority == 3
    assert report.summary() == "2 items imported, 0 already there (skipped)."


def test_chat_prompt_is_kept_as_messages(project):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    report = run_import(project, jsonl(row(1, prompt=messages)))
    assert report.ok
    item = stored(project)["q1"]
    assert item.prompt == messages
    assert item.is_chat


def test_gold_label_is_stored_canonically(project):
    report = run_import(project, jsonl(row(1, gold={"choice": "b", "strength": 2})))
    assert report.ok
    assert stored(project)["q1"].gold_label == {"choice": "B", "strength": 2, "rationale": ""}


def test_bad_gold_label_names_the_gold_field(project):
    report = run_import(project, jsonl(row(1, gold={"choice": "C", "strength": 2})))
    assert errors(report) == [(1, "gold.choice")]


def test_json_array_is_imported(project):
    content = json.dumps([row(1), row(2), row(3)])
    report = run_import(project, content, filename="items.json")
    assert (report.ok, report.created) == (True, 3)


def test_pretty_printed_json_array_reports_the_line_each_row_starts_on(project):
    rows = [row(1), row(2, responses=["only one"]), row(3), {"prompt": "no responses"}]
    content = json.dumps(rows, indent=2)
    lines = content.splitlines()
    starts = [n for n, text in enumerate(lines, start=1) if text == "  {"]
    report = run_import(project, content, filename="items.json")
    assert errors(report) == [(starts[1], "responses"), (starts[3], "responses")]
    assert report.created == 0


def test_json_array_elements_split_across_read_chunks(project):
    # Far more than one 64 KB read: elements straddle chunk boundaries.
    rows = [row(n, responses=["é" * 300, "文" * 300]) for n in range(600)]
    report = run_import(project, json.dumps(rows, indent=1), filename="items.json")
    assert (report.ok, report.created) == (True, 600)
    assert stored(project)["q599"].responses[1]["text"] == "文" * 300


def test_csv_with_numbered_responses_and_metadata(project):
    content = (
        "external_id,prompt,response_1,model_1,response_2,model_2,topic\n"
        "c1,Capital of France?,Paris,gpt,Lyon,llama,geo\n"
    )
    report = run_import(project, content, filename="items.csv")
    assert report.ok
    item = stored(project)["c1"]
    assert item.responses == [
        {"id": "1", "text": "Paris", "model": "gpt"},
        {"id": "2", "text": "Lyon", "model": "llama"},
    ]
    assert item.metadata == {"topic": "geo"}


def test_csv_prompt_messages_column_holds_json(project):
    messages = [{"role": "user", "content": "Hi, there"}]
    content = 'external_id,prompt_messages,response_1,response_2\nc1,"{}",a,b\n'.format(
        json.dumps(messages).replace('"', '""')
    )
    report = run_import(project, content, filename="items.csv")
    assert report.ok
    assert stored(project)["c1"].prompt == messages


def test_csv_bad_json_column_is_a_row_error(project):
    content = "external_id,prompt_messages,response_1,response_2\nc1,[oops,a,b\n"
    report = run_import(project, content, filename="items.csv")
    assert errors(report) == [(2, "prompt_messages")]


def test_format_detected_from_content_without_extension(project):
    assert run_import(project, jsonl(row(1)), filename="upload").created == 1
    assert run_import(project, json.dumps([row(2)]), filename="upload").created == 1
    csv_content = "external_id,prompt,response_1,response_2\nc3,Q,a,b\n"
    assert run_import(project, csv_content, filename="upload").created == 1


def test_explicit_format_overrides_the_file_name(project):
    report = run_import(project, jsonl(row(1)), filename="items.csv", fmt="jsonl")
    assert report.created == 1


def test_byte_order_mark_is_ignored(project):
    bom = b"\xef\xbb\xbf"
    assert run_import(project, bom + jsonl(row(1)).encode()).created == 1
    csv_content = bom + b"external_id,prompt,response_1,response_2\nc2,Q,a,b\n"
    report = run_import(project, csv_content, filename="items.csv")
    assert report.created == 1
    assert "c2" in stored(project)


def test_blank_lines_in_jsonl_are_skipped_but_counted_for_line_numbers(project):
    content = "\n" + jsonl(row(1)) + "\n   \n" + '{"external_id": "q2"}\n'
    report = run_import(project, content)
    assert report.rows == 2
    assert errors(report) == [(5, "responses")]


# TRL shapes -----------------------------------------------------------------------------------


def trl_item(project, external_id: str) -> tuple[Item, dict]:
    item = Item.objects.get(project=project, external_id=external_id)
    return item, {r["text"]: r["id"] for r in item.responses}


def test_trl_explicit_prompt(project):
    content = jsonl(
        {"id": "t1", "prompt": "Say hi.", "chosen": "Hi!", "rejected": "No.", "source": "x"}
    )
    report = run_import(project, content)
    assert report.ok
    item, ids = trl_item(project, "t1")
    assert item.prompt == "Say hi."
    assert set(ids) == {"Hi!", "No."}
    assert sorted(ids.values()) == ["1", "2"]
    assert item.metadata == {"source": "x"}
    assert not Annotation.objects.exists()


def test_trl_conversational_explicit_prompt(project):
    prompt = [{"role": "user", "content": "2+2?"}]
    content = jsonl(
        {
            "id": "t1",
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        }
    )
    assert run_import(project, content).ok
    item, ids = trl_item(project, "t1")
    assert item.prompt == prompt
    assert set(ids) == {"4", "5"}


def test_trl_implicit_prompt_ends_at_the_last_shared_assistant_turn(project):
    history = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."
    # Both answers start alike: the prompt still ends at the turn marker, not mid-answer.
    chosen = history + "\n\nAssistant: Sure, why did the chicken cross the road?"
    rejected = history + "\n\nAssistant: Sure, no."
    report = run_import(project, jsonl({"id": "h1", "chosen": chosen, "rejected": rejected}))
    assert report.ok
    item, ids = trl_item(project, "h1")
    assert item.prompt == history + "\n\nAssistant:"
    assert set(ids) == {"Sure, why did the chicken cross the road?", "Sure, no."}


def test_trl_implicit_prompt_without_turn_markers_splits_at_a_word(project):
    content = jsonl(
        {"id": "w1", "chosen": "The answer is four.", "rejected": "The answer is five."}
    )
    assert run_import(project, content).ok
    item, ids = trl_item(project, "w1")
    assert item.prompt == "The answer is "
    assert set(ids) == {"four.", "five."}


def test_trl_implicit_message_lists(project):
    shared = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    shared += [{"role": "user", "content": "Joke?"}]
    content = jsonl(
        {
            "id": "m1",
            "chosen": [*shared, {"role": "assistant", "content": "Knock knock."}],
            "rejected": [*shared, {"role": "assistant", "content": "No."}],
        }
    )
    assert run_import(project, content).ok
    item, ids = trl_item(project, "m1")
    assert item.prompt == shared
    assert set(ids) == {"Knock knock.", "No."}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"chosen": "x"}, "rejected"),
        ({"rejected": "x"}, "chosen"),
        ({"chosen": "abc", "rejected": "xyz"}, "chosen"),
        ({"chosen": "a b", "rejected": ["a"]}, "chosen"),
        ({"chosen": [{"role": "user", "content": "a"}], "rejected": []}, "chosen"),
        ({"prompt": "Q", "chosen": 3, "rejected": "x"}, "chosen"),
        (
            {"prompt": "Q", "chosen": "x", "rejected": [{"role": "user", "content": "y"}]},
            "rejected",
        ),
        ({"prompt": "", "chosen": "x", "rejected": "y"}, "prompt"),
    ],
)
def test_trl_bad_rows(project, record, field):
    report = run_import(project, jsonl({"id": "t", **record}))
    assert errors(report) == [(1, field)]


def test_keep_labels_points_at_the_chosen_text_after_the_swap(project):
    rows = [
        {"id": f"t{n}", "prompt": f"Q{n}", "chosen": f"good {n}", "rejected": f"bad {n}"}
        for n in range(40)
    ]
    report = run_import(project, jsonl(*rows), keep_labels=True)
    assert (report.created, report.labels) == (40, 40)
    choices = set()
    for n in range(40):
        item, _ = trl_item(project, f"t{n}")
        annotation = Annotation.objects.get(item=item)
        assert annotation.source == Annotation.Source.IMPORTED
        assert annotation.kind == "pairwise"
        assert annotation.annotator_id is None and annotation.judge_id is None
        label = annotation.label
        chosen_index = {"A": 0, "B": 1}[label["choice"]]
        assert item.responses[chosen_index]["text"] == f"good {n}"
        assert label["strength"] is None
        choices.add(label["choice"])
    # The stored order is shuffled by the id: "A" is not always the chosen one.
    assert choices == {"A", "B"}


def test_trl_rows_keep_the_sources_response_ids_and_model_names(project):
    # One prompt, four answers, several pairs of them (ids as the source numbers its answers).
    rows = [
        {
            "id": f"p1-{c}-{r}",
            "prompt": "Who wrote Hamlet?",
            "chosen": f"answer {c}",
            "rejected": f"answer {r}",
            "chosen_id": c,
            "rejected_id": r,
            "chosen_model": f"model-{c}",
            "rejected_model": f"model-{r}",
            "question_id": "p1",
        }
        for c, r in [("a1", "a2"), ("a3", "a1"), ("a4", "a2"), ("a2", "a3"), (0, 7)]
    ]
    report = run_import(project, jsonl(*rows), keep_labels=True)
    assert (report.ok, report.created, report.labels) == (True, 5, 5)
    for source in rows:
        c, r = str(source["chosen_id"]), str(source["rejected_id"])
        item = Item.objects.get(external_id=source["id"])
        by_id = {resp["id"]: resp for resp in item.responses}
        assert by_id[c] == {"id": c, "text": f"answer {c}", "model": f"model-{c}"}
        assert by_id[r] == {"id": r, "text": f"answer {r}", "model": f"model-{r}"}
        assert item.metadata == {"question_id": "p1"}
        label = Annotation.objects.get(item=item).label
        assert item.responses[{"A": 0, "B": 1}[label["choice"]]]["id"] == c


def test_trl_ids_and_models_in_csv_columns(db):
    project = ProjectFactory(kind="listwise")
    content = (
        "id,prompt,chosen,rejected,chosen_id,rejected_id,chosen_model,rejected_model,topic\n"
        "t1,Say hi.,Hi!,No.,resp-9,resp-4,gpt-x,llama-y,greetings\n"
    )
    report = run_import(project, content, filename="items.csv", keep_labels=True)
    assert (report.created, report.labels) == (1, 1)
    item = Item.objects.get()
    assert sorted((r["id"], r["model"]) for r in item.responses) == [
        ("resp-4", "llama-y"),
        ("resp-9", "gpt-x"),
    ]
    assert item.metadata == {"topic": "greetings"}
    assert Annotation.objects.get().label == {"ranking": ["resp-9", "resp-4"]}


def test_trl_rows_with_a_model_but_no_ids_keep_the_model(project):
    content = jsonl(
        {"id": "t1", "prompt": "Q", "chosen": "good", "rejected": "bad", "chosen_model": "m1"}
    )
    assert run_import(project, content).ok
    item, ids = trl_item(project, "t1")
    models = {r["text"]: r["model"] for r in item.responses}
    assert models == {"good": "m1", "bad": ""}
    assert sorted(ids.values()) == ["1", "2"]


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"chosen_id": "a"}, "rejected_id", "needs both ids"),
        ({"rejected_id": "a"}, "chosen_id", "needs both ids"),
        ({"chosen_id": "a", "rejected_id": "a"}, "rejected_id", "the same as chosen_id"),
        ({"chosen_id": 1, "rejected_id": "1"}, "rejected_id", "the same as chosen_id"),
        ({"chosen_id": "", "rejected_id": "b"}, "chosen_id", "non-empty"),
        ({"chosen_id": True, "rejected_id": "b"}, "chosen_id", "non-empty"),
        ({"chosen_id": ["a"], "rejected_id": "b"}, "chosen_id", "non-empty"),
        ({"chosen_model": 3}, "chosen_model", "expected text"),
        ({"rejected_model": {"name": "m"}}, "rejected_model", "expected text"),
    ],
)
def test_trl_bad_ids_and_models_are_row_errors(project, fields, field, reason):
    record = {"id": "t1", "prompt": "Q", "chosen": "good", "rejected": "bad", **fields}
    report = run_import(project, jsonl(record), keep_labels=True)
    assert errors(report) == [(1, field)]
    assert reason in report.errors[0].message
    assert not Item.objects.exists()


def test_swap_is_deterministic(project):
    rows = [{"id": f"t{n}", "prompt": "Q", "chosen": "good", "rejected": "bad"} for n in range(8)]
    run_import(project, jsonl(*rows))
    for n in range(8):
        swap = hashlib.sha256(f"t{n}".encode()).digest()[0] & 1
        item, ids = trl_item(project, f"t{n}")
        assert ids["good"] == str(swap + 1)


def test_keep_labels_in_a_listwise_project_ranks_chosen_first(db):
    project = ProjectFactory(kind="listwise")
    content = jsonl({"id": "t1", "prompt": "Q", "chosen": "good", "rejected": "bad"})
    report = run_import(project, content, keep_labels=True)
    assert report.labels == 1
    item, ids = trl_item(project, "t1")
    assert Annotation.objects.get(item=item).label == {"ranking": [ids["good"], ids["bad"]]}


def test_keep_labels_from_a_spans_project_is_refused(db):
    project = ProjectFactory(kind="spans")
    content = jsonl({"id": "t1", "prompt": "Q", "chosen": "good", "rejected": "bad"})
    report = run_import(project, content, keep_labels=True)
    assert errors(report) == [(1, "chosen")]
    assert "spans project" in report.errors[0].message


def test_keep_labels_of_our_shape_are_canonical(project):
    content = jsonl(row(1, label={"choice": "b", "strength": "2", "rationale": " ok "}), row(2))
    report = run_import(project, content, keep_labels=True)
    assert (report.created, report.labels) == (2, 1)
    annotation = Annotation.objects.get()
    assert annotation.item.external_id == "q1"
    assert annotation.source == Annotation.Source.IMPORTED
    assert annotation.label == {"choice": "B", "strength": 2, "rationale": "ok"}
    assert report.summary() == "2 items imported, 0 already there (skipped), 1 labels kept."


def test_labels_are_ignored_without_keep_labels(project):
    report = run_import(project, jsonl(row(1, label={"choice": "nonsense"})))
    assert (report.ok, report.labels) == (True, 0)
    assert not Annotation.objects.exists()
    assert "label" not in stored(project)["q1"].metadata


def test_bad_label_with_keep_labels_is_a_row_error(project):
    report = run_import(
        project, jsonl(row(1, label={"choice": "A", "strength": 5})), keep_labels=True
    )
    assert errors(report) == [(1, "label.strength")]


def test_keep_labels_of_our_shape_without_strength_keep_it_unknown(project):
    # Published preference data: several pairs per prompt, ties, no strength.
    rows = [
        row(1, label={"choice": "A"}, metadata={"question_id": "p1", "pair": "a-b"}),
        row(2, label={"choice": "tie"}, metadata={"question_id": "p1", "pair": "a-c"}),
        row(3, label={"choice": "B", "strength": None}, metadata={"question_id": "p1"}),
        row(4, label={"choice": "B", "strength": 2}, metadata={"question_id": "p2"}),
    ]
    report = run_import(project, jsonl(*rows), keep_labels=True)
    assert (report.ok, report.created, report.labels) == (True, 4, 4)
    labels = {a.item.external_id: a.label for a in Annotation.objects.select_related("item")}
    assert [labels[f"q{n}"]["strength"] for n in range(1, 5)] == [None, None, None, 2]
    assert [labels[f"q{n}"]["choice"] for n in range(1, 5)] == ["A", "tie", "B", "B"]


def test_keep_labels_without_strength_refused_where_the_project_requires_one(db):
    project = ProjectFactory(
        config={"allow_tie": True, "require_strength": True, "require_rationale": False}
    )
    rows = [
        row(1, label={"choice": "A"}),
        {"id": "t1", "prompt": "Q", "chosen": "good", "rejected": "bad"},
        row(2, label={"choice": "A", "strength": 1}),
    ]
    report = run_import(project, jsonl(*rows), keep_labels=True)
    assert errors(report) == [(1, "label.strength"), (2, "label.strength")]
    assert "asks how much better" in report.errors[1].message
    assert not Item.objects.exists()


def test_ratings_label_kept_in_the_single_response_shape(db):
    project = ProjectFactory(kind="ratings", config={})
    aspects = {"instruction_following": 5, "truthfulness": 4, "honesty": 4, "helpfulness": 5}
    content = jsonl({"id": "r1", "prompt": "Q", "responses": ["A"], "label": {"aspects": aspects}})
    report = run_import(project, content, keep_labels=True)
    assert report.labels == 1
    assert Annotation.objects.get().label == {
        "responses": {"1": {"aspects": aspects, "rationale": ""}}
    }


# Bad rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ('{"external_id": "x", ', "", "invalid JSON"),
        ("[1, 2]", "", "expected an object per row, got a list"),
        ('"just text"', "", "expected an object per row, got text"),
        ('{"external_id": "x", "prompt": "Q"}', "responses", "is missing"),
        ('{"prompt": "Q", "responses": ["a", "b", "c"]}', "responses", "exactly 2"),
        ('{"prompt": "Q", "responses": "a"}', "responses", "non-empty list"),
        ('{"responses": ["a", "b"]}', "prompt", "expected text or a list"),
        ('{"external_id": {"a": 1}, "prompt": "Q", "responses": ["a", "b"]}', "external_id", ""),
        ('{"external_id": true, "prompt": "Q", "responses": ["a", "b"]}', "external_id", ""),
        ('{"external_id": "  ", "prompt": "Q", "responses": ["a", "b"]}', "external_id", ""),
        ('{"metadata": [1], "prompt": "Q", "responses": ["a", "b"]}', "metadata", "an object"),
        ('{"priority": "high", "prompt": "Q", "responses": ["a", "b"]}', "priority", "whole"),
    ],
)
def test_each_bad_row_is_reported_with_line_field_and_reason(project, line, field, reason):
    content = jsonl(row(1)) + line + "\n" + jsonl(row(3))
    report = run_import(project, content)
    assert not report.ok
    assert (report.rows, report.invalid, report.created) == (3, 1, 0)
    [error] = report.errors
    assert (error.line, error.field) == (2, field)
    assert reason in error.message
    assert str(error).startswith("line 2: ")


def test_external_id_longer_than_255_characters(project):
    report = run_import(project, jsonl(row(1, external_id="x" * 256)))
    assert errors(report) == [(1, "external_id")]
    assert "1 to 255" in report.errors[0].message


def test_numeric_external_id_is_kept_as_text(project):
    report = run_import(project, jsonl(row(1, external_id=17)))
    assert report.ok
    assert list(stored(project)) == ["17"]


def test_bad_label_row_in_jsonl(project):
    content = jsonl(row(1), row(2, label={"choice": "maybe", "strength": 1}))
    report = run_import(project, content, keep_labels=True)
    assert errors(report) == [(2, "label.choice")]


def test_non_utf8_bytes_in_jsonl_are_a_row_error(project):
    content = jsonl(row(1)).encode() + b'{"prompt": "caf\xe9", "responses": ["a", "b"]}\n'
    report = run_import(project, content)
    assert errors(report) == [(2, "")]
    assert "not valid UTF-8" in report.errors[0].message


def test_non_utf8_bytes_in_csv_reject_the_file(project):
    content = b"external_id,prompt,response_1,response_2\nc1,Q,a,b\nc2,caf\xe9,a,b\n"
    report = run_import(project, content, filename="items.csv")
    assert "not valid UTF-8" in report.fatal
    assert Item.objects.count() == 0


def test_non_utf8_bytes_in_a_json_array_reject_the_file(project):
    content = b'[{"prompt": "caf\xe9", "responses": ["a", "b"]}]'
    report = run_import(project, content, filename="items.json")
    assert "not valid UTF-8" in report.fatal


def test_csv_with_too_many_and_too_few_fields(project):
    content = (
        "external_id,prompt,response_1,response_2\nc1,Q,a,b\nc2,Q,a,b,extra\nc3,Q,a\nc4,Q,a,b\n"
    )
    report = run_import(project, content, filename="items.csv")
    assert errors(report) == [(3, ""), (4, "")]
    assert report.errors[0].message == "has 5 fields, the header has 4"
    assert report.errors[1].message == "has fewer fields than the header (4)"


def test_csv_quoting_keeps_later_line_numbers_right(project):
    content = (
        "external_id,prompt,response_1,response_2\n"
        'c1,"Commas, ""quotes"" and\na newline","line one\nline two\nline three",b\n'
        "c2,Q,only one,\n"
        "c3,Q,a,b\n"
        "c4,Q,a\n"
    )
    report = run_import(project, content, filename="items.csv", skip_invalid=True)
    assert errors(report) == [(6, "responses"), (8, "")]
    item = stored(project)["c1"]
    assert item.prompt == 'Commas, "quotes" and\na newline'
    assert item.responses[0]["text"] == "line one\nline two\nline three"


def test_csv_blank_lines_keep_later_line_numbers_right(project):
    content = "external_id,prompt,response_1,response_2\nc1,Q,a,b\n\n\nc2,Q,a\n"
    report = run_import(project, content, filename="items.csv")
    assert errors(report) == [(5, "")]


def test_csv_trl_columns(project):
    content = "id,prompt,chosen,rejected,source\nt1,Say hi.,Hi!,No.,web\n"
    report = run_import(project, content, filename="items.csv", keep_labels=True)
    assert (report.created, report.labels) == (1, 1)
    item, ids = trl_item(project, "t1")
    assert item.metadata == {"source": "web"}
    choice = Annotation.objects.get(item=item).label["choice"]
    assert item.responses[{"A": 0, "B": 1}[choice]]["text"] == "Hi!"


def test_unclosed_json_array_rejects_the_file(project):
    content = "[\n" + json.dumps(row(1)) + ",\n" + json.dumps(row(2)) + "\n"
    report = run_import(project, content, filename="items.json")
    assert report.fatal == "the JSON array is not closed with ] (file ends at line 4)"
    assert report.summary().startswith("Nothing imported: ")
    assert Item.objects.count() == 0


def test_json_that_is_not_an_array_rejects_the_file(project):
    report = run_import(project, json.dumps(row(1)), filename="items.json")
    assert "must hold one array" in report.fatal


def test_invalid_json_inside_an_array_names_its_line(project):
    content = "[\n" + json.dumps(row(1)) + ",\n" + '{"prompt": "Q",, }\n]'
    report = run_import(project, content, filename="items.json")
    assert report.fatal.startswith("line 3: invalid JSON")


def test_missing_comma_between_array_elements(project):
    content = "[\n" + json.dumps(row(1)) + "\n" + json.dumps(row(2)) + "\n]"
    report = run_import(project, content, filename="items.json")
    assert report.fatal == "line 3: expected , or ] between array elements"


def test_content_after_the_json_array_rejects_the_file(project):
    content = json.dumps([row(1)]) + "\n" + json.dumps([row(2)])
    report = run_import(project, content, filename="items.json")
    assert "after the array" in report.fatal
    assert Item.objects.count() == 0


def test_nothing_is_imported_when_any_row_is_bad(project):
    content = jsonl(row(1), row(2), {"prompt": "no responses"}, row(4))
    report = run_import(project, content, batch_size=1)
    assert not report.ok
    assert (report.rows, report.invalid, report.created) == (4, 1, 0)
    assert Item.objects.count() == 0
    assert report.summary() == "0 items imported, 0 already there (skipped), 1 invalid rows."


def test_skip_invalid_imports_the_good_rows(project):
    content = jsonl(row(1), {"prompt": "no responses"}, row(3)) + "not json\n"
    report = run_import(project, content, skip_invalid=True)
    assert (report.rows, report.invalid, report.created) == (4, 2, 2)
    assert errors(report) == [(2, "responses"), (4, "")]
    assert set(stored(project)) == {"q1", "q3"}


def test_skip_invalid_with_only_bad_rows_imports_nothing(project):
    report = run_import(project, "nope\n", skip_invalid=True)
    assert (report.invalid, report.created, report.fatal) == (1, 0, "")


def test_reported_errors_are_capped_but_all_counted(project):
    content = "not json\n" * (MAX_REPORTED_ERRORS + 5)
    report = run_import(project, content)
    assert report.invalid == MAX_REPORTED_ERRORS + 5
    assert len(report.errors) == MAX_REPORTED_ERRORS


def test_report_as_dict():
    error = RowError(2, "responses", "is missing")
    assert str(error) == "line 2: responses: is missing"
    assert str(RowError(0, "", "too big")) == "file: too big"


def test_report_to_dict(project):
    report = run_import(project, jsonl(row(1)) + "oops\n", skip_invalid=True)
    data = report.to_dict()
    assert data["ok"] is False
    assert data["created"] == 1
    assert data["errors"] == [{"line": 2, "field": "", "message": data["errors"][0]["message"]}]
    assert data["summary"] == report.summary()


# Idempotence ----------------------------------------------------------------------------------


def test_reimport_creates_no_duplicates_and_counts_them(project):
    content = jsonl(row(1), row(2), row(3))
    run_import(project, content)
    report = run_import(project, jsonl(row(1), row(2), row(3), row(4)))
    assert (report.created, report.duplicates) == (1, 3)
    assert Item.objects.filter(project=project).count() == 4
    assert report.summary() == "1 items imported, 3 already there (skipped)."


def test_reimport_keeps_the_first_version_of_an_item(project):
    run_import(project, jsonl(row(1)))
    report = run_import(project, jsonl(row(1, prompt="Changed?")), keep_labels=True)
    assert report.duplicates == 1
    assert stored(project)["q1"].prompt == "Question 1?"


def pair_row(n: int, choice: str, **fields) -> dict:
    """A pair of one prompt's answers, as published preference data has several per prompt."""
    return row(n, label={"choice": choice}, metadata={"question_id": f"p{n // 3}"}, **fields)


def labels_by_item(project) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for annotation in Annotation.objects.filter(item__project=project).select_related("item"):
        found.setdefault(annotation.item.external_id, []).append(annotation.label["choice"])
    return found


def test_reimport_with_keep_labels_says_how_many_labels_it_did_not_keep(project):
    run_import(project, jsonl(row(1), row(2)))
    content = jsonl(pair_row(1, "A"), pair_row(2, "tie"), pair_row(3, "B"))
    report = run_import(project, content, keep_labels=True)
    assert (report.created, report.duplicates, report.labels) == (1, 2, 1)
    assert report.labels_skipped_existing == 2
    assert report.summary() == (
        "1 items imported, 2 already there (skipped), 1 labels kept, 2 labels of items already "
        "there not kept (labels_for_existing adds them)."
    )
    assert labels_by_item(project) == {"q3": ["B"]}


@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_labels_for_existing_adds_them_once(project, batch_size):
    # Items imported first without labels, then the same file with its labels: added; the same
    # file again: nothing added; a new label of an item: added beside the old one.
    content = jsonl(pair_row(1, "A"), pair_row(2, "tie"), pair_row(3, "B"), row(4))
    run_import(project, content)
    first = run_import(project, content, labels_for_existing=True, batch_size=batch_size)
    assert (first.created, first.duplicates, first.labels, first.labels_already_there) == (
        0,
        4,
        3,
        0,
    )
    assert labels_by_item(project) == {"q1": ["A"], "q2": ["tie"], "q3": ["B"]}
    again = run_import(project, content, labels_for_existing=True, batch_size=batch_size)
    assert (again.labels, again.labels_already_there) == (0, 3)
    assert again.summary() == (
        "0 items imported, 4 already there (skipped), 3 labels already there (skipped)."
    )
    other = run_import(project, jsonl(pair_row(1, "B")), labels_for_existing=True)
    assert other.labels == 1
    assert labels_by_item(project) == {"q1": ["A", "B"], "q2": ["tie"], "q3": ["B"]}
    assert Annotation.objects.filter(item__project=project).count() == 4


def test_labels_for_existing_keeps_several_labels_of_one_item_from_one_file(project):
    # Three annotators' labels of one pair, one row each: one creates the item, two join it.
    content = jsonl(pair_row(1, "A"), pair_row(1, "B"), pair_row(1, "tie"), pair_row(1, "A"))
    report = run_import(project, content, labels_for_existing=True, batch_size=2)
    assert (report.created, report.labels, report.labels_already_there) == (1, 3, 1)
    assert sorted(labels_by_item(project)["q1"]) == ["A", "B", "tie"]


def test_labels_for_existing_refuses_an_item_with_other_responses(project):
    run_import(project, jsonl(row(1)))
    changed = pair_row(1, "A", responses=["other", "answers"])
    report = run_import(project, jsonl(changed), labels_for_existing=True)
    assert (report.labels, report.labels_other_responses) == (0, 1)
    assert "1 labels not kept: their item is already there with other responses" in report.summary()
    assert not Annotation.objects.exists()


def test_labels_for_existing_of_a_trl_file(project):
    rows = [
        {"id": f"t{n}", "prompt": f"Q{n}", "chosen": "good", "rejected": "bad", "chosen_id": "g"}
        | {"rejected_id": "b"}
        for n in range(6)
    ]
    run_import(project, jsonl(*rows))
    report = run_import(project, jsonl(*rows), labels_for_existing=True)
    assert (report.created, report.labels) == (0, 6)
    for annotation in Annotation.objects.select_related("item"):
        chosen = annotation.item.responses[{"A": 0, "B": 1}[annotation.label["choice"]]]
        assert chosen["id"] == "g"
    assert run_import(project, jsonl(*rows), labels_for_existing=True).labels_already_there == 6


def test_existing_items_of_other_projects_do_not_count(project, bob_project):
    ItemFactory(project=bob_project, external_id="q1")
    assert run_import(project, jsonl(row(1))).created == 1


def test_rows_without_id_get_a_content_derived_id(project):
    records = [
        {"prompt": "A?", "responses": ["x", "y"]},
        {"prompt": "B?", "chosen": "good", "rejected": "bad"},
    ]
    first = run_import(project, jsonl(*records))
    second = run_import(project, jsonl(*records))
    assert (first.created, second.created, second.duplicates) == (2, 0, 2)
    ids = list(stored(project))
    assert all(eid.startswith("sha256-") and len(eid) == 39 for eid in ids)


def test_content_derived_id_ignores_key_order(project):
    run_import(project, '{"prompt": "A?", "responses": ["x", "y"]}\n')
    report = run_import(project, '{"responses": ["x", "y"], "prompt": "A?"}\n')
    assert report.duplicates == 1


def test_csv_rows_without_id_are_idempotent(project):
    content = "prompt,response_1,response_2\nQ1,a,b\nQ2,a,b\n"
    run_import(project, content, filename="items.csv")
    report = run_import(project, content, filename="items.csv")
    assert (report.created, report.duplicates) == (0, 2)


@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_duplicate_ids_within_one_file_keep_the_first_row(project, batch_size):
    content = jsonl(row(1), row(2), row(1, prompt="Again?"), row(2, prompt="Again?"), row(3))
    report = run_import(project, content, batch_size=batch_size, keep_labels=True)
    assert (report.rows, report.created, report.duplicates) == (5, 3, 2)
    assert stored(project)["q1"].prompt == "Question 1?"


def test_batches_write_every_item_and_label(project):
    rows = [row(n, label={"choice": "A", "strength": 1}) for n in range(10)]
    seen = []
    report = run_import(
        project,
        jsonl(*rows),
        batch_size=3,
        keep_labels=True,
        progress=lambda done, items: seen.append((done, items)),
    )
    assert (report.created, report.labels) == (10, 10)
    assert Annotation.objects.filter(item__project=project).count() == 10
    assert [items for _, items in seen] == [3, 6, 9, 10]
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


# Limits and edge cases ------------------------------------------------------------------------


def test_file_over_the_size_limit_is_refused_before_reading(project):
    stream = io.BytesIO(jsonl(row(1)).encode())
    report = item_import(
        project=project, stream=stream, filename="a.jsonl", size=2000, max_bytes=1000
    )
    assert "over the size limit of 1000 bytes" in report.fatal
    assert stream.tell() == 0


def test_stream_larger_than_the_limit_is_stopped(project):
    content = jsonl(*[row(n) for n in range(200)]).encode()
    report = item_import(
        project=project, stream=io.BytesIO(content), filename="a.jsonl", max_bytes=5000
    )
    assert "over the size limit" in report.fatal
    assert Item.objects.count() == 0


def test_size_limit_comes_from_settings(project, settings):
    settings.IMPORT_MAX_BYTES = 10
    report = run_import(project, jsonl(row(1)))
    assert "IMPORT_MAX_BYTES" in report.fatal


@pytest.mark.parametrize(
    ("filename", "content", "fatal"),
    [
        ("items.jsonl", "", "the file holds no items"),
        ("items.jsonl", "\n\n  \n", "the file holds no items"),
        ("items.json", "", "must hold one array"),
        ("items.json", "[]", "the file holds no items"),
        ("items.json", " [ \n ] \n", "the file holds no items"),
        ("items.csv", "", "the CSV file is empty"),
        ("items.csv", "external_id,prompt,response_1,response_2\n", "the file holds no items"),
    ],
)
def test_empty_files(project, filename, content, fatal):
    report = run_import(project, content, filename=filename)
    assert fatal in report.fatal
    assert not report.ok


UNICODE_TEXTS = [
    "Emoji 👩‍👩‍👧‍👦 and flags 🇯🇵",
    "中文，日本語、한국어",
    "Combining: e\u0301 vs \u00e9, a\u0308\u0304",
    "RTL: \u202bمرحبا بالعالم\u202c — שלום",
    "Zero width\u200bspace, tab\there, nbsp\u00a0.",
]


@pytest.mark.parametrize("filename", ["items.jsonl", "items.json", "items.csv"])
def test_unicode_is_preserved_exactly(project, filename):
    records = [
        {"external_id": f"u{n}", "prompt": text, "responses": [text[::-1], text]}
        for n, text in enumerate(UNICODE_TEXTS)
    ]
    if filename.endswith(".jsonl"):
        content = jsonl(*records)
    elif filename.endswith(".json"):
        content = json.dumps(records, ensure_ascii=False, indent=2)
    else:
        buffer = io.StringIO()
        import csv

        writer = csv.writer(buffer)
        writer.writerow(["external_id", "prompt", "response_1", "response_2"])
        for r in records:
            writer.writerow([r["external_id"], r["prompt"], *r["responses"]])
        content = buffer.getvalue()
    report = run_import(project, content, filename=filename)
    assert report.ok, report.errors
    for n, text in enumerate(UNICODE_TEXTS):
        item = Item.objects.get(project=project, external_id=f"u{n}")
        assert item.prompt == text
        assert [r["text"] for r in item.responses] == [text[::-1], text]


def test_unicode_external_id(project):
    assert run_import(project, jsonl(row(1, external_id="問題-１"))).created == 1
    assert "問題-１" in stored(project)


def test_nul_characters_are_a_row_error_on_every_database(project):
    content = jsonl(row(1), row(2, prompt="a\u0000b"), row(3))
    report = run_import(project, content, skip_invalid=True)
    assert errors(report) == [(2, "prompt")]
    assert report.created == 2


def test_nul_characters_in_metadata_and_csv(project):
    report = run_import(project, jsonl(row(1, metadata={"k": "\u0000"})))
    assert errors(report) == [(1, "metadata")]
    literal = jsonl(row(2, prompt="a backslash-u: \\u0000"))
    assert run_import(project, literal).created == 1
    csv_content = "external_id,prompt,response_1,response_2\nc1,Q,a\x00,b\n"
    report = run_import(project, csv_content, filename="items.csv")
    assert errors(report) == [(2, "responses")]


def test_import_path_reads_a_local_file(project, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(jsonl(row(1), row(2)), encoding="utf-8")
    report = item_import_path(project=project, path=path)
    assert report.created == 2


def test_import_path_missing_file(project, tmp_path):
    with pytest.raises(ServiceError) as caught:
        item_import_path(project=project, path=tmp_path / "nope.jsonl")
    assert caught.value.field == "file"


def _peak_import_memory(project, path) -> int:
    tracemalloc.start()
    try:
        report = item_import_path(project=project, path=path, batch_size=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok
    return peak


def test_memory_does_not_grow_with_file_size(project, tmp_path):
    def write(path, n: int) -> None:
        with path.open("w") as f:
            for i in range(n):
                f.write(
                    json.dumps(row(i, external_id=f"{path.stem}-{i}", metadata={"pad": "x" * 500}))
                )
                f.write("\n")

    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write(small, 1000)
    write(large, 8000)
    # Warm up caches (query compilation, imports) so that both runs measure the import alone.
    _peak_import_memory(project, small)
    Item.objects.all().delete()
    small_peak = _peak_import_memory(project, small)
    large_peak = _peak_import_memory(project, large)
    # Eight times the rows, a few batches' worth of extra memory at most (batches are 200 rows).
    assert large_peak < small_peak * 1.5 + 512 * 1024, (small_peak, large_peak)


@pytest.mark.parametrize("where", ["metadata", "extra"])
def test_integer_past_64_bits_is_a_row_error_not_a_crash(project, where):
    huge = "9" * 30
    content = (
        '[{"prompt": "?", "responses": ["a", "b"]},\n'
        f' {{"prompt": "?", "responses": ["c", "d"], "{where}": {{"n": {huge}}}}}]'
    )
    report = run_import(project, content, filename="items.json")
    assert report.invalid == 1
    assert (report.errors[0].line, report.errors[0].field) == (2, where)
    assert "too large" in report.errors[0].message
    assert not Item.objects.filter(project=project).exists()


# What no database stores, and JSON nested too deeply: row errors, never a crash ----------------
NESTED_300 = "[" * 300 + "]" * 300


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("items.jsonl", '{"prompt": "Q?", "responses": ["a", "b"], "metadata": {"x": %s}}\n'),
        ("items.json", '[{"prompt": "Q?", "responses": ["a", "b"], "metadata": {"x": %s}}]'),
        ("items.csv", 'prompt,response_1,response_2,gold\nQ?,a,b,"{""x"": %s}"\n'),
    ],
)
def test_metadata_nested_300_levels_is_a_row_error_and_imports_nothing(project, filename, content):
    report = run_import(project, content.replace("%s", NESTED_300), filename=filename)
    assert report.invalid == 1 and report.created == 0
    assert "nested deeper than 100 levels" in report.errors[0].message
    assert not Item.objects.filter(project=project).exists()


def test_a_json_bomb_in_a_file_is_refused_and_imports_nothing(project):
    report = run_import(project, "[" + row_json(1) + "," + "[" * 100_000, filename="items.json")
    assert "nested deeper than 100 levels" in report.fatal
    csv_content = 'prompt,response_1,response_2,label\nQ?,a,b,"' + "[" * 100_000 + '"\n'
    report = run_import(project, csv_content, filename="items.csv", keep_labels=True)
    assert errors(report) == [(2, "label")]
    assert "nested deeper than 100 levels" in report.errors[0].message
    assert not Item.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    ("filename", "content", "field"),
    [
        ("items.json", r'[{"prompt": "Q\ud800", "responses": ["a", "b"]}]', "prompt"),
        ("items.json", r'[{"prompt": "Q", "responses": ["a", "b"], "m\udfff": 1}]', r"m\udfff"),
        (
            "items.json",
            r'[{"prompt": "Q", "responses": ["a"], "metadata": {"k": "\ud800"}}]',
            "metadata",
        ),
        (
            "items.csv",
            'prompt,response_1,response_2,prompt_messages\nQ,a,b,"""\\ud800"""\n',
            "prompt",
        ),
        (
            "items.csv",
            'prompt,response_1,response_2,gold\nQ,a,b,"{""choice"": ""\\udc00""}"\n',
            "gold",
        ),
    ],
)
def test_a_lone_surrogate_is_a_row_error_and_imports_nothing(project, filename, content, field):
    report = run_import(project, content, filename=filename)
    assert report.invalid == 1 and report.created == 0
    assert report.errors[0].field == field
    assert "lone surrogate" in report.errors[0].message
    assert not Item.objects.filter(project=project).exists()


def test_invalid_utf8_bytes_refuse_the_file_and_import_nothing(project):
    for filename in ("items.json", "items.csv"):
        content = "prompt,response_1,response_2\nQ,a,b\n" if filename.endswith("csv") else "[]"
        content = content.encode().replace(b"Q", b"Q\xed\xa0\x80").replace(b"[]", b'["\xff"]')
        report = run_import(project, content, filename=filename)
        assert "not valid UTF-8" in report.fatal
    report = run_import(project, b'{"prompt": "Q\xed\xa0\x80", "responses": ["a", "b"]}\n')
    assert report.errors[0].message == "invalid JSON: not valid UTF-8"
    assert not Item.objects.filter(project=project).exists()


def row_json(n: int) -> str:
    return json.dumps(row(n))


def test_a_whole_number_past_64_bits_in_jsonl_is_a_row_error_not_a_float(project):
    content = '{"prompt": "Q?", "responses": ["a", "b"], "metadata": {"n": N}}\n'
    content = content.replace("N", str(2**70))
    report = run_import(project, content)
    assert errors(report) == [(1, "metadata")]
    assert "too large to store (past 64 bits)" in report.errors[0].message
    assert not Item.objects.filter(project=project).exists()
    # 19 and 20 digits that fit are kept exactly, and long digit runs in text stay text.
    fits = jsonl(row(1, metadata={"low": -(2**63), "high": 2**64 - 1, "id": "1" * 30}))
    assert run_import(project, fits).created == 1
    assert stored(project)["q1"].metadata == {"low": -(2**63), "high": 2**64 - 1, "id": "1" * 30}
