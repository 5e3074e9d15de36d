"""The pairwise export on PostgreSQL: the database aggregates each item's labels and sends the
counts and the item's plain strings as Arrow; pairwise_render turns them into the JSONL lines,
the Parquet columns and the card's counts, whole batches at a time.

The row-by-row path (datasets.labeled_items → PairwiseExporter.rows → SplitWriter) costs
~50 µs of Python per row. Here the items are cut into buckets of BUCKET_SIZE ids (exact bounds)
and the buckets into chunks of CHUNK_BUCKETS. Readers (EXPORT_DB_CONNECTIONS threads, each with
an ADBC connection of its own: PostgreSQL's binary COPY decoded into Arrow record batches in
C++, all in the exporter's snapshot) take the chunks in turn, so the database works on several
cores at once. Per bucket (a LATERAL join) the filtered labels are grouped by item (a merge join
of two index scans) and joined to their item; an exported item (a majority for A or B, at the
minimum agreement) also sends its external id, prompt, chosen and rejected texts and ids, and
the names of its labellers when there are several. Escaping, numbers, names, the split hash
and the line's concatenation happen in the reader threads (Arrow kernels, numpy, orjson), which
costs far less than ~30 SQL expressions per row did. The main thread writes the chunks in
order as they come (JSONL with its sha256, Parquet row groups), so the files are the same
whatever the number of readers.

The readers see committed rows only, so datasets uses this outside transactions. The row-by-row
path stays the reference: on the same data both give the same bytes (files, card, archive),
which tests/test_exports_in_database.py checks. A mean strength is rounded to 6 decimals half-up
here and half-even on the binary value there; they differ only when the 7th decimal of a mean
is exactly 5 (an item with 128 or more labels), never in practice.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc  # noqa: F401 (pa.ipc)
import pyarrow.parquet as pq
from django.db import connection, transaction
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import Conninfo

from annotate.models import Annotation, Item, Judge

from .pairwise_render import Renderer
from .ziparchive import Deflated, Follower

USER_TABLE = Annotation._meta.get_field("annotator").related_model._meta.db_table
BUCKET_SIZE = 1000  # items per LATERAL join (a merge join of that many items and labels)
CHUNK_BUCKETS = 8  # buckets per query; the readers take the chunks in turn
PROGRESS_SECONDS = 1.0
# The readers' plans. JIT compiling costs more than it saves here. A bucket's item ids come
# from an array, so the planner guesses ~25 labeled items where there are ~1000: it then joins
# each group to its item by an index probe (a nested loop), or hashes them; a merge join with
# one index scan of the bucket's items reads the rows in id order for a fifth less CPU at 1M
# items (one backend: 7.1 s → 5.8 s, medians of 5).
READER_SETTINGS = (
    "jit = off",
    "enable_nestloop = off",  # the LATERAL per bucket stays one: nothing else can do it
    "enable_hashjoin = off",
    "enable_bitmapscan = off",
)
BATCH_BYTES = 4 << 20  # Arrow bytes per batch a reader hands over

# Per labeled item: the filtered labels' counts by choice and source, annotator and judge id
# bounds, the strengths of the A and B labels (from Annotation's generated choice and strength
# columns: reading them out of each label's JSON cost ~20% of the query). Items' JSON is joined
# afterwards: carried through the aggregate it would be copied per group.
AGGREGATE_SQL = """
    SELECT a.item_id AS id,
        count(*) AS n,
        count(*) FILTER (WHERE a.choice = 'A') AS na,
        count(*) FILTER (WHERE a.choice = 'B') AS nb,
        count(*) FILTER (WHERE a.choice = 'tie') AS nt,
        count(*) FILTER (WHERE a.source = 'human') AS n_human,
        count(*) FILTER (WHERE a.source = 'imported') AS n_imported,
        count(*) FILTER (WHERE a.source = 'judge') AS n_judge,
        min(a.annotator_id) AS u1, max(a.annotator_id) AS u2,
        min(a.judge_id) AS j1, max(a.judge_id) AS j2,
        sum(a.strength) FILTER (WHERE a.choice = 'A') AS sum_a,
        count(a.strength) FILTER (WHERE a.choice = 'A') AS cnt_a,
        sum(a.strength) FILTER (WHERE a.choice = 'B') AS sum_b,
        count(a.strength) FILTER (WHERE a.choice = 'B') AS cnt_b
    FROM {item} i
    JOIN {annotation} a ON a.item_id = i.id
    WHERE i.project_id = {project} {item_where} AND {label_where}
        AND i.id >= r.lo AND i.id < r.hi AND a.item_id >= r.lo AND a.item_id < r.hi
    GROUP BY a.item_id
