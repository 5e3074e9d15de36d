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
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from annotate.kinds import KindError, get_kind
from annotate.models import Annotation, Item, Judge

from . import limits, prompts
from .clients import JudgeError, Reply, Settings, client_class
from .models import JudgeRun, Judgment, Verdict

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
    for item_id, judge_id, version in missing:
        write_verdict(run, item_id, judges[judge_id], version)
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
    JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.RUNNING).update(
        status=JudgeRun.Status.DONE, finished_at=timezone.now()
    )
    return JudgeRun.objects.get(pk=run_id).status


@dataclass
class _Task:
    judgment: Judgment
    item: Item


class _Worker:
    """One judge's passes of one run, in this process."""

    def __init__(self, run: JudgeRun, judge: Judge, holder: str):
        self.run, self.judge, self.holder = run, judge, holder
        self.kind = get_kind(run.project.kind)
        # Renewed at each heartbeat: it must outlast a heartbeat interval and a reward model batch.
        self.lease_s = max(settings.JUDGES_LEASE_S, settings.JUDGES_HEARTBEAT_S * 3)
        cls = client_class(judge.backend)
        self.client = cls(_settings(judge))
        self.priced = cls.priced
        self.batch_size = cls.batch_size
        self.stop: str | None = None
        self.last_beat = 0.0

    def work(self) -> None:
        limits.drop_dead_reservations(self.judge.pk)
        try:
            if self.batch_size > 1:
                self._work_batches()
            else:
                self._work_threads()
        finally:
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
                if not threads:
                    if not self._pending_left():
                        break
                    time.sleep(0.5)
                    continue
                if tasks.qsize() >= len(threads):
                    time.sleep(0.02)
                    continue
                claimed = self._claim(len(threads) * 2)
                for task in claimed:
                    tasks.put(task)
                if not claimed:
                    if tasks.unfinished_tasks == 0 and not self._pending_left():
                        break
                    time.sleep(0.2)
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
                    if not self.stop:
                        self._one(task)
                except Exception:
                    logger.exception("judge %s: pass %s", self.judge.pk, task.judgment.pk)
                    self._retry(task.judgment, "internal error (see the worker log)", None)
                finally:
                    tasks.task_done()
            tasks.task_done()
        finally:
            connection.close()

    def _work_batches(self) -> None:
        while not self.stop:
            self._beat()
            claimed = self._claim(self.batch_size)
            if not claimed:
                if not self._pending_left():
                    return
                time.sleep(0.5)
                continue
            built = [self._build(task) for task in claimed]
            ready = [(t, p) for t, p in zip(claimed, built, strict=True) if p is not None]
            started = time.monotonic()
            replies = self.client.judge_many([p for _, p in ready])
            latency = (time.monotonic() - started) / max(len(ready), 1)
            for (task, p), reply in zip(ready, replies, strict=True):
                if isinstance(reply, JudgeError):
                    self._error(task.judgment, reply)
                else:
                    self._store(task, p, [reply], latency, Decimal(0), Decimal(0))

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

    # One pass --------------------------------------------------------------------------------

    def _build(self, task: _Task):
        try:
            return prompts.build(self.judge, task.item, task.judgment.pass_index)
        except prompts.PromptError as error:
            self._fail_run(f"{self.judge.name}: {error}")
            return None

    def _one(self, task: _Task) -> None:
        p = self._build(task)
        if p is None:
            return
        replies: list[Reply] = []
        reserved = spent = Decimal(0)
        started = time.monotonic()
        try:
            for _ in range(2):  # a reply that does not parse is asked once more
                worst = limits.worst_case_cost(self.judge, p.messages, p.schema)
                self._wait_rate(limits.input_tokens_bound(p.messages) // 4 + self.judge.max_tokens)
                if self.priced and not limits.reserve(self.judge.pk, worst):
                    self._out_of_budget(task.judgment)
                    return
                reserved += worst if self.priced else 0
                reply = self.client.judge(p)
                replies.append(reply)
                spent += (
                    limits.cost(self.judge, reply.tokens_in, reply.tokens_out) if self.priced else 0
                )
                if self._parses(reply, p, task):
                    break
        except JudgeError as error:
            self._error(task.judgment, error)
            return
        finally:
            # Whatever happened, the reservation goes and what was spent is counted.
            limits.settle(self.judge.pk, reserved, spent)
        self._store(task, p, replies, time.monotonic() - started, spent, reserved)

    def _parses(self, reply: Reply, p, task: _Task) -> bool:
        try:
            self._label(reply, p, task)
            return True
        except KindError:
            return False

    def _label(self, reply: Reply, p, task: _Task) -> dict:
        label = self.kind.parse_judge_output(reply.text, p.shown, p.config)
        label = self.kind.judge_label_to_item(label, p.shown, task.item.responses)
        return self.kind.clean_label(label, task.item.responses, p.config)

    def _wait_rate(self, tokens: int) -> None:
        while (wait := limits.take_rate(self.judge, tokens)) > 0:
            if self.stop:
                raise JudgeError("the run stopped", permanent=False)
            time.sleep(min(wait, 5.0))

    def _store(self, task: _Task, p, replies: list[Reply], latency: float, spent, reserved) -> None:
        j = task.judgment
        last = replies[-1]
        try:
            label, error, status = self._label(last, p, task), "", Judgment.Status.DONE
        except KindError as e:
            label, error, status = None, f"unparseable reply: {e}", Judgment.Status.FAILED
        raw = (
            last.text
            if len(replies) == 1
            else "\n\n---- retry ----\n\n".join(r.text for r in replies)
        )
        written = Judgment.objects.filter(pk=j.pk, claimed_by=self.holder, status="pending").update(
            status=status,
            label=label,
            error=error,
            raw_output=raw,
            order=[r["id"] for r in p.shown],
            response_model=last.model,
            tokens_in=sum(r.tokens_in for r in replies),
            tokens_out=sum(r.tokens_out for r in replies),
            cost_usd=spent,
            latency_ms=round(latency * 1000),
            attempts=j.attempts + len(replies),
            extra={**last.extra, "parse_attempts": len(replies)},
            finished_at=timezone.now(),
            claimed_until=None,
        )
        if written:
            write_verdict(self.run, j.item_id, self.judge, j.prompt_version)

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
            write_verdict(self.run, j.item_id, self.judge, j.prompt_version)
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

    def _out_of_budget(self, j: Judgment) -> None:
        Judgment.objects.filter(pk=j.pk, claimed_by=self.holder).update(
            claimed_by="", claimed_until=None
        )
        judge = Judge.objects.get(pk=self.judge.pk)
        self._fail_run(
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


def write_verdict(run: JudgeRun, item_id: int, judge: Judge, version: str) -> Verdict | None:
    """The judge's verdict on the item once every pass is finished (None before, or when one
    exists): agreed passes also write the Annotation. Then the verdicts of juries it sits on."""
    kind = get_kind(run.project.kind)
    rows = list(
        Judgment.objects.filter(item_id=item_id, judge=judge, prompt_version=version).order_by(
            "pass_index"
        )
    )
    if len(rows) < prompts.passes(judge, kind) or any(r.status == "pending" for r in rows):
        return None
    labels = [r.label for r in rows]
    if any(r.status == Judgment.Status.FAILED for r in rows):
        status, label = Verdict.Status.FAILED, None
    elif kind.judge_passes_agree(labels):
        status, label = Verdict.Status.AGREED, kind.judge_verdict(labels)
    else:
        status, label = Verdict.Status.INCONSISTENT, None
    raw = {str(r.pass_index): r.raw_output for r in rows}
    verdict = _save_verdict(
        run,
        item_id,
        judge,
        version,
        status,
        label,
        None,
        provenance={
            "judge_model": rows[0].response_model or judge.model_name,
            "raw_output": json.dumps(raw, ensure_ascii=False),
            "tokens_in": sum(r.tokens_in for r in rows),
            "tokens_out": sum(r.tokens_out for r in rows),
            "cost_usd": sum((r.cost_usd for r in rows), Decimal(0)),
        },
    )
    for jury in judge.juries.filter(runs=run):
        write_jury_verdict(run, item_id, jury)
    return verdict


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
    return _save_verdict(
        run,
        item_id,
        jury,
        prompts.version(jury, kind),
        status,
        label,
        agreement,
        provenance={"judge_model": ", ".join(sorted(m.model_name for m in members))},
    )


def _save_verdict(
    run, item_id, judge, version, status, label, agreement, provenance
) -> Verdict | None:
    try:
        with transaction.atomic():
            verdict = Verdict.objects.create(
                run=run,
                item_id=item_id,
                judge=judge,
                prompt_version=version,
                status=status,
                label=label,
                agreement=agreement,
            )
            if status == Verdict.Status.AGREED:
                verdict.annotation = Annotation.objects.create(
                    item_id=item_id,
                    source=Annotation.Source.JUDGE,
                    judge=judge,
                    kind=run.project.kind,
                    label=label,
                    prompt_version=version,
                    origin=f"judge run {run.pk}",
                    **provenance,
                )
                verdict.save(update_fields=["annotation"])
    except IntegrityError:
        return None  # written already, by this or another worker
    return verdict
