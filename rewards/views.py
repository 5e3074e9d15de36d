"""The training pages: start a run, watch it, cancel it, list runs, compare and download models.

Researchers and admins see them; admins start and cancel runs. Writes go through
rewards.services; nothing here imports torch.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from annotate.access import can, project_for_user
from annotate.models import Project, Role
from annotate.services import ServiceError
from feedback_api.models import DatasetVersion

from . import selectors, services
from .base_models import base_model_choices
from .forms import TrainingRunForm
from .metrics import HEADLINES, baseline, headline
from .models import TrainingRun

# Lines of the run's log shown on its page (the model keeps up to LOGS_MAX_CHARS).
LOG_TAIL_LINES = 200


def _get_run(project: Project, pk: int) -> TrainingRun:
    run = selectors.training_run_get(project, pk)
    if run is None:
        raise Http404("No such training run.")
    return run


# Runs ---------------------------------------------------------------------------------------


@login_required
@require_GET
def run_list(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    runs = selectors.training_runs_for(project)[:100]
    context = {
        "project": project,
        "runs": runs,
        "can_train": can(request.user, project, Role.ADMIN),
    }
    return render(request, "rewards/run_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def run_create(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    versions = list(
        DatasetVersion.objects.filter(project=project, status=DatasetVersion.Status.DONE)
    )
    version = _version_from_query(request, versions)
    data = request.POST if request.method == "POST" else None
    base_models = base_model_choices(request.user, project)
    form = TrainingRunForm(data, versions=versions, version=version, base_models=base_models)
    if form.is_valid():
        try:
            run = services.training_run_create(
                dataset_version=form.chosen_version(), user=request.user, config=form.config()
            )
        except ServiceError as exc:
            field = exc.field.split(".")[-1]
            form.add_error(field if field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Training run {run.pk} is queued.")
            return redirect("rewards:run-detail", slug=project.slug, pk=run.pk)
    context = {"project": project, "form": form, "version": version, "versions": versions}
    return render(request, "rewards/run_new.html", context, status=400 if form.errors else 200)


def _version_from_query(request, versions: list[DatasetVersion]) -> DatasetVersion | None:
    number = request.GET.get("version", "")
    by_number = {str(v.number): v for v in versions}
    # The newest finished version when none (or an unusable one) is asked for.
    return by_number.get(number) or (versions[0] if versions else None)


@login_required
@require_GET
# One URL answers with the page or its #run-status partial: caches must tell them apart.
@vary_on_headers("HX-Request")
def run_detail(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    run = _get_run(project, pk)
    context = {
        "project": project,
        "run": run,
        "can_cancel": not run.finished and can(request.user, project, Role.ADMIN),
        "log_tail": "\n".join(run.logs.splitlines()[-LOG_TAIL_LINES:]),
        "reward_model": getattr(run, "reward_model", None),
        "config_rows": sorted(run.config.items()),
    }
    template = "rewards/run_detail.html"
    if request.htmx:
        template += "#run-status"
    return render(request, template, context)


@login_required
@require_POST
def run_cancel(request, slug, pk):
    project = project_for_user(request.user, slug, Role.ADMIN)
    run = _get_run(project, pk)
    try:
        services.training_run_cancel(run=run, user=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run {run.pk} will stop at its next step.")
    return redirect("rewards:run-detail", slug=project.slug, pk=run.pk)


# Registry -----------------------------------------------------------------------------------


@login_required
@require_GET
def model_list(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    models = selectors.reward_models_for(project)
    # One column per objective: a model fills its own objective's column.
    rows = [
        {
            "model": m,
            "metrics": [
                headline(objective, m.metrics or {}) if objective == m.objective else None
                for objective in HEADLINES
            ],
            "baseline": baseline(m.objective, m.metrics or {}),
        }
        for m in models
    ]
    context = {
        "project": project,
        "rows": rows,
        "columns": [label for label, _ in HEADLINES.values()],
    }
    return render(request, "rewards/model_list.html", context)


@login_required
@require_GET
def model_download(request, slug, version):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    model = selectors.reward_model_get(project, version)
    if model is None:
        raise Http404("No such reward model.")
    try:
        # The zip is built on the first download and kept beside the model.
        path = services.reward_model_artifact(reward_model=model)
    except ServiceError as exc:
        raise Http404(str(exc)) from None
    return FileResponse(open(path, "rb"), as_attachment=True, filename=model.artifact_name)  # noqa: SIM115