"""
MAJORITY = "((x.na > x.nb AND x.na > x.nt) OR (x.nb > x.na AND x.nb > x.nt))"


def micros(top: str, n: str) -> str:
    """SQL for a share top / n in millionths, round(share, 6) * 10**6 in integers (half up):
    the same number pairwise_render computes from the counts."""
    return f"(({top}) * 2000000 + ({n})) / (2 * ({n}))"


MICROS = micros("greatest(x.na, x.nb, x.nt)", "x.n")  # the majority's share of item x


def min_micros(min_agreement: float) -> int:
    """The smallest share in millionths m with m / 10**6 >= min_agreement (as floats)."""
    if min_agreement <= 0:
        return 0
    m = max(int(min_agreement * 1_000_000) - 2, 0)
    while m / 1_000_000 < min_agreement:
        m += 1
    return m


def message_list(content: str, role: str) -> str:
    return f"""'[{{"content":' || {content} || ',"role":"{role}"}}]'"""


@dataclass
class Query:
    """The SQL of one pairwise export (literals inlined: COPY takes no parameters)."""

    aggregate: str  # AGGREGATE_SQL for this project and filters
    label_where_inner: str  # label filters on alias a2, for the several-names subqueries
    min_micros: int  # an item gives a row when its majority's share reaches this
    usernames: dict[int, str]  # the labels' annotators by id
    judge_names: dict[int, str]  # the labels' judges by id

    def exported(self) -> str:
        """Whether item x gives a row: a majority for A or B, agreement at the minimum."""
        if self.min_micros <= 0:
            return MAJORITY
        return f"{MAJORITY} AND {MICROS} >= {int(self.min_micros)}"

    def _several(self, table: str, column: str, low: str, high: str, label_column: str) -> str:
        """The names behind item x's labels when there are several (sorted by code point, as
        Python sorts them), as a text[]; null for one name or none."""
        ids = (
            f"SELECT a2.{label_column} FROM {Annotation._meta.db_table} a2 "
            f"WHERE a2.item_id = y.id AND {self.label_where_inner}"
        )
        return (
            f"CASE WHEN {low} <> {high} THEN ARRAY(SELECT {column} FROM {table} "
            f'WHERE id IN ({ids}) ORDER BY {column} COLLATE "C") END'
        )

    def rows(self, *, chat: bool, margin: bool) -> str:
        """One row per labeled item of the buckets of item ids (r.lo ≤ id < r.hi; {lows} and
        {highs} left for the caller to fill with arrays), in id order: its label counts, and
        for an exported item its strings as they are (pairwise_render turns them into the
        line and the Parquet columns)."""
        chosen = "(CASE WHEN y.na > y.nb THEN 0 ELSE 1 END)"
        rejected = "(CASE WHEN y.na > y.nb THEN 1 ELSE 0 END)"
        if chat:
            messages = (
                "(SELECT coalesce(string_agg('{\"content\":' || (m->'content')::text || "
                "',\"role\":' || (m->'role')::text || '}', ',' ORDER BY k), '') "
                "FROM jsonb_array_elements(y.prompt) WITH ORDINALITY AS e(m, k))"
            )
            element = (
                "(CASE WHEN jsonb_typeof(y.prompt) = 'string' THEN ARRAY[{single}] "
                "ELSE ARRAY(SELECT m->>'{key}' FROM jsonb_array_elements(y.prompt) "
                "WITH ORDINALITY AS e(m, k) ORDER BY k) END)"
            )
            prompt = [
                (
                    "prompt_json",
                    f"(CASE WHEN jsonb_typeof(y.prompt) = 'string' "
                    f"THEN {message_list('y.prompt::text', 'user')} "
                    f"ELSE '[' || {messages} || ']' END)",
                ),
                ("prompt_roles", element.format(single="'user'", key="role")),
                ("prompt_contents", element.format(single="y.prompt #>> '{}'", key="content")),
            ]
        else:
            prompt = [("prompt", "y.prompt #>> '{}'")]
        strengths = [
            ("strength_sum", "CASE WHEN y.na > y.nb THEN y.sum_a ELSE y.sum_b END"),
            ("strength_count", "CASE WHEN y.na > y.nb THEN y.cnt_a ELSE y.cnt_b END"),
        ]
        columns = [
            ("external_id", "y.external_id"),
            *prompt,
            ("chosen", f"y.responses->{chosen}->>'text'"),
            ("rejected", f"y.responses->{rejected}->>'text'"),
            ("chosen_id", f"y.responses->{chosen}->>'id'"),
            ("rejected_id", f"y.responses->{rejected}->>'id'"),
            *(strengths if margin else []),
            ("annotators", self._several(USER_TABLE, "username", "y.u1", "y.u2", "annotator_id")),
            ("judges", self._several(Judge._meta.db_table, "name", "y.j1", "y.j2", "judge_id")),
        ]
        outputs = ",\n".join(
            f"CASE WHEN y.exported THEN {expr} END AS {name}" for name, expr in columns
        )
        item = Item._meta.db_table
        # Per bucket of items, a merge join of the labels and the items (one LATERAL per
        # bucket keeps each join small and ordered); rows come out in item id order. OFFSET 0
        # keeps y a subquery, so that `exported` is computed once per row.
        return f"""
            SELECT y.id, y.n, y.na, y.nb, y.nt, y.n_human, y.n_imported, y.n_judge, y.u1, y.j1,
                {outputs}
            FROM unnest({{lows}}::bigint[], {{highs}}::bigint[]) WITH ORDINALITY AS r(lo, hi, k)
            CROSS JOIN LATERAL (
                SELECT x.*, i.external_id, i.prompt, i.responses, {self.exported()} AS exported
                FROM ({self.aggregate}) x
                JOIN {item} i ON i.id = x.id AND i.id >= r.lo AND i.id < r.hi
                OFFSET 0
            ) y
        """


def test_threshold(fraction: float) -> int:
    """The smallest 64-bit prefix x with x / 2**64 >= fraction: an item is in the test split
    when its hash prefix is below it (datasets.in_test_split, as one comparison of bytes)."""
    low, high = 0, 2**64
    while low < high:
        mid = (low + high) // 2
        if mid / 2**64 < fraction:
            low = mid + 1
        else:
            high = mid
    return low


def build_query(project_id: int, filters: dict, label_where) -> Query:
    """label_where(alias) → (SQL with %s, params): datasets' label filters. Reads the names of
    the labels' annotators and judges."""

    def inline(alias: str) -> str:
        where, params = label_where(alias)
        composed = sql.SQL(where.replace("%s", "{}")).format(*map(sql.Literal, params))
        return composed.as_string(connection.connection)

    item_where = "AND i.gold_label IS NULL" if filters["exclude_gold"] else ""
    tables = {"item": Item._meta.db_table, "annotation": Annotation._meta.db_table}
    aggregate = AGGREGATE_SQL.format(
        **tables, label_where=inline("a"), project=int(project_id), item_where=item_where
    )
    names = {}
    for key, table, column, label_column in (
        ("usernames", USER_TABLE, "username", "annotator_id"),
        ("judge_names", Judge._meta.db_table, "name", "judge_id"),
    ):
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {column} FROM {table} WHERE id IN (SELECT a.{label_column} "
                f"FROM {tables['item']} i JOIN {tables['annotation']} a ON a.item_id = i.id "
                f"WHERE i.project_id = {int(project_id)} {item_where} AND {inline('a')})"
            )
            names[key] = dict(cursor.fetchall())
    return Query(
        aggregate=aggregate,
        label_where_inner=inline("a2"),
        min_micros=min_micros(float(filters["min_agreement"])),
        **names,
    )


