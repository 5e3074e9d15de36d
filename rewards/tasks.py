"""Celery tasks of the rewards app: thin, named, take ids, call a service.

A training run is one task on the "training" queue (its own worker, with the GPU, concurrency 1).
It is not retried: a run either finishes or records its error. If its worker dies, the run is
resumed from its last checkpoint by the next training worker that starts (rewards/signals.py and
services.runs_resume_orphaned); acks_late + reject_on_worker_lost also let a broker that keeps
unacknowledged messages (Redis) deliver it again, which training_run_execute ignores when the run
is finished or alive elsewhere.
"""

from celery import shared_task
from django.conf import settings

from . import services


# Queue "training" through CELERY_TASK_ROUTES (a `queue=` option on the task is deprecated).
@shared_task(
    name="rewards.train_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
    time_limit=settings.REWARDS_TIME_LIMIT,
    # The soft limit raises in the training loop: the run is marked failed with the reason.
    soft_time_limit=max(settings.REWARDS_TIME_LIMIT - 300, 60),
)
def train_run(self, run_id: int) -> dict:
    run = services.training_run_execute(run_id=run_id, worker=self.request.hostname or "")
    return {"run": run.pk, "status": run.status}
