"""Each export format's rows, byte for byte, against a golden file in tests/golden/ (the
expected JSONL, reviewed by eye), and each whole archive by its checksum
(tests/golden/archives.json): the same bytes on SQLite and PostgreSQL, in or out of a
transaction. Small fixtures with what real data has: ties, several labels per item that
disagree, human and judge labels, chat prompts, strings that need escaping.

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_export_golden.py   # rewrite them (then review)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.db import transaction

from annotate.kinds import get_kind
from annotate.models import Annotation, Judge
from feedback_api import datasets

from .factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

GOLDEN = Path(__file__).parent / "golden"
AWKWARD = 'Quote " backslash \\ tab \t newline \n bell \x07 é 中文 🙂 \u2028 e\u0301'
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": f"Héllo ✓ {AWKWARD}"},
]


def responses(n: int, k: int = 2) -> list[dict]:
    return [
        {"id": f"r{j}", "text": f"Answer {j} to {n}: {AWKWARD[: 3 + 5 * j]}", "model": f"m{j}"}
        for j in range(k)
    ]


def item(project, n: int, k: int = 2):
    prompt = CHAT if n % 4 == 3 else f"Question {n}? {AWKWARD[: n % 9]}"
    metadata = {"question_id": f"q{n % 5}", "n": n, "tags": ["é", {"b": n % 2, "a": None}]}
    if n % 3 == 0:
        metadata["note"] = AWKWARD[: n % 7]
    return ItemFactory(
        project=project,
        external_id=f"g-{n:02}-é",
        prompt=prompt,
        responses=responses(n, k),
        metadata=metadata,
    )


@pytest.fixture
def people(db):
    users = [UserFactory(username=name) for name in ("zoë", "Émile", "bob")]
    return users


def label(item, body, who, judge=None, source=Annotation.Source.HUMAN):
    if judge is not None:
        return AnnotationFactory(
            item=item, label=body, source=Annotation.Source.JUDGE, annotator=None, judge=judge
        )
    if source == Annotation.Source.IMPORTED:
        return AnnotationFactory(item=item, label=body, source=source, annotator=None)
    return AnnotationFactory(item=item, label=body, annotator=who)


def pairwise_data(project, users, judge):
    for n in range(12):
        it = item(project, n)
        pick = lambda c, s: {"choice": c, "strength": s, "rationale": ""}  # noqa: E731
        shape = n % 6
        if shape == 0:
            label(it, pick("AB"[n % 2 == 1], 1 + n % 3), users[n % 3])
        elif shape == 1:  # 2 of 3 disagree, strengths averaged
            for k, (c, s) in enumerate((("B", 3), ("B", 2), ("A", 1))):
                label(it, pick(c, s), users[k])
        elif shape == 2:  # a tie
            label(it, pick("tie", None), users[1])
        elif shape == 3:  # no majority
            label(it, pick("A", 2), users[0])
            label(it, pick("B", 2), users[2])
        elif shape == 4:  # a human and a judge
            label(it, pick("A", 3), users[0])
            label(it, pick("A", 2), None, judge=judge)
        else:  # 4 of 7
            for k in range(7):
                label(it, pick("A" if k < 4 else "B", 1 + k % 2), users[k % 3])


def listwise_data(project, users, judge):
    for n in range(8):
        it = item(project, n, k=3)
        orders = [["r0", "r1", "r2"], ["r1", "r0", "r2"], [["r0", "r2"], "r1"]]
        for k in range(1 + n % 3):
            label(it, {"ranking": orders[(n + k) % 3]}, users[k])
        if n % 4 == 1:
            label(it, {"ranking": ["r2", "r1", "r0"]}, None, judge=judge)


def spans_data(project, users, judge):
    def span(start, end, name="irrelevant", correction=None):
        return {
            "response": "r0",
            "start": start,
            "end": end,
            "label": name,
            "correction": correction,
        }

    for n in range(6):
        it = item(project, n)
        bodies = [
            {"spans": [span(0, 6, "unverifiable", "Reply")], "missing": "A source.",
             "corrected": {"r0": "Better é."}},
            {"spans": [span(2, 6, "unverifiable"), span(7, 9, "redundant")], "missing": "",
             "corrected": {}},
            {"spans": [], "missing": "", "corrected": {}},
        ]  # fmt: skip
        for k in range(1 + n % 3):
            label(it, bodies[(n + k) % 3], users[k])


def ratings_data(project, users, judge):
    for n in range(8):
        it = item(project, n, k=3)
        for k in range(1 + n % 3):
            scores = {
                rid: {"aspects": {"helpfulness": 1 + (n + j + k) % 5, "honesty": 1 + (j * k) % 5},
                      "rationale": "ok ✓" if j == k else ""}
                for j, rid in enumerate(("r0", "r1", "r2"))
            }  # fmt: skip
            if n == 5:  # every response the same: a tie for ratings-pairs
                scores = {rid: {"aspects": {"helpfulness": 3, "honesty": 3}} for rid in scores}
            label(it, {"responses": scores}, users[k])


KINDS = {
    "pairwise": ({}, pairwise_data),
    "listwise": ({}, listwise_data),
    "spans": ({}, spans_data),
    "ratings": ({"aspects": ["helpfulness", "honesty"]}, ratings_data),
}
FORMATS = list(datasets.FORMATS)


def project_with_data(kind: str, users):
    config, fill = KINDS[kind]
    project = ProjectFactory(
        kind=kind,
        name=f"Golden {kind}",
        slug=f"golden-{kind}",
        config=get_kind(kind).clean_config(config),
    )
    judge = Judge.objects.create(
        project=project, name="judge-ü", backend="openai_compat", model_name="m"
    )
    fill(project, users, judge)
    return project


def export_bytes(
    project, fmt, tmp_path, name="out", split=None, options=None, **filters
) -> tuple[bytes, object]:
    result = datasets.build_export(
        project=project,
        fmt=fmt,
        filters=filters,
        split=split or {"test_fraction": 0.3, "seed": 1},
        options=options,
        out_dir=tmp_path / name,
    )
    folder = tmp_path / name
    body = b"".join((folder / f"{s}.jsonl").read_bytes() for s in ("train", "test"))
    return body, result


def check_golden(name: str, body: bytes) -> None:
    path = GOLDEN / f"{name}.jsonl"
    if os.getenv("UPDATE_GOLDEN"):
        path.write_bytes(body)
    assert body == path.read_bytes(), f"{name} differs from {path}"


def check_archive(name: str, checksum: str) -> None:
    """The whole archive (JSONL, Parquet, card, zip) has one checksum on both databases."""
    path = GOLDEN / "archives.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if os.getenv("UPDATE_GOLDEN"):
        path.write_text(json.dumps({**known, name: checksum}, indent=2, sort_keys=True) + "\n")
        known[name] = checksum
    assert checksum == known[name], f"{name}'s archive differs from the one in {path}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_matches_its_golden_file(fmt, people, tmp_path):
    project = project_with_data(datasets.FORMATS[fmt], people)
    body, result = export_bytes(project, fmt, tmp_path)
    check_golden(fmt, body)
    check_archive(fmt, result.checksum)
    assert result.train_rows + result.test_rows == body.count(b"\n")


def test_pairwise_filters_match_their_golden_file(people, tmp_path):
    project = project_with_data("pairwise", people)
    body, _ = export_bytes(
        project, "pairwise", tmp_path, min_agreement=0.6, annotators=["zoë", "judge-ü"]
    )
    check_golden("pairwise-filtered", body)


def test_split_by_metadata_and_flattened_fields_match_their_golden_file(people, tmp_path):
    project = project_with_data("listwise", people)
    split = {"test_fraction": 0.4, "seed": 2, "by": "metadata.question_id"}
    options = {"metadata_fields": ["question_id", "n", "tags", "note"]}
    body, result = export_bytes(project, "listwise", tmp_path, split=split, options=options)
    check_golden("listwise-options", body)
    check_archive("listwise-options", result.checksum)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["pairwise", "ratings"])
def test_inside_a_transaction_the_export_has_the_same_bytes(fmt, tmp_path):
    users = [UserFactory(username=name) for name in ("zoë", "Émile", "bob")]
    project = project_with_data(datasets.FORMATS[fmt], users)
    _, outside = export_bytes(project, fmt, tmp_path, "outside")
    with transaction.atomic():
        _, inside = export_bytes(project, fmt, tmp_path, "inside")
    assert inside.checksum == outside.checksum


def test_progress_is_reported_page_by_page(people, tmp_path):
    project = project_with_data("pairwise", people)
    calls = []
    datasets.build_export(
        project=project,
        fmt="pairwise",
        filters={},
        split={},
        out_dir=tmp_path / "out",
        progress=lambda done, total: calls.append((done, total)),
        chunk_size=3,
    )
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    assert len(calls) > 3
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_failing_write_leaves_no_files(people, tmp_path, monkeypatch):
    from feedback_api.datasets import write

    project = project_with_data("pairwise", people)
    real, calls = write.SplitWriter.write, []

    def full(self, table):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(self, table)

    monkeypatch.setattr(write.SplitWriter, "write", full)
    with pytest.raises(OSError, match="No space left"):
        export_bytes(project, "pairwise", tmp_path)
    assert not (tmp_path / "out").exists()