COUNTS = (
    "items", "labels", "sources.human", "sources.imported", "sources.judge", "labels.A",
    "labels.B", "labels.tie", "left_out.no_majority", "left_out.ties",
    "left_out.below_min_agreement", "chosen.A", "chosen.B",
)  # fmt: skip


def stats_of(counts: Counter, agreement_min, rows: dict[str, int]) -> tuple[Counter, dict | None]:
    """The buckets' summed counts as the row-by-row path counts (zero counts left out)."""
    stats = Counter({key: int(counts[key]) for key in COUNTS if counts[key]})
    stats.update({f"items.{name}": n for name, n in rows.items() if n})  # a row per item
    exported = int(counts["chosen.A"] + counts["chosen.B"])
    agreement = None
    if exported:
        agreement = {
            "mean": mean_of_micros(int(counts["agreement_micros"]), exported),
            "min": round(float(agreement_min), 6),
            "unanimous": int(counts["unanimous"]),
            "items": exported,
        }
    return stats, agreement


def mean_of_micros(total: int, n: int) -> float:
    """The mean of n values given in millionths (exact integers), rounded to 6 decimals."""
    return round(total / n / 1_000_000, 6)


class RowGroups:
    """A Parquet file written in row groups of exactly `size` rows from tables of any length
    (the row-by-row path's row groups, so that both give the same bytes)."""

    def __init__(self, path: Path, schema: pa.Schema, size: int, options: dict):
        self.schema, self.size = schema, size
        self.writer = pq.ParquetWriter(path, schema, **options)
        self.pending: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= self.size:
            table = pa.concat_tables(self.pending)
            whole = self.rows - self.rows % self.size
            for start in range(0, whole, self.size):
                self.writer.write_table(table.slice(start, self.size).combine_chunks())
            self.pending, self.rows = [table.slice(whole)], self.rows - whole

    def close(self) -> None:
        if self.rows:
            self.writer.write_table(pa.concat_tables(self.pending).combine_chunks())
        self.writer.close()


