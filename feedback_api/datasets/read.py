"""A queryset's rows as Arrow record batches, read through Django's own connection (so in or
out of a transaction, on either database), a page of items at a time, in the queryset's order.

Pages are ranges of item ids (`key`): each page is one query, read to its end before its rows
are handed on, so that the connection is free between pages (progress reports, the pairwise
exporter's names). PostgreSQL sends `COPY (<the page's SQL>) TO STDOUT` as CSV, parsed into
Arrow in C++ (no Python object per value); SQLite's rows are fetched and turned into Arrow
column by column."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.csv as pacsv
from django.db import connections
from django.db.models import Count, Max, Min, QuerySet

BLOCK_BYTES = 16 << 20  # CSV bytes per Arrow batch on PostgreSQL
FETCH_ROWS = 10_000  # rows per Arrow batch on SQLite


def item_pages(items: QuerySet, size: int) -> list[tuple[int, int]]:
    """Ranges [low, high) of item ids holding about `size` of these items each (equal widths
    over the ids, from one count: no scan of every id)."""
    bounds = items.aggregate(low=Min("id"), high=Max("id"), n=Count("id"))
    if not bounds["n"]:
        return []
    low, high = bounds["low"], bounds["high"] + 1
    width = max(1, -(-size * (high - low) // bounds["n"]))
    return [(start, min(start + width, high)) for start in range(low, high, width)]


def read_batches(
    query: Callable[[int, int], QuerySet], schema: pa.Schema, pages: list[tuple[int, int]]
) -> Iterator[pa.RecordBatch]:
    """The rows of query(low, high), a values_list() queryset whose columns are `schema`'s,
    for each page of item ids, in batches."""
    database = connections["default"]

    def read(page: tuple[int, int]) -> list[pa.RecordBatch]:
        sql, params = query(*page).query.sql_with_params()
        if database.vendor == "postgresql":
            return list(_copy_batches(database, sql, params, schema))
        return list(_fetched_batches(database, sql, params, schema))

    if database.vendor != "postgresql":
        for page in pages:
            yield from read(page)
        return
    # PostgreSQL works on the next page while this process writes the last one: a thread
    # shares the connection (psycopg serialises its use), so a transaction's rows are seen.
    database.inc_thread_sharing()
    try:
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(read, pages[0]) if pages else None
            for k in range(len(pages)):
                batches = ahead.result()
                ahead = pool.submit(read, pages[k + 1]) if k + 1 < len(pages) else None
                yield from batches
    finally:
        database.dec_thread_sharing()


def _fetched_batches(database, sql, params, schema: pa.Schema):
    with database.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            columns = zip(*rows, strict=True)
            arrays = [_array(column, f.type) for column, f in zip(columns, schema, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values, kind: pa.DataType) -> pa.Array:
    if pa.types.is_boolean(kind):  # SQLite's booleans may come as 0 and 1
        return pa.array([None if v is None else bool(v) for v in values], kind)
    return pa.array(values, kind)


def _copy_batches(database, sql, params, schema: pa.Schema):
    read = pacsv.ReadOptions(column_names=schema.names, block_size=BLOCK_BYTES)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    # COPY's CSV: NULL is an empty unquoted field, an empty string is "".
    convert = pacsv.ConvertOptions(
        column_types=schema,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    copy_sql = f"COPY ({sql}) TO STDOUT (FORMAT csv)"
    with (
        database.cursor() as cursor,
        cursor.connection.cursor() as raw,
        raw.copy(copy_sql, params) as copy,
    ):
        data = b"".join(copy)  # a page: read whole, so that the connection is free
    if not data:
        return
    table = pacsv.read_csv(pa.BufferReader(data), read, parse, convert)
    yield from table.select(schema.names).cast(schema).to_batches()
