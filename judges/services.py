"""Writes of the judges app: configure judges, start, cancel and resume judge runs.

The work itself (claiming passes, calling backends, writing verdicts) is judges/runner.py, run by
the Celery task judges.run_work. Every function here that starts work enqueues on commit.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from annotate.kinds import get_kind
from annotate.models import Annotation, Item, Judge, Project
from annotate.selectors import metadata_field

from . import prompts, tags
from .clients import client_class
from .models import JudgeRun, Judgment

logger = logging.getLogger(__name__)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# Settings a form or the API may set, with the limits each must be within.
NUMBERS: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 2.0),
    "max_tokens": (int, 1, 200_000),
    "timeout_s": (float, 0.1, 3600.0),
    "max_concurrency": (int, 1, 1024),
    "requests_per_minute": (int, 1, 10**7),
    "tokens_per_minute": (int, 1, 10**10),
    "passes": (int, 1, 4),
    "tie_margin": (float, 0.0, 100.0),
}
MONEY = ("price_in_per_mtok", "price_out_per_mtok", "budget_usd")
TEXTS = ("name", "model_name", "base_url", "api_key_env", "system_prompt", "prompt_template")
FLAGS = ("use_reference", "active")
CHOICES = {"backend": Judge.Backend.values, "structured_output": Judge.StructuredOutput.values}
FIELDS = (*NUMBERS, *MONEY, *TEXTS, *FLAGS, *CHOICES, "reward_model_id", "members")


class ServiceError(ValueError):
    """Bad input for a judges service: the field at fault and why, in words for the user."""

    def __init__(self, message: str, field: str = "form"):
        super().__init__(message)
        self.message = message
        self.field = field


# Configure -------------------------------------------------------------------------------------


@transaction.atomic
def judge_save(*, project: Project, data: dict, judge: Judge | None = None) -> Judge:
    """Create a judge (judge=None) or change one from `data` (field → value, any subset of
    FIELDS when changing). Validates every field; ServiceError naming the first bad one."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ServiceError(f"unknown setting (allowed: {', '.join(FIELDS)})", unknown[0])
    judge = judge or Judge(project=project)
    members = data.get("members")
    for key, value in data.items():
        if key != "members":
            setattr(judge, key, _clean(key, value))
    _check(judge, project, members)
    judge.save()
    if members is not None:
        judge.members.set(members)
    return judge


def _clean(key: str, value):
    if key in NUMBERS:
        if value in (None, "") and key in ("requests_per_minute", "tokens_per_minute", "passes"):
            return None
        kind, low, high = NUMBERS[key]
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ServiceError(f"expected a number from {low:g} to {high:g}", key) from None
        if not low <= number <= high or isinstance(value, bool):
            raise ServiceError(f"must be from {low:g} to {high:g}, got {value}", key)
        return number
    if key in MONEY:
        try:
            money = Decimal(str(value))
        except (InvalidOperation, ValueError):
            raise ServiceError("expected an amount in US dollars", key) from None
        if not money.is_finite() or money < 0 or money >= 10**6:
            raise ServiceError("must be from 0 to 999,999.99", key)
        return money
    if key in FLAGS:
        if not isinstance(value, bool):
            raise ServiceError("expected true or false", key)
        return value
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise ServiceError(f"expected one of {', '.join(CHOICES[key])}", key)
        return value
    if key == "reward_model_id":
        return None if value in (None, "") else _clean_int(value, key)
    if not isinstance(value, str):
        raise ServiceError("expected text", key)
    return value.strip() if key not in ("system_prompt", "prompt_template") else value


