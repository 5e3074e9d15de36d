"""A real `celery -A config worker` process against the test database and the tests' broker."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from annotate.models import ImportJob
from annotate.services import import_job_create
from config.celery import app, ping

from .factories import ProjectFactory, UserFactory
from .test_health import isolated_broker

pytestmark = pytest.mark.slow

START_TIMEOUT = 60  # seconds for the worker to answer its first ping
TASK_TIMEOUT = 60


class Worker:
    """A worker process in its own process group, with its output in a file."""

    def __init__(self, name: str, env: dict, log: Path, queues: str = "default"):
        self.name, self.log = name, log
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO"]
        command += ["--hostname", name, "--queues", queues, "--concurrency", "1"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=django_settings.BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return f"--- worker {self.name} output ---\n{self.log.read_text(errors='replace')}"

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited with {self.process.returncode}\n{self.output()}")
            if app.control.ping(destination=[self.name], timeout=1.0):
                return
        pytest.fail(f"the worker did not answer a ping in {START_TIMEOUT} s\n{self.output()}")

    def stop(self) -> None:
        """Stop the worker and its pool processes; kill whatever is left after 20 s."""
        try:
            family = [psutil.Process(self.process.pid)]
            family += family[0].children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=20)
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=5)
        self.process.wait(timeout=5)


def wait_until(condition, timeout: float, what: str, workers) -> None:
    """Poll `condition` (a worker process writes what it waits for); fail with the workers'
    output after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    output = "\n".join(w.output() for w in workers)
    pytest.fail(f"{what} not within {timeout} s\n{output}")


def _database_url() -> str:
    """The test database (not the development one) as a DATABASE_URL for the worker."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        # The test database is a file (settings: DATABASES TEST NAME), never :memory:.
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return (
        f"postgres://{user}{password}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    )


@pytest.fixture(scope="module")
def worker(django_db_setup, tmp_path_factory):
    """A worker on a broker of its own (no stale or foreign messages), sharing media files."""
    folder = tmp_path_factory.mktemp("celery")
    with isolated_broker(folder / "broker") as broker_env:
        env = {
            **os.environ,
            **broker_env,
            "DATABASE_URL": _database_url(),
            "CELERY_RESULT_BACKEND": django_settings.CELERY_RESULT_BACKEND,
            "MEDIA_ROOT": str(folder / "media"),
            "PYTHONUNBUFFERED": "1",
        }
        worker = Worker(_node_name("test"), env, folder / "worker.log")
        try:
            worker.wait_until_ready()
            yield worker
        finally:
            worker.stop()


def _node_name(prefix: str) -> str:
    # Unique, so that a ping can tell this worker from any other on the broker.
    return f"{prefix}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"


@pytest.fixture
def media_root(worker, settings):
    settings.MEDIA_ROOT = worker.log.parent / "media"


def test_worker_answers_the_ping_task(worker, transactional_db):
    result = ping.delay()
    try:
        assert result.get(timeout=TASK_TIMEOUT) == "pong"
    except Exception as exc:
        pytest.fail(f"prefhub.ping: {exc!r}\n{worker.output()}")


def test_worker_runs_an_import_job(worker, transactional_db, media_root):
    project = ProjectFactory(kind="pairwise")
    user = UserFactory()
    lines = [
        f'{{"external_id": "q{n}", "prompt": "Question {n}?", "responses": ["Yes.", "No."]}}'
        for n in range(30)
    ]
    upload = SimpleUploadedFile("items.jsonl", "\n".join(lines).encode())

    job = import_job_create(
        project=project, upload=upload, user=user, skip_invalid=False, keep_labels=False
    )

    def finished() -> bool:
        job.refresh_from_db()
        return job.finished

    wait_until(finished, TASK_TIMEOUT, "the import job", [worker])
    assert job.status == ImportJob.Status.DONE, f"{job.status} {job.report}\n{worker.output()}"
    assert job.report["created"] == 30
    assert project.items.count() == 30
    assert set(project.items.values_list("external_id", flat=True)) == {f"q{n}" for n in range(30)}


def test_health_reports_the_worker(worker, transactional_db, client, settings):
    settings.DEBUG = True  # worker names are shown in debug only
    client.force_login(UserFactory(username="sam", is_staff=True))
    body = client.get("/health/").json()
    assert body["status"] == "ok", f"{body}\n{worker.output()}"
    assert worker.name in body["worker"]["names"]


def test_stopping_the_worker_leaves_no_process(tmp_path, django_db_setup):
    with isolated_broker(tmp_path / "broker") as broker_env:
        env = {**os.environ, **broker_env, "DATABASE_URL": _database_url()}
        worker = Worker(_node_name("stop"), env, tmp_path / "worker.log")
        try:
            worker.wait_until_ready()
            family = psutil.Process(worker.process.pid).children(recursive=True)
            assert family, "a prefork worker has pool processes"
        finally:
            worker.stop()
    assert worker.process.returncode is not None
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
