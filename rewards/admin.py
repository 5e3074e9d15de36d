from django.contrib import admin

from .models import RewardModel, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "dataset_version",
        "objective",
        "status",
        "step",
        "total_steps",
        "worker",
        "heartbeat_at",
        "created_at",
    ]
    list_filter = ["status", "objective"]
    search_fields = ["project__name", "celery_task_id", "worker"]
    raw_id_fields = ["project", "dataset_version", "created_by"]
    # The worker writes progress; the admin may only flag a run for cancelling.
    readonly_fields = [f.name for f in TrainingRun._meta.fields if f.name != "cancel_requested"]


@admin.register(RewardModel)
class RewardModelAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "objective", "base_model", "run", "created_at"]
    list_filter = ["objective"]
    search_fields = ["project__name", "base_model"]
    raw_id_fields = ["project", "run"]
    readonly_fields = [f.name for f in RewardModel._meta.fields]
