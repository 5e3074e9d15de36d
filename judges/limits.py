"""The limits every worker shares, kept in the database (both PostgreSQL and SQLite), not in a
worker: call slots (max_concurrency), requests and tokens per minute, and the spend budget.

Each is one conditional UPDATE, so it holds with any number of web and Celery processes:
- budget: `reserved_usd += worst` only WHERE budget - spent - reserved >= worst; after the call,
  `reserved_usd -= worst, spent_usd += cost` (the real cost, from the usage the server reports).
  The worst case is an upper bound on the call's price (worst_case_cost), so the budget is never
  exceeded; its price is that calls near the end of a budget wait for others to settle.
- rate: a row per (judge, clock minute), incremented only WHERE it stays under both limits.
- slots: JudgeSlot rows leased to a holder until a time; a dead worker's slots free themselves.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from annotate.models import Judge

from .models import JudgeSlot, RateWindow

MICRO = Decimal("0.000001")
# Chat formatting tokens a message may add beyond its text (role markers, separators).
TOKENS_PER_MESSAGE = 8


# Budget ----------------------------------------------------------------------------------------


def cost(judge: Judge, tokens_in: int, tokens_out: int) -> Decimal:
    """What a call cost, from the tokens the server reported and the judge's prices per 1M."""
    total = (tokens_in * judge.price_in_per_mtok + tokens_out * judge.price_out_per_mtok) / 10**6
    return Decimal(total).quantize(MICRO, rounding=ROUND_CEILING)


def input_tokens_bound(messages: list[dict], schema: dict | None = None) -> int:
    """An upper bound on a prompt's tokens: a token covers at least one byte of UTF-8 (byte-level
    BPE), plus formatting per message and the schema some servers add to the prompt."""
    size = sum(len(m["content"].encode()) + TOKENS_PER_MESSAGE for m in messages)
    return size + (len(repr(schema).encode()) if schema else 0)


def worst_case_cost(judge: Judge, messages: list[dict], schema: dict | None) -> Decimal:
    return cost(judge, input_tokens_bound(messages, schema), judge.max_tokens)


def reserve(judge_id: int, amount: Decimal) -> bool:
    """Set `amount` aside from the judge's budget; False (nothing reserved) if it does not fit."""
    if amount <= 0:
        return True
    fits = Q(budget_usd__gte=F("spent_usd") + F("reserved_usd") + amount)
    return bool(
        Judge.objects.filter(fits, pk=judge_id).update(reserved_usd=F("reserved_usd") + amount)
    )


def settle(judge_id: int, reserved: Decimal, spent: Decimal) -> None:
    """A call is over: its reservation is released and what it really cost is spent."""
    if reserved <= 0 and spent <= 0:
        return
    Judge.objects.filter(pk=judge_id).update(
        reserved_usd=Greatest(F("reserved_usd") - reserved, Value(Decimal(0))),
        spent_usd=F("spent_usd") + spent,
    )


def charge_dead_reservations(judge_id: int) -> None:
    """Calls of a worker that died are never settled, yet the provider may have billed them:
    when no worker holds a live call slot of the judge, no call is in flight, so what is still
    reserved is counted as spent (at its worst case). The budget stays a hard limit; the
    accounting errs high by at most what those calls could have cost."""
    live = JudgeSlot.objects.filter(judge_id=judge_id, leased_until__gte=timezone.now())
    Judge.objects.filter(pk=judge_id, reserved_usd__gt=0).exclude(Exists(live)).update(
        spent_usd=F("spent_usd") + F("reserved_usd"), reserved_usd=0
    )


# Rate ------------------------------------------------------------------------------------------


def take_rate(judge: Judge, tokens: int) -> float:
    """Count one request of `tokens` in this minute's window; 0.0 when it fits, else the seconds
    to wait for the next window (nothing counted)."""
    rpm, tpm = judge.requests_per_minute, judge.tokens_per_minute
    if not rpm and not tpm:
        return 0.0
    now = time.time()
    minute = int(now // 60)
    fits = Q()
    if rpm:
        fits &= Q(requests__lt=rpm)
    if tpm:
        # A request over the whole limit alone still goes, in a window of its own.
        fits &= Q(tokens__lte=tpm - tokens) | Q(tokens=0)
    for _ in range(2):
        counted = RateWindow.objects.filter(fits, judge_id=judge.pk, minute=minute).update(
            requests=F("requests") + 1, tokens=F("tokens") + tokens
        )
        if counted:
            return 0.0
        if RateWindow.objects.filter(judge_id=judge.pk, minute=minute).exists():
            return (minute + 1) * 60 - now + 0.01
        try:
            with transaction.atomic():
                RateWindow.objects.create(judge_id=judge.pk, minute=minute)
            # Once a minute per judge: the windows before the last one count for nothing.
            RateWindow.objects.filter(judge_id=judge.pk, minute__lt=minute - 1).delete()
        except IntegrityError:
            pass  # another worker opened the window first: count in it
    return (minute + 1) * 60 - now + 0.01


# Slots -----------------------------------------------------------------------------------------


def acquire_slots(judge: Judge, holder: str, wanted: int, lease_s: float) -> int:
    """Lease up to `wanted` of the judge's call slots to `holder`; how many it got."""
    _ensure_slots(judge)
    now = timezone.now()
    with transaction.atomic():
        free = list(
            JudgeSlot.objects.select_for_update(skip_locked=True)
            .filter(judge=judge, number__lt=judge.max_concurrency)
            .filter(Q(holder="") | Q(leased_until__lt=now) | Q(holder=holder))
            .order_by("number")
            .values_list("pk", flat=True)[:wanted]
        )
        JudgeSlot.objects.filter(pk__in=free).update(
            holder=holder, leased_until=now + timedelta(seconds=lease_s)
        )
    return len(free)


def release_slots(judge_id: int, holder: str) -> None:
    JudgeSlot.objects.filter(judge_id=judge_id, holder=holder).update(holder="", leased_until=None)


def _ensure_slots(judge: Judge) -> None:
    have = JudgeSlot.objects.filter(judge=judge).count()
    if have < judge.max_concurrency:
        JudgeSlot.objects.bulk_create(
            [JudgeSlot(judge=judge, number=n) for n in range(have, judge.max_concurrency)],
            ignore_conflicts=True,
        )
