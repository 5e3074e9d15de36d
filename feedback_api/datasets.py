"""Dataset versions: create and enqueue (services), read the labeled items in chunks
(selectors), and build the files: JSONL + Parquet per split, the README.md card, a zip archive and
its sha256.

Determinism: items are read by id, each row's JSON has sorted keys, Parquet is written by
pyarrow with fixed options and no timestamps, the card holds no date or version number, and the
zip entries have fixed names, order, mtimes and permissions: the same data and filters give the
same bytes. Streaming: items joined to their labels are read in keyset pages on (item id, label
id), one query per page; rows go to JSONL and to Parquet a row group at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from annotate.models import Annotation, Item, Judge, Project
from annotate.services import ServiceError

from . import pairwise_sql
from .exporters import Exporter, ExportError, ItemRecord, LabelRecord, formats_for_kind
from .exporters import get_exporter as exporter_class
from .models import DATA_FILES, DatasetVersion
from .ziparchive import Deflated, write_zip

Progress = Callable[[int, int], None]  # (items done, items total)

SOURCES = {
    "human": [Annotation.Source.HUMAN],
    "judge": [Annotation.Source.JUDGE],
    "both": [Annotation.Source.HUMAN, Annotation.Source.JUDGE, Annotation.Source.IMPORTED],
}
FILTER_DEFAULTS = {
    "source": "both",
    "min_agreement": 0.0,
    "exclude_gold": False,
    "since": None,
    "until": None,
    "annotators": [],
}
SPLIT_DEFAULTS = {"test_fraction": 0.1, "seed": 0}
CHUNK_SIZE = 10_000  # labels per query
ROW_GROUP_SIZE = 10_000
JSONL_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": True}


# Validation ---------------------------------------------------------------------------------


def clean_filters(filters: dict | None) -> dict:
    """Filters with defaults filled in; ServiceError naming the filter at fault."""
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(FILTER_DEFAULTS))
    if unknown:
        raise ServiceError(f"Unknown filter {unknown[0]!r}.", f"filters.{unknown[0]}")
    cleaned = {**FILTER_DEFAULTS, **{k: v for k, v in filters.items() if v is not None}}
    if cleaned["source"] not in SOURCES:
        raise ServiceError(f"Source must be one of {', '.join(SOURCES)}.", "filters.source")
    cleaned["min_agreement"] = _number(cleaned["min_agreement"], "filters.min_agreement", 0, 1)
    if not isinstance(cleaned["exclude_gold"], bool):
        raise ServiceError("Expected true or false.", "filters.exclude_gold")
    for key in ("since", "until"):
        cleaned[key] = _date(cleaned[key], f"filters.{key}")
    if cleaned["since"] and cleaned["until"] and cleaned["since"] > cleaned["until"]:
        raise ServiceError("`since` is after `until`.", "filters.until")
    annotators = cleaned["annotators"]
    if isinstance(annotators, str):
        annotators = [a for a in annotators.split(",")]
    if not isinstance(annotators, list) or not all(isinstance(a, str) for a in annotators):
        raise ServiceError("Expected a list of usernames or judge names.", "filters.annotators")
    cleaned["annotators"] = sorted({a.strip() for a in annotators if a.strip()})
    return cleaned


def clean_split(split: dict | None) -> dict:
    split = dict(split or {})
    unknown = sorted(set(split) - set(SPLIT_DEFAULTS))
    if unknown:
        raise ServiceError(f"Unknown split option {unknown[0]!r}.", f"split.{unknown[0]}")
    cleaned = {**SPLIT_DEFAULTS, **{k: v for k, v in split.items() if v is not None}}
    fraction = _number(cleaned["test_fraction"], "split.test_fraction", 0, 1)
    if fraction >= 1:
        raise ServiceError("The test fraction must be below 1.", "split.test_fraction")
    seed = cleaned["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ServiceError("The seed must be a whole number from 0 to 2^31-1.", "split.seed")
    return {"test_fraction": fraction, "seed": seed}


def _number(value, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ServiceError("Expected a number.", field)
    if not low <= value <= high:
        raise ServiceError(f"Must be from {low:g} to {high:g}.", field)
    return float(value)


def _date(value, field: str) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ServiceError("Expected a date as YYYY-MM-DD.", field) from None


# Services -----------------------------------------------------------------------------------


def dataset_version_create(
    *,
    project: Project,
    user,
    format: str,
    filters: dict | None = None,
    split: dict | None = None,
    enqueue: bool = True,
) -> DatasetVersion:
    """Validate the request, number the new version and enqueue its build (on commit)."""
    formats = formats_for_kind(project.kind)
    if format not in formats:
        raise ServiceError(
            f"A {project.kind} project exports as {' or '.join(formats)}, not {format!r}.",
            "format",
        )
    filters, split = clean_filters(filters), clean_split(split)
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
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(version.pk))
    return version


def _enqueue(version_id: int) -> None:
    from .tasks import build_dataset_version

    result = build_dataset_version.delay(version_id)
    DatasetVersion.objects.filter(pk=version_id, task_id="").update(task_id=result.id or "")


def dataset_version_build(*, version_id: int, progress: Progress | None = None) -> DatasetVersion:
    """Build a version's files; a done or failed version is left as it is (immutable)."""
    version = DatasetVersion.objects.select_related("project").get(pk=version_id)
    if version.finished:
        return version
    version.status = DatasetVersion.Status.RUNNING
    version.save(update_fields=["status"])

    def report(done: int, total: int) -> None:
        DatasetVersion.objects.filter(pk=version.pk).update(items_done=done, items_total=total)
        if progress:
            progress(done, total)

    folder = version_folder(version)
    try:
        result = build_export(
            project=version.project,
            fmt=version.format,
            filters=version.filters,
            split=version.split,
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


def version_folder(version: DatasetVersion) -> Path:
    return Path(settings.MEDIA_ROOT) / "datasets" / str(version.project_id) / f"v{version.number}"


def version_file_path(version: DatasetVersion, name: str) -> Path | None:
    """Where a done version's file is on disk; None when it has no such file."""
    info = version.files.get(name)
    return Path(settings.MEDIA_ROOT) / info["path"] if info else None


# Selectors ----------------------------------------------------------------------------------


def dataset_versions_for(project: Project) -> QuerySet[DatasetVersion]:
    return project.dataset_versions.select_related("created_by", "project")


def label_queryset(filters: dict) -> QuerySet[Annotation]:
    """Labels that pass the filters (any project: callers restrict by item)."""
    labels = Annotation.objects.filter(source__in=SOURCES[filters["source"]])
    if filters["since"]:
        labels = labels.filter(created_at__gte=_day_start(filters["since"]))
    if filters["until"]:
        until = dt.date.fromisoformat(filters["until"]) + dt.timedelta(days=1)
        labels = labels.filter(created_at__lt=_day_start(until.isoformat()))
    if filters["annotators"]:
        names = filters["annotators"]
        labels = labels.filter(Q(annotator__username__in=names) | Q(judge__name__in=names))
    return labels


def _day_start(day: str) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(dt.date.fromisoformat(day), dt.time()))


