"""Export benchmark: each format's export (feedback_api.datasets.build_export: JSONL + Parquet +
card + zip) against a raw read of the same items and labels, on PostgreSQL and SQLite.

    .venv/bin/python bench/export.py              # 1M on PostgreSQL, 100k on SQLite
    .venv/bin/python bench/export.py --formats pairwise --annotations 200000 --databases sqlite
    .venv/bin/python bench/export.py --repeat 3   # medians of 3 alternating runs

Per (database, format) a child process gets a fresh database (PostgreSQL: bench_export_<pid>
next to DATABASE_URL's, or postgres://postgres@127.0.0.1:5432/test; SQLite: a file in a
temporary folder); a first child fills it, a second one alternates the export and the raw
read (A B A B, the same data) and reports medians; peak RSS is the child's. The raw read is
`COPY (SELECT <items joined to labels>) TO STDOUT` on PostgreSQL, the same SELECT fetched on
SQLite. One label per item; rows out: pairwise and ratings one per item, listwise one per
item, spans one per response (2 per item).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/test"
WORDS = ["the", "model", "answers", "with", "a", "short", "and", "clear"]
WORDS += ["explanation", "of", "why", "this", "is", "so"]
FORMATS = ("pairwise", "listwise", "spans", "ratings")
NOW = "2025-01-01 00:00:00+00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--annotations", type=int, default=1_000_000, help="on PostgreSQL")
    parser.add_argument("--sqlite-annotations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each side")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, database, fmt, n = args.child.split(":")
        print(json.dumps(run_child(step, fmt, int(n), args.repeat)))
        return
    print("| format | database | annotations | rows | export s | rows/s | raw read s | ratio "
          "| peak RSS MB | load before |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for database in args.databases.split(","):
        n = args.annotations if database == "postgresql" else args.sqlite_annotations
        for fmt in args.formats.split(","):
            r = run_in_child(database, fmt, n, args.repeat)
            print(
                f"| {fmt} | {database} | {n:,} | {r['rows']:,} | {r['export_s']:.2f} | "
                f"{r['rows_per_s']:,.0f} | {r['raw_s']:.2f} | {r['ratio']:.2f} | "
                f"{r['peak_rss_mb']:.0f} | {r['load']:.2f} |",
                flush=True,
            )


def run_in_child(database: str, fmt: str, n: int, repeat: int) -> dict:
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"}
    commands = [
        [
            sys.executable,
            __file__,
            "--child",
            f"{step}:{database}:{fmt}:{n}",
            "--repeat",
            str(repeat),
        ]
        for step in ("fill", "export")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if database == "postgresql":
            base = os.getenv("DATABASE_URL", "")
            base = base if base.startswith("postgres") else DEFAULT_PG_URL
            name = f"bench_export_{os.getpid()}"
            pg_admin(base, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
            env["DATABASE_URL"] = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        else:
            env["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
        try:
            for command in commands:
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
                if done.returncode:
                    break
        finally:
            if database == "postgresql":
                pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if done.returncode:
        sys.exit(f"child failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pg_admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


# Child --------------------------------------------------------------------------------------


def run_child(step: str, fmt: str, n: int, repeat: int) -> dict:
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from annotate.models import Project
    from annotate.services import project_create
    from feedback_api.datasets import build_export

    if step == "fill":
        call_command("migrate", verbosity=0)
        fill(project_create(name=f"bench {fmt}", kind=fmt), n)
        return {}
    project = Project.objects.get()
    load = os.getloadavg()[0]
    export_runs, raw_runs = [], []
    for _ in range(repeat):  # A B A B
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = build_export(
                project=project, fmt=fmt, filters={}, split={}, out_dir=Path(tmp) / "x"
            )
            export_runs.append(time.perf_counter() - start)
        raw_runs.append(raw_read(project.pk))
    seconds, raw = statistics.median(export_runs), statistics.median(raw_runs)
    rows = result.train_rows + result.test_rows
    return {
        "rows": rows,
        "export_s": seconds,
        "rows_per_s": rows / seconds,
        "raw_s": raw,
        "ratio": raw / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": load,
        "export_runs": export_runs,
        "raw_runs": raw_runs,
    }


def text(n: int, words: int) -> str:
    return " ".join(WORDS[(n * 7 + k) % len(WORDS)] for k in range(words))


def label_of(kind: str, n: int, config: dict) -> dict:
    if kind == "pairwise":
        return {"choice": "AB"[n % 3 == 0], "strength": 1 + n % 3, "rationale": ""}
    if kind == "listwise":
        ids = ["1", "2", "3", "4"]
        return {"ranking": ids[n % 4 :] + ids[: n % 4]}
    if kind == "spans":
        name = config["taxonomy"][n % 5]["name"]
        spans = [{"response": "1", "start": 4, "end": 20, "label": name, "correction": None}]
        return {"spans": spans if n % 2 else [], "missing": "", "corrected": {}}
    aspects = [a["name"] for a in config["aspects"]]
    return {
        "responses": {
            rid: {"aspects": {a: 1 + (n + k + j) % 5 for j, a in enumerate(aspects)}}
            for k, rid in enumerate(("1", "2", "3", "4"))
        }
    }


def fill(project, n: int) -> None:
    """n items with one label each (not timed): COPY on PostgreSQL, bulk_create on SQLite."""
    from django.db import connection

    kind, config = project.kind, project.config
    count = 2 if kind in ("pairwise", "spans") else 4
    user = _user()
    for block in range(0, n, 10_000):
        rows = [
            (
                f"b{k:08}",
                f"Question {k}: {text(k, 12)}?",
                [
                    {"id": str(j + 1), "text": text(k + 3 * j, 40), "model": f"m{j}"}
                    for j in range(count)
                ],
                label_of(kind, k, config),
            )
            for k in range(block, min(block + 10_000, n))
        ]
        if connection.vendor == "postgresql":
            _copy_in(project, user, rows)
        else:
            _create(project, user, rows)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
        if connection.vendor == "postgresql":
            cursor.execute("CHECKPOINT")


def _create(project, user, rows) -> None:
    from annotate.models import Annotation, Item

    items = Item.objects.bulk_create(
        Item(project=project, external_id=e, prompt=p, responses=r, created_at=NOW)
        for e, p, r, _ in rows
    )
    Annotation.objects.bulk_create(
        Annotation(item=item, source="human", annotator=user, kind=project.kind, label=label)
        for item, (*_, label) in zip(items, rows, strict=True)
    )


def _copy_in(project, user, rows) -> None:
    from django.db import connection

    with connection.cursor() as cursor, cursor.connection.cursor() as cur:
        with cur.copy(
            "COPY annotate_item (project_id, external_id, prompt, responses, metadata, "
            "priority, created_at) FROM STDIN"
        ) as copy:
            for e, p, r, _ in rows:
                copy.write_row((project.pk, e, json.dumps(p), json.dumps(r), "{}", 0, NOW))
        cur.execute(
            "SELECT id FROM annotate_item WHERE project_id = %s AND external_id >= %s "
            "AND external_id <= %s ORDER BY external_id",
            [project.pk, rows[0][0], rows[-1][0]],
        )
        ids = [row[0] for row in cur.fetchall()]
        with cur.copy(
            "COPY annotate_annotation (item_id, source, annotator_id, kind, label, origin, "
            "judge_model, prompt_version, raw_output, created_at) FROM STDIN"
        ) as copy:
            for item_id, (*_, label) in zip(ids, rows, strict=True):
                copy.write_row(
                    (
                        item_id,
                        "human",
                        user.pk,
                        project.kind,
                        json.dumps(label),
                        "",
                        "",
                        "",
                        "",
                        NOW,
                    )
                )


def _user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create(username="bench", password="!")


def raw_read(project_id: int) -> float:
    """Seconds to read the same items and labels: COPY on PostgreSQL, a fetch on SQLite."""
    from django.db import connection

    select = (
        "SELECT i.id, i.external_id, i.prompt, i.responses, a.id, a.source, u.username, "
        "a.label FROM annotate_item i JOIN annotate_annotation a ON a.item_id = i.id "
        "LEFT JOIN auth_user u ON u.id = a.annotator_id "
        f"WHERE i.project_id = {int(project_id)} ORDER BY i.id, a.id"
    )
    start = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.connection.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT") as c:
                for _block in c:
                    pass
        else:
            cursor.execute(select)
            while cursor.fetchmany(10_000):
                pass
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
