"""Celery signal handlers of the rewards app.

When a worker that consumes the "training" queue starts, it enqueues again the runs whose worker
died (see services.runs_resume_orphaned): the filesystem broker deletes a message on delivery,
so a run whose worker was killed would otherwise stay "running" for ever.
"""

import logging

from celery.signals import worker_ready

logger = logging.getLogger(__name__)

TRAINING_QUEUE = "training"


@worker_ready.connect(dispatch_uid="rewards.resume_orphaned_runs")
def resume_orphaned_runs(sender=None, **kwargs) -> None:
    if TRAINING_QUEUE not in _consumed_queues(sender):
        return
    from . import services

    try:
        services.runs_resume_orphaned(worker_hostname=sender.hostname)
    except Exception:
        # A worker that cannot resume old runs still trains new ones.
        logger.exception("resuming orphaned training runs failed")


def _consumed_queues(consumer) -> set[str]:
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is not None:
        return {queue.name for queue in task_consumer.queues}
    consume_from = getattr(consumer.app.amqp.queues, "consume_from", None) or {}
    return set(consume_from)