def labeled_items_queryset(project: Project, filters: dict) -> QuerySet[Item]:
    """The project's items with at least one label that passes the filters."""
    labels = label_queryset(filters).filter(item=OuterRef("pk"))
    items = Item.objects.filter(project=project).filter(Exists(labels))
    if filters["exclude_gold"]:
        items = items.filter(gold_label__isnull=True)
    return items


# Items joined to their filtered labels, one row per label, by (item id, label id): a merge
# join of two index scans that streams like a plain COPY. Keyset pages on (item id, label id),
# never OFFSET; both id bounds are spelled out so that each page's scans start where the last
# page ended. JSON columns come as text, for orjson.
USER_TABLE = Annotation._meta.get_field("annotator").related_model._meta.db_table
JUDGE_TABLE = Judge._meta.db_table
LABELED_ITEMS_SQL = """
    SELECT i.id, i.external_id, CAST(i.prompt AS text), CAST(i.responses AS text),
        a.id, a.source, a.annotator_id, a.judge_id, CAST(a.label AS text)
    FROM {item} i
    JOIN {annotation} a ON a.item_id = i.id
    WHERE i.project_id = %s {item_where} AND {label_where}
        AND i.id >= %s AND a.item_id >= %s AND (i.id > %s OR a.id > %s)
    ORDER BY i.id, a.id
    LIMIT %s
"""


