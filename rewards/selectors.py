"""Reads of the rewards app: runs and registered models of a project, for pages and the API."""

from __future__ import annotations

from django.db.models import QuerySet

from annotate.models import Project

from .models import SCORING_OBJECTIVES, RewardModel, TrainingRun


def training_runs_for(project: Project) -> QuerySet[TrainingRun]:
    """A project's runs, newest first, with what a list shows (no logs or history)."""
    return (
        TrainingRun.objects.filter(project=project)
        .select_related("dataset_version", "created_by", "reward_model")
        .defer("logs", "history")
    )


def training_run_get(project: Project, pk: int) -> TrainingRun | None:
    return (
        TrainingRun.objects.filter(project=project, pk=pk)
        .select_related("project", "dataset_version", "created_by", "reward_model")
        .first()
    )


def reward_models_for(project: Project) -> QuerySet[RewardModel]:
    """The registry of a project, newest version first: the comparison table."""
    return (
        RewardModel.objects.filter(project=project)
        .select_related("run", "run__dataset_version", "project")
        .defer("run__logs", "run__history")
        .order_by("-version")
    )


def reward_model_get(project: Project, version: int) -> RewardModel | None:
    return (
        RewardModel.objects.filter(project=project, version=version)
        .select_related("project", "run", "run__dataset_version")
        .first()
    )


def scoring_models_for(project: Project) -> QuerySet[RewardModel]:
    """Registered models that can judge (one score per response): pairwise and listwise."""
    return reward_models_for(project).filter(objective__in=SCORING_OBJECTIVES)
