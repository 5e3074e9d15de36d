"""The work of a judge run, as one Celery task runs it (judges.run_work).

A worker (one task of the run) loops until the run has no pending pass left:
1. claim a batch of pending passes of its queue's judges: `claimed_until` leases them to this
   worker (SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's write lock serialises);
2. lease call slots (judges/limits.py) and run each pass from a thread per slot; or, for a
   backend with batch_size > 1 (a reward model), a batch at a time in this thread;
3. each pass: rate window, budget reservation of its worst case, the call, the kind's parser
   (an unparseable reply is asked once more, then kept as failed with its raw text), the real
   cost settled, the row written only if this worker still holds it;
4. when every pass of an item is finished, its Verdict (and for an agreed one, the Annotation)
   is written in one transaction, at most once (unique per item, judge and prompt version).
A run with purpose "tags" asks for the prompt's tags instead (judges/tags.py: its prompt and
parser in place of the kind's, one pass per item) and writes PromptTags in place of verdicts.

Invariants: a pass is written at most once (the unique Judgment row, updated only while
claimed by its writer); money is reserved before a call and settled after it, so the budget is
never exceeded; a transient error puts the pass back with a backoff, a permanent one fails the
run. A killed worker loses only its calls in flight: their leases run out and another worker (or
the same one restarted: judges/signals.py) claims them again.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from annotate.kinds import KindError, get_kind
from annotate.models import Annotation, Item, Judge

from . import limits, prompts, tags
from .clients import JudgeError, Pass, Reply, Settings, client_class
from .models import JudgeRun, Judgment, PromptTags, Verdict
from .signals import run_finished, verdicts_written

logger = logging.getLogger(__name__)


class RunStopped(Exception):
    """The run was cancelled, failed or ran out of budget: this worker stops."""


def run_work(run_id: int, queue_name: str, worker: str = "") -> str:
    """Judge the run's pending passes whose backend runs on `queue_name`; returns the run's
    status when this worker is done."""
    worker = worker or f"{socket.gethostname()}:{threading.get_ident()}"
    holder = f"{worker}:{random.getrandbits(32):08x}"
    run = JudgeRun.objects.filter(pk=run_id).first()
    if run is None or run.finished:
        return run.status if run else "gone"
    JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.PENDING).update(
        status=JudgeRun.Status.RUNNING, started_at=timezone.now()
    )
    judges = [
        j for j in run.judges.exclude(backend="jury") if client_class(j.backend).queue == queue_name
    ]
    try:
        for judge in judges:
            _Worker(run, judge, holder).work()
    except RunStopped:
        pass
    return finish_if_done(run_id)


def finish_if_done(run_id: int) -> str:
    """Mark the run done when no pass is pending, after writing any verdict still missing."""
    run = JudgeRun.objects.get(pk=run_id)
    if run.finished or run.judgments.filter(status=Judgment.Status.PENDING).exists():
        return run.status
    if run.purpose == JudgeRun.Purpose.TAGS:
        # Tags a worker did not write (it died between a pass and its tags).
        write_tags(run, run.judgments.filter(status=Judgment.Status.DONE))
        return _mark_done(run)
    # Verdicts a worker did not write (it died between a pass and its verdict): only for the
    # (item, judge, version) that have none, then the juries' likewise.
    judged = Verdict.objects.filter(
        item_id=OuterRef("item_id"),
        judge_id=OuterRef("judge_id"),
        prompt_version=OuterRef("prompt_version"),
    )
    missing = (
        run.judgments.exclude(Exists(judged))
        .values_list("item_id", "judge_id", "prompt_version")
        .distinct()
    )
    judges = {j.pk: j for j in run.judges.all()}
    by_judge: dict[int, set] = {}
    for item_id, judge_id, version in missing:
        by_judge.setdefault(judge_id, set()).add((item_id, version))
    for judge_id, keys in by_judge.items():
        write_verdicts(run, judges[judge_id], keys)
    kind = get_kind(run.project.kind)
    for jury in (j for j in judges.values() if j.backend == "jury"):
        have = Verdict.objects.filter(judge=jury, prompt_version=prompts.version(jury, kind))
        for item_id in (
            run.judgments.filter(judge__in=jury.members.all())
            .exclude(item_id__in=have.values("item_id"))
            .values_list("item_id", flat=True)
            .distinct()
        ):
            write_jury_verdict(run, item_id, jury)
    return _mark_done(run)


def _mark_done(run: JudgeRun) -> str:
    finished = JudgeRun.objects.filter(pk=run.pk, status=JudgeRun.Status.RUNNING).update(
        status=JudgeRun.Status.DONE, finished_at=timezone.now()
    )
    if finished:
        # Once, by the worker that finished it: the router reads the new verdicts.
        run_finished.send(sender=JudgeRun, run=run)
    return JudgeRun.objects.get(pk=run.pk).status


@dataclass
class _Task:
    judgment: Judgment
    item: Item
    call: Pass | None = None
    reserved: Decimal = Decimal(0)  # set aside for the first call, before it is handed out


@dataclass
class _Result:
    """What a thread hands back: the replies, or the error, or nothing (skipped: the run
    stopped before it was sent). The main thread writes it."""

    task: _Task
    replies: list[Reply] = field(default_factory=list)
    label: dict | None = None
    unparsed: str = ""  # why the last reply held no label
    error: JudgeError | None = None
    latency: float = 0.0
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    skipped: bool = False


# Judgment fields a finished pass writes.
FINISHED_FIELDS = [
    "status", "label", "error", "raw_output", "order", "response_model", "tokens_in",
    "tokens_out", "cost_usd", "latency_ms", "attempts", "extra", "finished_at", "claimed_until",
]  # fmt: skip


def _write_finished(rows: list[Judgment], holder: str) -> None:
    """Write finished passes, each only while `holder` still has it: one statement run for
    many rows. Django's bulk_update builds a CASE per field and row in Python, which took 40%
    of a judge worker's CPU; executemany of one prepared UPDATE does the same in the driver."""
    if not rows:
        return
    fields = [Judgment._meta.get_field(name) for name in FINISHED_FIELDS]
    table = connection.ops.quote_name(Judgment._meta.db_table)
    columns = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    sql = f"UPDATE {table} SET {columns} WHERE id = %s AND claimed_by = %s AND status = %s"
    params = [
        [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
        + [row.pk, holder, Judgment.Status.PENDING]
        for row in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


class _Worker:
    """One judge's passes of one run, in this process. The threads only call the backend and
    parse; this thread claims, builds and reserves a batch at a time, and writes the results
    a batch at a time (one UPDATE per batch, verdicts in bulk): the database work per pass is a
    fraction of a query, whatever the concurrency."""

    def __init__(self, run: JudgeRun, judge: Judge, holder: str):
        self.run, self.judge, self.holder = run, judge, holder
        self.kind = get_kind(run.project.kind)
        self.tagging = run.purpose == JudgeRun.Purpose.TAGS
        # Renewed at each heartbeat: it must outlast a heartbeat interval and a reward model batch.
        self.lease_s = max(settings.JUDGES_LEASE_S, settings.JUDGES_HEARTBEAT_S * 3)
        cls = client_class(judge.backend)
        self.client = cls(_settings(judge))
        self.priced = cls.priced
        self.batch_size = cls.batch_size
        self.stop: str | None = None
        # Set when a call's worst case no longer fits the budget: nothing more is claimed, the
        # calls already paid for are finished, then the run fails with this message.
        self.budget_reached: str | None = None
        self.last_beat = 0.0
        self.results: queue.Queue[_Result] = queue.Queue()

    def work(self) -> None:
        limits.charge_dead_reservations(self.judge.pk)
        try:
            if self.batch_size > 1:
                self._work_batches()
            else:
                self._work_threads()
        finally:
            self._flush()
            self.client.close()
            limits.release_slots(self.judge.pk, self.holder)
            Judgment.objects.filter(
                run=self.run, claimed_by=self.holder, status=Judgment.Status.PENDING
            ).update(claimed_by="", claimed_until=None)
        if self.stop:
            raise RunStopped(self.stop)

    # Feeding ---------------------------------------------------------------------------------

    def _work_threads(self) -> None:
        # A fair share of the judge's slots to start with, then at each heartbeat as many more
        # as are free (a peer finished or died): concurrency stays bounded across all workers.
        share = -(-self.judge.max_concurrency // max(settings.JUDGES_TASKS_PER_RUN, 1))
        tasks: queue.Queue[_Task | None] = queue.Queue()
        threads: list[threading.Thread] = []
        self._beat()
        self._grow(threads, tasks, share)
        try:
            while not self.stop:
                if self._beat():
                    self._grow(threads, tasks, self.judge.max_concurrency)
                self._flush()
                if not threads:
                    if not self._pending_left():
                        break
                    time.sleep(0.5)
                    continue
                if tasks.qsize() >= len(threads):
                    time.sleep(0.01)
                    continue
                if self.budget_reached:
                    if tasks.unfinished_tasks == 0 and self.results.empty():
                        self._fail_run(self.budget_reached)
                    time.sleep(0.05)
                    continue
                claimed = self._plan(self._claim(len(threads) * 2))
                for task in claimed:
                    tasks.put(task)
                if not claimed:
                    idle = tasks.unfinished_tasks == 0 and self.results.empty()
                    if idle and not self._pending_left():
                        break
                    time.sleep(0.05)
        finally:
            for _ in threads:
                tasks.put(None)
            for thread in threads:
                thread.join()

    def _grow(self, threads: list, tasks: queue.Queue, wanted: int) -> None:
        held = limits.acquire_slots(self.judge, self.holder, wanted, self.lease_s)
        while len(threads) < held:
            name = f"judge-{self.judge.pk}-{len(threads)}"
            thread = threading.Thread(target=self._thread, args=(tasks,), name=name)
            thread.start()
            threads.append(thread)

    def _thread(self, tasks: queue.Queue) -> None:
        try:
            while (task := tasks.get()) is not None:
                try:
                    self.results.put(self._call(task))
                except Exception as error:  # a bug must not lose the pass or its reservation
                    logger.exception("judge %s: pass %s", self.judge.pk, task.judgment.pk)
                    failure = JudgeError(f"internal error: {error!r}", permanent=False)
                    self.results.put(_Result(task, error=failure, reserved=task.reserved))
                finally:
                    tasks.task_done()
            tasks.task_done()
        finally:
            connection.close()

    def _work_batches(self) -> None:
        while not self.stop:
            self._beat()
            if self.budget_reached:
                self._fail_run(self.budget_reached)
                return
            claimed = self._plan(self._claim(self.batch_size))
            if not claimed:
                if not self._pending_left():
                    return
                time.sleep(0.5)
                continue
            started = time.monotonic()
            replies = self.client.judge_many([t.call for t in claimed], between=self._beat)
            latency = (time.monotonic() - started) / len(claimed)
            for task, reply in zip(claimed, replies, strict=True):
                if isinstance(reply, JudgeError):
                    self.results.put(_Result(task, error=reply, latency=latency))
                else:
                    result = _Result(task, [reply], latency=latency)
                    self._parse(result, reply)
                    self.results.put(result)
            self._flush()

    def _claim(self, n: int) -> list[_Task]:
        now = timezone.now()
        free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        due = Q(not_before__isnull=True) | Q(not_before__lte=now)
        with transaction.atomic():
            ids = list(
                Judgment.objects.select_for_update(skip_locked=True)
                .filter(free, due, run=self.run, judge=self.judge, status=Judgment.Status.PENDING)
                .order_by("id")
                .values_list("pk", flat=True)[:n]
            )
            if ids:
                Judgment.objects.filter(pk__in=ids).update(
                    claimed_by=self.holder, claimed_until=now + timedelta(seconds=self.lease_s)
                )
        rows = list(Judgment.objects.filter(pk__in=ids).order_by("id"))
        items = Item.objects.select_related("project").in_bulk([r.item_id for r in rows])
        return [_Task(r, items[r.item_id]) for r in rows]

    def _plan(self, claimed: list[_Task]) -> list[_Task]:
        """Build each pass's call and set aside its worst-case cost, for the batch at once;
        near the end of the budget one by one, and what does not fit is given back."""
        for task in claimed:
            try:
                if self.tagging:
                    task.call = tags.build(task.item)
                else:
                    task.call = prompts.build(self.judge, task.item, task.judgment.pass_index)
            except prompts.PromptError as error:
                self._fail_run(f"{self.judge.name}: {error}")
                self._give_back(claimed)
                return []
        if not self.priced or not claimed:
            return claimed
        worst = [
            limits.worst_case_cost(self.judge, t.call.messages, t.call.schema) for t in claimed
        ]
        if limits.reserve(self.judge.pk, sum(worst, Decimal(0))):
            for task, amount in zip(claimed, worst, strict=True):
                task.reserved = amount
            return claimed
        for at, (task, amount) in enumerate(zip(claimed, worst, strict=True)):
            if not limits.reserve(self.judge.pk, amount):
                self._give_back(claimed[at:])
                self._out_of_budget()
                return claimed[:at]
            task.reserved = amount
        return claimed

    def _give_back(self, tasks: list[_Task]) -> None:
        Judgment.objects.filter(
            pk__in=[t.judgment.pk for t in tasks], claimed_by=self.holder
        ).update(claimed_by="", claimed_until=None)

    def _pending_left(self) -> bool:
        return Judgment.objects.filter(
            run=self.run, judge=self.judge, status=Judgment.Status.PENDING
        ).exists()

    def _beat(self) -> bool:
        """Every few seconds: extend this worker's leases, and stop if the run did. Whether it
        beat (the caller then leases free slots, which also renews the ones it holds)."""
        if time.monotonic() - self.last_beat < settings.JUDGES_HEARTBEAT_S:
            return False
        self.last_beat = time.monotonic()
        now = timezone.now()
        JudgeRun.objects.filter(pk=self.run.pk).update(heartbeat_at=now)
        Judgment.objects.filter(
            run=self.run, claimed_by=self.holder, status=Judgment.Status.PENDING
        ).update(claimed_until=now + timedelta(seconds=self.lease_s))
        status = JudgeRun.objects.filter(pk=self.run.pk).values_list("status", flat=True).first()
        if status not in JudgeRun.ACTIVE:
            self.stop = f"the run is {status}"
        return True

    # One pass, in a thread: no database but the rate window and a retry's reservation ---------

    def _call(self, task: _Task) -> _Result:
        result = _Result(task, reserved=task.reserved)
        if self.stop:
            result.skipped = True
            return result
        p = task.call
        started = time.monotonic()
        try:
            for attempt in range(2):  # a reply that does not parse is asked once more
                if attempt:
                    worst = limits.worst_case_cost(self.judge, p.messages, p.schema)
                    if self.priced and not limits.reserve(self.judge.pk, worst):
                        break  # no budget to ask again: kept as unparseable
                    result.reserved += worst if self.priced else 0
                self._wait_rate(limits.input_tokens_bound(p.messages) // 4 + self.judge.max_tokens)
                reply = self.client.judge(p)
                result.replies.append(reply)
                if self.priced:
                    result.spent += limits.cost(self.judge, reply.tokens_in, reply.tokens_out)
                if self._parse(result, reply):
                    break
        except JudgeError as error:
            result.error = error
            if error.permanent:
                # The other threads send nothing more; the flush fails the run with the message.
                self.stop = self.stop or f"{self.judge.name}: {error.message}"
        result.latency = time.monotonic() - started
        return result

    def _parse(self, result: _Result, reply: Reply) -> bool:
        """The reply's label into `result` (or why it has none); whether it had one."""
        try:
            result.label, result.unparsed = self._label(reply, result.task), ""
        except KindError as error:
            result.label, result.unparsed = None, str(error)
        return result.label is not None

    def _label(self, reply: Reply, task: _Task) -> dict:
        if self.tagging:
            return tags.parse(reply.text)
        p, responses = task.call, task.item.responses
        label = self.kind.parse_judge_output(reply.text, p.shown, p.config)
        label = self.kind.judge_label_to_item(label, p.shown, responses)
        return self.kind.clean_label(label, responses, p.config)

    def _wait_rate(self, tokens: int) -> None:
        while (wait := limits.take_rate(self.judge, tokens)) > 0:
            if self.stop:
                raise JudgeError("the run stopped", permanent=False)
            time.sleep(min(wait, 5.0))

    # Writing, a batch at a time, in this thread -----------------------------------------------

    def _flush(self) -> None:
        batch: list[_Result] = []
        while True:
            try:
                batch.append(self.results.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        limits.settle(
            self.judge.pk,
            sum((r.reserved for r in batch), Decimal(0)),
            sum((r.spent for r in batch), Decimal(0)),
        )
        finished = [self._finished(r) for r in batch if not r.skipped and r.error is None]
        _write_finished(finished, self.holder)
        self._give_back([r.task for r in batch if r.skipped])
        for r in batch:
            if r.error is not None:
                self._error(r.task.judgment, r.error)
        if self.tagging:
            write_tags(self.run, [j for j in finished if j.status == Judgment.Status.DONE])
        else:
            write_verdicts(self.run, self.judge, {(j.item_id, j.prompt_version) for j in finished})

    def _finished(self, r: _Result) -> Judgment:
        j, last = r.task.judgment, r.replies[-1]
        j.status = Judgment.Status.DONE if r.label is not None else Judgment.Status.FAILED
        j.label = r.label
        j.error = "" if r.label is not None else f"unparseable reply: {r.unparsed}"
        j.raw_output = (
            last.text
            if len(r.replies) == 1
            else "\n\n---- retry ----\n\n".join(x.text for x in r.replies)
        )
        j.order = [x["id"] for x in r.task.call.shown]
        j.response_model = last.model
        j.tokens_in = sum(x.tokens_in for x in r.replies)
        j.tokens_out = sum(x.tokens_out for x in r.replies)
        j.cost_usd = r.spent
        j.latency_ms = round(r.latency * 1000)
        j.attempts += len(r.replies)
        j.extra = {**last.extra, "parse_attempts": len(r.replies)}
        j.finished_at = timezone.now()
        j.claimed_until = None
        return j

    def _error(self, j: Judgment, error: JudgeError) -> None:
        if error.permanent:
            Judgment.objects.filter(pk=j.pk, claimed_by=self.holder, status="pending").update(
                status=Judgment.Status.FAILED,
                error=error.message,
                attempts=j.attempts + 1,
                finished_at=timezone.now(),
            )
            self._fail_run(f"{self.judge.name}: {error.message}")
            return
        self._retry(j, error.message, error.retry_after)

    def _retry(self, j: Judgment, message: str, retry_after: float | None) -> None:
        attempts = j.attempts + 1
        if attempts >= settings.JUDGES_MAX_ATTEMPTS:
            Judgment.objects.filter(pk=j.pk, claimed_by=self.holder, status="pending").update(
                status=Judgment.Status.FAILED,
                attempts=attempts,
                finished_at=timezone.now(),
                error=f"gave up after {attempts} attempts: {message}",
            )
            write_verdicts(self.run, self.judge, {(j.item_id, j.prompt_version)})
            return
        backoff = retry_after if retry_after is not None else min(60.0, 2.0**attempts)
        backoff *= random.uniform(1.0, 1.25)
        Judgment.objects.filter(pk=j.pk, claimed_by=self.holder, status="pending").update(
            attempts=attempts,
            error=message,
            claimed_by="",
            claimed_until=None,
            not_before=timezone.now() + timedelta(seconds=backoff),
        )

    def _out_of_budget(self) -> None:
        judge = Judge.objects.get(pk=self.judge.pk)
        self.budget_reached = (
            f"{judge.name}: budget reached (spent ${judge.spent_usd:.4f} of ${judge.budget_usd:.2f}"
            f", ${judge.reserved_usd:.4f} reserved by calls in flight)"
        )

    def _fail_run(self, message: str) -> None:
        self.stop = message
        JudgeRun.objects.filter(pk=self.run.pk, status__in=JudgeRun.ACTIVE).update(
            status=JudgeRun.Status.FAILED, error=message, finished_at=timezone.now()
        )


def _settings(judge: Judge) -> Settings:
    import os

    return Settings(
        backend=judge.backend,
        model=judge.model_name,
        base_url=judge.base_url,
        api_key=os.environ.get(judge.api_key_env, "") if judge.api_key_env else "",
        temperature=judge.temperature,
        max_tokens=judge.max_tokens,
        timeout_s=judge.timeout_s,
        structured_output=judge.structured_output,
        options={"model_dir": _model_dir(judge), "tie_margin": judge.tie_margin},
    )


def _model_dir(judge: Judge) -> str:
    """The registered model's folder, from this judge's project only (None when gone)."""
    if judge.backend != "reward_model" or judge.reward_model_id is None:
        return ""
    from rewards.models import RewardModel

    model = RewardModel.objects.filter(pk=judge.reward_model_id, project=judge.project_id).first()
    return str(model.model_path) if model else ""


# Verdicts --------------------------------------------------------------------------------------


def write_tags(run: JudgeRun, passes) -> int:
    """PromptTags for finished tag passes that have none yet (another worker may have written
    some: the unique key leaves those alone). How many were written."""
    rows = [
        PromptTags(
            item_id=j.item_id,
            judge_id=j.judge_id,
            run=run,
            prompt_version=j.prompt_version,
            tags=j.label,
        )
        for j in passes
        if j.label
    ]
    return len(PromptTags.objects.bulk_create(rows, ignore_conflicts=True))


def write_verdicts(run: JudgeRun, judge: Judge, keys: set[tuple[int, str]]) -> int:
    """The judge's verdicts on the (item, prompt version) pairs whose passes are all finished
    and that have none yet, in bulk: agreed passes also write the Annotation. Then the verdicts
    of the juries it sits on in this run. How many were written."""
    if not keys:
        return 0
    kind = get_kind(run.project.kind)
    item_ids = {item_id for item_id, _ in keys}
    rows: dict[tuple[int, str], list[Judgment]] = {}
    for row in Judgment.objects.filter(judge=judge, item_id__in=item_ids).order_by("pass_index"):
        if (row.item_id, row.prompt_version) in keys:
            rows.setdefault((row.item_id, row.prompt_version), []).append(row)
    have = set(
        Verdict.objects.filter(judge=judge, item_id__in=item_ids).values_list(
            "item_id", "prompt_version"
        )
    )
    made = []
    for key, passes in rows.items():
        finished = len(passes) >= prompts.passes(judge, kind) and all(
            r.status != Judgment.Status.PENDING for r in passes
        )
        if finished and key not in have:
            made.append(_verdict_of(run, judge, kind, key, passes))
    written = _save_verdicts(run, made)
    if written:
        verdicts_written.send(sender=JudgeRun, run=run, item_ids=[v.item_id for v, _ in made])
    for jury in judge.juries.filter(runs=run) if written else []:
        for verdict, _ in made:
            write_jury_verdict(run, verdict.item_id, jury)
    return written


def _verdict_of(run, judge, kind, key, passes: list[Judgment]) -> tuple[Verdict, Annotation | None]:
    """The verdict the passes make (MT-bench's rule: they count only if they agree), and the
    Annotation an agreed one is exported as."""
    labels = [r.label for r in passes]
    if any(r.status == Judgment.Status.FAILED for r in passes):
        status, label = Verdict.Status.FAILED, None
    elif kind.judge_passes_agree(labels):
        status, label = Verdict.Status.AGREED, kind.judge_verdict(labels)
    else:
        status, label = Verdict.Status.INCONSISTENT, None
    item_id, version = key
    verdict = Verdict(
        run=run, item_id=item_id, judge=judge, prompt_version=version, status=status, label=label
    )
    if status != Verdict.Status.AGREED:
        return verdict, None
    raw = {str(r.pass_index): r.raw_output for r in passes}
    return verdict, _annotation(
        run,
        item_id,
        judge,
        version,
        label,
        judge_model=passes[0].response_model or judge.model_name,
        raw_output=json.dumps(raw, ensure_ascii=False),
        tokens_in=sum(r.tokens_in for r in passes),
        tokens_out=sum(r.tokens_out for r in passes),
        cost_usd=sum((r.cost_usd for r in passes), Decimal(0)),
    )


def write_jury_verdict(run: JudgeRun, item_id: int, jury: Judge) -> Verdict | None:
    """A jury's verdict once each member has one: the kind's aggregate of the agreed ones,
    with its agreement; split evenly (or no member agreed) → inconsistent."""
    kind = get_kind(run.project.kind)
    members = list(jury.members.all())
    versions = {m.pk: prompts.version(m, kind) for m in members}
    verdicts = [
        v
        for v in Verdict.objects.filter(item_id=item_id, judge__in=members)
        if v.prompt_version == versions[v.judge_id]
    ]
    if len(verdicts) < len(members):
        return None
    item = Item.objects.select_related("project").get(pk=item_id)
    labels = [v.label for v in verdicts if v.status == Verdict.Status.AGREED]
    label, agreement = None, None
    if labels:
        answer, agreement = kind.aggregate(labels, item.responses, item.project.config)
        label = kind.label_from_aggregate(answer, item.responses, item.project.config)
    status = Verdict.Status.AGREED if label is not None else Verdict.Status.INCONSISTENT
    if not labels:
        status = Verdict.Status.FAILED if all(v.status == "failed" for v in verdicts) else status
    version = prompts.version(jury, kind)
    verdict = Verdict(
        run=run,
        item_id=item_id,
        judge=jury,
        prompt_version=version,
        status=status,
        label=label,
        agreement=agreement,
    )
    annotation = None
    if status == Verdict.Status.AGREED:
        models = ", ".join(sorted(m.model_name for m in members))
        annotation = _annotation(run, item_id, jury, version, label, judge_model=models)
    _save_verdicts(run, [(verdict, annotation)])


def _annotation(run, item_id, judge, version, label, **provenance) -> Annotation:
    return Annotation(
        item_id=item_id,
        source=Annotation.Source.JUDGE,
        judge=judge,
        kind=run.project.kind,
        label=label,
        prompt_version=version,
        origin=f"judge run {run.pk}",
        **provenance,
    )


def _save_verdicts(run, made: list[tuple[Verdict, Annotation | None]]) -> int:
    """Insert verdicts with their annotations in one transaction. Another worker may have
    written one of them meanwhile (the unique key says so): then each is tried on its own, and
    the ones already there are left alone."""
    if not made:
        return 0
    try:
        with transaction.atomic():
            annotations = [a for _, a in made if a is not None]
            Annotation.objects.bulk_create(annotations)
            for verdict, annotation in made:
                verdict.annotation = annotation
            Verdict.objects.bulk_create([v for v, _ in made])
        return len(made)
    except IntegrityError:
        if len(made) == 1:
            return 0  # written already, by another worker
        return sum(_save_verdicts(run, [one]) for one in made)
