"""Dataset versions: create and enqueue, build (the export itself is build.py, imported only
when a build runs), list."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from annotate.models import Project
from annotate.services import ServiceError

from ..models import DatasetVersion
from .formats import ExportError, formats_for_kind
from .selection import (
    check_split_keys,
    clean_filters,
    clean_options,
    clean_split,
    labeled_items_queryset,
)

Progress = Callable[[int, int], None]  # (items done, items total)


def dataset_version_create(
    *,
    project: Project,
    user,
    format: str,
    filters: dict | None = None,
    split: dict | None = None,
    options: dict | None = None,
    enqueue: bool = True,
) -> DatasetVersion:
    """Validate the request, number the new version and enqueue its build (on commit)."""
    formats = formats_for_kind(project.kind)
    if format not in formats:
        raise ServiceError(
            f"A {project.kind} project exports as {' or '.join(formats)}, not {format!r}.",
            "format",
        )
    filters, split, options = clean_filters(filters), clean_split(split), clean_options(options)
    check_split_keys(labeled_items_queryset(project, filters), split)
    with transaction.atomic():
        # Lock the project row: two versions created at once must not take the same number.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        last = project.dataset_versions.aggregate(n=Max("number"))["n"] or 0
        version = DatasetVersion.objects.create(
            project=project,
            number=last + 1,
            created_by=user if user is not None and user.is_authenticated else None,
            format=format,
            filters=filters,
            split=split,
            options=options,
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(version.pk))
    return version


def _enqueue(version_id: int) -> None:
    from ..tasks import build_dataset_version

    result = build_dataset_version.delay(version_id)
    DatasetVersion.objects.filter(pk=version_id, task_id="").update(task_id=result.id or "")


def dataset_version_build(*, version_id: int, progress: Progress | None = None) -> DatasetVersion:
    """Build a version's files; a done or failed version is left as it is (immutable)."""
    from . import build_export  # through the package: the heavy code loads only here

    version = DatasetVersion.objects.select_related("project").get(pk=version_id)
    if version.finished:
        return version
    version.status = DatasetVersion.Status.RUNNING
    version.save(update_fields=["status"])

    def report(done: int, total: int) -> None:
        DatasetVersion.objects.filter(pk=version.pk).update(items_done=done, items_total=total)
        if progress:
            progress(done, total)

    folder = version.folder
    try:
        result = build_export(
            project=version.project,
            fmt=version.format,
            filters=version.filters,
            split=version.split,
            options=version.options,
            out_dir=folder,
            archive_name=version.archive_name,
            progress=report,
        )
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        version.status, version.error = DatasetVersion.Status.FAILED, f"export failed: {exc}"
        version.finished_at = timezone.now()
        version.save(update_fields=["status", "error", "finished_at"])
        if isinstance(exc, ExportError):
            return version
        raise
    relative = folder.relative_to(Path(settings.MEDIA_ROOT))
    version.files = {
        name: {**info, "path": str(relative / info["name"])} for name, info in result.files.items()
    }
    version.train_rows, version.test_rows = result.train_rows, result.test_rows
    version.stats, version.card, version.checksum = result.stats, result.card, result.checksum
    version.items_done = version.items_total = result.stats["items"]
    version.status, version.finished_at = DatasetVersion.Status.DONE, timezone.now()
    version.save()
    return version


def dataset_versions_for(project: Project) -> QuerySet[DatasetVersion]:
    return project.dataset_versions.select_related("created_by", "project")
