"""The judge pages: a project's judges, their form with a prompt preview, starting a run, and
watching or cancelling it.

Researchers see judges and runs (never a judge's api_key_env); admins configure, run and cancel.
Writes go through judges.services; run numbers come from selectors.run_progress.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from annotate.access import can, project_for_user
from annotate.models import Judge, Project, Role

from . import calibration, selectors, services
from .forms import JudgeForm, RunStartForm
from .models import JudgeRun
from .prompts import PromptError

# What judge_save and judge_preview refuse with: both name the field at fault.
REFUSALS = (services.ServiceError, PromptError)


# Judges -------------------------------------------------------------------------------------


@login_required
@require_GET
def judge_list(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    judges = [(j, selectors.budget_left(j)) for j in selectors.judges_for(project)]
    context = {
        "project": project,
        "judges": judges,
        "can_configure": can(request.user, project, Role.ADMIN),
    }
    return render(request, "judges/judge_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def judge_create(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    return _judge_form(request, project, None)


@login_required
@require_http_methods(["GET", "POST"])
def judge_edit(request, slug, pk):
    project = project_for_user(request.user, slug, Role.ADMIN)
    return _judge_form(request, project, selectors.judge_or_404(project, pk))


def _judge_form(request, project: Project, judge: Judge | None):
    data = request.POST if request.method == "POST" else None
    form = JudgeForm(data, project=project, judge=judge)
    preview, preview_id = None, request.POST.get("preview_item", "").strip()
    if form.is_valid():
        if "preview" in request.POST:
            preview = _preview(form, project, judge, preview_id)
        else:
            saved = _save(form, project, judge)
            if saved is not None:
                messages.success(request, f"Judge {saved.name!r} saved.")
                return redirect("judges:list", slug=project.slug)
    context = {
        "project": project,
        "judge": judge,
        "form": form,
        "preview": preview,
        "preview_item": preview_id,
    }
    return render(request, "judges/judge_form.html", context, status=400 if form.errors else 200)


def _save(form: JudgeForm, project: Project, judge: Judge | None) -> Judge | None:
    try:
        return services.judge_save(project=project, data=form.data_for_service(), judge=judge)
    except REFUSALS as exc:
        _add_error(form, exc)
    if judge is not None:
        # judge_save set the refused values on it before refusing; the page names the saved one.
        judge.refresh_from_db()
    return None


def _preview(form: JudgeForm, project: Project, judge: Judge | None, external_id: str):
    """The passes' messages under the form's settings, saving nothing: the judge is saved in a
    transaction that is rolled back, so the service validates exactly as it would on save."""
    item = selectors.preview_item(project, external_id)
    if item is None:
        error = f"no item with external id {external_id!r}" if external_id else "no items yet"
        form.add_error(None, f"Nothing to preview: {error}.")
        return None
    try:
        with transaction.atomic():
            unsaved = services.judge_save(
                project=project, data=form.data_for_service(), judge=judge
            )
            passes = services.judge_preview(judge=unsaved, item=item)
            transaction.set_rollback(True)
    except REFUSALS as exc:
        _add_error(form, exc)
        return None
    if judge is not None:
        # The rollback leaves the in-memory judge with the form's values; the page shows both.
        judge.refresh_from_db()
    return {"item": item, "passes": passes}


def _add_error(form, exc) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


# Runs ---------------------------------------------------------------------------------------


@login_required
@require_GET
def judge_calibration(request, slug, pk):
    """How the judge agrees with the humans on the items both labelled: the numbers an admin
    reads before letting it label alone; ?version= picks a prompt version, ?format=csv downloads."""
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    judge = selectors.judge_or_404(project, pk)
    try:
        report = calibration.report(judge, request.GET.get("version") or None)
    except ValueError as exc:
        raise Http404(str(exc)) from None
    if request.GET.get("format") == "csv":
        response = HttpResponse(calibration.report_csv(report), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="calibration-{judge.pk}.csv"'
        return response
    context = {"project": project, "judge": judge, "report": report}
    return render(request, "judges/calibration.html", context)


@login_required
@require_GET
def run_list(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    context = {
        "project": project,
        "runs": selectors.judge_runs_for(project)[:100],
        "can_run": can(request.user, project, Role.ADMIN),
    }
    return render(request, "judges/run_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def run_create(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    if request.method == "POST":
        form = RunStartForm(request.POST, project=project)
    else:
        form = RunStartForm(project=project, initial={"judges": request.GET.getlist("judge")})
    if form.is_valid():
        data = form.cleaned_data
        try:
            run = services.run_start(
                project=project,
                judges=list(data["judges"]),
                selection=data["selection"],
                user=request.user,
                external_ids=data["external_ids"],
                limit=data["limit"],
                metadata_filter=data["metadata_filter"],
                purpose=data["purpose"],
            )
        except services.ServiceError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"Judge run {run.pk} started: {run.passes_total} passes.")
            return redirect("judges:run-detail", slug=project.slug, pk=run.pk)
    context = {"project": project, "form": form}
    return render(request, "judges/run_new.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
# One URL answers with the page or its #run-status partial: caches must tell them apart.
@vary_on_headers("HX-Request")
def run_detail(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    run = selectors.judge_run_or_404(project, pk)
    context = {
        "project": project,
        "run": run,
        "progress": selectors.run_progress(run),
        "can_cancel": not run.finished and can(request.user, project, Role.ADMIN),
    }
    template = "judges/run_detail.html"
    if request.htmx:
        template += "#run-status"
    return render(request, template, context)


@login_required
@require_POST
def run_cancel(request, slug, pk):
    project = project_for_user(request.user, slug, Role.ADMIN)
    run = services.run_cancel(run=selectors.judge_run_or_404(project, pk))
    if run.status == JudgeRun.Status.CANCELLED:
        messages.success(request, f"Judge run {run.pk} is cancelled; what was judged stays.")
    else:
        messages.error(request, f"Judge run {run.pk} had already finished ({run.status}).")
    return redirect("judges:run-detail", slug=project.slug, pk=run.pk)
