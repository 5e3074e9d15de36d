from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "judges"
    verbose_name = "LLM judges"

    def ready(self) -> None:
        # Connects the Celery worker_ready handler that resumes orphaned judge runs.
        from . import signals  # noqa: F401
