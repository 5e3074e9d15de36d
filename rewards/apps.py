from django.apps import AppConfig


class RewardsConfig(AppConfig):
    name = "rewards"
    verbose_name = "Reward models"

    def ready(self) -> None:
        # Connects the Celery worker_ready handler that resumes orphaned runs (no torch import).
        from . import signals  # noqa: F401
