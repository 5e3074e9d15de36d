"""Reads of the judges app: a project's judges and runs, and a run's numbers, for the pages and
the API alike (run_progress is the one place those numbers are computed)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from annotate.models import Item, Judge, Project

from .models import JudgeRun, Judgment, Verdict

# Failures listed on a run's page and in its API answer, newest first.
FAILURES_SHOWN = 20
# How the runner starts the error of a reply the kind could not parse (judges/runner.py).
UNPARSEABLE = "unparseable reply"


def judges_for(project: Project) -> QuerySet[Judge]:
    return Judge.objects.filter(project=project).prefetch_related("members").order_by("name")


def judge_or_404(project: Project, pk: int | None) -> Judge:
    """The project's judge `pk`; Http404 (pages and API alike) when the project has none."""
    judge = Judge.objects.filter(project=project, pk=pk).prefetch_related("members").first()
    if pk is None or judge is None:
        raise Http404("No such judge.")
    return judge


def judge_runs_for(project: Project) -> QuerySet[JudgeRun]:
    """A project's runs, newest first, with their judges and who started them."""
    return (
        JudgeRun.objects.filter(project=project)
        .select_related("created_by")
        .prefetch_related("judges")
    )


def judge_run_or_404(project: Project, pk: int | None) -> JudgeRun:
    """The project's judge run `pk`; Http404 when the project has none."""
    run = (
        JudgeRun.objects.filter(project=project, pk=pk)
        .select_related("project", "created_by")
        .prefetch_related("judges")
        .first()
    )
    if pk is None or run is None:
        raise Http404("No such judge run.")
    return run


def preview_item(project: Project, external_id: str = "") -> Item | None:
    """The item a preview renders: the one named, else the project's first."""
    items = Item.objects.filter(project=project).select_related("project").order_by("pk")
    if external_id:
        return items.filter(external_id=external_id).first()
    return items.first()


def run_progress(run: JudgeRun) -> dict:
    """Everything a run's page and API answer show: passes by status, verdicts by status,
    throughput, tokens, money per judge against its budget, parse failures, last failures."""
    passes = run.judgments.aggregate(
        done=Count("id", filter=Q(status=Judgment.Status.DONE)),
        failed=Count("id", filter=Q(status=Judgment.Status.FAILED)),
        pending=Count("id", filter=Q(status=Judgment.Status.PENDING)),
        unparseable=Count(
            "id", filter=Q(status=Judgment.Status.FAILED, error__startswith=UNPARSEABLE)
        ),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        cost_usd=Sum("cost_usd"),
    )
    finished = passes["done"] + passes["failed"]
    verdicts = dict(
        run.verdicts.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    return {
        "status": run.status,
        "items": run.items,
        "passes_total": run.passes_total,
        "passes_done": passes["done"],
        "passes_failed": passes["failed"],
        "passes_pending": passes["pending"],
        "percent": round(100 * finished / run.passes_total) if run.passes_total else 100,
        "verdicts": {status: verdicts.get(status, 0) for status in Verdict.Status.values},
        "judgments_per_s": _rate(run, finished),
        "tokens_in": passes["tokens_in"] or 0,
        "tokens_out": passes["tokens_out"] or 0,
        "cost_usd": passes["cost_usd"] or Decimal(0),
        "parse_failure_rate": passes["unparseable"] / finished if finished else None,
        "budgets": _budgets(run),
        "failures": _failures(run),
    }


def _rate(run: JudgeRun, finished: int) -> float | None:
    if run.started_at is None:
        return None
    seconds = ((run.finished_at or timezone.now()) - run.started_at).total_seconds()
    return finished / seconds if seconds > 0 else None


def _budgets(run: JudgeRun) -> list[dict]:
    """Each judge of the run: what this run cost it, and its budget's state now."""
    spent_here = dict(
        run.judgments.values_list("judge").annotate(c=Sum("cost_usd")).values_list("judge", "c")
    )
    return [
        {
            "judge": judge.pk,
            "name": judge.name,
            "run_cost_usd": spent_here.get(judge.pk) or Decimal(0),
            "budget_usd": judge.budget_usd,
            "spent_usd": judge.spent_usd,
            "reserved_usd": judge.reserved_usd,
            "left_usd": budget_left(judge),
        }
        for judge in sorted(run.judges.all(), key=lambda j: j.name)
    ]


def _failures(run: JudgeRun) -> list[dict]:
    rows = (
        run.judgments.filter(status=Judgment.Status.FAILED)
        .select_related("item", "judge")
        .only("pk", "pass_index", "error", "finished_at", "item__external_id", "judge__name")
        .order_by(F("finished_at").desc(nulls_last=True), "-pk")[:FAILURES_SHOWN]
    )
    return [
        {
            "id": j.pk,
            "item": j.item.external_id,
            "judge": j.judge.name,
            "pass_index": j.pass_index,
            "error": j.error,
            "finished_at": j.finished_at,
        }
        for j in rows
    ]


def budget_left(judge: Judge) -> Decimal:
    """What the judge may still spend: its budget less what it spent and what calls hold."""
    return max(judge.budget_usd - judge.spent_usd - judge.reserved_usd, Decimal(0))
