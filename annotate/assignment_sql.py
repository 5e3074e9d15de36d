"""The assignment engine's request path on PostgreSQL: a lease and a submission are one SQL
statement each, instead of an ORM query per step.

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
from datetime import datetime

from django.db import connection

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
    SELECT c.id, %(annotator)s, 'leased', %(swapped)s,
           coalesce((SELECT jsonb_agg(r.value -> 'id' ORDER BY r.n * %(direction)s)
                     FROM jsonb_array_elements(c.responses) WITH ORDINALITY AS r (value, n)),
                    '[]'),
           '', '', %(now)s, %(expires)s
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
      AND i.gold_label IS NULL
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
        gold_correct = coalesce(%(gold_correct)s, a.gold_correct)
    WHERE a.id = %(assignment)s AND a.status = 'leased' AND a.swapped = %(swapped)s
      AND EXISTS (SELECT FROM item)
    RETURNING a.id, a.item_id, a.annotator_id
),
stored AS (
    INSERT INTO annotate_annotation
        (item_id, source, annotator_id, assignment_id, kind, label, time_spent_ms, origin,
         judge_model, prompt_version, raw_output, created_at)
    SELECT d.item_id, 'human', d.annotator_id, d.id, %(kind)s, %(label)s, %(time_spent_ms)s,
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


def lease(
    *,
    project_id: int,
    annotator_id: int,
    gold: bool,
    overlap: int,
    swapped: bool,
    now: datetime,
    expires: datetime,
) -> tuple | None:
    """Lock the annotator's membership, then run the lease statement; its row or None.

    Runs inside the caller's transaction. The lock is its own statement: the lease statement
    then starts after whoever held it committed, and sees their lease (a double click gets one).
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
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT FROM annotate_membership WHERE project_id = %s AND user_id = %s "
            "FOR NO KEY UPDATE",
            [project_id, annotator_id],
        )
        cursor.execute(LEASE_GOLD if gold else LEASE_REGULAR, params)
        return cursor.fetchone()


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
    with connection.cursor() as cursor:
        cursor.execute(SUBMIT, params)
        row = cursor.fetchone()
    return None if row is None else row[0]
