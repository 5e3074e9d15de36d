"""The assignment engine's request path in SQL: on PostgreSQL a lease and a submission are one
statement each, instead of an ORM query per step; the reads before them (project and role,
assignment with item and project) are one plain query each, on any database.

`annotate.assignment` decides when to use them and falls back to its ORM path for everything
else (SQLite, a conflict, a stale read); the rules are those written there: locks item first,
then assignment; counters changed only while the item's row is locked; FOR UPDATE SKIP LOCKED on
the candidate. What one statement adds: PostgreSQL runs it on one snapshot, so a wait for a lock
inside it would not see what the lock holder committed. That is why the annotator's membership
row is locked by a statement of its own before the lease (see `lease`), and why the submission
re-checks its row's state in the UPDATE itself (a row changed meanwhile is re-read and fails the
test, and nothing is written).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime

from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper, debug_transaction
from psycopg.pq import TransactionStatus

from .models import Assignment, Item, Project

# The annotator's own unexpired lease in the project, else an item leased now: the candidate is
# locked (others' locked rows passed over), the assignment inserted (or their own expired one
# re-leased), the item's lease counter raised. `{candidate}` is one of the two filters below.
_LEASE = """
WITH own AS (
    SELECT a.id, a.item_id, a.swapped, a."order", a.expires_at, a.created_at
    FROM annotate_assignment a JOIN annotate_item i ON i.id = a.item_id
    WHERE a.annotator_id = %(annotator)s AND i.project_id = %(project)s
      AND a.status = 'leased' AND a.expires_at > %(now)s
    ORDER BY a.created_at, a.id
    LIMIT 1
),
candidate AS (
    SELECT i.id, i.responses FROM annotate_item i
    WHERE NOT EXISTS (SELECT FROM own)
      AND i.project_id = %(project)s
      -- OFFSET 0 keeps this a probe of assignment_once_per_annotator per row scanned: as an
      -- anti join the planner may read all the annotator's assignments first.
      AND NOT EXISTS (
          SELECT FROM annotate_assignment m
          WHERE m.item_id = i.id AND m.annotator_id = %(annotator)s AND m.status <> 'expired'
          OFFSET 0
      )
      {candidate}
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED
),
leased AS (
    INSERT INTO annotate_assignment AS a
        (item_id, annotator_id, status, swapped, "order", skip_reason, request_id,
         created_at, expires_at)
    SELECT c.id, %(annotator)s, 'leased', %(swapped)s::boolean,
           coalesce((SELECT jsonb_agg(r.value -> 'id' ORDER BY r.n * %(direction)s)
                     FROM jsonb_array_elements(c.responses) WITH ORDINALITY AS r (value, n)),
                    '[]'),
           '', '', %(now)s::timestamptz, %(expires)s::timestamptz
    FROM candidate c
    ON CONFLICT (item_id, annotator_id) DO UPDATE
        SET status = 'leased', swapped = excluded.swapped, "order" = excluded."order",
            expires_at = excluded.expires_at, completed_at = NULL
        WHERE a.status = 'expired'
    RETURNING a.id, a.item_id, a.swapped, a."order", a.expires_at, a.created_at
),
counted AS (
    UPDATE annotate_item i SET lease_count = i.lease_count + 1
    FROM leased l WHERE i.id = l.item_id
)
SELECT x.id, x.swapped, x."order", x.expires_at, x.created_at, x.new,
       i.id, i.external_id, i.prompt, i.responses, i.metadata, i.priority, i.gold_label,
       i.human_label_count, i.lease_count, i.created_at
FROM (SELECT *, true AS new FROM leased UNION ALL SELECT *, false FROM own) x
JOIN annotate_item i ON i.id = x.item_id
"""

# The first test of each bounds the range scanned on its partial index (item_next_idx,
# item_next_gold_idx); the rest are checked on the rows scanned.
_REGULAR = """
      AND i.gold_label IS NULL AND i.route IN ('human', 'both')
      AND i.human_label_count < %(overlap)s
      AND i.lease_count < %(overlap)s - i.human_label_count
    ORDER BY i.human_label_count, i.priority DESC, i.id
"""
_GOLD = """
      AND i.gold_label IS NOT NULL
    ORDER BY i.human_label_count, i.id
