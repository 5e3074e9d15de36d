"""Reward-model training runs and the registry of the models they produce.

No torch here: the web process imports this module. Training itself happens in a Celery worker
on the "training" queue (rewards/tasks.py), through rewards/services.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from annotate.kinds import KINDS
from annotate.models import Project
from feedback_api.models import DatasetVersion

# History points kept per run (the loss curve): past this the history is thinned to half.
HISTORY_MAX_POINTS = 500
# Characters of log kept per run: the oldest lines go first.
LOGS_MAX_CHARS = 64_000
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def media_relative(path: Path) -> str:
    """A path under MEDIA_ROOT as stored in the database (relative: a shared volume may be
    mounted elsewhere on another host); absolute when it lies outside."""
    try:
        return str(path.resolve().relative_to(Path(settings.MEDIA_ROOT).resolve()))
    except ValueError:
        return str(path.resolve())


class Objective(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise (Bradley-Terry)"
    LISTWISE = "listwise", "Listwise (Plackett-Luce)"
    SPANS = "spans", "Fine-grained spans (per-category token rewards)"
    RATINGS = "ratings", "Ratings (multi-aspect regression)"


# The objective that trains on each dataset format.
OBJECTIVE_FOR_FORMAT = {
    DatasetVersion.Format.PAIRWISE: Objective.PAIRWISE,
    DatasetVersion.Format.LISTWISE_PAIRS: Objective.PAIRWISE,
    DatasetVersion.Format.RATINGS_PAIRS: Objective.PAIRWISE,
    DatasetVersion.Format.LISTWISE: Objective.LISTWISE,
    DatasetVersion.Format.SPANS: Objective.SPANS,
    DatasetVersion.Format.RATINGS: Objective.RATINGS,
}
# Objectives whose models give one scalar per (prompt, response): usable as a judge.
SCORING_OBJECTIVES = tuple(kind.objective for kind in KINDS.values() if kind.scores_responses)


class TrainingRunQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=TrainingRun.ACTIVE)

    def for_project(self, project: Project):
        return self.filter(project=project)


class TrainingRun(models.Model):
    """One training of a reward model on a dataset version, run by a Celery worker.

    Progress (step, ETA, throughput, the loss history, logs) is written by the worker as it trains;
    `heartbeat_at` is refreshed with it, so a run whose worker died can be found and resumed.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.PENDING, Status.RUNNING)
    FINISHED = (Status.DONE, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="training_runs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    config = models.JSONField(default=dict, blank=True, help_text="TrainConfig.to_dict().")
    objective = models.CharField(max_length=16, choices=Objective.choices)
    base_model = models.CharField(max_length=500, blank=True, help_text="Path or hub id.")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0.0)
    loss = models.FloatField(null=True, blank=True, help_text="Last training loss reported.")
    eta_s = models.FloatField(null=True, blank=True, help_text="Seconds left, estimated.")
    throughput = models.FloatField(null=True, blank=True)
    throughput_unit = models.CharField(max_length=16, blank=True, help_text="pairs/s or rows/s.")
    history = models.JSONField(
        default=list,
        blank=True,
        help_text=f"Progress points {{step, epoch, loss, learning_rate, eval}}, at most "
        f"{HISTORY_MAX_POINTS} (thinned as the run goes).",
    )
    eval_metrics = models.JSONField(default=dict, blank=True, help_text="Last evaluation.")
    logs = models.TextField(blank=True)
    error = models.TextField(blank=True)

    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="Celery node name.")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Times a worker started it (more than 1: resumed)."
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output_dir = models.CharField(
        max_length=500, blank=True, help_text="Checkpoints and the model, relative to MEDIA_ROOT."
    )

    objects = TrainingRunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="training_run_status_hb")]

    def __str__(self) -> str:
        return f"{self.project} run {self.pk} ({self.objective}, {self.status})"

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress(self) -> float:
        """Share of the steps done, 0 to 1."""
        if self.status == self.Status.DONE:
            return 1.0
        return min(self.step / self.total_steps, 1.0) if self.total_steps else 0.0

    @property
    def percent(self) -> int:
        return int(100 * self.progress)

    @property
    def output_path(self) -> Path | None:
        return Path(settings.MEDIA_ROOT) / self.output_dir if self.output_dir else None

    @property
    def folder(self) -> Path:
        """Where a new run writes its checkpoints and model: REWARDS_DIR/<project>/run-<pk>."""
        return Path(settings.REWARDS_DIR) / str(self.project_id) / f"run-{self.pk}"

    def last_checkpoint_step(self) -> int:
        """The step of the newest complete checkpoint under output_path/checkpoints (0: none)."""
        folder = self.output_path / "checkpoints" if self.output_path else None
        if folder is None or not folder.is_dir():
            return 0
        # A save the worker was killed in has no trainer_state.json yet: train() skips it too.
        steps = [
            int(m[1])
            for p in folder.iterdir()
            if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
        ]
        return max(steps, default=0)

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    def add_history_point(self, point: dict) -> None:
        """Append a point to the loss curve, thinning old points past HISTORY_MAX_POINTS
        (every other one goes, the first and the newest stay)."""
        history = [*self.history, point]
        if len(history) > HISTORY_MAX_POINTS:
            history = history[:-1:2] + [history[-1]]
        self.history = history

    def add_log(self, text: str) -> None:
        """Append lines to the logs, dropping the oldest past LOGS_MAX_CHARS."""
        logs = self.logs + text.rstrip("\n") + "\n"
        if len(logs) > LOGS_MAX_CHARS:
            cut = logs.find("\n", len(logs) - LOGS_MAX_CHARS)
            logs = "[...]\n" + logs[cut + 1 :]
        self.logs = logs


class RewardModel(models.Model):
    """A registered reward model: the result of one finished run, numbered per project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_models")
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="reward_model")
    version = models.PositiveIntegerField(help_text="Version number within the project: 1, 2, ...")
    objective = models.CharField(max_length=16, choices=Objective.choices)
    base_model = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Held-out evaluation.")
    model_dir = models.CharField(max_length=500, help_text="The saved model, under MEDIA_ROOT.")
    artifact = models.CharField(
        max_length=500, blank=True, help_text="Zip of model_dir under MEDIA_ROOT, once built."
    )
    artifact_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="reward_model_version"),
            models.CheckConstraint(condition=Q(version__gte=1), name="reward_model_version_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.project} reward model v{self.version} ({self.objective})"

    @property
    def model_path(self) -> Path:
        return Path(settings.MEDIA_ROOT) / self.model_dir

    @property
    def artifact_path(self) -> Path | None:
        return Path(settings.MEDIA_ROOT) / self.artifact if self.artifact else None

    @property
    def artifact_name(self) -> str:
        return f"{self.project.slug}-reward-v{self.version}-{self.objective}.zip"

    @property
    def artifact_target(self) -> Path:
        """Where the download zip is built: beside the model folder."""
        return self.model_path.parent / self.artifact_name

    @property
    def can_score(self) -> bool:
        return self.objective in SCORING_OBJECTIVES
