from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing between people and judges"

    def ready(self) -> None:
        # Connects the judges' run_finished signal: a finished judge run routes its project.
        from . import signals  # noqa: F401