class SplitFiles:
    """One split's final files: the JSONL (its sha256, and its deflate stream for the archive,
    made meanwhile from the CPU left idle) and the Parquet."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema, row_group: int, options):
        self.path = folder / f"{name}.jsonl"
        self.file = open(self.path, "wb")  # noqa: SIM115 (closed by finish)
        self.digest, self.bytes, self.rows = hashlib.sha256(), 0, 0
        self.parquet = RowGroups(folder / f"{name}.parquet", schema, row_group, options)
        self.follower = Follower(self.path, folder / f".{name}.jsonl.deflated")
        self.follower.start()

    def write(self, lines, table: pa.Table) -> None:
        """Whole JSONL lines (a buffer) and the same rows as a table."""
        self.file.write(lines)
        self.file.flush()
        self.digest.update(lines)
        self.bytes += len(lines)
        self.follower.grow(self.bytes)
        self.rows += table.num_rows
        self.parquet.write(table)

    def finish(self) -> dict:
        self.file.close()
        self.parquet.close()
        return {"name": self.path.name, "bytes": self.bytes, "sha256": self.digest.hexdigest()}

    def deflated(self) -> Deflated:
        """The JSONL's deflate stream, once finished."""
        return self.follower.result()

    def discard(self) -> None:
        """Stops the deflating and removes its file (a failed export)."""
        with contextlib.suppress(Exception):  # the export's own error is the one raised
            self.follower.result()
        self.follower.target.unlink(missing_ok=True)