def _clean_int(value, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ServiceError("expected a whole number", key) from None


def _check(judge: Judge, project: Project, members) -> None:
    kind = get_kind(project.kind)
    if not judge.name:
        raise ServiceError("a judge needs a name", "name")
    clash = Judge.objects.filter(project=project, name=judge.name).exclude(pk=judge.pk)
    if clash.exists():
        raise ServiceError(f"this project already has a judge named {judge.name!r}", "name")
    if judge.api_key_env and not ENV_NAME.match(judge.api_key_env):
        raise ServiceError(
            "the name of an environment variable (letters, digits, _), not the key itself",
            "api_key_env",
        )
    if judge.base_url:
        url = urlparse(judge.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ServiceError("expected an http:// or https:// URL", "base_url")
    if judge.backend in ("openai_compat", "anthropic") and not judge.model_name:
        raise ServiceError("name the model the endpoint serves", "model_name")
    if judge.backend == "reward_model":
        _check_reward_model(judge, project, kind)
    if judge.backend == "jury":
        _check_members(judge, project, members)
    prompts.check(*prompts.texts(judge, kind))
    if judge.backend in ("openai_compat", "anthropic"):
        try:
            kind.judge_schema([], project.config)
        except NotImplementedError as error:
            raise ServiceError(str(error), "backend") from None


def _check_reward_model(judge: Judge, project: Project, kind) -> None:
    from rewards.selectors import scoring_models_for

    if not kind.scores_responses:
        raise ServiceError(f"a reward model cannot judge {kind.name} items", "backend")
    # The registry of this project only: another project's model is not this admin's to use.
    model = scoring_models_for(project).filter(pk=judge.reward_model_id).first()
    if model is None:
        raise ServiceError(
            "choose a pairwise or listwise reward model registered in this project",
            "reward_model_id",
        )
    judge.model_name = judge.model_name or f"reward model v{model.version}"


def _check_members(judge: Judge, project: Project, members) -> None:
    members = list(members if members is not None else judge.members.all() if judge.pk else [])
    if len(members) < 2:
        raise ServiceError("a jury needs at least two member judges", "members")
    for member in members:
        if member.project_id != project.pk or member.backend == "jury" or member.pk == judge.pk:
            raise ServiceError(f"{member.name!r} cannot sit on this jury", "members")


def judge_preview(*, judge: Judge, item: Item) -> list[dict]:
    """The messages each pass of `item` would send: what the admin reads before running."""
    return [
        {"pass": i, "order": [r["id"] for r in p.shown], "messages": p.messages}
        for i in range(prompts.passes(judge, get_kind(item.project.kind)))
        for p in [prompts.build(judge, item, i)]
    ]


# Runs ------------------------------------------------------------------------------------------


@transaction.atomic
def run_start(
    *,
    project: Project,
    judges: list[Judge],
    selection: str,
    user=None,
    external_ids: list[str] | None = None,
    limit: int | None = None,
    metadata_filter: dict | None = None,
    purpose: str = JudgeRun.Purpose.LABEL,
) -> JudgeRun:
    """Plan a run: one Judgment per (item, judge, pass) not judged before under the judge's
    current prompt version, then enqueue the work. A jury brings its members. With purpose
    "tags" each item's prompt is tagged instead (judges/tags.py), in one pass."""
    if not judges:
        raise ServiceError("choose at least one judge", "judges")
    if purpose not in JudgeRun.Purpose.values:
        raise ServiceError(f"expected one of {', '.join(JudgeRun.Purpose.values)}", "purpose")
    if selection not in JudgeRun.Selection.values:
        raise ServiceError(f"expected one of {', '.join(JudgeRun.Selection.values)}", "selection")
    for judge in judges:
        if judge.project_id != project.pk:
            raise ServiceError(f"{judge.name!r} is not a judge of this project", "judges")
        if not judge.active:
            raise ServiceError(f"{judge.name!r} is switched off", "judges")
        if purpose == JudgeRun.Purpose.TAGS:
            _check_can_tag(judge)
    metadata_filter = clean_metadata_filter(metadata_filter)
    items = _select(project, selection, external_ids or [], limit, metadata_filter)
    run = JudgeRun.objects.create(
        project=project,
        created_by=user if user and user.is_authenticated else None,
        purpose=purpose,
        selection=selection,
        external_ids=external_ids or [],
        metadata_filter=metadata_filter,
        limit=limit,
    )
    callers = _callers(judges)
    run.judges.set({*judges, *callers})
    kind = get_kind(project.kind)
    item_ids = list(items.values_list("pk", flat=True))
    for judge in callers:
        _check_can_call(judge)
        if purpose == JudgeRun.Purpose.TAGS:
            version, n = tags.version(), 1
        else:
            version, n = prompts.version(judge, kind), prompts.passes(judge, kind)
        done = set(
            Judgment.objects.filter(
                judge=judge, prompt_version=version, item_id__in=item_ids
            ).values_list("item_id", "pass_index")
        )
        Judgment.objects.bulk_create(
            [
                Judgment(run=run, item_id=i, judge=judge, pass_index=p, prompt_version=version)
                for i in item_ids
                for p in range(n)
                if (i, p) not in done
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
    run.items = len(item_ids)
    run.passes_total = run.judgments.count()
    run.save(update_fields=["items", "passes_total"])
    transaction.on_commit(lambda: enqueue(run))
    return run


def _check_can_tag(judge: Judge) -> None:
    if judge.backend == Judge.Backend.JURY:
        raise ServiceError(f"{judge.name!r} is a jury: tag with one of its members", "judges")
    if not client_class(judge.backend).remote:
        raise ServiceError(f"{judge.name!r} cannot tag prompts: it is not an LLM", "judges")


def _callers(judges: list[Judge]) -> list[Judge]:
    """The judges that make calls: each judge, a jury's members instead of the jury."""
    out: dict[int, Judge] = {}
    for judge in judges:
        for caller in judge.members.all() if judge.backend == "jury" else [judge]:
            out[caller.pk] = caller
    return list(out.values())


def _check_can_call(judge: Judge) -> None:
    if judge.api_key_env and judge.api_key_env not in os.environ:
        logger.warning("judge %s: %s is not set in this process", judge.pk, judge.api_key_env)
    if client_class(judge.backend).priced and judge.spent_usd >= judge.budget_usd > 0:
        raise ServiceError(f"{judge.name!r} has spent its budget", "judges")


METADATA_FILTER_MAX = 10  # conditions in one run's metadata filter


def clean_metadata_filter(conditions: dict | None) -> dict:
    """A run's metadata filter: {path: value}, a path naming a metadata field ("domain", or
    "source.name" inside an object), a value text, a number or true/false that the item's
    field must equal. ServiceError (field "metadata_filter") naming what is wrong."""
    if conditions is None:
        return {}
    if not isinstance(conditions, dict):
        raise ServiceError("expected an object of field: value", "metadata_filter")
    if len(conditions) > METADATA_FILTER_MAX:
        raise ServiceError(f"at most {METADATA_FILTER_MAX} conditions", "metadata_filter")
    cleaned = {}
    for path, value in conditions.items():
        keys = path.split(".") if isinstance(path, str) else [""]
        if not all(key.strip() for key in keys):
            raise ServiceError(f"{path!r} is not a field name (a, or a.b)", "metadata_filter")
        if not isinstance(value, str | int | float | bool) or value != value:  # NaN
            raise ServiceError(
                f"{path}: a value must be text, a number, true or false", "metadata_filter"
            )
        cleaned[".".join(key.strip() for key in keys)] = value
    return cleaned


def _metadata_matches(items, conditions: dict):
    for k, (path, value) in enumerate(conditions.items()):
        field = metadata_field(path.split("."))
        items = items.alias(**{f"meta_{k}": field}).filter(**{f"meta_{k}": value})
    return items


def _select(
    project: Project,
    selection: str,
    external_ids: list[str],
    limit: int | None,
    metadata_filter: dict,
):
    items = _metadata_matches(Item.objects.filter(project=project), metadata_filter)
    if selection == JudgeRun.Selection.UNLABELED:
        items = items.exclude(Exists(Annotation.objects.filter(item=OuterRef("pk"))))
    elif selection == JudgeRun.Selection.HUMAN_LABELED:
        human = Annotation.objects.filter(item=OuterRef("pk"), source=Annotation.Source.HUMAN)
        items = items.filter(Exists(human))
    elif selection == JudgeRun.Selection.ROUTING:
        items = items.filter(
            route__in=[Item.Route.JUDGE, Item.Route.BOTH, Item.Route.PENDING],
            gold_label__isnull=True,
        )
    elif selection == JudgeRun.Selection.IDS:
        if not external_ids:
            raise ServiceError("list the items' external ids", "external_ids")
        items = items.filter(external_id__in=[str(i) for i in external_ids])
    items = items.order_by("pk")
    if limit is not None:
        if limit < 1:
            raise ServiceError("must be at least 1", "limit")
        items = items[:limit]
    return Item.objects.filter(pk__in=list(items.values_list("pk", flat=True))).order_by("pk")


def enqueue(run: JudgeRun) -> None:
    """One work task per queue the run's judges need (JUDGES_TASKS_PER_RUN on "judges")."""
    from .tasks import run_work

    queues = {client_class(j.backend).queue for j in run.judges.exclude(backend="jury")}
    for queue in sorted(queues):
        copies = settings.JUDGES_TASKS_PER_RUN if queue == "judges" else 1
        for _ in range(copies):
            run_work.apply_async(args=[run.pk, queue], queue=queue)


def run_cancel(*, run: JudgeRun) -> JudgeRun:
    """Stop a run: its workers stop at their next claim; what was judged stays."""
    JudgeRun.objects.filter(pk=run.pk, status__in=JudgeRun.ACTIVE).update(
        status=JudgeRun.Status.CANCELLED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def runs_resume_orphaned() -> list[int]:
    """Enqueue again the runs still active whose workers stopped beating: a worker that starts
    calls this (judges/signals.py). Their claimed passes are free again once the leases end."""
    cutoff = timezone.now() - timedelta(seconds=settings.JUDGES_HEARTBEAT_TIMEOUT)
    stale = JudgeRun.objects.filter(status__in=JudgeRun.ACTIVE).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    resumed = []
    for run in stale:
        logger.warning(
            "judge run %s: no heartbeat since %s, enqueued again", run.pk, run.heartbeat_at
        )
        enqueue(run)
        resumed.append(run.pk)
    return resumed
