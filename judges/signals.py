"""Celery signal handlers of the judges app: a worker that starts resumes orphaned runs."""

import logging

from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@worker_ready.connect(dispatch_uid="judges.resume_orphaned_runs")
def resume_orphaned_runs(sender=None, **kwargs) -> None:
    from . import services

    try:
        services.runs_resume_orphaned()
    except Exception:
        # A worker that cannot resume old runs still judges new ones.
        logger.exception("resuming orphaned judge runs failed")
