"""The closed loop's page: each step's state for a project, and its next actions.

Researchers see it; admins act. Every action is one POST that calls the owning app's service
(a dataset version, a training run, a reward-model judge, a router-judge run, a routing pass)
and comes back to the page with what it did; nothing here decides anything those services do.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotate.access import can, project_for_user
from annotate.models import Judge, Project, Role
from annotate.services import ServiceError
from feedback_api import datasets
from judges import services as judge_services
from rewards import services as reward_services

from . import loop, services, tasks

Outcome = tuple[int, str]  # (messages level, text)


@login_required
@require_GET
def loop_page(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    context = {
        "project": project,
        "state": loop.loop_state(project),
        "can_act": can(request.user, project, Role.ADMIN),
    }
    return render(request, "routing/loop.html", context)


@login_required
@require_POST
def loop_action(request, slug, action):
    project = project_for_user(request.user, slug, Role.ADMIN)
    act = ACTIONS.get(action)
    if act is None:
        raise Http404("No such step.")
    level, text = act(request, project)
    messages.add_message(request, level, text)
    return redirect("routing:loop", slug=project.slug)


def _dataset(request, project: Project) -> Outcome:
    """A new dataset version with the newest one's format, filters, split and options."""
    last = datasets.dataset_versions_for(project).first()
    if last is None:
        recipe = {"format": datasets.formats_for_kind(project.kind)[0]}
    else:
        recipe = {"format": last.format, "filters": last.filters, "split": last.split}
        recipe["options"] = last.options
    try:
        version = datasets.dataset_version_create(project=project, user=request.user, **recipe)
    except ServiceError as exc:
        return messages.ERROR, f"No dataset version built: {exc}"
    return messages.SUCCESS, f"Dataset version {version.number} is being built."


def _train(request, project: Project) -> Outcome:
    """A training run on the newest finished version, with the newest run's settings."""
    state = loop.loop_state(project)
    if state.done_version is None:
        return messages.ERROR, "No finished dataset version to train on: build one first."
    config = dict(state.run.config) if state.run else {}
    config.pop("objective", None)  # the version's format decides it
    try:
        run = reward_services.training_run_create(
            dataset_version=state.done_version, user=request.user, config=config
        )
    except ServiceError as exc:
        return messages.ERROR, f"No training run started: {exc}"
    return messages.SUCCESS, (
        f"Training run {run.pk} is queued on dataset version {state.done_version.number}."
    )


def _register(request, project: Project) -> Outcome:
    """The newest reward model as a judge of the project (once per model)."""
    state = loop.loop_state(project)
    if state.model is None:
        return messages.ERROR, "No reward model that can judge: train one first."
    if state.model_judge is not None:
        return messages.INFO, f"Reward model v{state.model.version} judges as {state.model_judge}."
    data = {
        "name": f"reward model v{state.model.version}",
        "backend": Judge.Backend.REWARD_MODEL,
        "reward_model_id": state.model.pk,
    }
    try:
        judge = judge_services.judge_save(project=project, data=data)
    except judge_services.ServiceError as exc:
        return messages.ERROR, f"Not registered ({exc.field}): {exc.message}"
    return messages.SUCCESS, f"Reward model v{state.model.version} is the judge {judge.name!r}."


def _judge(request, project: Project) -> Outcome:
    """The router's judge on the items it sent to judges or waits on."""
    run = services.judge_routed(project=project)
    if run is None:
        return messages.INFO, (
            "Nothing for the router's judge to do: no judge set in the routing policy, "
            "a run of it already going, or every routed item judged."
        )
    return messages.SUCCESS, f"Judge run {run.pk} started on {run.items} items."


def _route(request, project: Project) -> Outcome:
    """A routing pass on a worker (then the router's judge on what it sent to judges)."""
    trigger = f"on demand by {request.user.get_username()} (loop page)"
    transaction.on_commit(lambda: tasks.route.delay(project.pk, trigger))
    return messages.SUCCESS, "Routing queued: a worker routes the waiting items."


ACTIONS = {
    "dataset": _dataset,
    "train": _train,
    "register": _register,
    "judge": _judge,
    "route": _route,
}