def item_buckets(project_id: int, item_where: str, size: int) -> tuple[list[int], list[int]]:
    """Bounds [low, high) of id ranges holding about `size` of the project's items each (ranges
    of equal width over the ids, as many as the items need: one count, no scan of every id)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(i.id), max(i.id), count(*) FROM {Item._meta.db_table} i "
            f"WHERE i.project_id = %s {item_where}",
            [project_id],
        )
        low, high, count = cursor.fetchone()
    if not count:
        return [], []
    width = -(-size * (high - low + 1) // count)
    lows = list(range(low, high + 1, width))
    return lows, [*lows[1:], 2**63 - 1]


def _lines(column) -> pa.Buffer:
    """The bytes of a string array without nulls: its lines, one after the other."""
    if not len(column):
        return pa.py_buffer(b"")
    width = 8 if pa.types.is_large_string(column.type) else 4
    offsets, data = column.buffers()[1:]
    first, last = (
        int.from_bytes(memoryview(offsets)[width * k : width * (k + 1)], "little")
        for k in (column.offset, column.offset + len(column))
    )
    return data.slice(first, last - first)


class Chunks:
    """Rendered chunks handed from the readers to the writer in order; a reader starts a chunk
    only within `window` chunks of the one the writer waits for (bounded memory)."""

    def __init__(self, window: int):
        self.window = window
        self.ready: dict[int, list] = {}
        self.next = 0  # the chunk the writer waits for
        self.stopped = False
        self.changed = threading.Condition()

    def turn(self, index: int) -> bool:
        """Waits until chunk `index` may be read; False once the export stopped."""
        with self.changed:
            self.changed.wait_for(lambda: self.stopped or index < self.next + self.window)
            return not self.stopped

    def put(self, index: int, outputs: list) -> None:
        with self.changed:
            self.ready[index] = outputs
            self.changed.notify_all()

    def take(self, timeout: float) -> list | None:
        """The next chunk's outputs; None after `timeout` seconds or once stopped."""
        with self.changed:
            self.changed.wait_for(lambda: self.stopped or self.next in self.ready, timeout)
            if self.stopped or self.next not in self.ready:
                return None
            outputs = self.ready.pop(self.next)
            self.next += 1
            self.changed.notify_all()
            return outputs

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()


class Part(threading.Thread):
    """Reads its chunks of buckets over its own connection (in the exporter's snapshot),
    renders each batch into (split, lines, table) outputs and hands each chunk's outputs over;
    sums the card's counts."""

    def __init__(self, reader, chunks: list[tuple[int, str]], queue: Chunks, renderer: Renderer):
        super().__init__(daemon=True)
        self.reader, self.chunks, self.queue, self.renderer = reader, chunks, queue, renderer
        self.counts: Counter = Counter()
        self.lowest: int | None = None  # the exported rows' lowest agreement in millionths
        self.outputs: list[tuple[str, pa.Buffer, pa.Table]] = []
        self.done = 0  # labeled items read
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            last = 0
            cursor = self.reader.cursor()
            cursor.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)}
            )
            try:
                for index, sql_text in self.chunks:
                    if not self.queue.turn(index):
                        return
                    self.outputs = []
                    cursor.execute(sql_text)
                    for batch in cursor.fetch_record_batch():
                        last = _check_order(batch.column("id"), last)
                        self._batch(batch)
                        self.done += batch.num_rows
                    self.queue.put(index, self.outputs)
            finally:
                cursor.close()
        except BaseException as exc:  # re-raised by the main thread
            self.error = exc
            self.queue.stop()

    def _batch(self, batch: pa.RecordBatch) -> None:
        exported, lowest = self.renderer.counts(batch, self.counts)
        if lowest is None:
            return
        self.lowest = lowest if self.lowest is None else min(self.lowest, lowest)
        if not exported.all():
            batch = batch.filter(pa.array(exported))
        is_test = self.renderer.in_test(batch.column("external_id"))
        for name, mask in (("train", ~is_test), ("test", is_test)):
            if mask.any():
                rows = batch if mask.all() else batch.filter(pa.array(mask))
                lines, table = self.renderer.rows(rows)
                self.outputs.append((name, _lines(lines), table))


def _check_order(ids: pa.Array, last: int) -> int:
    """The last id of a batch whose ids rise from above `last`."""
    if not len(ids):
        return last
    ordered = len(ids) == 1 or pc.all(pc.greater(ids[1:], ids[:-1])).as_py()
    if ids[0].as_py() <= last or not ordered:
        raise RuntimeError("the export's rows came out of id order")
    return ids[-1].as_py()


def conninfo() -> str:
    """libpq connection string of Django's default database (for the readers)."""
    known = {o.keyword.decode() for o in Conninfo.get_defaults()}
    params = connection.get_connection_params()
    return make_conninfo(**{k: v for k, v in params.items() if k in known and v is not None})


