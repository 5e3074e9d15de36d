"""Judge runs and what they produce.

A run (JudgeRun) asks one or more judges about a set of items. It is planned as Judgment rows,
one per (item, judge, pass, prompt version), created up front: that unique key is what makes a
pass judged at most once, whatever the number of workers, kills and restarts. Workers claim
pending rows with a lease (claimed_until); a row whose worker died is claimable again when its
lease has run out. When every pass of an item is finished, its Verdict is written: "agreed"
(the passes agree: an Annotation with source "judge" is written with it, which exports use),
"inconsistent" (position bias: kept with both raw outputs, never exported) or "failed".
A jury's verdict aggregates its members' agreed verdicts.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from annotate.models import Annotation, Item, Judge, Project


class JudgeRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Selection(models.TextChoices):
        UNLABELED = "unlabeled", "Items with no label yet"
        HUMAN_LABELED = "human_labeled", "Items with human labels (calibration)"
        ALL = "all", "All items"
        IDS = "ids", "Items by external id"
        ROUTING = "routing", "Items the router sent to judges or waits on"

    class Purpose(models.TextChoices):
        LABEL = "label", "Label the items"
        TAGS = "tags", "Tag the prompts (features for the learned router)"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judge_runs")
    judges = models.ManyToManyField(Judge, related_name="runs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.LABEL)
    selection = models.CharField(max_length=16, choices=Selection.choices)
    external_ids = models.JSONField(default=list, blank=True)
    # Only items whose metadata holds these values: {"domain": "math", "source.name": "x"}.
    metadata_filter = models.JSONField(default=dict, blank=True)
    limit = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    items = models.PositiveIntegerField(default=0)
    passes_total = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="judge_run_status_hb")]

    def __str__(self) -> str:
        return f"{self.project} judge run {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status not in self.ACTIVE


class Judgment(models.Model):
    """One pass: an item shown to a judge in one order, and what came back."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="judgments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="judgments")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="judgments")
    pass_index = models.PositiveSmallIntegerField(default=0)
    prompt_version = models.CharField(max_length=32)
    order = models.JSONField(default=list, help_text="Response ids in the order shown.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    claimed_by = models.CharField(max_length=255, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Backoff after an error.")
    attempts = models.PositiveSmallIntegerField(default=0)
    label = models.JSONField(null=True, blank=True, help_text="Parsed, item terms, cleaned.")
    raw_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    response_model = models.CharField(max_length=200, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "judge", "pass_index", "prompt_version"],
                name="judgment_once_per_pass",
            )
        ]
        indexes = [
            # What a worker claims next: only pending rows are in it.
            models.Index(
                fields=["run", "id"], name="judgment_pending_idx", condition=Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"pass {self.pass_index} of item {self.item_id} by judge {self.judge_id}"


class Verdict(models.Model):
    """A judge's answer about one item: its passes combined (or a jury's members)."""

    class Status(models.TextChoices):
        AGREED = "agreed"
        INCONSISTENT = "inconsistent"
        FAILED = "failed"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="verdicts")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="verdicts")
    prompt_version = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    label = models.JSONField(null=True, blank=True, help_text="Item terms; null unless agreed.")
    agreement = models.FloatField(null=True, blank=True, help_text="A jury's agreement.")
    annotation = models.OneToOneField(
        Annotation, null=True, blank=True, on_delete=models.SET_NULL, related_name="verdict"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "judge", "prompt_version"], name="verdict_once_per_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.status} verdict on item {self.item_id} by judge {self.judge_id}"


class JudgeSlot(models.Model):
    """One of a judge's max_concurrency call slots, leased by a worker thread: concurrency is
    bounded across every worker, and a dead worker's slots free themselves when the lease ends."""

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="slots")
    number = models.PositiveIntegerField()
    holder = models.CharField(max_length=255, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judge", "number"], name="judge_slot_unique")
        ]

    def __str__(self) -> str:
        return f"slot {self.number} of judge {self.judge_id}"


class RateWindow(models.Model):
    """Requests and tokens a judge used in one clock minute, shared by every worker."""

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="rate_windows")
    minute = models.BigIntegerField(help_text="Unix time // 60.")
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judge", "minute"], name="rate_window_unique")
        ]

    def __str__(self) -> str:
        return f"judge {self.judge_id} minute {self.minute}"


class PromptTags(models.Model):
    """What a judge said the item's prompt is (judges/tags.py): subject, expertise, safety
    concern, intents, open-endedness, format constraints; one row per judge and tag version."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="prompt_tags")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="prompt_tags")
    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="prompt_tags")
    prompt_version = models.CharField(max_length=32)
    tags = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "judge", "prompt_version"], name="prompt_tags_once_per_version"
            )
        ]

    def __str__(self) -> str:
        return f"tags of item {self.item_id} by judge {self.judge_id}"
