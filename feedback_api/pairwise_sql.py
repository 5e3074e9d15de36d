"""The pairwise export on PostgreSQL: the database aggregates each item's labels and renders its
JSONL line; Python only moves bytes.

The row-by-row path (datasets.labeled_items → PairwiseExporter.rows → SplitWriter) costs
~50 µs of Python per row. Here one `COPY (...) TO STDOUT` sends one row per bucket of
BUCKET_SIZE items (a LATERAL over exact item-id bounds): the bucket's train lines and test lines
as two strings, and the dataset card's counts for the bucket. Per bucket the filtered labels are
grouped by item (a merge join of two index scans), the majority taken, the split hash computed,
and each line built by one concat() in the exporter's exact form (orjson with sorted keys: no
spaces, the same string escapes, floats as Python prints them). CSV mode with a quote and a
delimiter that JSON never holds unescaped sends the strings as they are. Python writes each
block to its JSONL file and sha256, and a thread per split parses it with pyarrow's JSON reader
(C++, without the GIL) into Parquet row groups while the database works on the next buckets.

The row-by-row path stays the reference: on the same data both give the same bytes (files,
card, archive), which tests/test_exports_in_database.py checks. A float is rounded to 6
decimals half-up here and half-even on the binary value there; they differ only when the 7th
decimal of a share of labels is exactly 5 (an item with 128 or more labels), never in practice.
Progress is reported before and after the COPY only: the COPY holds the connection that a
progress report writes through.
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import threading
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.db import connection, transaction
from psycopg import sql

from annotate.models import Annotation, Item, Judge

USER_TABLE = Annotation._meta.get_field("annotator").related_model._meta.db_table
PARSE_BLOCK = 8 << 20  # bytes of whole lines per pyarrow parse
BUCKET_SIZE = 1000  # items per COPY row

# Per labeled item: the filtered labels' counts by choice and source, annotator and judge id
# bounds, the strengths of the A and B labels; then the majority's share and mean strength,
# rounded to 6 decimals as numerics (printed by float_text). Items' JSON is joined afterwards:
# carried through the aggregate it would be copied per group.
AGGREGATE_SQL = """
    SELECT g.*,
        round(greatest(g.na, g.nb, g.nt)::numeric / g.n, 6) AS agreement,
        round(CASE WHEN g.na > g.nb THEN g.sum_a::numeric / nullif(g.cnt_a, 0)
                   ELSE g.sum_b::numeric / nullif(g.cnt_b, 0) END, 6) AS margin
    FROM (
        SELECT a.item_id AS id,
            count(*) AS n,
            count(*) FILTER (WHERE a.label->>'choice' = 'A') AS na,
            count(*) FILTER (WHERE a.label->>'choice' = 'B') AS nb,
            count(*) FILTER (WHERE a.label->>'choice' = 'tie') AS nt,
            count(*) FILTER (WHERE a.source = 'human') AS n_human,
            count(*) FILTER (WHERE a.source = 'imported') AS n_imported,
            count(*) FILTER (WHERE a.source = 'judge') AS n_judge,
            min(a.annotator_id) AS u1, max(a.annotator_id) AS u2,
            min(a.judge_id) AS j1, max(a.judge_id) AS j2,
            sum((a.label->>'strength')::int) FILTER (WHERE a.label->>'choice' = 'A') AS sum_a,
            count(a.label->>'strength') FILTER (WHERE a.label->>'choice' = 'A') AS cnt_a,
            sum((a.label->>'strength')::int) FILTER (WHERE a.label->>'choice' = 'B') AS sum_b,
            count(a.label->>'strength') FILTER (WHERE a.label->>'choice' = 'B') AS cnt_b
        FROM {item} i
        JOIN {annotation} a ON a.item_id = i.id
        WHERE i.project_id = {project} {item_where} AND {label_where}
            AND i.id >= r.lo AND i.id < r.hi AND a.item_id >= r.lo AND a.item_id < r.hi
        GROUP BY a.item_id
    ) g