def _label_where(filters: dict, alias: str = "a") -> tuple[str, list]:
    """label_queryset's filters as SQL on `alias` (annotation)."""
    a = alias
    sources = SOURCES[filters["source"]]
    where, params = [f"{a}.source IN ({', '.join(['%s'] * len(sources))})"], list(sources)
    adapt = connection.ops.adapt_datetimefield_value
    if filters["since"]:
        where.append(f"{a}.created_at >= %s")
        params.append(adapt(_day_start(filters["since"])))
    if filters["until"]:
        until = dt.date.fromisoformat(filters["until"]) + dt.timedelta(days=1)
        where.append(f"{a}.created_at < %s")
        params.append(adapt(_day_start(until.isoformat())))
    if filters["annotators"]:
        names = filters["annotators"]
        marks = ", ".join(["%s"] * len(names))
        where.append(
            f"({a}.annotator_id IN (SELECT id FROM {USER_TABLE} WHERE username IN ({marks})) "
            f"OR {a}.judge_id IN (SELECT id FROM {JUDGE_TABLE} WHERE name IN ({marks})))"
        )
        params += [*names, *names]
    return " AND ".join(where), params


def _labeled_items_sql(filters: dict) -> tuple[str, list]:
    label_where, params = _label_where(filters)
    sql = LABELED_ITEMS_SQL.format(
        label_where=label_where,
        item_where="AND i.gold_label IS NULL" if filters["exclude_gold"] else "",
        item=Item._meta.db_table,
        annotation=Annotation._meta.db_table,
    )
    return sql, params


def labeled_items(
    project: Project, filters: dict, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[list[tuple[ItemRecord, list[LabelRecord]]]]:
    """Chunks of (item, its filtered labels by id), by item id; one query per chunk_size labels.

    An item whose labels run past the end of a page is held back and completed from the next
    one. JSON is parsed with orjson (Django's json.loads per value is much slower).
    """
    sql, label_params = _labeled_items_sql(filters)
    loads, names = orjson.loads, _Names()
    last_item = last_label = 0
    pending: tuple[ItemRecord, list[LabelRecord]] | None = None
    while True:
        params = [project.pk, *label_params, last_item, last_item, last_item, last_label]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, chunk_size])
            rows = cursor.fetchall()
        users, judges = names.users(row[6] for row in rows), names.judges(row[7] for row in rows)
        chunk = []
        for pk, ext, prompt, responses, label_id, source, user, judge, label in rows:
            if pending is None or pending[0].id != pk:
                if pending is not None:
                    chunk.append(pending)
                pending = (ItemRecord(pk, ext, loads(prompt), loads(responses)), [])
            record = LabelRecord(label_id, source, users[user], judges[judge], loads(label))
            pending[1].append(record)
        if len(rows) < chunk_size:
            if pending is not None:
                chunk.append(pending)
            if chunk:
                yield chunk
            return
        last_item, last_label = rows[-1][0], rows[-1][4]
        if chunk:
            yield chunk


