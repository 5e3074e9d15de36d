from django.contrib import admin

from .models import DatasetVersion


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = [
        "project",
        "number",
        "format",
        "status",
        "train_rows",
        "test_rows",
        "created_at",
    ]
    list_filter = ["status", "format"]
    search_fields = ["project__name", "checksum"]
    raw_id_fields = ["project", "created_by"]
    # Versions are immutable: the admin shows them, the service builds them.
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]
