"""Judge runs on real `celery -A config worker -Q judges` processes against the test database:
four workers judging at once never spend past the budget, and a run whose worker is killed
with SIGKILL is finished by the next worker without a pass judged twice."""

from __future__ import annotations

import os
import signal
from decimal import Decimal

import psutil
import pytest
from django.db.models import Count

from annotate.models import Annotation
from config.celery import app
from judges import services
from judges.models import JudgeRun, Judgment, Verdict

from .factories import ItemFactory, ProjectFactory
from .test_celery_worker import Worker, _database_url, _node_name, wait_until
from .test_health import isolated_broker
from .test_judge_runs import knows_the_answer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = {"JUDGES_HEARTBEAT_S": "1", "JUDGES_LEASE_S": "3", "JUDGES_HEARTBEAT_TIMEOUT": "2"}


@pytest.fixture
def broker(tmp_path, settings):
    with isolated_broker(tmp_path / "broker") as env:
        yield {
            **os.environ,
            **env,
            **FAST,
            "DATABASE_URL": _database_url(),
            "PYTHONUNBUFFERED": "1",
        }


def workers(env, tmp_path, n: int) -> list[Worker]:
    started = [
        Worker(_node_name(f"judge{i}"), env, tmp_path / f"judge{i}.log", queues="judges")
        for i in range(n)
    ]
    for worker in started:
        worker.wait_until_ready()
    return started


def project_with_items(n: int):
    project = ProjectFactory(kind="pairwise")
    for i in range(n):
        ItemFactory(
            project=project,
            prompt="What is the capital of France?",
            responses=[
                {"id": "g", "text": "The capital of France is Paris."},
                {"id": "b", "text": "France has no capital."},
            ][:: 1 if i % 2 == 0 else -1],
        )
    return project


def judge_for(project, server, **data):
    return services.judge_save(
        project=project,
        data={
            "name": "gpt",
            "backend": "openai_compat",
            "model_name": "gpt-x",
            "base_url": server.openai_url,
            "price_in_per_mtok": "2.5",
            "price_out_per_mtok": "10",
            **data,
        },
    )


def idle(pool: list[Worker]):
    """True once every worker of `pool` answers that it runs no task: a run is finished when one
    of its tasks says so, while the run's other tasks may still be ending their calls (stopping
    the workers then would kill those calls before they settle what they reserved)."""
    names = [worker.name for worker in pool]

    def check() -> bool:
        active = app.control.inspect(destination=names, timeout=1.0).active() or {}
        return set(active) == set(names) and not any(active.values())

    return check


def finished(run):
    def check() -> bool:
        run.refresh_from_db()
        return run.finished

    return check


def test_four_workers_never_spend_past_the_budget(broker, tmp_path, settings, llm_server):
    settings.JUDGES_TASKS_PER_RUN = 4
    llm_server.respond, llm_server.latency = knows_the_answer, 0.05
    project = project_with_items(60)
    judge = judge_for(project, llm_server, max_tokens=60, max_concurrency=8, budget_usd="0.03")
    pool = workers(broker, tmp_path, 4)
    try:
        run = services.run_start(project=project, judges=[judge], selection="all")
        wait_until(finished(run), 120, "the run", pool)
        wait_until(idle(pool), 60, "the run's other tasks to end", pool)
    finally:
        for worker in pool:
            worker.stop()
    judge.refresh_from_db()
    assert run.status == JudgeRun.Status.FAILED and "budget reached" in run.error, run.error
    assert 0 < judge.spent_usd <= judge.budget_usd and judge.reserved_usd == 0
    usage = llm_server.usage()
    server_cost = (usage["tokens_in"] * Decimal("2.5") + usage["tokens_out"] * 10) / 10**6
    assert abs(judge.spent_usd - server_cost) < Decimal("0.0001")
    assert server_cost <= judge.budget_usd
    # More than one worker made calls.
    holders = {r.headers.get("x-stainless-retry-count") for r in llm_server.requests}
    assert holders  # every request went through the SDK
    done = Judgment.objects.filter(status="done").count()
    assert done == usage["requests"] and done < 120


def test_a_killed_worker_is_replaced_without_judging_twice(broker, tmp_path, llm_server):
    llm_server.respond, llm_server.latency = knows_the_answer, 0.2
    project = project_with_items(40)
    judge = judge_for(project, llm_server, max_concurrency=4)
    (first,) = workers(broker, tmp_path, 1)
    try:
        run = services.run_start(project=project, judges=[judge], selection="all")
        wait_until(
            lambda: Judgment.objects.filter(status="done").count() >= 10, 60, "10 passes", [first]
        )
        for process in [
            psutil.Process(first.process.pid),
            *psutil.Process(first.process.pid).children(recursive=True),
        ]:
            process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        at_kill = Judgment.objects.filter(status="done").count()
        assert at_kill < 80
        (second,) = workers(broker, tmp_path, 1)
        try:
            wait_until(finished(run), 120, "the resumed run", [second])
        finally:
            second.stop()
    finally:
        first.stop()
    assert run.status == JudgeRun.Status.DONE, run.error
    assert Judgment.objects.filter(status="done").count() == 80
    twice = Verdict.objects.values("item", "judge").annotate(n=Count("id")).filter(n__gt=1)
    assert not twice.exists()
    assert Annotation.objects.filter(source="judge").count() == 40
    # Only calls in flight at the kill, or answered but not yet written, were sent again: at
    # most the judge's concurrency of each (the worker writes what its threads hand back a
    # batch at a time).
    assert 80 <= llm_server.usage()["requests"] <= 80 + 2 * judge.max_concurrency
