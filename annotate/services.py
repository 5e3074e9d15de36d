"""Writes of the annotation domain. Every multi-row write is one function here."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from .importing import (
    CountingReader,
    FileRejected,
    ImportReport,
    ParsedItem,
    RowError,
    detect_format,
    human_bytes,
    parse_record,
    read_records,
)
from .kinds import KindError, get_kind
from .models import Annotation, ImportJob, Item, Kind, Membership, Project, Role

# Paths under /projects/ that a project's slug must not shadow.
RESERVED_SLUGS = {"new"}

Progress = Callable[[int, int], None]  # (bytes read, items written so far)


class ServiceError(Exception):
    """Bad input to a service, with a message for the user; `field` names the input at fault."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def project_create(
    *,
    name: str,
    kind: str,
    config: dict | None = None,
    guidelines: str = "",
    overlap: int = 1,
    created_by=None,
) -> Project:
    """Create a project; its kind config is validated and completed with the kind's defaults."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("A project needs a name.", "name")
    if kind not in Kind.values:
        raise ServiceError(f"Unknown kind {kind!r}: one of {', '.join(Kind.values)}.", "kind")
    if not isinstance(overlap, int) or not 1 <= overlap <= 100:
        raise ServiceError("Overlap must be a whole number from 1 to 100.", "overlap")
    try:
        config = get_kind(kind).clean_config(config or {})
    except KindError as exc:
        raise ServiceError(str(exc), "config") from None
    slug = slugify(name)[:200]
    if not slug:
        raise ServiceError("The name needs at least one letter or digit.", "name")
    if slug in RESERVED_SLUGS:
        raise ServiceError(f"{name!r} is a reserved name: choose another.", "name")
    if Project.objects.filter(name=name).exists() or Project.objects.filter(slug=slug).exists():
        raise ServiceError(f"A project named {name!r} already exists.", "name")
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            slug=slug,
            kind=kind,
            config=config,
            guidelines=guidelines,
            overlap=overlap,
            created_by=created_by,
        )
        if created_by is not None and not created_by.is_superuser:
            Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    return project


LAST_ADMIN = "A project keeps at least one admin: make someone else admin first."


def membership_set(*, project: Project, user, role: str) -> tuple[Membership, bool]:
    """Add a user to a project with a role, or change their role. Returns (membership, created).
    The last admin cannot step down."""
    if role not in Role.values:
        raise ServiceError(f"Unknown role {role!r}: one of {', '.join(Role.values)}.", "role")
    with transaction.atomic():
        if role != Role.ADMIN and _admin_ids(project) == [user.pk]:
            raise ServiceError(LAST_ADMIN, "role")
        return Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )


def membership_remove(*, project: Project, user) -> None:
    """Remove a user from a project; the last admin cannot leave."""
    with transaction.atomic():
        if _admin_ids(project) == [user.pk]:
            raise ServiceError(LAST_ADMIN)
        project.memberships.filter(user=user).delete()


def _admin_ids(project: Project) -> list[int]:
    # Locked, so that two admins stepping down at once cannot leave the project without one.
    admins = project.memberships.select_for_update().filter(role=Role.ADMIN)
    return sorted(admins.values_list("user_id", flat=True))


def user_by_username(username: str):
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise ServiceError(f"No user named {username!r}.", "username") from None


# Import -------------------------------------------------------------------------------------


def item_import(
    *,
    project: Project,
    stream: IO[bytes],
    filename: str = "",
    fmt: str | None = None,
    size: int | None = None,
    skip_invalid: bool = False,
    keep_labels: bool = False,
    progress: Progress | None = None,
    max_bytes: int | None = None,
    batch_size: int | None = None,
) -> ImportReport:
    """Import items from a JSONL, JSON or CSV stream into a project.

    The file is read twice, streamed both times: first every row is validated; then, unless some
    row is bad and `skip_invalid` is off, the good rows are written in batches. An item whose
    external_id the project already has is skipped and counted, never duplicated.
    `stream` must be seekable (an uploaded or local file).
    """
    report = ImportReport()
    max_bytes = settings.IMPORT_MAX_BYTES if max_bytes is None else max_bytes
    if size is not None and size > max_bytes:
        report.fatal = (
            f"the file is {human_bytes(size)}, over the size limit of {human_bytes(max_bytes)} "
            "(IMPORT_MAX_BYTES)"
        )
        return report
    config = get_kind(project.kind).clean_config(project.config)
    try:
        head = stream.read(512)
        stream.seek(0)
        fmt = fmt or detect_format(filename, head)
        for _ in _parsed_rows(stream, fmt, project, config, keep_labels, report, max_bytes):
            pass
        if report.invalid and not skip_invalid:
            return report
        if report.rows == report.invalid:
            if not report.invalid:
                report.fatal = "the file holds no items"
            return report
        stream.seek(0)
        counter = ImportReport()  # the first pass already counted rows and errors
        rows = _parsed_rows(stream, fmt, project, config, keep_labels, counter, max_bytes, progress)
        _write_items(project, rows, report, batch_size or settings.IMPORT_BATCH_SIZE, progress)
    except FileRejected as exc:
        report.fatal = str(exc)
    return report


def _parsed_rows(
    stream: IO[bytes],
    fmt: str,
    project: Project,
    config: dict,
    keep_labels: bool,
    report: ImportReport,
    max_bytes: int,
    progress: Progress | None = None,
) -> Iterator[tuple[ParsedItem, CountingReader]]:
    counting = CountingReader(stream, max_bytes)
    buffered = io.BufferedReader(counting, 1 << 16)
    for line, record in read_records(buffered, fmt):
        report.rows += 1
        if isinstance(record, RowError):
            report.add_error(record)
            continue
        try:
            parsed = parse_record(record, kind=project.kind, config=config, keep_labels=keep_labels)
        except KindError as exc:
            report.add_error(RowError(line, exc.field, exc.message))
            continue
        yield parsed, counting


def _write_items(
    project: Project,
    rows: Iterable[tuple[ParsedItem, CountingReader]],
    report: ImportReport,
    batch_size: int,
    progress: Progress | None,
) -> None:
    rows = iter(rows)
    while batch := list(islice(rows, batch_size)):
        items = [parsed for parsed, _ in batch]
        created, labels = _insert_batch(project, items)
        report.created += created
        report.duplicates += len(items) - created
        report.labels += labels
        if progress:
            progress(batch[-1][1].count, report.created + report.duplicates)


def _insert_batch(project: Project, parsed: list[ParsedItem]) -> tuple[int, int]:
    """Insert the items of one batch that the project does not have yet; returns (items, labels)."""
    unique: dict[str, ParsedItem] = {}
    for item in parsed:
        unique.setdefault(item.external_id, item)
    for attempt in range(3):
        try:
            with transaction.atomic():
                existing = set(
                    Item.objects.filter(project=project, external_id__in=list(unique)).values_list(
                        "external_id", flat=True
                    )
                )
                fresh = [p for eid, p in unique.items() if eid not in existing]
                if connection.vendor == "postgresql":
                    ids = _copy_items(project, fresh)
                else:
                    objs = Item.objects.bulk_create([_item(project, p) for p in fresh])
                    ids = [obj.pk for obj in objs]
                labels = [
                    Annotation(
                        item_id=item_id,
                        source=Annotation.Source.IMPORTED,
                        kind=project.kind,
                        label=p.label,
                        origin="import",
                    )
                    for item_id, p in zip(ids, fresh, strict=True)
                    if p.label is not None
                ]
                Annotation.objects.bulk_create(labels)
                return len(fresh), len(labels)
        except IntegrityError:
            # Another import inserted some of these ids meanwhile: look again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _item(project: Project, parsed: ParsedItem) -> Item:
    return Item(
        project=project,
        external_id=parsed.external_id,
        prompt=parsed.prompt,
        responses=parsed.responses,
        metadata=parsed.metadata,
        priority=parsed.priority,
        gold_label=parsed.gold_label,
    )


def _copy_items(project: Project, parsed: list[ParsedItem]) -> list[int]:
    """PostgreSQL: COPY the batch in (several times faster than INSERT) and return the new ids."""
    import orjson

    if not parsed:
        return []
    now = timezone.now()
    table = Item._meta.db_table
    columns = (
        "id, project_id, external_id, prompt, responses, metadata, priority, gold_label, created_at"
    )
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, %s)",
            [len(parsed)],
        )
        ids = [row[0] for row in raw.fetchall()]
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for item_id, p in zip(ids, parsed, strict=True):
                gold = None if p.gold_label is None else orjson.dumps(p.gold_label).decode()
                copy.write_row(
                    (
                        item_id,
                        project.pk,
                        p.external_id,
                        orjson.dumps(p.prompt).decode(),
                        orjson.dumps(p.responses).decode(),
                        orjson.dumps(p.metadata).decode(),
                        p.priority,
                        gold,
                        now,
                    )
                )
    return ids


def import_job_create(
    *,
    project: Project,
    upload: UploadedFile,
    user,
    skip_invalid: bool,
    keep_labels: bool,
    fmt: str | None = None,
) -> ImportJob:
    """Keep an upload and queue its import on a worker (once the transaction commits)."""
    from .tasks import run_import_job

    # An ImportJob keeps no format: the stored file's extension tells the worker which it is.
    if fmt and not (upload.name or "").lower().endswith("." + fmt):
        upload.name = f"{upload.name or 'upload'}.{fmt}"
    if upload.size > settings.IMPORT_MAX_BYTES:
        raise ServiceError(
            f"The file is {human_bytes(upload.size)}, over the size limit of "
            f"{human_bytes(settings.IMPORT_MAX_BYTES)}.",
            "file",
        )
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project,
            created_by=user,
            file=upload,
            filename=os.path.basename(upload.name or "upload")[:255],
            size_bytes=upload.size,
            skip_invalid=skip_invalid,
            keep_labels=keep_labels,
        )
        transaction.on_commit(lambda: run_import_job.delay(job.pk))
    return job


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued import: stream the stored file into the project, saving progress as it goes."""
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    if job.finished:
        return job
    job.status = ImportJob.Status.RUNNING
    job.save(update_fields=["status"])

    def progress(bytes_done: int, _items: int) -> None:
        ImportJob.objects.filter(pk=job.pk).update(bytes_done=bytes_done)

    try:
        with job.file.open("rb") as stream:
            report = item_import(
                project=job.project,
                stream=stream,
                filename=job.filename,
                size=job.size_bytes,
                skip_invalid=job.skip_invalid,
                keep_labels=job.keep_labels,
                progress=progress,
            )
    except Exception as exc:
        job.status, job.report = ImportJob.Status.FAILED, {"fatal": f"import failed: {exc}"}
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "report", "finished_at"])
        raise
    job.report = report.to_dict()
    job.status = ImportJob.Status.DONE if report.ok or report.created else ImportJob.Status.FAILED
    job.bytes_done = job.size_bytes
    job.finished_at = timezone.now()
    job.save(update_fields=["report", "status", "bytes_done", "finished_at"])
    return job


def item_import_path(*, project: Project, path: Path | str, **options) -> ImportReport:
    path = Path(path)
    if not path.is_file():
        raise ServiceError(f"No such file: {path}", "file")
    with path.open("rb") as stream:
        return item_import(
            project=project, stream=stream, filename=path.name, size=path.stat().st_size, **options
        )
