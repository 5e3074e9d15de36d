"""`manage.py import_items`: the import service from the command line."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import Annotation, Item

ROWS = [
    {"external_id": "q1", "prompt": "Q1?", "responses": ["a", "b"]},
    {"id": "t1", "prompt": "Q2?", "chosen": "good", "rejected": "bad"},
    {"prompt": "Q3?", "responses": ["c", "d"]},
]


def write_jsonl(path, rows, extra: str = ""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra, encoding="utf-8")
    return path


def import_items(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_items", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_imports_a_file_by_project_slug(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    out, err = import_items(project.slug, str(path))
    assert out.strip() == "3 items imported, 0 already there (skipped)."
    assert err == ""
    assert Item.objects.filter(project=project).count() == 3


@pytest.mark.parametrize("ref", ["name", "pk"])
def test_project_by_name_or_id(project, tmp_path, ref):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS[:1])
    import_items(str(getattr(project, ref)), str(path))
    assert Item.objects.filter(project=project).count() == 1


def test_reimport_reports_skipped_items(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    import_items(project.slug, str(path))
    out, _ = import_items(project.slug, str(path))
    assert out.strip() == "0 items imported, 3 already there (skipped)."
    assert Item.objects.count() == 3


def test_keep_labels(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    out, _ = import_items(project.slug, str(path), "--keep-labels")
    assert "1 labels kept" in out
    annotation = Annotation.objects.get()
    chosen = {"A": 0, "B": 1}[annotation.label["choice"]]
    assert annotation.item.responses[chosen]["text"] == "good"


def test_keep_labels_of_our_shape_without_strength(project, tmp_path):
    rows = [
        {
            "external_id": "p1-ab",
            "prompt": "Q1?",
            "responses": ["a", "b"],
            "label": {"choice": "B"},
        },
        {
            "external_id": "p1-ac",
            "prompt": "Q1?",
            "responses": ["a", "c"],
            "label": {"choice": "tie"},
        },
    ]
    out, err = import_items(
        project.slug, str(write_jsonl(tmp_path / "l.jsonl", rows)), "--keep-labels"
    )
    assert (out.strip(), err) == ("2 items imported, 0 already there (skipped), 2 labels kept.", "")
    stored = dict(Annotation.objects.values_list("item__external_id", "strength"))
    assert stored == {"p1-ab": None, "p1-ac": None}


def test_reimport_with_keep_labels_reports_skipped_labels_then_adds_them_once(project, tmp_path):
    rows = [
        {"external_id": f"p1-{n}", "prompt": "Q1?", "responses": ["a", "b"], "label": {"choice": c}}
        for n, c in enumerate(["A", "tie", "B"])
    ]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    import_items(project.slug, str(path))
    out, _ = import_items(project.slug, str(path), "--keep-labels")
    assert out.strip() == (
        "0 items imported, 3 already there (skipped), 3 labels of items already there not kept "
        "(labels_for_existing adds them)."
    )
    assert not Annotation.objects.exists()
    out, _ = import_items(project.slug, str(path), "--labels-for-existing")
    assert out.strip() == "0 items imported, 3 already there (skipped), 3 labels kept."
    out, _ = import_items(project.slug, str(path), "--keep-labels", "--labels-for-existing")
    assert out.strip() == (
        "0 items imported, 3 already there (skipped), 3 labels already there (skipped)."
    )
    assert Annotation.objects.count() == 3


def test_bad_rows_import_nothing_and_are_listed(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS, extra='{"prompt": "no responses"}\nnope\n')
    err = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("import_items", project.slug, str(path), "--no-progress", stderr=err)
    assert str(caught.value) == (
        "Nothing imported: 2 of 5 rows are invalid (fix them, or pass --skip-invalid to import "
        "the rest)."
    )
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("line 4: responses: is missing")
    assert lines[1].startswith("line 5: invalid JSON")
    assert not Item.objects.exists()


def test_skip_invalid_imports_the_rest(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS, extra="nope\n")
    out, err = import_items(project.slug, str(path), "--skip-invalid")
    assert out.strip() == "3 items imported, 0 already there (skipped), 1 invalid rows."
    assert err.startswith("line 4: invalid JSON")
    assert Item.objects.count() == 3


def test_more_errors_than_reported_are_counted(project, tmp_path, monkeypatch):
    monkeypatch.setattr("annotate.importing.MAX_REPORTED_ERRORS", 2)
    path = write_jsonl(tmp_path / "items.jsonl", ROWS, extra="x\n" * 5)
    out, err = import_items(project.slug, str(path), "--skip-invalid")
    assert err.splitlines()[-1] == "... and 3 more invalid rows"


def test_whole_file_rejected(project, tmp_path):
    path = tmp_path / "items.json"
    path.write_text('[{"prompt": "Q", "responses": ["a", "b"]}', encoding="utf-8")
    with pytest.raises(CommandError, match=r"^Nothing imported: the JSON array is not closed"):
        import_items(project.slug, str(path))


def test_empty_file(project, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("")
    with pytest.raises(CommandError, match="the file holds no items"):
        import_items(project.slug, str(path))


def test_format_option_overrides_the_extension(project, tmp_path):
    path = tmp_path / "items.txt"
    path.write_text("external_id,prompt,response_1,response_2\nc1,Q,a,b\n", encoding="utf-8")
    import_items(project.slug, str(path), "--format", "csv")
    assert list(Item.objects.values_list("external_id", flat=True)) == ["c1"]


def test_unknown_format_option(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    with pytest.raises(CommandError, match="invalid choice"):
        import_items(project.slug, str(path), "--format", "xml")


def test_unknown_project(db, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    with pytest.raises(CommandError, match=r"No project 'nope' \(give its slug, name or id\)"):
        import_items("nope", str(path))


def test_missing_file(project, tmp_path):
    with pytest.raises(CommandError, match="No such file: .*missing.jsonl"):
        import_items(project.slug, str(tmp_path / "missing.jsonl"))


def test_directory_is_not_a_file(project, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        import_items(project.slug, str(tmp_path))


def test_file_over_the_size_limit(project, tmp_path, settings):
    settings.IMPORT_MAX_BYTES = 20
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    with pytest.raises(CommandError, match="over the size limit"):
        import_items(project.slug, str(path))


def test_progress_bar_goes_to_stderr(project, tmp_path):
    path = write_jsonl(tmp_path / "items.jsonl", ROWS)
    out, err = StringIO(), StringIO()
    call_command("import_items", project.slug, str(path), stdout=out, stderr=err)
    assert "import" in err.getvalue()
    assert out.getvalue().strip() == "3 items imported, 0 already there (skipped)."
