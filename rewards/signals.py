"""Celery signal handlers of the rewards app (see rewards/tasks.py for how resume works)."""
