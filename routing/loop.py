"""The closed loop of a project, read for its page (reads only): human labels -> dataset version
-> reward model -> that model registered as a judge -> the judge labels the next batch -> the
router sends people only what needs them -> new labels -> retrain.

Each step's state comes from the app that owns it (annotate, feedback_api, rewards, judges,
routing); `next_step` names the first step whose input is newer than its output, the one the
page offers first. The writes are those apps' services, called by routing/loop_views.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, F, Sum

from annotate.models import Annotation, Item, Judge, Project
from feedback_api.datasets import dataset_versions_for
from feedback_api.models import DatasetVersion
from judges.models import JudgeRun
from judges.selectors import judge_runs_for
from rewards.models import RewardModel, TrainingRun
from rewards.selectors import scoring_models_for, training_runs_for

from . import services
from .models import RoutingPolicy

# The label-source mixes of a dataset version's rows (the card's `rows.label_sources.<mix>`).
MIXES = ("human", "judge", "both", "imported")


@dataclass
class LoopState:
    project: Project
    human_labels: int = 0
    judge_labels: int = 0
    version: DatasetVersion | None = None  # the newest version, whatever its status
    done_version: DatasetVersion | None = None  # the newest one that can be trained on
    mix: dict[str, int] = field(default_factory=dict)  # done_version's rows by label source
    run: TrainingRun | None = None
    model: RewardModel | None = None  # the newest model that can judge
    judge: Judge | None = None  # the router's judge, else the newest reward-model judge
    model_judge: Judge | None = None  # a judge that scores with `model`
    judge_run: JudgeRun | None = None
    policy: RoutingPolicy | None = None  # None: never configured (all to people)
    budget: dict = field(default_factory=dict)
    unjudged: int = 0  # items the router waits on or sent to judges, not judged by its judge
    people_items_left: int = 0  # items routed to people still short of `overlap` labels
    people_labels_left: int = 0
    labels_since_version: int = 0  # human labels newer than done_version
    next_step: str = ""


def loop_state(project: Project) -> LoopState:
    """Every step's state for the loop page, in a fixed number of queries."""
    state = LoopState(project=project)
    by_source = dict(
        Annotation.objects.filter(item__project=project)
        .order_by()
        .values_list("source")
        .annotate(n=Count("id"))
    )
    state.human_labels = by_source.get(Annotation.Source.HUMAN, 0)
    state.judge_labels = by_source.get(Annotation.Source.JUDGE, 0)
    versions = dataset_versions_for(project)
    state.version = versions.first()
    state.done_version = versions.filter(status=DatasetVersion.Status.DONE).first()
    if state.done_version is not None:
        stats = state.done_version.stats
        state.mix = {m: stats.get(f"rows.label_sources.{m}", 0) for m in MIXES}
        state.labels_since_version = Annotation.objects.filter(
            item__project=project,
            source=Annotation.Source.HUMAN,
            created_at__gt=state.done_version.created_at,
        ).count()
    state.run = training_runs_for(project).first()
    state.model = scoring_models_for(project).first()
    state.policy = RoutingPolicy.objects.filter(project=project).select_related("judge").first()
    reward_judges = Judge.objects.filter(project=project, backend=Judge.Backend.REWARD_MODEL)
    if state.model is not None:
        state.model_judge = reward_judges.filter(reward_model_id=state.model.pk).first()
    state.judge = (state.policy.judge if state.policy else None) or (
        reward_judges.order_by("-reward_model_id", "-id").first()
    )
    state.judge_run = judge_runs_for(project).first()
    # An unsaved policy: the budget of a project never configured, read without writing one.
    state.budget = services.budget(project, state.policy or RoutingPolicy(project=project))
    if state.policy is not None and state.policy.judge is not None:
        state.unjudged = services.unjudged_routed(project, state.policy.judge).count()
    left = Item.objects.filter(
        project=project,
        gold_label__isnull=True,
        route__in=Item.TO_PEOPLE,
        human_label_count__lt=project.overlap,
    ).aggregate(items=Count("id"), labels=Sum(project.overlap - F("human_label_count")))
    state.people_items_left, state.people_labels_left = left["items"], left["labels"] or 0
    state.next_step = _next_step(state)
    return state


def _next_step(s: LoopState) -> str:
    """The first step of the loop whose input is newer than its output."""
    if s.version is not None and not s.version.finished:
        return "wait"  # a version is being built
    if s.done_version is None:
        return "dataset" if s.human_labels else "label"
    if s.run is None or s.run.dataset_version_id != s.done_version.pk:
        return "train"
    if not s.run.finished:
        return "wait"  # the run is training
    if s.model is None or s.model.run_id != s.run.pk:
        return "train"  # the newest run failed or was cancelled
    if s.model_judge is None:
        return "register"
    if s.policy is None or s.policy.judge_id != s.model_judge.pk:
        return "policy"
    if s.unjudged:
        return "judge"
    if s.budget["by_route"].get(Item.Route.PENDING):
        return "route"
    if s.people_items_left:
        return "label"
    return "dataset" if s.labels_since_version else "import"
