"""Dataset versions: immutable exports of a project's labels, built by a Celery worker."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from annotate.models import Project

# The files of a version, by the name the download endpoint takes.
DATA_FILES = ("train.jsonl", "test.jsonl", "train.parquet", "test.parquet")
DOWNLOADS = (*DATA_FILES, "README.md", "archive")


class DatasetVersion(models.Model):
    """One export of a project: format, filters, split and options in, files, counts and
    checksum out.

    Immutable once done: a new export is a new version (numbered per project).
    """

    class Format(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise (TRL prompt / chosen / rejected)"
        LISTWISE = "listwise", "Listwise (prompt / responses / ranking)"
        LISTWISE_PAIRS = "listwise-pairs", "Pairs derived from rankings"
        SPANS = "spans", "Spans (one row per response)"
        RATINGS = "ratings", "Ratings (UltraFeedback-like)"
        RATINGS_PAIRS = "ratings-pairs", "Ratings binarised to pairs"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_versions")
    number = models.PositiveIntegerField(help_text="Version number within the project: 1, 2, ...")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    format = models.CharField(max_length=20, choices=Format.choices)
    filters = models.JSONField(default=dict, blank=True)
    split = models.JSONField(default=dict, blank=True, help_text="test_fraction, seed and by.")
    options = models.JSONField(
        default=dict, blank=True, help_text="Output options: metadata_fields (flattened)."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    items_total = models.PositiveIntegerField(default=0, help_text="Labeled items to read.")
    items_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    train_rows = models.PositiveIntegerField(default=0)
    test_rows = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True, help_text="Counts shown in the card.")
    card = models.TextField(blank=True, help_text="README.md of the archive (the dataset card).")
    files = models.JSONField(
        default=dict, blank=True, help_text="{name: {path, bytes, sha256}}, paths under MEDIA_ROOT."
    )
    checksum = models.CharField(max_length=64, blank=True, help_text="sha256 of the archive.")
    task_id = models.CharField(max_length=255, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="dataset_version_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="dataset_version_number_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number} ({self.format}, {self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def progress(self) -> float:
        """Share of the items read, 0 to 1."""
        if self.status == self.Status.DONE:
            return 1.0
        return min(self.items_done / self.items_total, 1.0) if self.items_total else 0.0

    @property
    def percent(self) -> int:
        return int(100 * self.progress)

    @property
    def archive_name(self) -> str:
        return f"{self.project.slug}-v{self.number}-{self.format}.zip"

    @property
    def folder(self) -> Path:
        """Where the version's files are written: MEDIA_ROOT/datasets/<project id>/v<number>."""
        return Path(settings.MEDIA_ROOT) / "datasets" / str(self.project_id) / f"v{self.number}"

    def file_path(self, name: str) -> Path | None:
        """Where a done version's file (a name of DOWNLOADS) is on disk; None when it has none."""
        info = self.files.get(name)
        return Path(settings.MEDIA_ROOT) / info["path"] if info else None