"""
LEASE_REGULAR = _LEASE.format(candidate=_REGULAR)
LEASE_GOLD = _LEASE.format(candidate=_GOLD)

# A live lease turned into a stored label: item locked, assignment marked submitted only while
# it is still the same live lease (status and swap as read before), annotation inserted,
# counters moved from lease to label. No row when the assignment changed: the caller falls back.
SUBMIT = """
WITH item AS (
    SELECT id FROM annotate_item WHERE id = %(item)s FOR UPDATE
),
done AS (
    UPDATE annotate_assignment a
    SET status = 'submitted', completed_at = %(now)s, request_id = %(request_id)s,
        gold_correct = coalesce(%(gold_correct)s::boolean, a.gold_correct)
    WHERE a.id = %(assignment)s AND a.status = 'leased' AND a.swapped = %(swapped)s
      AND EXISTS (SELECT FROM item)
    RETURNING a.id, a.item_id, a.annotator_id
),
stored AS (
    INSERT INTO annotate_annotation
        (item_id, source, annotator_id, assignment_id, kind, label, time_spent_ms, origin,
         judge_model, prompt_version, raw_output, created_at)
    SELECT d.item_id, 'human', d.annotator_id, d.id, %(kind)s, %(label)s::jsonb,
           %(time_spent_ms)s::integer,
           'assignment', '', '', '', %(now)s
    FROM done d
    RETURNING id
),
counted AS (
    UPDATE annotate_item i
    SET human_label_count = i.human_label_count + 1, lease_count = i.lease_count - 1
    FROM done d WHERE i.id = d.item_id
)
SELECT id FROM stored
"""


_LOCK_MEMBERSHIP = (
    "SELECT FROM annotate_membership WHERE project_id = %s AND user_id = %s FOR NO KEY UPDATE"
)


def lease(
    *,
    project_id: int,
    annotator_id: int,
    gold: bool,
    overlap: int,
    swapped: bool,
    now: datetime,
    expires: datetime,
    commit: bool = False,
) -> tuple | None:
    """Lock the annotator's membership, then run the lease statement; its row or None.

    The lock is its own statement: the lease statement then starts after whoever held it
    committed, and sees their lease (a double click gets one). Both are sent in one pipeline
    (one round trip). Runs inside the caller's transaction; with `commit` (autocommit mode, no
    transaction open) in its own: BEGIN and COMMIT go in the same pipeline, so that the lease
    is taken and committed in a single round trip.
    """
    params = {
        "project": project_id,
        "annotator": annotator_id,
        "overlap": overlap,
        "swapped": swapped,
        "direction": -1 if swapped else 1,
        "now": now,
        "expires": expires,
    }
    statement = LEASE_GOLD if gold else LEASE_REGULAR
    if commit and not connection.get_autocommit():
        raise RuntimeError("lease(commit=True) runs in autocommit mode only")
    # Two cursors: the lease cursor's result must not be replaced by the COMMIT's.
    with _statements() as cursor, _statements() as control:
        try:
            with connection.wrap_database_errors, connection.connection.pipeline():
                if commit:
                    _transaction_control(control, "BEGIN")
                control.execute(_LOCK_MEMBERSHIP, [project_id, annotator_id])
                cursor.execute(statement, params)
                if commit:
                    _transaction_control(control, "COMMIT")
        except BaseException:
            # A failed statement skipped the rest of the pipeline, COMMIT included.
            status = connection.connection.info.transaction_status
            if commit and status != TransactionStatus.IDLE:
                _transaction_control(control, "ROLLBACK")
            raise
        return cursor.fetchone()


def _transaction_control(cursor, sql: str) -> None:
    """BEGIN, COMMIT or ROLLBACK sent on a `_statements` cursor: not prepared, logged as Django
    logs its own."""
    with debug_transaction(connection, sql), connection.wrap_database_errors:
        cursor.cursor.execute(sql, prepare=False)


def submit(
    *,
    assignment_id: int,
    item_id: int,
    swapped: bool,
    kind: str,
    label: dict,
    time_spent_ms: int | None,
    request_id: str,
    gold_correct: bool | None,
    now: datetime,
) -> int | None:
    """Store the label of a live lease in one statement (autocommit or the caller's
    transaction); the annotation's id, or None when the lease is no longer as read."""
    params = {
        "assignment": assignment_id,
        "item": item_id,
        "swapped": swapped,
        "kind": kind,
        "label": json.dumps(label),
        "time_spent_ms": time_spent_ms,
        "request_id": request_id,
        "gold_correct": gold_correct,
        "now": now,
    }
    with _statements() as cursor:
        cursor.execute(SUBMIT, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


@contextmanager
def _statements():
    """A cursor for the statements above: on PostgreSQL one that binds on the server, so that
    they are prepared once per connection (settings: DB_PREPARED_STATEMENTS) instead of planned
    on every request; Django's usual cursor binds in the client and prepares nothing. Elsewhere
    Django's cursor. Wrapped as
    Django wraps its own (queries logged and counted)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        cursor = _LoggedStatement(raw, connection)
    else:
        cursor = connection.make_cursor(raw)
    with cursor:
        yield cursor


class _LoggedStatement(CursorDebugWrapper):
    """Django's debug cursor logs the query text of a client-binding cursor; this one has $n
    placeholders there, so the values are put in as Django does with server-side binding."""

    def execute(self, sql, params=None):
        with self.debug_sql(self.db.ops.compose_sql(sql, params)):
            return CursorWrapper.execute(self, sql, params)


# Reads of the request path, in SQL that SQLite runs too -----------------------------------------


class _Rows:
    """Model instances from the columns of a raw row, through the fields' own converters (JSON
    decoded, SQLite's datetimes and booleans), as the ORM would build them."""

    def __init__(self, model, alias: str):
        self.model = model
        self.fields = model._meta.concrete_fields
        self.names = [field.attname for field in self.fields]
        self.columns = ", ".join(f'{alias}."{field.column}"' for field in self.fields)
        self.alias = alias

        self._converters: dict[str, list] = {}

    def load(self, values) -> object:
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = self._converters[connection.vendor] = [
                (field.get_col(self.alias), self._converters_of(field)) for field in self.fields
            ]
        converted = []
        for (col, functions), value in zip(converters, values, strict=True):
            for function in functions:
                value = function(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.names, converted)

    def _converters_of(self, field) -> list:
        col = field.get_col(self.alias)
        return connection.ops.get_db_converters(col) + field.get_db_converters(connection)


_assignments = _Rows(Assignment, "a")
_items = _Rows(Item, "i")
_projects = _Rows(Project, "p")

_PROJECT_FOR_MEMBER = f"""
SELECT {_projects.columns},
       (SELECT m.role FROM annotate_membership m
        WHERE m.project_id = p.id AND m.user_id = %s LIMIT 1)
FROM annotate_project p WHERE p.slug = %s
"""

_ASSIGNMENT_FOR_MEMBER = f"""
SELECT {_assignments.columns}, {_items.columns}, {_projects.columns}
FROM annotate_assignment a
JOIN annotate_item i ON i.id = a.item_id
JOIN annotate_project p ON p.id = i.project_id
WHERE a.id = %s AND a.annotator_id = %s
"""
_STILL_A_MEMBER = """
  AND EXISTS (SELECT 1 FROM annotate_membership m WHERE m.project_id = p.id AND m.user_id = %s)
"""


def project_with_role(*, slug: str, user_id: int) -> tuple[Project, str | None] | None:
    """The project of this slug and the user's role in it (None: not a member); None when
    there is no such project."""
    with _statements() as cursor:
        cursor.execute(_PROJECT_FOR_MEMBER, [user_id, slug])
        row = cursor.fetchone()
    if row is None:
        return None
    return _projects.load(row[:-1]), row[-1]


def assignment_with_item(*, pk: int, user_id: int, member: bool) -> Assignment | None:
    """The user's assignment with its item and project; with `member`, only while the user is
    still in the project."""
    sql, params = _ASSIGNMENT_FOR_MEMBER, [pk, user_id]
    if member:
        sql, params = sql + _STILL_A_MEMBER, [*params, user_id]
    with _statements() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    cut, end = len(_assignments.fields), len(_assignments.fields) + len(_items.fields)
    assignment, item = _assignments.load(row[:cut]), _items.load(row[cut:end])
    item.project = _projects.load(row[end:])
    assignment.item = item
    return assignment