"""
MAJORITY = "((x.na > x.nb AND x.na > x.nt) OR (x.nb > x.na AND x.nb > x.nt))"
TIE = "(x.nt > x.na AND x.nt > x.nb)"


def float_text(expr: str) -> str:
    """A numeric with at most 6 decimals as Python (and orjson) print the float: 1.0, 0.5."""
    text = f"trim_scale({expr})::text"
    return f"(CASE WHEN strpos({text}, '.') = 0 THEN {text} || '.0' ELSE {text} END)"


def names_text(names: str, low: str, high: str, many: str) -> str:
    """A JSON array of the names behind one id (low = high: looked up in `names`, a jsonb
    literal {id: name}, far cheaper per row than a subquery) or several (`many`, a sorted
    subquery)."""
    return (
        f"(CASE WHEN {low} IS NULL THEN '[]' "
        f"WHEN {low} = {high} THEN '[' || ({names} -> ({low})::text)::text || ']' "
        f"ELSE '[' || {many} || ']' END)"
    )


def message_list(content: str, role: str) -> str:
    return f"""'[{{"content":' || {content} || ',"role":"{role}"}}]'"""


@dataclass
class Query:
    """The SQL of one pairwise export (literals inlined: COPY takes no parameters)."""

    aggregate: str  # AGGREGATE_SQL for this project and filters
    test: str  # whether an item is in the test split, on alias i
    label_where_inner: str  # label filters on alias a2, for the several-names subqueries
    min_agreement: float
    usernames: str = "'{}'::jsonb"  # {id: username} of the labels' annotators
    judge_names: str = "'{}'::jsonb"  # {id: name} of the labels' judges

    def exported(self) -> str:
        """Whether item x gives a row: a majority for A or B, agreement at the minimum."""
        if self.min_agreement <= 0:
            return MAJORITY
        return f"{MAJORITY} AND x.agreement::float8 >= {self.min_agreement!r}::float8"

    def _names(self, table: str, column: str, label_column: str) -> str:
        """The names of the users or judges behind item x's filtered labels, as JSON strings
        joined by commas, sorted as Python sorts them (by code point)."""
        ids = (
            f"SELECT a2.{label_column} FROM {Annotation._meta.db_table} a2 "
            f"WHERE a2.item_id = x.id AND {self.label_where_inner}"
        )
        return (
            f"(SELECT string_agg(to_json({column})::text, ',' ORDER BY {column} COLLATE \"C\") "
            f"FROM {table} WHERE id IN ({ids}))"
        )

    def buckets(self, *, chat: bool, margin: bool) -> str:
        """One row per bucket of item ids (r.lo ≤ id < r.hi; {lows} and {highs} left for
        export_splits to replace with arrays): its train lines, test lines, and counts."""
        choice_chosen = "(CASE WHEN x.na > x.nb THEN 0 ELSE 1 END)"
        choice_rejected = "(CASE WHEN x.na > x.nb THEN 1 ELSE 0 END)"
        chosen = f"(i.responses->{choice_chosen}->'text')::text"
        rejected = f"(i.responses->{choice_rejected}->'text')::text"
        if chat:
            messages = (
                "(SELECT coalesce(string_agg('{\"content\":' || (m->'content')::text || "
                "',\"role\":' || (m->'role')::text || '}', ',' ORDER BY k), '') "
                "FROM jsonb_array_elements(i.prompt) WITH ORDINALITY AS e(m, k))"
            )
            prompt = (
                f"(CASE WHEN jsonb_typeof(i.prompt) = 'string' "
                f"THEN {message_list('i.prompt::text', 'user')} ELSE '[' || {messages} || ']' END)"
            )
            chosen, rejected = (
                message_list(chosen, "assistant"),
                message_list(rejected, "assistant"),
            )
        else:
            prompt = "i.prompt::text"
        annotators = names_text(
            self.usernames, "x.u1", "x.u2", self._names(USER_TABLE, "username", "annotator_id")
        )
        judges = names_text(
            self.judge_names, "x.j1", "x.j2", self._names(Judge._meta.db_table, "name", "judge_id")
        )
        agreement = float_text("x.agreement")
        margin_text = (
            "CASE WHEN x.na > x.nb AND x.cnt_a = 1 THEN x.sum_a || '.0' "
            "WHEN x.nb > x.na AND x.cnt_b = 1 THEN x.sum_b || '.0' "
            f"ELSE coalesce({float_text('x.margin')}, 'null') END"
        )
        sources = (
            "'[' || concat_ws(',', CASE WHEN x.n_human > 0 THEN '\"human\"' END, "
            "CASE WHEN x.n_imported > 0 THEN '\"imported\"' END, "
            "CASE WHEN x.n_judge > 0 THEN '\"judge\"' END) || ']'"
        )
        parts = [
            # Fast paths: a unanimous item, a majority with one strength.
            ("agreement", f"CASE WHEN x.n = x.na OR x.n = x.nb THEN '1.0' ELSE {agreement} END"),
            ("annotators", annotators),
            ("chosen", chosen),
            ("chosen_id", f"(i.responses->{choice_chosen}->'id')::text"),
            ("external_id", "to_json(i.external_id)::text"),
            ("judges", judges),
            *([("margin", margin_text)] if margin else []),
            ("n_labels", "x.n::text"),
            ("prompt", prompt),
            ("rejected", rejected),
            ("rejected_id", f"(i.responses->{choice_rejected}->'id')::text"),
            ("sources", sources),
        ]
        # One concat() call: a chain of || copies the growing line once per piece.
        pieces = []
        for k, (name, expr) in enumerate(parts):
            pieces += [f"""'{"," if k else "{"}"{name}":'""", expr]
        pieces.append("E'}\\n'")
        exported = self.exported()
        item = Item._meta.db_table
        # Per bucket of items: the train and the test lines, each in one string, and the
        # card's counts. One row per bucket: COPY sends a message per row, and Python's work
        # per message is what a row-per-line COPY would spend per line.
        return f"""
            SELECT r.k, b.*
            FROM unnest({{lows}}::bigint[], {{highs}}::bigint[]) WITH ORDINALITY AS r(lo, hi, k)
            CROSS JOIN LATERAL (
                SELECT
                    string_agg(y.line, '' ORDER BY y.id) FILTER (WHERE NOT y.is_test),
                    string_agg(y.line, '' ORDER BY y.id) FILTER (WHERE y.is_test),
                    count(*), coalesce(sum(y.n), 0),
                    coalesce(sum(y.n_human), 0), coalesce(sum(y.n_imported), 0),
                    coalesce(sum(y.n_judge), 0),
                    coalesce(sum(y.na), 0), coalesce(sum(y.nb), 0), coalesce(sum(y.nt), 0),
                    count(*) FILTER (WHERE NOT y.majority AND NOT y.tie),
                    count(*) FILTER (WHERE y.tie),
                    count(*) FILTER (WHERE y.majority AND NOT y.exported),
                    count(*) FILTER (WHERE y.exported AND y.na > y.nb),
                    count(*) FILTER (WHERE y.exported AND y.nb > y.na),
                    coalesce(sum((y.agreement * 1000000)::bigint) FILTER (WHERE y.exported), 0),
                    min(y.agreement) FILTER (WHERE y.exported),
                    count(*) FILTER (WHERE y.exported AND y.agreement >= 1)
                FROM (
                    SELECT x.*, {MAJORITY} AS majority, {TIE} AS tie, {exported} AS exported,
                        CASE WHEN {exported} THEN {self.test} END AS is_test,
                        CASE WHEN {exported} THEN concat({", ".join(pieces)}) END AS line
                    FROM ({self.aggregate}) x
                    JOIN {item} i ON i.id = x.id AND i.id >= r.lo AND i.id < r.hi
                ) y
            ) b
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