def open_reader(dsn: str, snapshot: str):
    """An ADBC connection (Arrow straight from PostgreSQL's binary COPY, in C++) in a
    repeatable-read transaction on `snapshot`."""
    import adbc_driver_postgresql.dbapi as adbc

    reader = adbc.connect(dsn)
    try:
        with reader.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            for setting in READER_SETTINGS:
                cursor.execute(f"SET LOCAL {setting}")
    except BaseException:
        reader.close()
        raise
    return reader


def export_splits(
    *,
    project_id: int,
    filters: dict,
    split: dict,
    exporter,
    folder: Path,
    label_where,
    row_group: int,
    parquet_options: dict,
    progress=None,
    total: int = 0,
    parts: int = 2,
) -> tuple[Counter, dict | None, dict[str, int], dict[str, dict], dict[str, Deflated]]:
    """Write train/test JSONL + Parquet of a pairwise export into folder, reading the rows over
    `parts` connections at once (each a run of the buckets, in one snapshot). Needs committed
    data: the readers are connections of their own (datasets calls this outside transactions).

    Returns (stats as the row-by-row path counts them, the agreement summary or None, rows per
    split, the JSONL files' infos, their deflate streams for the archive)."""
    schema = exporter.schema()
    item_where = "AND i.gold_label IS NULL" if filters["exclude_gold"] else ""
    readers, threads = [], []
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # One snapshot for the names, the buckets and every reader's rows.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SET LOCAL jit = off")
            query = build_query(project_id, filters, label_where)
            lows, highs = item_buckets(project_id, item_where, BUCKET_SIZE)
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
            dsn = conninfo()
            chunks = range(0, len(lows), CHUNK_BUCKETS)
            for _ in range(min(parts, len(chunks))):
                readers.append(open_reader(dsn, snapshot))
        # The readers hold the snapshot now; this connection is free for progress reports.
        rows_sql = query.rows(chat=exporter.chat, margin=exporter.margin)
        renderer = Renderer(
            schema=schema,
            chat=exporter.chat,
            margin=exporter.margin,
            seed=split["seed"],
            threshold=test_threshold(split["test_fraction"]),
            names={"users": query.usernames, "judges": query.judge_names},
            min_micros=query.min_micros,
        )
        chunk_sql = [
            rows_sql.replace("{lows}", _array(lows[k : k + CHUNK_BUCKETS])).replace(
                "{highs}", _array(highs[k : k + CHUNK_BUCKETS])
            )
            for k in chunks
        ]
        queue = Chunks(window=2 * len(readers))
        threads = [
            Part(reader, list(enumerate(chunk_sql))[k :: len(readers)], queue, renderer)
            for k, reader in enumerate(readers)
        ]
        finals = {
            name: SplitFiles(folder, name, schema, row_group, parquet_options)
            for name in ("train", "test")
        }
        try:
            try:
                for thread in threads:
                    thread.start()
                written = 0
                while written < len(chunk_sql):
                    outputs = queue.take(PROGRESS_SECONDS)
                    if progress:
                        progress(sum(thread.done for thread in threads), total)
                    if outputs is None:
                        if queue.stopped:
                            break
                        continue
                    for name, lines, table in outputs:
                        finals[name].write(lines, table)
                    written += 1
            finally:
                queue.stop()
                for thread in threads:
                    thread.join()
                infos = {f"{name}.jsonl": files.finish() for name, files in finals.items()}
            for thread in threads:
                if thread.error is not None:
                    raise thread.error
            deflated = {f"{name}.jsonl": files.deflated() for name, files in finals.items()}
        except BaseException:
            # A reader's or the writer's failure: the followers stop, their streams go.
            for files in finals.values():
                files.discard()
            raise
    finally:
        for reader in readers:
            reader.close()
    counts: Counter = Counter()
    for thread in threads:
        counts.update(thread.counts)
    lowest = min((t.lowest for t in threads if t.lowest is not None), default=None)
    lowest = None if lowest is None else lowest / 1_000_000
    rows = {name: files.rows for name, files in finals.items()}
    stats, agreement = stats_of(counts, lowest, rows)
    return stats, agreement, rows, infos, deflated


def _array(values: list[int]) -> str:
    """A bigint[] literal."""
    return "'{" + ",".join(map(str, values)) + "}'"
