"""Benchmark the assignment engine over HTTP: many annotators looping next → submit.

    .venv/bin/python bench/assign.py             # 100k and 1M items; 32 and 128 annotators
    .venv/bin/python bench/assign.py --items 100000 --annotators 32 --seconds 20
    .venv/bin/python bench/assign.py --items 100000 --routing off judge:0.5 both --rounds 5

For each item count: a fresh PostgreSQL database `bench_assign_<pid>_<items>` next to
DATABASE_URL's (default postgres://postgres@127.0.0.1:5432/test), migrated; pairwise items COPYed
in; annotator users with API tokens; gunicorn as config/gunicorn.py runs it by default (4 sync
workers: one request per connection, so each request goes to the next free worker; --servers
compares others, e.g. gthread:3x1 with keep-alive connections; DEBUG=0, persistent DB
connections). For each annotator count, that many simulated annotators (asyncio coroutines in
--clients processes, one socket each, reconnecting when the server closes it) loop POST next →
POST submit for a fixed time, with no think time. The table also gives CPU per request of
gunicorn, of the database's backends and of the client (all three share the machine's cores).
Then the database is checked: duplicate leases (an item with more human labels + live leases
than the overlap) and lost submissions (a 2xx submit without its stored annotation) must be 0.
The database is dropped at the end. Not part of CI: it prints a table, it asserts nothing.

--routing compares item routes on the same data and server, interleaved (each round runs every
set-up once, in order; --rounds repeats them; the summary gives each set-up's medians and its
ratio to the first): `off` (every item to people, as with no routing policy), `judge:F` (a share
F of the items, drawn by hash, routed to judges only: out of the next-item index, never leased;
the rest to people), `both` (every item to people and judges). Routes are set by one UPDATE of
the rows whose route changes, then VACUUM ANALYZE and CHECKPOINT, outside the timings.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"
SLUG = "bench-pairs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--annotators", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--overlap", type=int, default=1)
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["sync:4"],
        metavar="SPEC",
        help="gunicorn set-ups run one after the other on the same data: sync:W or gthread:WxT",
    )
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument(
        "--routing",
        nargs="+",
        default=["off"],
        metavar="SPEC",
        help="item routes compared, interleaved: off, both or judge:F (a share F to judges)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="times each set-up runs")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument(
        "--cost",
        type=int,
        metavar="CYCLES",
        help="instead of the load: CPU and queries per request, in-process, over CYCLES cycles",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="with --cost: cProfile the cycles, stats into FILE"
    )
    parser.add_argument("--setup-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cost-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup_child is not None:
        print(json.dumps(setup(args.setup_child, max(args.annotators), args.overlap)))
        return
    if args.cost_child is not None:
        print(json.dumps(measure_cost(args.cost_child, args.cost, args.profile)))
        return
    base = os.environ.get("DATABASE_URL", "")
    base = base if base.startswith("postgres") else DEFAULT_URL
    if args.cost:
        for items in args.items:
            cost_size(base, items, args)
        return
    rows = []
    for items in args.items:
        rows += bench_size(base, items, args)
    print_table(rows, args)
    if args.rounds > 1 or len(args.routing) > 1:
        print_medians(rows)


def bench_size(base: str, items: int, args) -> list[dict]:
    name = f"bench_assign_{os.getpid()}_{items}"
    url = with_db_name(base, name)
    env = server_env(url)
    try:
        tokens = create_database(base, name, env, items, args)
        rows = []
        for spec in args.servers:
            rows += bench_server(env, url, tokens, items, spec, args)
        return rows
    finally:
        pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_server(env: dict, url: str, tokens: list[str], items: int, spec: str, args) -> list[dict]:
    port = args.port or free_port()
    server = start_gunicorn(env, port, spec)
    try:
        rows = []
        if args.rounds > 1 or len(args.routing) > 1:
            # The first set-up must not pay for the workers' first requests (imports, prepared
            # statements, caches): a short untimed load first.
            run_load(port, tokens[: max(args.annotators)], min(args.seconds, 5.0), args.clients)
            release_leases(url)
        for _ in range(args.rounds):
            for count in args.annotators:
                for routing in args.routing:
                    set_routes(url, routing)
                    row = bench_run(server, url, port, tokens[:count], args)
                    rows.append(
                        {"items": items, "annotators": count, "server": spec, "routing": routing}
                        | row
                    )
                    print(format_row(rows[-1]), flush=True)
                    release_leases(url)
        return rows
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def bench_run(server, url: str, port: int, tokens: list[str], args) -> dict:
    # Other work on the machine shares the CPUs: say how busy it was before the run.
    load = os.getloadavg()[0]
    before = server_cpu(server.pid, url)
    row = run_load(port, tokens, args.seconds, args.clients)
    after = server_cpu(server.pid, url)
    requests = len(row["all_ms"])
    row["cpu_ms"] = {
        side: (after[side] - before.get(side, 0.0)) * 1000 / max(requests, 1) for side in after
    } | {"client": row.pop("client_cpu") * 1000 / max(requests, 1)}
    row.pop("all_ms")
    row["load"] = load
    return row | check_db(url, row.pop("submitted_ids"), args.overlap)


def set_routes(url: str, routing: str) -> None:
    """Every regular item's route as `routing` says (see the module docstring), untimed."""
    import psycopg

    if routing == "off":
        route = "'human'"
    elif routing == "both":
        route = "'both'"
    elif routing.startswith("judge:") and 0 <= float(routing[6:]) <= 1:
        # The item's draw: the low 16 bits of a hash of its external id, as a fraction.
        share = round(float(routing[6:]) * 65536)
        route = f"CASE WHEN (hashtext(external_id) & 65535) < {share} THEN 'judge' ELSE 'human' END"
    else:
        raise SystemExit(f"--routing: expected off, both or judge:F, not {routing!r}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE annotate_item SET route = {route} "
            f"WHERE gold_label IS NULL AND route IS DISTINCT FROM {route}"
        )
        conn.execute("VACUUM ANALYZE annotate_item")
        conn.execute("CHECKPOINT")


