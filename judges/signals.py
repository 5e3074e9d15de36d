"""Celery signal handlers of the judges app: a worker that starts resumes orphaned runs."""

import logging

from celery.signals import worker_ready
from django.conf import settings

logger = logging.getLogger(__name__)


@worker_ready.connect(dispatch_uid="judges.resume_orphaned_runs")
def resume_orphaned_runs(sender=None, **kwargs) -> None:
    from . import services

    try:
        services.runs_resume_orphaned()
        # A worker restarted sooner than the timeout finds its dead predecessor's run still
        # fresh: look again once that heartbeat can be stale.
        from .tasks import resume_orphaned

        resume_orphaned.apply_async(countdown=settings.JUDGES_HEARTBEAT_TIMEOUT + 5)
    except Exception:
        # A worker that cannot resume old runs still judges new ones.
        logger.exception("resuming orphaned judge runs failed")