class _Names:
    """Usernames and judge names by id, looked up once per new id (a join per label row costs
    more than the export's own work on a label)."""

    def __init__(self):
        self._users: dict[int | None, str] = {None: ""}
        self._judges: dict[int | None, str] = {None: ""}

    def users(self, ids: Iterable[int | None]) -> dict[int | None, str]:
        return self._lookup(self._users, ids, Annotation._meta.get_field("annotator"), "username")

    def judges(self, ids: Iterable[int | None]) -> dict[int | None, str]:
        return self._lookup(self._judges, ids, Annotation._meta.get_field("judge"), "name")

    @staticmethod
    def _lookup(known: dict, ids: Iterable[int | None], field, name: str) -> dict:
        new = set(ids) - known.keys()
        if new:
            known.update(field.related_model.objects.filter(pk__in=new).values_list("pk", name))
        return known


def in_test_split(external_id: str, *, seed: int, fraction: float) -> bool:
    """Whether an item is in the test split: a hash of (seed, external_id) below the fraction."""
    digest = hashlib.sha256(f"{seed}:{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


# Building -----------------------------------------------------------------------------------


@dataclass
class BuildResult:
    train_rows: int = 0
    test_rows: int = 0
    stats: dict = field(default_factory=dict)
    card: str = ""
    files: dict = field(default_factory=dict)  # name -> {name, bytes, sha256}
    checksum: str = ""


class SplitWriter:
    """One split's JSONL and Parquet files, written as rows arrive.

    JSONL lines are joined into large writes; Parquet gets a row group at a time, built column
    by column from the buffered rows (pa.array per column, not a dict→Arrow conversion per row).
    """

    def __init__(self, folder: Path, name: str, schema: pa.Schema):
        self.schema = schema
        self.rows = 0
        self.buffer: list[dict] = []
        self.lines: list[bytes] = []
        self.jsonl = open(folder / f"{name}.jsonl", "wb")  # noqa: SIM115
        self.parquet = pq.ParquetWriter(folder / f"{name}.parquet", schema, **PARQUET_OPTIONS)

    def write(self, row: dict) -> None:
        self.lines.append(orjson.dumps(row, option=JSONL_OPTIONS))
        self.buffer.append(row)
        if len(self.buffer) >= ROW_GROUP_SIZE:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        rows, self.buffer = self.buffer, []
        self.rows += len(rows)
        self.jsonl.write(b"".join(self.lines))
        self.lines = []
        columns = [pa.array([row[f.name] for row in rows], type=f.type) for f in self.schema]
        self.parquet.write_table(pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self.flush()
        self.parquet.close()
        self.jsonl.close()


def build_export(
    *,
    project: Project,
    fmt: str,
    filters: dict,
    split: dict,
    out_dir: Path,
    archive_name: str = "dataset.zip",
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    in_database: bool = True,
) -> BuildResult:
    """Write train/test JSONL + Parquet, README.md and the zip archive into out_dir.

    A pairwise export on PostgreSQL outside a transaction is rendered by the database
    (pairwise_sql.py) unless `in_database` is false; everything else goes row by row through
    the exporter. Both give the same bytes."""
    filters, split = clean_filters(filters), clean_split(split)
    in_database = in_database and _in_database(fmt)
    _arrow_allocator()
    labels = _Labels(project, filters)
    with ThreadPoolExecutor(1) as pool:
        if in_database:
            # The pairwise exporter asks whether an exported majority lacks a strength: a scan
            # of the labels, so it runs meanwhile on a connection of its own (committed rows,
            # as the readers see).
            labels.ahead = pool.submit(
                _on_own_connection, _serially, labels.check_strengths, filters["min_agreement"]
            )
        items = labeled_items_queryset(project, filters)
        with _serial_plans(in_database):
            total = items.count()  # an index-only scan of items and labels
            chat = items.filter(chat=True).exists()  # item_chat_idx
        exporter = exporter_class(fmt)(config=project.config, chat=chat, seed=split["seed"])
        exporter.prepare(labels, filters["min_agreement"])
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    result = BuildResult()
    deflated: dict[str, Deflated] = {}  # JSONL deflated during the export, for the archive
    if in_database:
        if progress:
            progress(0, total)
        stats, agreement, rows, result.files, deflated = pairwise_sql.export_splits(
            project_id=project.pk,
            filters=filters,
            split=split,
            exporter=exporter,
            folder=partial,
            label_where=lambda alias: _label_where(filters, alias),
            row_group=ROW_GROUP_SIZE,
            parquet_options=PARQUET_OPTIONS,
            progress=progress,
            total=total,
            parts=settings.EXPORT_DB_CONNECTIONS,
        )
        result.train_rows, result.test_rows = rows["train"], rows["test"]
        if progress:
            progress(total, total)
    else:
        stats, agreement = _export_rows(
            project, exporter, filters, split, partial, progress, chunk_size, total
        )
        result.train_rows, result.test_rows = stats.pop("_rows.train"), stats.pop("_rows.test")
    stats.update(exporter.stats)
    result.stats = _summary(stats, agreement, result)
    for name in DATA_FILES:
        if name not in result.files:
            result.files[name] = _file_info(partial / name)
    result.files = {name: result.files[name] for name in DATA_FILES}
    result.card = dataset_card(project, exporter, filters, split, result)
    (partial / "README.md").write_text(result.card, encoding="utf-8")
    result.files["README.md"] = _file_info(partial / "README.md")
    _write_archive(partial / archive_name, partial, [*DATA_FILES, "README.md"], deflated)
    result.files["archive"] = _file_info(partial / archive_name)
    result.checksum = result.files["archive"]["sha256"]
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return result


def _arrow_allocator() -> None:
    """Arrow's allocator for this process: jemalloc. Its default, mimalloc, kept an export's
    freed batches resident: peak RSS 347-348 MB against 290-302 MB at 1M rows, at the same
    speed (bench/export.py). Set here rather than at start-up, where importing pyarrow would
    cost every process ~35 MB. ARROW_DEFAULT_MEMORY_POOL, when set, still decides."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
        if pa.default_memory_pool().backend_name != "jemalloc":
            pa.set_memory_pool(pa.jemalloc_memory_pool())


def _in_database(fmt: str) -> bool:
    """Whether the database renders this export: pairwise on PostgreSQL, outside a transaction
    (its readers are connections of their own and see only committed rows)."""
    return (
        fmt == "pairwise" and connection.vendor == "postgresql" and not connection.in_atomic_block
    )


def _export_rows(project, exporter, filters, split, folder, progress, chunk_size, total):
    """The row-by-row export into folder: (stats incl. rows per split, agreement summary)."""
    schema = exporter.schema()
    writers = {name: SplitWriter(folder, name, schema) for name in ("train", "test")}
    stats: Counter[str] = Counter()
    agreements: list[float] = []
    with _gc_paused():
        try:
            for chunk in labeled_items(project, filters, chunk_size=chunk_size):
                _export_chunk(exporter, chunk, filters, split, writers, stats, agreements)
                if progress:
                    progress(stats["items"], total)
        finally:
            for writer in writers.values():
                writer.close()
    stats["_rows.train"], stats["_rows.test"] = writers["train"].rows, writers["test"].rows
    return stats, agreement_summary(agreements)


# Whether an item that gives a pairwise row (a majority for A or B at the minimum agreement,
# in integer millionths as pairwise_sql counts it) has no strength among its majority's labels:
# only items with an A or B label lacking a strength can, so the scan looks at those labels and
# groups each one's item by an index lookup; it stops at the first. On Annotation's generated
# choice and strength columns, the same SQL on PostgreSQL and SQLite.
MAJORITY_WITHOUT_STRENGTH_SQL = """
    SELECT 1 FROM {annotation} a
    JOIN {item} i ON i.id = a.item_id
    WHERE i.project_id = %s {item_where} AND {label_where_a}
        AND a.choice IN ('A', 'B') AND a.strength IS NULL
        AND EXISTS (
            SELECT 1 FROM {annotation} b
            WHERE b.item_id = a.item_id AND {label_where_b}
            GROUP BY b.item_id
            HAVING count(*) FILTER (WHERE b.choice = a.choice AND b.strength IS NOT NULL) = 0
                AND count(*) FILTER (WHERE b.choice = a.choice)
                    > count(*) FILTER (WHERE b.choice IN ('A', 'B') AND b.choice <> a.choice)
                AND count(*) FILTER (WHERE b.choice = a.choice)
                    > count(*) FILTER (WHERE b.choice = 'tie')
                AND {micros} >= %s
        )
    LIMIT 1
"""


@dataclass
class _Labels:
    """The exported labels, for Exporter.prepare (see exporters.base.LabelSource)."""

    project: Project
    filters: dict
    ahead: Future | None = None  # check_strengths under way

    def majority_without_strength(self, min_agreement: float) -> bool:
        if self.ahead is not None:
            return self.ahead.result()
        return self.check_strengths(min_agreement)

    def check_strengths(self, min_agreement: float) -> bool:
        """majority_without_strength as one query."""
        where_a, params_a = _label_where(self.filters, "a")
        where_b, params_b = _label_where(self.filters, "b")
        sql = MAJORITY_WITHOUT_STRENGTH_SQL.format(
            annotation=Annotation._meta.db_table,
            item=Item._meta.db_table,
            item_where="AND i.gold_label IS NULL" if self.filters["exclude_gold"] else "",
            label_where_a=where_a,
            label_where_b=where_b,
            micros=pairwise_sql.micros("count(*) FILTER (WHERE b.choice = a.choice)", "count(*)"),
        )
        params = [self.project.pk, *params_a, *params_b, pairwise_sql.min_micros(min_agreement)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() is not None


@contextmanager
def _serial_plans(enabled: bool = True) -> Iterator[None]:
    """On PostgreSQL, a transaction whose queries run on one core without JIT. The export's
    pre-queries scan the project once each: there, parallel workers and JIT compiling took
    twice the CPU for about the same time (measured at 1M labels), and the export is bound by
    CPU."""
    if not enabled or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield


def _serially(function, *args):
    with _serial_plans():
        return function(*args)


def _on_own_connection(function, *args):
    """function(*args) in a worker thread, whose database connection is closed afterwards."""
    try:
        return function(*args)
    finally:
        connection.close()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic GC off during the export loop: the rows make no cycles, but its collections
    walk every row still buffered, which took a third of the export's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _export_chunk(exporter, chunk, filters, split, writers, stats, agreements) -> None:
    """Rows of a chunk of items to their split's writer. The hot loop of a large export, so
    counts go to local variables and the split hash is inlined."""
    min_agreement, fraction = filters["min_agreement"], split["test_fraction"]
    seed = f"{split['seed']}:"
    sha256, rows_of, count = hashlib.sha256, exporter.rows, exporter.count
    train, test = writers["train"], writers["test"]
    n_labels = n_test = n_train = below = 0
    for item, labels in chunk:
        n_labels += len(labels)
        if len(labels) == 1:
            stats["sources." + labels[0].source] += 1
        else:
            stats.update("sources." + lb.source for lb in labels)
        rows = rows_of(item, labels)
        if not rows:
            continue
        agreement = rows[0]["agreement"]
        if agreement < min_agreement:
            below += 1
            continue
        count(item, rows)
        agreements.append(agreement)
        digest = sha256((seed + item.external_id).encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < fraction:
            n_test += 1
            for row in rows:
                test.write(row)
        else:
            n_train += 1
            for row in rows:
                train.write(row)
    stats["items"] += len(chunk)
    stats["labels"] += n_labels
    for key, value in (
        ("items.test", n_test),
        ("items.train", n_train),
        ("left_out.below_min_agreement", below),
    ):
        if value:
            stats[key] += value


def agreement_summary(agreements: list[float]) -> dict | None:
    """Mean (summed exactly, in millionths: the values have 6 decimals), minimum, how many are
    unanimous, how many items."""
    if not agreements:
        return None
    micros = sum(round(a * 1_000_000) for a in agreements)
    return {
        "mean": pairwise_sql.mean_of_micros(micros, len(agreements)),
        "min": round(min(agreements), 6),
        "unanimous": sum(1 for a in agreements if a >= 1.0),
        "items": len(agreements),
    }


def _summary(stats: Counter, agreement: dict | None, result: BuildResult) -> dict:
    summary = {key: stats[key] for key in sorted(stats)}
    summary.update(rows_train=result.train_rows, rows_test=result.test_rows)
    summary.setdefault("items", 0)
    if agreement:
        summary["agreement"] = agreement
    return summary


def _file_info(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _write_archive(
    target: Path, folder: Path, names: list[str], deflated: dict[str, Deflated]
) -> None:
    """A zip whose bytes depend only on the files (ziparchive: fixed order, dates and
    permissions). Parquet files are stored as they are (already zstd-compressed), the rest
    deflated at level 1 on several threads, or copied where deflated during the export (the
    same bytes); those deflate streams are removed."""
    members = [
        (name, folder / name, deflated.get(name, not name.endswith(".parquet"))) for name in names
    ]
    try:
        write_zip(target, members)
    finally:
        for stream in deflated.values():
            stream.path.unlink(missing_ok=True)


def dataset_card(
    project: Project, exporter: Exporter, filters: dict, split: dict, result: BuildResult
) -> str:
    """README.md of the archive: what is in it, how it was made. No dates, no version number:
    the same data and filters give the same card."""
    stats = result.stats
    lines = [
        f"# {project.name}: {exporter.format} preference data",
        "",
        f"Exported by Prefhub from project `{project.slug}` (kind: {project.kind}), "
        f"format `{exporter.format}`{' (conversational)' if exporter.chat else ''}.",
        "",
        "## Files",
        "",
        "| file | rows | bytes | sha256 |",
        "|---|---|---|---|",
    ]
    for name in DATA_FILES:
        rows = result.train_rows if name.startswith("train") else result.test_rows
        info = result.files[name]
        lines.append(f"| {name} | {rows} | {info['bytes']} | `{info['sha256']}` |")
    lines += ["", "## Counts", "", "| what | count |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in stats.items() if not isinstance(value, dict)]
    agreement = stats.get("agreement")
    lines += ["", "## Agreement", ""]
    if agreement:
        lines.append(
            f"Mean {agreement['mean']:.3f}, minimum {agreement['min']:.3f}; "
            f"{agreement['unanimous']} of {agreement['items']} exported items unanimous."
        )
    else:
        lines.append("No items exported.")
    lines += ["", "## Aggregation", "", exporter.aggregation, ""]
    lines += ["## Provenance", ""]
    lines += [
        f"- {key.removeprefix('sources.')} labels: {value}"
        for key, value in stats.items()
        if key.startswith("sources.")
    ]
    lines += [
        "- Each row names its item (`external_id`), its number of labels (`n_labels`), their "
        "`agreement`, `sources`, `annotators` (usernames) and `judges`.",
        "",
        "## Filters",
        "",
        "```json",
        orjson.dumps(filters, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode(),
        "```",
        "",
        "## Split",
        "",
        f'An item is in the test split when sha256("{split["seed"]}:<external_id>"), its first '
        f"8 bytes read as a fraction of 2^64, is below {split['test_fraction']:g}. Every row of "
        "an item is in the same split.",
        "",
        "## Columns",
        "",
    ]
    lines += [f"- `{f.name}`: {f.type}" for f in exporter.schema()]
    return "\n".join(lines) + "\n"
