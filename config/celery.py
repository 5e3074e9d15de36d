"""The Celery app. Reads every CELERY_* setting from config/settings.py."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

# filesystem:// (the default broker): kombu's filesystem transport, with its races fixed.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("prefhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="prefhub.ping")
def ping() -> str:
    """A task that touches nothing: proves a worker consumes from the broker and answers."""
    return "pong"
