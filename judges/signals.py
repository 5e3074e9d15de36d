"""The judges app's signals: `run_finished` and `verdicts_written`, which later apps (routing)
listen to, and the Celery
handlers by which a worker imports the judge backends before its pool starts and resumes orphaned
runs once it is ready."""

import logging

from celery.signals import worker_init, worker_ready
from django.conf import settings
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent once when a judge run is done (every pass finished, every verdict written), with `run`:
# how an app that comes after judges hears of new verdicts without judges importing it.
run_finished = Signal()
# Sent after a judge's verdicts are written (a run writes them in batches), with `run` and
# `item_ids`: the items whose verdicts were just written.
verdicts_written = Signal()


@worker_init.connect(dispatch_uid="judges.import_backends")
def import_backends(sender=None, **kwargs) -> None:
    """The SDKs imported once, in the worker's main process before its pool forks: each pool
    process otherwise imported them at its first pass (anthropic 1.6 s, openai 0.6 s of CPU,
    in the run's time: bench/README.md, "Judges"). The web process still imports them only
    when it needs a client."""
    from .clients import client_class

    client_class("openai_compat")  # loads every backend module


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