def cost_size(base: str, items: int, args) -> None:
    name = f"bench_assign_{os.getpid()}_{items}"
    env = server_env(with_db_name(base, name))
    env["ALLOWED_HOSTS"] = "testserver"
    try:
        tokens = create_database(base, name, env, items, args)
        child = [PYTHON, __file__, "--cost-child", tokens[0], "--cost", str(args.cost)]
        child += ["--profile", str(Path(args.profile).resolve())] if args.profile else []
        out = subprocess.run(child, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        cost = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{items:,} items, {args.cost} cycles: "
            f"queries per next {cost['next_queries']}, per submit {cost['submit_queries']}; "
            f"Python CPU {cost['python_ms']:.2f} ms/request, "
            f"PostgreSQL CPU {cost['pg_ms']:.2f} ms/request, wall {cost['wall_ms']:.2f} ms/request",
            flush=True,
        )
    finally:
        pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(url: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "0", "SECRET_KEY": "bench"}
    return env | {"ALLOWED_HOSTS": "127.0.0.1", "DB_CONN_MAX_AGE": "60", "SECURE_COOKIES": "0"}


def create_database(base: str, name: str, env: dict, items: int, args) -> list[str]:
    """A fresh database with the items and annotators; returns the annotators' tokens."""
    pg_admin(base, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    started = time.perf_counter()
    child = [PYTHON, __file__, "--setup-child", str(items), "--overlap", str(args.overlap)]
    child += ["--annotators", str(max(args.annotators))]
    out = subprocess.run(child, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    print(f"{items:,} items set up in {time.perf_counter() - started:.1f} s", flush=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# Cost per request (runs in a child process with DATABASE_URL set) -------------------------------


def measure_cost(token: str, cycles: int, profile: str | None = None) -> dict:
    """Next → submit through Django's test client with token auth, one annotator, in-process:
    queries per request, this process's CPU and its PostgreSQL backend's CPU per request."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    label = json.dumps({"label": {"choice": "A", "strength": 1}, "time_spent_ms": 1000})

    def cycle() -> None:
        response = client.post(f"/api/v1/projects/{SLUG}/assignments/next/")
        assert response.status_code == 200, response.status_code
        pk = response.json()["id"]
        response = client.post(
            f"/api/v1/assignments/{pk}/submit/", label, content_type="application/json"
        )
        assert response.status_code == 201, response.status_code

    for _ in range(20):
        cycle()
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(f"/api/v1/projects/{SLUG}/assignments/next/")
        next_queries = len(ctx.captured_queries)
        pk = response.json()["id"]
        client.post(f"/api/v1/assignments/{pk}/submit/", label, content_type="application/json")
        submit_queries = len(ctx.captured_queries) - next_queries
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    pg_before, cpu_before, wall_before = (
        backend_cpu(backend),
        time.process_time(),
        time.perf_counter(),
    )
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for _ in range(cycles):
        cycle()
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    requests = 2 * cycles
    return {
        "next_queries": next_queries,
        "submit_queries": submit_queries,
        "python_ms": (time.process_time() - cpu_before) * 1000 / requests,
        "pg_ms": (backend_cpu(backend) - pg_before) * 1000 / requests,
        "wall_ms": (time.perf_counter() - wall_before) * 1000 / requests,
    }


def server_cpu(gunicorn: int, url: str) -> dict:
    """CPU seconds so far of gunicorn (master and workers) and of the database's backends."""
    import psycopg

    children = Path(f"/proc/{gunicorn}/task/{gunicorn}/children").read_text().split()
    with psycopg.connect(url) as conn:
        backends = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {
        "gunicorn": sum(backend_cpu(int(pid)) for pid in [gunicorn, *children]),
        "postgres": sum(backend_cpu(pid) for (pid,) in backends),
    }


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process (a PostgreSQL backend too), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Set-up (runs in a child process with DATABASE_URL set) ---------------------------------------


def setup(items: int, annotators: int, overlap: int) -> list[str]:
    """Project, items (COPY), annotators with tokens; returns the tokens."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotate.models import Membership, Role
    from annotate.services import project_create

    project = project_create(name="Bench pairs", kind="pairwise", overlap=overlap)
    project.gold_rate = 0
    project.save(update_fields=["gold_rate"])
    copy_items(connection, project.pk, items)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"annotator{i}", password="!") for i in range(annotators)
    )
    Membership.objects.bulk_create(
        Membership(project=project, user=user, role=Role.ANNOTATOR) for user in users
    )
    tokens = Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in users)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE annotate_item")
        # The COPY left the item table's pages dirty and its WAL unflushed: written out here, not
        # by a checkpoint during the timed runs (at 1M items that is ~0.5 GB of writes).
        cursor.execute("CHECKPOINT")
    return [token.key for token in tokens]


def copy_items(connection, project_id: int, count: int, batch: int = 20_000) -> None:
    """COPY pairwise items in, text format, a batch of lines per write."""
    now = "2026-01-01 00:00:00+00"
    columns = "project_id, external_id, prompt, responses, metadata, priority, created_at"
    answer = "A fairly ordinary answer of a few words, number {n}, with nothing to escape."
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY annotate_item ({columns}) FROM STDIN") as copy:
            for start in range(0, count, batch):
                lines = []
                for n in range(start, min(start + batch, count)):
                    responses = json.dumps(
                        [
                            {"id": "1", "text": answer.format(n=n), "model": "m1"},
                            {"id": "2", "text": answer.format(n=n + 1), "model": "m2"},
                        ]
                    )
                    prompt = json.dumps(f"Question {n}: which answer is better?")
                    lines.append(f"{project_id}\tq{n}\t{prompt}\t{responses}\t{{}}\t0\t{now}\n")
                copy.write("".join(lines))


# Load -----------------------------------------------------------------------------------------


def start_gunicorn(env: dict, port: int, spec: str) -> subprocess.Popen:
    """gunicorn as SPEC says: `sync:W` (W processes, a connection per request: the server closes
    it after the answer) or `gthread:WxT` (W processes x T threads, keep-alive connections)."""
    kind, _, size = spec.partition(":")
    workers, _, threads = size.partition("x")
    command = [GUNICORN, "config.wsgi", "-k", kind, "-w", workers, "--threads", threads or "1"]
    command += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "30"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health/")
            conn.getresponse()
            return server
        except OSError:
            time.sleep(0.3)
    os.killpg(server.pid, signal.SIGTERM)
    raise SystemExit("gunicorn did not start")


def run_load(port: int, tokens: list[str], seconds: float, processes: int) -> dict:
    chunks = [tokens[i::processes] for i in range(processes)]
    jobs = [(port, chunk, seconds) for chunk in chunks if chunk]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        parts = pool.map(client_process, jobs)
    next_ms = [ms for part in parts for ms in part["next_ms"]]
    submit_ms = [ms for part in parts for ms in part["submit_ms"]]
    submitted = [pk for part in parts for pk in part["submitted_ids"]]
    return {
        "seconds": seconds,
        "submits_per_s": len(submitted) / seconds,
        "next": percentiles(next_ms),
        "submit": percentiles(submit_ms),
        "errors": sum(part["errors"] for part in parts),
        "client_cpu": sum(part["cpu"] for part in parts),
        "all_ms": next_ms + submit_ms,
        "empty": sum(part["empty"] for part in parts),
        "connects": sum(part.get("connects", 0) for part in parts),
        "submitted_ids": submitted,
    }


def client_process(job: tuple[int, list[str], float]) -> dict:
    """One process's annotators: asyncio coroutines on raw sockets, so that the client spends
    little of the CPU that the server shares with it. A connection is kept alive until the server
    answers `Connection: close`; the next request then connects again (inside its timing)."""
    import asyncio

    port, tokens, seconds = job
    result = {"next_ms": [], "submit_ms": [], "submitted_ids": [], "errors": 0, "empty": 0}

    async def annotator(token: str, n: int, start: float, stop: float) -> None:
        conn = Connection(port)
        head = f"Host: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        next_request = (
            f"POST /api/v1/projects/{SLUG}/assignments/next/ HTTP/1.1\r\n{head}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < stop:
            code, body, ms = await conn.call(next_request)
            result["next_ms"].append(ms)
            if code == 204:
                result["empty"] += 1
                await asyncio.sleep(0.5)
                continue
            if code != 200:
                result["errors"] += 1
                if code == 0:
                    break
                continue
            pk = json.loads(body)["id"]
            label = {"choice": "AB"[n % 2], "strength": 1 + n % 3}
            payload = json.dumps({"label": label, "time_spent_ms": 1000}).encode()
            submit_request = (
                f"POST /api/v1/assignments/{pk}/submit/ HTTP/1.1\r\n{head}"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
            code, _, ms = await conn.call(submit_request)
            result["submit_ms"].append(ms)
            if code in (200, 201):
                result["submitted_ids"].append(pk)
            else:
                result["errors"] += 1
                if code == 0:
                    break
            n += 1
        conn.close()
        result["connects"] = result.get("connects", 0) + conn.connects

    async def everyone() -> None:
        start = time.monotonic() + 0.5
        stop = start + seconds
        await asyncio.gather(*(annotator(t, i, start, stop) for i, t in enumerate(tokens)))

    cpu = time.process_time()
    asyncio.run(everyone())
    return result | {"cpu": time.process_time() - cpu}


class Connection:
    """One annotator's HTTP/1.1 connection, opened when needed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None
        self.connects = 0

    async def call(self, request: bytes) -> tuple[int, bytes, float]:
        """One request: (status, body, milliseconds, connecting included); status 0 when the
        connection failed (the caller counts an error and stops)."""
        import asyncio

        started = time.perf_counter()
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.connects += 1
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            code = int(head[9:12])
            length, close = 0, False
            for line in head.lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
                elif line.startswith(b"connection:"):
                    close = b"close" in line
            body = await self.reader.readexactly(length) if length else b""
            if close:
                self.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            code, body = 0, b""
        return code, body, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3 if values else (float("nan"),) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


# Checks ---------------------------------------------------------------------------------------


def check_db(url: str, submitted_ids: list[int], overlap: int) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        over = conn.execute(
            """
            SELECT count(*) FROM (
                SELECT i.id,
                       (SELECT count(*) FROM annotate_annotation a
                         WHERE a.item_id = i.id AND a.source = 'human') AS labels,
                       (SELECT count(*) FROM annotate_assignment s
                         WHERE s.item_id = i.id AND s.status = 'leased') AS leases
                FROM annotate_item i
                WHERE i.id IN (SELECT item_id FROM annotate_assignment)
            ) t WHERE labels + leases > %s
            """,
            [overlap],
        ).fetchone()[0]
        drift = conn.execute(
            """
            SELECT count(*) FROM annotate_item i
            WHERE i.id IN (SELECT item_id FROM annotate_assignment)
              AND (i.human_label_count <> (SELECT count(*) FROM annotate_annotation a
                                            WHERE a.item_id = i.id AND a.source = 'human')
                OR i.lease_count <> (SELECT count(*) FROM annotate_assignment s
                                      WHERE s.item_id = i.id AND s.status = 'leased'))
            """
        ).fetchone()[0]
        lost = conn.execute(
            """
            SELECT count(*) FROM unnest(%s::bigint[]) AS s(id)
            WHERE NOT EXISTS (SELECT 1 FROM annotate_annotation a WHERE a.assignment_id = s.id)
            """,
            [submitted_ids],
        ).fetchone()[0]
    return {"duplicate_leases": over, "counter_drift": drift, "lost": lost}


def release_leases(url: str) -> None:
    """Leases left open by the last round go back before the next round (as if they expired)."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("UPDATE annotate_assignment SET expires_at = now() WHERE status = 'leased'")


# Helpers --------------------------------------------------------------------------------------


def pg_admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def with_db_name(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def format_row(row: dict) -> str:
    n, s, cpu = row["next"], row["submit"], row["cpu_ms"]
    return (
        f"{row['items']:>9,} | {row['annotators']:>10} | {row['server']:>11} | "
        f"{row.get('routing', 'off'):>10} | "
        f"{row['submits_per_s']:>9.1f} | "
        f"{n[0]:>6.1f} {n[1]:>6.1f} {n[2]:>6.1f} | {s[0]:>6.1f} {s[1]:>6.1f} {s[2]:>6.1f} | "
        f"{row['errors']:>6} | {row['duplicate_leases']:>10} | {row['counter_drift']:>5} | "
        f"{row['lost']:>4} | {row['load']:>4.2f} | {cpu['gunicorn']:>4.1f} {cpu['postgres']:>4.1f} "
        f"{cpu['client']:>4.1f} | {row['connects']:>8}"
    )


HEADER = (
    "    items | annotators |  gunicorn   |    routing | submits/s | next p50/p95/p99 ms | "
    "submit p50/p95/p99 ms | errors | dup leases | drift | lost | load | "
    "CPU ms/req: gunicorn PG client | connects"
)


def print_table(rows: list[dict], args) -> None:
    print()
    print(
        f"{args.seconds:g} s per run, overlap {args.overlap}, {args.clients} client processes, "
        f"{os.cpu_count()} CPUs"
    )
    print(HEADER)
    print("-" * len(HEADER))
    for row in rows:
        print(format_row(row))


def print_medians(rows: list[dict]) -> None:
    """Per (items, annotators, gunicorn): each routing set-up's medians over its rounds, and
    their ratio to the first set-up's."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for row in rows:
        key = (row["items"], row["annotators"], row["server"])
        groups.setdefault(key, {}).setdefault(row["routing"], []).append(row)
    print()
    print("Medians over the rounds (ratio to the first routing set-up)")
    print(
        "    items | annotators |  gunicorn   |    routing | rounds | submits/s | "
        "next p50 | next p95"
    )
    for (items, annotators, server), by_routing in groups.items():
        first = None
        for routing, runs in by_routing.items():
            rate = statistics.median(r["submits_per_s"] for r in runs)
            p50 = statistics.median(r["next"][0] for r in runs)
            p95 = statistics.median(r["next"][1] for r in runs)
            first = first or (rate, p50, p95)
            print(
                f"{items:>9,} | {annotators:>10} | {server:>11} | {routing:>10} | "
                f"{len(runs):>6} | {rate:>7.1f} ({rate / first[0]:.2f}) | "
                f"{p50:>5.1f} ({p50 / first[1]:.2f}) | {p95:>5.1f} ({p95 / first[2]:.2f})"
            )


if __name__ == "__main__":
    main()
