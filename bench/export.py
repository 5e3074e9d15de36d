"""Export benchmark: pairwise annotations on PostgreSQL → JSONL + Parquet through the real
exporter (feedback_api.datasets.build_export), against a raw COPY of the same rows.

    .venv/bin/python bench/export.py                          # 1,000,000 annotations
    .venv/bin/python bench/export.py --annotations 200000 --labels-per-item 2
    .venv/bin/python bench/export.py --repeat 5               # medians of 5 alternating runs

The parent creates a fresh database bench_export_<pid> next to DATABASE_URL's (or
postgres://postgres@127.0.0.1:5432/test), runs itself as a child against it, and drops it. The
child migrates, COPYs the items and annotations in, vacuums them and checkpoints (not timed),
times the export, reads its own peak RSS, then times `COPY (SELECT <the same items and labels>)
TO STDOUT` read to the end.
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
WORDS = [
    "the",
    "model",
    "answers",
    "with",
    "a",
    "short",
    "and",
    "clear",
    "explanation",
    "of",
    "why",
    "this",
    "is",
    "so",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--labels-per-item", type=int, default=1)
    parser.add_argument(
        "--row-by-row",
        action="store_true",
        help="also time the row-by-row exporter (in_database=False) in the same run",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="export and raw COPY this many times, alternating, on the same data (medians "
        "reported: a shared machine's speed drifts between runs)",
    )
    parser.add_argument(
        "--tie-every",
        type=int,
        default=0,
        help="make every Nth label a tie (no strength), as in real data; 0: no ties",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.tie_every < 0 or args.tie_every == 1:
        parser.error("--tie-every must be 0 (no ties) or at least 2")
    if args.child:
        result = run_child(
            args.annotations, args.labels_per_item, args.row_by_row, args.repeat, args.tie_every
        )
        print(json.dumps(result))
        return
    result = run_in_child(
        args.annotations, args.labels_per_item, args.row_by_row, args.repeat, args.tie_every
    )
    print_table(result)


def run_in_child(
    annotations: int, per_item: int, row_by_row: bool, repeat: int, tie_every: int
) -> dict:
    base_url = os.getenv("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        base_url = DEFAULT_PG_URL
    name = f"bench_export_{os.getpid()}"
    pg_admin(base_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-not-secret",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": urlunsplit(urlsplit(base_url)._replace(path=f"/{name}")),
    }
    command = [sys.executable, __file__, "--child", "--annotations", str(annotations)]
    command += ["--labels-per-item", str(per_item), "--repeat", str(repeat)]
    command += ["--tie-every", str(tie_every)]
    command += ["--row-by-row"] if row_by_row else []
    try:
        done = subprocess.run(
            command,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        pg_admin(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if done.returncode:
        sys.exit(f"child failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pg_admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def print_table(r: dict) -> None:
    print(
        f"PostgreSQL, {r['annotations']:,} pairwise annotations on {r['items']:,} items "
        f"({r['labels_per_item']} label(s) each, a tie every {r['tie_every'] or 'never'}); "
        f"setup (COPY in) {r['setup_s']:.1f} s\n"
    )
    print("| what | seconds | annotations/s | rows out | peak RSS MB | RSS growth MB |")
    print("|---|---|---|---|---|---|")
    print(
        f"| export (JSONL + Parquet + card + zip) | {r['export_s']:.1f} | "
        f"{r['annotations_per_s']:,.0f} | {r['rows']:,} | {r['peak_rss_mb']:.0f} | "
        f"{r['rss_growth_mb']:.0f} |"
    )
    if "rows_export_s" in r:
        print(
            f"| row-by-row export (in_database=False) | {r['rows_export_s']:.1f} | "
            f"{r['annotations'] / r['rows_export_s']:,.0f} | {r['rows']:,} | "
            f"{r['rows_peak_rss_mb']:.0f} | – |"
        )
    print(
        f"| raw COPY (SELECT ...) TO STDOUT | {r['copy_s']:.1f} | {r['copy_per_s']:,.0f} | "
        f"{r['annotations']:,} | – | – |"
    )
    if len(r["export_runs"]) > 1:
        print(
            f"\n{len(r['export_runs'])} runs each, alternating; medians above. export s: "
            + ", ".join(f"{x:.1f}" for x in r["export_runs"])
            + "; raw COPY s: "
            + ", ".join(f"{x:.1f}" for x in r["copy_runs"])
        )
    print(f"\nratio (export / raw COPY): {r['ratio']:.2f}")
    print(f"load average before the export: {r['load']:.2f}")
    if "same_checksum" in r:
        print(f"same archive checksum both ways: {r['same_checksum']}")
    print(f"rows/s written: {r['rows_per_s']:,.0f}; archive {r['archive_mb']:.0f} MB")


# Child --------------------------------------------------------------------------------------


def run_child(
    annotations: int, per_item: int, row_by_row: bool, repeat: int = 1, tie_every: int = 0
) -> dict:
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from annotate.services import project_create
    from feedback_api.datasets import build_export

    call_command("migrate", verbosity=0)
    project = project_create(name="bench export", kind="pairwise")
    items = annotations // per_item
    start = time.perf_counter()
    fill(project.pk, items, per_item, tie_every)
    setup = time.perf_counter() - start
    rss_before = peak_rss_mb()
    load = os.getloadavg()[0]
    export_runs, copy_runs = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            if os.getenv("BENCH_PROFILE") and not export_runs:
                import cProfile

                cProfile.runctx(
                    "build_export(project=project, fmt='pairwise', filters={}, split={}, "
                    "out_dir=Path(tmp) / 'profiled')",
                    globals(),
                    {"build_export": build_export, "project": project, "Path": Path, "tmp": tmp},
                    os.environ["BENCH_PROFILE"],
                )
                start = time.perf_counter()
            result = build_export(
                project=project,
                fmt="pairwise",
                filters={},
                split={"test_fraction": 0.1, "seed": 0},
                out_dir=Path(tmp) / "export",
            )
            export_runs.append(time.perf_counter() - start)
            archive_mb = result.files["archive"]["bytes"] / 2**20
        copy_runs.append(raw_copy(project.pk))
    rss = peak_rss_mb()
    seconds, copy_seconds = statistics.median(export_runs), statistics.median(copy_runs)
    total = items * per_item
    extra = {}
    if row_by_row:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            slow = build_export(
                project=project,
                fmt="pairwise",
                filters={},
                split={"test_fraction": 0.1, "seed": 0},
                out_dir=Path(tmp) / "export",
                in_database=False,
            )
            extra["rows_export_s"] = time.perf_counter() - start
            extra["rows_peak_rss_mb"] = peak_rss_mb()
            extra["same_checksum"] = slow.checksum == result.checksum
    return {
        **extra,
        "export_runs": export_runs,
        "copy_runs": copy_runs,
        "load": load,
        "annotations": total,
        "items": items,
        "labels_per_item": per_item,
        "tie_every": tie_every,
        "setup_s": setup,
        "export_s": seconds,
        "annotations_per_s": total / seconds,
        "rows": result.train_rows + result.test_rows,
        "rows_per_s": (result.train_rows + result.test_rows) / seconds,
        "peak_rss_mb": rss,
        "rss_growth_mb": rss - rss_before,
        "copy_s": copy_seconds,
        "copy_per_s": total / copy_seconds,
        "ratio": (total / seconds) / (total / copy_seconds),
        "archive_mb": archive_mb,
    }


def text(n: int, words: int) -> str:
    return " ".join(WORDS[(n * 7 + k) % len(WORDS)] for k in range(words))


def fill(project_id: int, items: int, per_item: int, tie_every: int = 0) -> None:
    """COPY the users, items and annotations in, in text format (no value needs escaping)."""
    from django.db import connection

    now = "2025-01-01 00:00:00+00"
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor() as cur:
            annotators = 20
            with cur.copy(
                "COPY auth_user (username, password, is_superuser, first_name, last_name, "
                "email, is_staff, is_active, date_joined) FROM STDIN"
            ) as copy:
                for i in range(annotators):
                    copy.write(f"bench{i}\t!\tf\t\t\t\tf\tt\t{now}\n")
            cur.execute("SELECT min(id) FROM auth_user WHERE username LIKE 'bench%%'")
            first_user = cur.fetchone()[0]
            with cur.copy(
                "COPY annotate_item (project_id, external_id, prompt, responses, metadata, "
                "priority, created_at) FROM STDIN"
            ) as copy:
                for block in range(0, items, 10_000):
                    lines = []
                    for n in range(block, min(block + 10_000, items)):
                        prompt = json.dumps(f"Question {n}: {text(n, 12)}?")
                        responses = json.dumps(
                            [
                                {"id": "1", "text": text(n, 40), "model": "m1"},
                                {"id": "2", "text": text(n + 3, 40), "model": "m2"},
                            ]
                        )
                        lines.append(
                            f"{project_id}\tb{n:08}\t{prompt}\t{responses}\t{{}}\t0\t{now}\n"
                        )
                    copy.write("".join(lines))
            cur.execute("SELECT min(id) FROM annotate_item WHERE project_id = %s", [project_id])
            first_item = cur.fetchone()[0]
            with cur.copy(
                "COPY annotate_annotation (item_id, source, annotator_id, kind, label, origin, "
                "judge_model, prompt_version, raw_output, created_at) FROM STDIN"
            ) as copy:
                for block in range(0, items, 10_000):
                    lines = []
                    for n in range(block, min(block + 10_000, items)):
                        for k in range(per_item):
                            choice = "AB"[(n + k) % 3 == 0]
                            strength = 1 + (n + k) % 3
                            if tie_every and (n * per_item + k) % tie_every == 0:
                                choice, strength = "tie", "null"
                            label = (
                                f'{{"choice": "{choice}", "strength": {strength}, "rationale": ""}}'
                            )
                            user = first_user + (n + k) % annotators
                            row = (first_item + n, "human", user, "pairwise", label, "", "", "", "")
                            lines.append("\t".join(map(str, row)) + f"\t{now}\n")
                    copy.write("".join(lines))
            # As a database whose labels came in over days looks to an export: autovacuum has
            # set the rows' hint bits and visibility (else the first read of just-COPYed rows
            # writes every page again) and the statistics are fresh.
            cur.execute("VACUUM (ANALYZE)")
            # The ~1 GB of dirty pages flushed now, not by a checkpoint during the timed export.
            cur.execute("CHECKPOINT")


def raw_copy(project_id: int) -> float:
    """Seconds to read the same items and labels with COPY (SELECT ...) TO STDOUT."""
    from django.db import connection

    query = (
        "COPY (SELECT i.id, i.external_id, i.prompt, i.responses, a.id, a.source, u.username, "
        "a.label FROM annotate_item i JOIN annotate_annotation a ON a.item_id = i.id "
        "LEFT JOIN auth_user u ON u.id = a.annotator_id "
        f"WHERE i.project_id = {int(project_id)} ORDER BY i.id, a.id) TO STDOUT"
    )
    start = time.perf_counter()
    with connection.cursor() as cursor, cursor.connection.cursor() as cur, cur.copy(query) as copy:
        for _block in copy:
            pass
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    main()
