"""Writes of the annotation domain. Every multi-row write is one function here."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO

import orjson
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
from .signals import items_waiting

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
    labels_for_existing: bool = False,
    progress: Progress | None = None,
    max_bytes: int | None = None,
    batch_size: int | None = None,
) -> ImportReport:
    """Import items from a JSONL, JSON or CSV stream into a project.

    The file is read twice, streamed both times: first every row is validated; then, unless some
    row is bad and `skip_invalid` is off, the good rows are written in batches. An item whose
    external_id the project already has is skipped and counted, never duplicated.
    With `keep_labels` the rows' labels are stored for the items they create; a label of a row
    whose item is already there is counted as skipped, or with `labels_for_existing` (which
    implies keep_labels) added to that item unless it has an equal imported label already.
    `stream` must be seekable (an uploaded or local file).
    """
    keep_labels = keep_labels or labels_for_existing
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
        batch_size = batch_size or settings.IMPORT_BATCH_SIZE
        _write_items(project, rows, report, batch_size, progress, labels_for_existing)
    except FileRejected as exc:
        report.fatal = str(exc)
    if report.created and Item.objects.filter(project=project, route=Item.Route.PENDING).exists():
        items_waiting.send(sender=Project, project=project, created=report.created)
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
    labels_for_existing: bool = False,
) -> None:
    rows = iter(rows)
    while batch := list(islice(rows, batch_size)):
        items = [parsed for parsed, _ in batch]
        created = _insert_batch(project, items, report, labels_for_existing)
        report.created += created
        report.duplicates += len(items) - created
        if progress:
            progress(batch[-1][1].count, report.created + report.duplicates)


def _insert_batch(
    project: Project, parsed: list[ParsedItem], report: ImportReport, labels_for_existing: bool
) -> int:
    """Insert the items of one batch that the project does not have yet, with their labels;
    the labels of the other rows go to `_add_labels_to_existing`. Returns the items created."""
    unique: dict[str, ParsedItem] = {}
    for item in parsed:
        unique.setdefault(item.external_id, item)
    for attempt in range(3):
        try:
            with transaction.atomic():
                route = _new_item_route(project)
                existing = set(
                    Item.objects.filter(project=project, external_id__in=list(unique)).values_list(
                        "external_id", flat=True
                    )
                )
                fresh = [p for eid, p in unique.items() if eid not in existing]
                if connection.vendor == "postgresql":
                    ids = _copy_items(project, fresh, route)
                else:
                    objs = Item.objects.bulk_create([_item(project, p, route) for p in fresh])
                    ids = [obj.pk for obj in objs]
                labels = [
                    _imported(project, item_id, p.label)
                    for item_id, p in zip(ids, fresh, strict=True)
                    if p.label is not None
                ]
                Annotation.objects.bulk_create(labels)
                created = {id(p) for p in fresh}
                later = [p for p in parsed if id(p) not in created and p.label is not None]
                counts = _add_labels_to_existing(project, later, labels_for_existing)
        except IntegrityError:
            # Another import inserted some of these ids meanwhile: look again.
            if attempt == 2:
                raise
        else:
            report.labels += len(labels) + counts["added"]
            report.labels_skipped_existing += counts["skipped"]
            report.labels_already_there += counts["already_there"]
            report.labels_other_responses += counts["other_responses"]
            return len(fresh)
    raise AssertionError("unreachable")


def _add_labels_to_existing(project: Project, rows: list[ParsedItem], add: bool) -> dict[str, int]:
    """The labels of rows whose item was there before the row (in the project, or created by an
    earlier row of the file): counted as skipped, or with `add` stored unless the item has an
    equal imported label (so an import run twice adds nothing the second time) or holds other
    responses than the row. Returns the counts by outcome."""
    counts = {"added": 0, "skipped": 0, "already_there": 0, "other_responses": 0}
    if not add:
        counts["skipped"] = len(rows)
        return counts
    if not rows:
        return counts
    # Locked: two imports adding the same label at once must not both find it missing.
    items = {
        item.external_id: item
        for item in Item.objects.select_for_update()
        .filter(project=project, external_id__in={p.external_id for p in rows})
        .only("id", "external_id", "responses")
    }
    present = {
        (item_id, _label_key(label))
        for item_id, label in Annotation.objects.filter(
            item__in=items.values(), source=Annotation.Source.IMPORTED
        ).values_list("item_id", "label")
    }
    new = []
    for row in rows:
        item = items[row.external_id]
        key = (item.pk, _label_key(row.label))
        if _response_texts(item.responses) != _response_texts(row.responses):
            counts["other_responses"] += 1
        elif key in present:
            counts["already_there"] += 1
        else:
            present.add(key)
            new.append(_imported(project, item.pk, row.label))
    Annotation.objects.bulk_create(new)
    counts["added"] = len(new)
    return counts


def _imported(project: Project, item_id: int, label: dict) -> Annotation:
    return Annotation(
        item_id=item_id,
        source=Annotation.Source.IMPORTED,
        kind=project.kind,
        label=label,
        origin="import",
    )


def _label_key(label: dict) -> bytes:
    return orjson.dumps(label, option=orjson.OPT_SORT_KEYS)


def _response_texts(responses: list[dict]) -> list[tuple[str, str]]:
    # What a label's response ids and A/B mean; a model name added later changes neither.
    return [(r["id"], r["text"]) for r in responses]


def _new_item_route(project: Project) -> str:
    """The route a batch's new items start with (routing keeps it from the project's policy),
    read in the batch's transaction. On PostgreSQL the project row is share-locked until the
    batch commits: a routing policy change, which updates that row, waits for the batch and then
    routes its items too; a batch after it reads the new route. Without the lock a batch that
    read "human" before a change to a capped policy would add items to people past the cap."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT new_item_route FROM annotate_project WHERE id = %s FOR SHARE", [project.pk]
            )
            return cursor.fetchone()[0]
    return Project.objects.values_list("new_item_route", flat=True).get(pk=project.pk)


def _item(project: Project, parsed: ParsedItem, route: str) -> Item:
    return Item(
        project=project,
        external_id=parsed.external_id,
        prompt=parsed.prompt,
        responses=parsed.responses,
        metadata=parsed.metadata,
        priority=parsed.priority,
        gold_label=parsed.gold_label,
        route=route,
    )


def _copy_items(project: Project, parsed: list[ParsedItem], route: str) -> list[int]:
    """PostgreSQL: COPY the batch in (several times faster than INSERT) and return the new ids."""
    if not parsed:
        return []
    now = timezone.now()
    table = Item._meta.db_table
    columns = (
        "id, project_id, external_id, prompt, responses, metadata, priority, gold_label, route, "
        "created_at"
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
                        route,
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
    labels_for_existing: bool = False,
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
            labels_for_existing=labels_for_existing,
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
                labels_for_existing=job.labels_for_existing,
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