def build_query(project_id: int, filters: dict, split: dict, label_where) -> Query:
    """label_where(alias) → (SQL with %s, params): datasets' label filters. Reads the names of
    the labels' annotators and judges."""

    def literal(value) -> str:
        return sql.Literal(value).as_string(connection.connection)

    def inline(alias: str) -> str:
        where, params = label_where(alias)
        composed = sql.SQL(where.replace("%s", "{}")).format(*map(sql.Literal, params))
        return composed.as_string(connection.connection)

    threshold = test_threshold(split["test_fraction"])
    seed = literal(f"{split['seed']}:")
    test = (
        f"substring(sha256(convert_to({seed} || i.external_id, 'UTF8')) FROM 1 FOR 8) "
        f"< '\\x{threshold:016x}'::bytea"
    )
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
            found = {str(pk): name for pk, name in cursor.fetchall()}
        names[key] = f"{literal(json.dumps(found, ensure_ascii=False))}::jsonb"
    return Query(
        aggregate=aggregate,
        test=test,
        label_where_inner=inline("a2"),
        min_agreement=float(filters["min_agreement"]),
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


class ParquetFromLines(threading.Thread):
    """JSONL blocks (whole lines) → Parquet row groups of exactly `row_group` rows, in a thread:
    pyarrow parses and encodes without the GIL while the main thread reads the next lines."""

    def __init__(self, path: Path, schema: pa.Schema, row_group: int, options: dict):
        super().__init__(daemon=True)
        self.schema, self.row_group = schema, row_group
        self.writer = pq.ParquetWriter(path, schema, **options)
        self.parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        self.blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def feed(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.blocks.put(block)

    def finish(self) -> None:
        self.blocks.put(None)
        self.join()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        pending: list[pa.Table] = []
        rows = 0
        try:
            while (block := self.blocks.get()) is not None:
                table = pa_json.read_json(io.BytesIO(block), parse_options=self.parse)
                pending.append(table.select(self.schema.names))
                rows += table.num_rows
                if rows >= self.row_group:
                    table = pa.concat_tables(pending)
                    whole = rows - rows % self.row_group
                    for start in range(0, whole, self.row_group):
                        self._write(table.slice(start, self.row_group))
                    pending, rows = [table.slice(whole)], rows - whole
            if rows:
                self._write(pa.concat_tables(pending))
        except BaseException as exc:  # handed to the main thread by feed()/finish()
            self.error = exc
            while self.blocks.get() is not None:  # let the producer finish
                pass
        finally:
            self.writer.close()

    def _write(self, table: pa.Table) -> None:
        self.writer.write_table(table.combine_chunks().cast(self.schema))


class SplitSink:
    """One split's files: JSONL lines to the file and its sha256, and to Parquet."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema, row_group: int, options):
        self.path = folder / f"{name}.jsonl"
        self.file = open(self.path, "wb")  # noqa: SIM115 (closed by finish)
        self.digest, self.bytes, self.rows = hashlib.sha256(), 0, 0
        self.parquet = ParquetFromLines(folder / f"{name}.parquet", schema, row_group, options)
        self.parquet.start()

    def write(self, block: bytes) -> None:
        """Whole lines, each with its newline."""
        self.file.write(block)
        self.digest.update(block)
        self.bytes += len(block)
        self.rows += block.count(b"\n")
        self.parquet.feed(block)

    def finish(self) -> dict:
        self.file.close()
        self.parquet.finish()
        return {"name": self.path.name, "bytes": self.bytes, "sha256": self.digest.hexdigest()}


def item_buckets(project_id: int, item_where: str, size: int) -> tuple[list[int], list[int]]:
    """Bounds [low, high) of consecutive runs of `size` of the project's item ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM (SELECT i.id, row_number() OVER (ORDER BY i.id) AS n "
            f"FROM {Item._meta.db_table} i WHERE i.project_id = %s {item_where}) s "
            f"WHERE n %% %s = 1 ORDER BY id",
            [project_id, size],
        )
        lows = [row[0] for row in cursor.fetchall()]
    return lows, [*lows[1:], 2**63 - 1]


def copy_buckets(buckets_sql: str, sinks: dict[str, SplitSink]) -> tuple:
    """COPY the buckets out: lines to their split's sink in blocks, counts summed.
    Returns (the counts, the lowest exported agreement)."""
    copy_sql = (
        f"COPY ({buckets_sql}) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    )
    counts: Counter = Counter()
    names = (*COUNTS, "agreement_micros")  # the bucket query's columns after the lines
    lowest, last_k = None, 0
    pending = {"train": [], "test": []}
    sizes = dict.fromkeys(pending, 0)

    def flush(name: str) -> None:
        sinks[name].write(b"".join(pending[name]))
        pending[name], sizes[name] = [], 0

    with (
        connection.cursor() as cursor,
        cursor.connection.cursor() as cur,
        cur.copy(copy_sql) as copy,
    ):
        for data in copy:  # one message per bucket
            k, train, test, *numbers = bytes(data).rstrip(b"\n").split(b"\x02")
            if int(k) != last_k + 1:
                raise RuntimeError("buckets out of order")
            last_k += 1
            for name, lines in (("train", train), ("test", test)):
                if lines:  # quoted with \x01 (NULL when the bucket has none)
                    pending[name].append(lines[1:-1])
                    sizes[name] += len(lines)
                    if sizes[name] >= PARSE_BLOCK:
                        flush(name)
            *numbers, minimum, unanimous = numbers
            counts.update(dict(zip(names, map(int, numbers), strict=True)))
            counts["unanimous"] += int(unanimous)
            if minimum and (lowest is None or Decimal(minimum.decode()) < lowest):
                lowest = Decimal(minimum.decode())
    for name in pending:
        if pending[name]:
            flush(name)
    return counts, lowest


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
) -> tuple[Counter, dict | None, dict[str, int], dict[str, dict]]:
    """Write train/test JSONL + Parquet of a pairwise export into folder.

    Returns (stats as the row-by-row path counts them, the agreement summary or None, rows per
    split, the JSONL files' infos)."""
    schema = exporter.schema()
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:  # one snapshot for the names, the buckets and their lines
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SET LOCAL jit = off")  # measured: compiling costs more than it saves
        query = build_query(project_id, filters, split, label_where)
        item_where = "AND i.gold_label IS NULL" if filters["exclude_gold"] else ""
        lows, highs = item_buckets(project_id, item_where, BUCKET_SIZE)
        sql_text = (
            query.buckets(chat=exporter.chat, margin=exporter.margin)
            .replace("{lows}", "'{" + ",".join(map(str, lows)) + "}'")
            .replace("{highs}", "'{" + ",".join(map(str, highs)) + "}'")
        )
        sinks = {
            name: SplitSink(folder, name, schema, row_group, parquet_options)
            for name in ("train", "test")
        }
        try:
            # No progress() during the COPY: it holds the connection, and a progress report
            # writes through the same connection (it would wait for the COPY forever).
            counts, lowest = copy_buckets(sql_text, sinks)
        finally:
            infos = {f"{name}.jsonl": sink.finish() for name, sink in sinks.items()}
    rows = {name: sink.rows for name, sink in sinks.items()}
    stats, agreement = stats_of(counts, lowest, rows)
    return stats, agreement, rows, infos
