"""A real `celery -A config worker -Q training` process trains a run; killed mid-run (SIGKILL,
no goodbye), the run is resumed from its last checkpoint by the next training worker to start.

With the filesystem broker the killed worker's message is gone for good (kombu deletes it on
delivery): the resume comes from the new worker's worker_ready handler, which finds the run
"running" with a stale heartbeat (rewards.services.runs_resume_orphaned)."""

import os
import signal
from datetime import timedelta

import psutil
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from config.celery import app
from rewards import services
from rewards.models import RewardModel, TrainingRun

from .test_celery_worker import Worker, _database_url, _node_name, wait_until
from .test_health import isolated_broker
from .test_rewards_runs import build_version

pytestmark = pytest.mark.slow

HEARTBEAT_TIMEOUT = 3  # seconds without a heartbeat before a running run counts as orphaned
CHECKPOINT_TIMEOUT = 240
RUN_TIMEOUT = 300


class TrainingWorker(Worker):
    """Worker, consuming the training queue only."""

    def __init__(self, name, env, log):
        super().__init__(name, env, log, queues="training")

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool process die mid-step."""
        family = [psutil.Process(self.process.pid)]
        family += family[0].children(recursive=True)
        os.killpg(self.process.pid, signal.SIGKILL)
        psutil.wait_procs(family, timeout=10)
        self.process.wait(timeout=10)


@pytest.fixture
def training_env(django_db_setup, tmp_path, settings):
    """The environment of a training worker on a broker of its own, sharing media files."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARDS_DIR = settings.MEDIA_ROOT / "rewards"
    settings.REWARDS_HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT
    # The run must go through the broker to the worker, never run in this process.
    assert not app.conf.task_always_eager
    with isolated_broker(tmp_path / "broker") as broker_env:
        yield {
            **os.environ,
            **broker_env,
            "DATABASE_URL": _database_url(),
            "CELERY_RESULT_BACKEND": django_settings.CELERY_RESULT_BACKEND,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "REWARDS_HEARTBEAT_S": "1",
            "REWARDS_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }


def test_a_killed_training_worker_run_resumes_from_its_checkpoint_on_the_next_worker(
    transactional_db, project, training_env, tmp_path
):
    version = build_version(project, items=48)
    # ~36 training pairs, batch 4: 9 steps an epoch, 2 epochs, a checkpoint every 3 steps: the
    # worker is killed at the first checkpoint, 15 steps before the end.
    config = {"max_length": 48, "batch_size": 4, "epochs": 2, "checkpoint_steps": 3}
    config |= {"logging_steps": 1, "learning_rate": 1e-4}
    first = TrainingWorker(_node_name("train1"), training_env, tmp_path / "worker1.log")
    second = None
    try:
        first.wait_until_ready()
        run = services.training_run_create(dataset_version=version, user=None, config=config)

        def checkpointed() -> bool:
            run.refresh_from_db()
            assert run.status in TrainingRun.ACTIVE, run.logs
            return run.last_checkpoint_step() > 0

        wait_until(checkpointed, CHECKPOINT_TIMEOUT, "a checkpoint", [first])
        first.kill()
        checkpoint = run.last_checkpoint_step()
        run.refresh_from_db()
        assert (run.status, run.worker) == (TrainingRun.Status.RUNNING, first.name)
        assert checkpoint < run.total_steps, "the run finished before the worker was killed"

        # Another host's worker starts once the dead one's heartbeat has gone stale.
        def stale() -> bool:
            run.refresh_from_db()
            cutoff = timezone.now() - timedelta(seconds=HEARTBEAT_TIMEOUT + 1)
            return run.heartbeat_at < cutoff

        wait_until(stale, 30, "a stale heartbeat", [first])
        second = TrainingWorker(_node_name("train2"), training_env, tmp_path / "worker2.log")
        second.wait_until_ready()

        def finished() -> bool:
            run.refresh_from_db()
            return run.finished

        wait_until(finished, RUN_TIMEOUT, "the resumed run to finish", [first, second])
    finally:
        for worker in (first, second):
            if worker is not None and worker.process.poll() is None:
                worker.stop()

    assert run.status == TrainingRun.Status.DONE, f"{run.error}\n{run.logs}"
    assert run.worker == second.name and run.attempts == 2
    assert f"{second.name} found the run orphaned (worker {first.name}" in run.logs
    resumed = [line for line in run.logs.splitlines() if line.startswith("Resuming from step")]
    assert resumed, run.logs
    step = int(resumed[0].split()[3])
    assert step >= checkpoint > 0
    assert run.step == run.total_steps
    model = RewardModel.objects.get(run=run)
    assert model.version == 1 and model.metrics
    assert (model.model_path / "config.json").is_file()
