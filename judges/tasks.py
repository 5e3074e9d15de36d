"""Celery tasks of the judges app: thin, named, take ids, call the runner.

judges.run_work runs on the queue its judges need ("judges"; "training" for reward models, whose
worker has torch), several copies per run. It is not retried by Celery: a pass that failed for a
transient reason is put back by the runner with a backoff, and a worker that died is replaced by
the next one that starts (judges/signals.py).
"""

from celery import shared_task

from . import runner, services


@shared_task(
    name="judges.run_work", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=0
)
def run_work(self, run_id: int, queue: str) -> dict:
    status = runner.run_work(run_id, queue, worker=self.request.hostname or "")
    return {"run": run_id, "status": status}


@shared_task(name="judges.resume_orphaned")
def resume_orphaned() -> list[int]:
    """Enqueue again the active runs whose workers stopped beating (judges/signals.py)."""
    return services.runs_resume_orphaned()
