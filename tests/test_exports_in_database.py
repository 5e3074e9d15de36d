"""The pairwise export rendered by PostgreSQL (feedback_api/pairwise_sql.py) gives the same bytes
as the row-by-row exporter: data files, card, stats and archive checksum, for every filter, the
split, several labels per item, chat prompts and strings that need escaping."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Annotation, Judge
from feedback_api import datasets, pairwise_sql, ziparchive
from feedback_api.models import DATA_FILES

from .factories import AnnotationFactory, ItemFactory, UserFactory

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the in-database export runs on PostgreSQL"
    ),
    # Its readers are connections of their own: the rows must be committed.
    pytest.mark.django_db(transaction=True),
]

AWKWARD = (
    'Quote " backslash \\ tab \t newline \n bell \x07 unit \x1f del \x7f é 中文 🙂 \u2028 e\u0301'
)


def label(item, choice="A", strength=2, **kwargs):
    body = {"choice": choice, "strength": strength, "rationale": ""}
    return AnnotationFactory(item=item, label=body, **kwargs)


@pytest.fixture
def rich(project):
    """Items covering the aggregation cases, with names and strings that need escaping."""
    judge = Judge.objects.create(project=project, name="judge-ü", provider="x", model_name="m")
    users = [UserFactory(username=name) for name in ("zoë", "Émile", "bob", "al\\x")]
    day = timezone.make_aware(dt.datetime(2025, 3, 10, 12))
    for n in range(40):
        item = ItemFactory(
            project=project,
            external_id=f"ext-{n:03}-{AWKWARD[: n % 7]}",
            prompt=f"Prompt {n}: {AWKWARD}",
            responses=[
                {"id": "a", "text": f"A {n} {AWKWARD}", "model": "m1"},
                {"id": f"b{n}", "text": f"B {n}\n```py\nprint('{n}')\n```", "model": "m2"},
            ],
            gold_label={"choice": "A"} if n % 9 == 0 else None,
        )
        shape = n % 6
        if shape == 0:  # one label
            label(item, "AB"[n % 2], 1 + n % 3, annotator=users[n % 4])
        elif shape == 1:  # 2 of 3, strengths to average
            label(item, "B", 3, annotator=users[0])
            label(item, "B", 2, annotator=users[1])
            label(item, "A", 1, annotator=users[2])
        elif shape == 2:  # a tie majority
            label(item, "tie", None, annotator=users[1])
        elif shape == 3:  # no majority
            label(item, "A", 2, annotator=users[3])
            label(item, "B", 2, annotator=users[2])
        elif shape == 4:  # human and judge
            label(item, "A", 3, annotator=users[0])
            label(item, "A", 2, source=Annotation.Source.JUDGE, annotator=None, judge=judge)
        else:  # 4 of 7, a mean strength with a long fraction
            for k in range(7):
                label(item, "A" if k < 4 else "B", 1 + k % 2, annotator=users[k % 4])
        if n % 5 == 0:
            Annotation.objects.filter(item=item).update(created_at=day)
    return project


def both_ways(project, tmp_path, monkeypatch, **kwargs):
    calls = []
    real = pairwise_sql.export_splits
    monkeypatch.setattr(pairwise_sql, "export_splits", lambda **kw: calls.append(1) or real(**kw))
    results = {}
    for in_database in (True, False):
        results[in_database] = datasets.build_export(
            project=project,
            fmt="pairwise",
            out_dir=tmp_path / f"db-{in_database}",
            in_database=in_database,
            **kwargs,
        )
    assert calls == [1]  # the first build ran in the database
    return results[True], results[False], tmp_path / "db-True", tmp_path / "db-False"


def assert_same_files(fast_dir, slow_dir):
    for name in DATA_FILES:
        assert (fast_dir / name).read_bytes() == (slow_dir / name).read_bytes(), name


FILTERS = [
    {},
    {"source": "human"},
    {"source": "judge"},
    {"min_agreement": 0.6},
    {"annotators": ["zoë", "judge-ü"]},
    {"exclude_gold": True},
    {"since": "2025-03-10", "until": "2025-03-10"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_same_bytes_as_the_row_by_row_export(rich, tmp_path, monkeypatch, filters):
    split = {"test_fraction": 0.3, "seed": 5}
    fast, slow, fast_dir, slow_dir = both_ways(
        rich, tmp_path, monkeypatch, filters=filters, split=split
    )
    assert_same_files(fast_dir, slow_dir)
    assert fast.stats == slow.stats
    assert fast.card == slow.card
    assert fast.files == slow.files
    assert fast.checksum == slow.checksum


def test_rows_of_the_in_database_export(rich, tmp_path, monkeypatch):
    fast, slow, fast_dir, _ = both_ways(
        rich, tmp_path, monkeypatch, filters={}, split={"test_fraction": 0.0, "seed": 0}
    )
    rows = [json.loads(line) for line in (fast_dir / "train.jsonl").read_text().split("\n")[:-1]]
    by_shape = {int(r["external_id"][4:7]) % 6: r for r in rows}
    assert set(by_shape) == {0, 1, 4, 5}  # ties and no-majority items make no row
    two_of_three = by_shape[1]
    assert two_of_three["chosen_id"].startswith("b")
    assert (two_of_three["agreement"], two_of_three["margin"]) == (0.666667, 2.5)
    assert two_of_three["annotators"] == ["bob", "zoë", "Émile"]  # by code point, as Python
    assert by_shape[4]["sources"] == ["human", "judge"]
    assert by_shape[4]["judges"] == ["judge-ü"]
    assert (by_shape[5]["margin"], by_shape[5]["agreement"]) == (1.5, 0.571429)
    assert by_shape[5]["annotators"] == ["al\\x", "bob", "zoë", "Émile"]
    assert by_shape[0]["prompt"].endswith(AWKWARD)
    assert fast.stats["left_out.ties"] == slow.stats["left_out.ties"] > 0
    assert fast.stats["left_out.no_majority"] > 0


def test_chat_prompts_render_as_messages(project, tmp_path, monkeypatch):
    chat = [
        {"role": "system", "content": AWKWARD},
        {"role": "user", "content": "Hi?", "name": "extra keys are dropped"},
    ]
    label(ItemFactory(project=project, external_id="chat", prompt=chat), "B", 1)
    label(ItemFactory(project=project, external_id="text", prompt="Plain?"), "A", 3)
    split = {"test_fraction": 0.5, "seed": 1}
    _fast, _slow, fast_dir, slow_dir = both_ways(
        project, tmp_path, monkeypatch, filters={}, split=split
    )
    assert_same_files(fast_dir, slow_dir)
    lines = (fast_dir / "train.jsonl").read_text().split("\n")[:-1]
    lines += (fast_dir / "test.jsonl").read_text().split("\n")[:-1]
    rows = {r["external_id"]: r for r in map(json.loads, lines)}
    assert rows["chat"]["prompt"] == [{"content": c["content"], "role": c["role"]} for c in chat]
    assert rows["text"]["prompt"] == [{"content": "Plain?", "role": "user"}]
    assert rows["text"]["chosen"] == [{"content": "Response 1 to item text.", "role": "assistant"}]


def test_many_buckets_blocks_and_row_groups_give_the_same_bytes(rich, tmp_path, monkeypatch):
    monkeypatch.setattr(pairwise_sql, "BUCKET_SIZE", 7)  # a few items per LATERAL join
    monkeypatch.setattr(datasets, "ROW_GROUP_SIZE", 3)
    split = {"test_fraction": 0.4, "seed": 2}
    fast, slow, fast_dir, slow_dir = both_ways(rich, tmp_path, monkeypatch, filters={}, split=split)
    assert_same_files(fast_dir, slow_dir)
    assert fast.checksum == slow.checksum


def test_margin_left_out_when_an_exported_label_has_no_strength(project, tmp_path, monkeypatch):
    imported = Annotation.Source.IMPORTED
    label(ItemFactory(project=project), "A", None, source=imported, annotator=None)
    label(ItemFactory(project=project), "B", 2)
    fast, slow, fast_dir, slow_dir = both_ways(
        project, tmp_path, monkeypatch, filters={}, split={"test_fraction": 0.0, "seed": 0}
    )
    rows = [json.loads(line) for line in (fast_dir / "train.jsonl").read_text().split("\n")[:-1]]
    assert all("margin" not in row for row in rows) and len(rows) == 2
    assert fast.checksum == slow.checksum


def test_an_empty_export_matches_too(project, tmp_path, monkeypatch):
    ItemFactory(project=project)  # no labels
    fast, slow, fast_dir, _ = both_ways(
        project, tmp_path, monkeypatch, filters={}, split={"test_fraction": 0.1, "seed": 0}
    )
    assert (fast.train_rows, fast.test_rows) == (0, 0)
    assert (fast_dir / "train.jsonl").read_bytes() == b""
    assert fast.stats == slow.stats == {"items": 0, "rows_train": 0, "rows_test": 0}
    assert fast.checksum == slow.checksum


def test_split_threshold_agrees_with_the_split_hash():
    for fraction in (0.0, 1e-12, 0.1, 0.3, 0.5, 0.999999):
        threshold = pairwise_sql.test_threshold(fraction)
        assert (threshold - 1) / 2**64 < fraction or threshold == 0
        assert threshold / 2**64 >= fraction


@pytest.mark.parametrize("readers", [1, 3, 50])
def test_any_number_of_readers_gives_the_same_bytes(rich, tmp_path, monkeypatch, settings, readers):
    """Runs of buckets read at once, the later ones appended in order: the same files whether
    one reader reads everything or there are more readers than buckets."""
    settings.EXPORT_DB_CONNECTIONS = readers
    monkeypatch.setattr(pairwise_sql, "BUCKET_SIZE", 4)
    monkeypatch.setattr(datasets, "ROW_GROUP_SIZE", 5)
    split = {"test_fraction": 0.25, "seed": 3}
    fast, slow, fast_dir, slow_dir = both_ways(rich, tmp_path, monkeypatch, filters={}, split=split)
    assert_same_files(fast_dir, slow_dir)
    assert fast.checksum == slow.checksum
    assert sorted(p.name for p in fast_dir.iterdir()) == sorted(
        [*DATA_FILES, "README.md", "dataset.zip"]
    )


def test_progress_is_reported_while_the_readers_run(rich, tmp_path, monkeypatch):
    monkeypatch.setattr(pairwise_sql, "PROGRESS_SECONDS", 0.001)
    monkeypatch.setattr(pairwise_sql, "BUCKET_SIZE", 2)
    calls = []
    result = datasets.build_export(
        project=rich,
        fmt="pairwise",
        filters={},
        split={"test_fraction": 0.1, "seed": 0},
        out_dir=tmp_path / "out",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[0] == (0, 40) and calls[-1] == (40, 40)
    assert len(calls) > 2  # reports between the first and the last
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert result.stats["items"] == 40


def test_inside_a_transaction_the_export_goes_row_by_row(rich, tmp_path, monkeypatch):
    """Uncommitted rows are invisible to the readers' connections: inside a transaction the
    row-by-row path exports them, with the same bytes as the readers give once committed."""
    split = {"test_fraction": 0.3, "seed": 5}
    outside = datasets.build_export(
        project=rich, fmt="pairwise", filters={}, split=split, out_dir=tmp_path / "outside"
    )
    called = []
    monkeypatch.setattr(pairwise_sql, "export_splits", lambda **kw: called.append(1))
    with transaction.atomic():
        inside = datasets.build_export(
            project=rich, fmt="pairwise", filters={}, split=split, out_dir=tmp_path / "inside"
        )
    assert called == []
    assert inside.checksum == outside.checksum


def test_a_failing_reader_fails_the_export_and_leaves_no_files(
    rich, tmp_path, monkeypatch, settings
):
    settings.EXPORT_DB_CONNECTIONS = 2
    monkeypatch.setattr(pairwise_sql, "BUCKET_SIZE", 5)
    real = pairwise_sql.Part._batch
    seen = []

    def broken(self, batch):
        seen.append(1)
        if len(seen) == 2:
            raise OSError("No space left on device")
        return real(self, batch)

    monkeypatch.setattr(pairwise_sql.Part, "_batch", broken)
    monkeypatch.setattr(pairwise_sql, "BATCH_BYTES", 1)  # a batch per few rows
    with pytest.raises(OSError, match="No space left"):
        datasets.build_export(
            project=rich,
            fmt="pairwise",
            filters={},
            split={"test_fraction": 0.1, "seed": 0},
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()
    partial = tmp_path / "out.partial"
    assert not [p.name for p in partial.iterdir() if p.name.startswith(".")]  # no side files


def test_a_failing_write_stops_the_deflating_and_leaves_no_files(rich, tmp_path, monkeypatch):
    """The writer's own failure (a full disk) ends the export: the JSONL followers stop and
    their deflate streams are removed, no thread is left waiting."""
    monkeypatch.setattr(pairwise_sql, "BUCKET_SIZE", 3)
    monkeypatch.setattr(pairwise_sql, "CHUNK_BUCKETS", 1)
    real = pairwise_sql.SplitFiles.write
    calls = []

    def full(self, lines, table):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        return real(self, lines, table)

    monkeypatch.setattr(pairwise_sql.SplitFiles, "write", full)
    with pytest.raises(OSError, match="No space left"):
        datasets.build_export(
            project=rich,
            fmt="pairwise",
            filters={},
            split={"test_fraction": 0.1, "seed": 0},
            out_dir=tmp_path / "out",
        )
    assert not [p.name for p in (tmp_path / "out.partial").iterdir() if p.name.startswith(".")]
    assert not [t for t in threading.enumerate() if isinstance(t, ziparchive.Follower)]


def test_readers_connect_with_django_s_settings(monkeypatch):
    """The readers' libpq string carries Django's connection parameters (OPTIONS such as
    sslmode and a password too), without Django's own keys."""
    params = {
        "dbname": "prefhub",
        "user": "me",
        "password": "p w'd",
        "host": "db.example",
        "port": 6432,
        "sslmode": "require",
        "cursor_factory": object,
        "prepare_threshold": 0,
        "client_encoding": "UTF8",
    }
    monkeypatch.setattr(connection, "get_connection_params", lambda: params)
    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict(pairwise_sql.conninfo()) == {
        "dbname": "prefhub",
        "user": "me",
        "password": "p w'd",
        "host": "db.example",
        "port": "6432",
        "sslmode": "require",
        "client_encoding": "UTF8",
    }
