"""Import benchmark: items/s and peak memory of `item_import_path` on SQLite and PostgreSQL.

    .venv/bin/python bench/import.py [--items 20000 100000] [--db sqlite|postgres|both]

The parent writes one JSONL file per size (~1 KB rows in our own pairwise shape) and, per size
and database, runs itself again as a child with DATABASE_URL set to a fresh database: the child
migrates it, creates a project, times the import and reports its own peak RSS. On PostgreSQL the
child then COPYs the same file into a plain table with psycopg, as the floor to compare with.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/test"
RAW_TABLE = "bench_raw_items"
# Words the generated texts are drawn from.
VOCABULARY = (
    "the model answer helpful harmless honest reward policy preference gradient token prompt "
    "dataset annotator label pair choice better worse clear concise because example python "
    "function return value error cache index query stream batch memory"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--items", type=int, nargs="+", default=[20_000, 100_000], help="file sizes, in items"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--child", nargs=2, metavar=("DB", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(*args.child)))
        return
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        for count in args.items:
            path = Path(tmp) / f"items_{count}.jsonl"
            size = write_items(path, count)
            print(f"wrote {count} items, {size / 1e6:.1f} MB, to {path}", file=sys.stderr)
            for db in databases:
                results.append(run_in_child(db, path, Path(tmp)))
    print_table(results)


def write_items(path: Path, count: int) -> int:
    """Write `count` pairwise items of about 1 KB each; returns the file's size in bytes."""
    rng = random.Random(42)
    words = VOCABULARY.split()

    def text(n_words: int) -> str:
        return " ".join(rng.choices(words, k=n_words))

    with path.open("w") as out:
        for i in range(count):
            row = {
                "external_id": f"bench-{i:08d}",
                "prompt": text(45),
                "responses": [text(50), text(50)],
                "metadata": {"source": "bench", "split": "train", "n": i},
            }
            out.write(json.dumps(row) + "\n")
    return path.stat().st_size


# Parent: one child process per (size, database), each on a database of its own ---------------


def run_in_child(db: str, path: Path, tmp: Path) -> dict:
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-not-secret", "LOG_LEVEL": "WARNING"}
    drop = None
    if db == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp / f'bench_{os.getpid()}_{path.stem}.sqlite3'}"
    else:
        base_url = os.getenv("DATABASE_URL", "")
        if not base_url.startswith("postgres"):
            base_url = DEFAULT_PG_URL
        name = f"bench_import_{os.getpid()}"
        pg_admin(base_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        env["DATABASE_URL"] = with_db_name(base_url, name)
        drop = (base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", db, str(path)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        if drop:
            pg_admin(*drop)
    if done.returncode:
        sys.exit(f"{db} child failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pg_admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def with_db_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def print_table(results: list[dict]) -> None:
    header = (
        "database",
        "items",
        "seconds",
        "items/s",
        "peak RSS MB",
        "RSS growth MB",
        "ratio vs raw COPY",
        "raw COPY items/s",
    )
    rows = [
        (
            r["db"],
            f"{r['items']:,}",
            f"{r['seconds']:.1f}",
            f"{r['items_per_s']:,.0f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['peak_rss_mb'] - r['rss_before_mb']:.0f}",
            f"{r['items_per_s'] / r['raw_items_per_s']:.2f}" if "raw_items_per_s" in r else "-",
            f"{r['raw_items_per_s']:,.0f}" if "raw_items_per_s" in r else "-",
        )
        for r in results
    ]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    for i, row in enumerate([header, *rows]):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-|-".join("-" * w for w in widths))


# Child: migrate, create a project, time the import (and the raw COPY on PostgreSQL) ----------


def run_child(db: str, path: str) -> dict:
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from annotate.models import Item
    from annotate.services import item_import_path, project_create

    call_command("migrate", verbosity=0)
    project = project_create(name=f"bench {db}", kind="pairwise")
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    report = item_import_path(project=project, path=path)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()  # read before the raw COPY below can add to it
    if not report.ok or report.created != Item.objects.filter(project=project).count():
        raise SystemExit(f"import went wrong: {report.summary()} {report.errors[:3]}")
    result = {
        "db": db,
        "items": report.created,
        "seconds": seconds,
        "items_per_s": report.created / seconds,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
    }
    if db == "postgres":
        raw_seconds = raw_copy(path)
        result["raw_items_per_s"] = report.created / raw_seconds
    return result


def raw_copy(path: str) -> float:
    """COPY the file's rows into a plain logged table with no index; returns the seconds taken.

    Each line is parsed and its fields re-serialised, as any importer must, but nothing is
    validated, deduplicated or numbered.
    """
    import orjson
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        cursor.execute(
            f"CREATE TABLE {RAW_TABLE} (external_id varchar(255), prompt jsonb, "
            "responses jsonb, metadata jsonb)"
        )
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor, open(path, "rb") as stream:
        copy_sql = f"COPY {RAW_TABLE} (external_id, prompt, responses, metadata) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for line in stream:
                row = orjson.loads(line)
                copy.write_row(
                    (
                        row["external_id"],
                        orjson.dumps(row["prompt"]).decode(),
                        orjson.dumps(row["responses"]).decode(),
                        orjson.dumps(row["metadata"]).decode(),
                    )
                )
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    main()
