"""The pages: projects, their dashboard, item imports and members. Writes go through services."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from . import selectors, services
from .access import can_create_projects, project_for_user
from .assignment import (
    MAX_TIME_SPENT_MS,
    AssignmentConflict,
    annotation_correct,
    annotation_submit,
    annotations_recent,
    annotator_progress,
    assignment_next,
    assignment_skip,
    label_for_display,
    responses_in_display_order,
)
from .forms import (
    SKIP_REASONS,
    ImportForm,
    LabelInputError,
    MemberAddForm,
    MemberRoleForm,
    PostRefused,
    ProjectCreateForm,
    form_field_for,
    kind_context,
    label_from_post,
    label_summary,
    letter_of,
    post_from_label,
    skip_reason_from_post,
)
from .kinds import get_kind
from .models import ROLE_RANK, Annotation, Assignment, ImportJob, Kind, Membership, Project, Role
from .rendering import render_markdown
from .services import ServiceError


def _add_service_error(form, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, str(exc))


# Projects -----------------------------------------------------------------------------------


@login_required
@require_GET
def project_list(request):
    projects = selectors.projects_for_user(request.user)
    return render(request, "annotate/project_list.html", {"projects": projects})


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request):
    if not can_create_projects(request.user):
        raise PermissionDenied("Only staff create projects.")
    form = ProjectCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        data = form.cleaned_data
        try:
            project = services.project_create(
                name=data["name"],
                kind=data["kind"],
                config=data["config"],
                guidelines=data["guidelines"],
                overlap=data["overlap"],
                created_by=request.user,
            )
        except ServiceError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect(project)
    kind_defaults = {kind: get_kind(kind).DEFAULT_CONFIG for kind in Kind.values}
    context = {"form": form, "kind_defaults": kind_defaults}
    return render(request, "annotate/project_create.html", context)


@login_required
@require_GET
def project_detail(request, slug):
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    my_role = project.role_of(request.user)
    context = {
        "project": project,
        "my_role": my_role,
        "can_import": ROLE_RANK[my_role] >= ROLE_RANK[Role.RESEARCHER],
        "can_manage_members": ROLE_RANK[my_role] >= ROLE_RANK[Role.ADMIN],
        "counts": selectors.project_counts(project),
        "guidelines": render_markdown(project.guidelines, images=project.load_images),
        "my_progress": annotator_progress(project, request.user),
    }
    return _images_allowed(render(request, "annotate/project_detail.html", context), project)


def _images_allowed(response, project: Project):
    if project.load_images:
        # The project loads images in its Markdown from any web host (the CSP allows only ours).
        response._csp_update = {"img-src": ["https:", "http:"]}
    return response


# Imports ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def item_import(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    report = None
    if form.is_valid():
        upload, data = form.cleaned_data["file"], form.cleaned_data
        if upload.size >= settings.IMPORT_ASYNC_BYTES:
            try:
                job = services.import_job_create(
                    project=project,
                    upload=upload,
                    user=request.user,
                    skip_invalid=data["skip_invalid"],
                    keep_labels=data["keep_labels"],
                    labels_for_existing=data["labels_for_existing"],
                    fmt=data["format"],
                )
            except ServiceError as exc:
                _add_service_error(form, exc)
            else:
                return redirect("annotate:import-job", slug=project.slug, pk=job.pk)
        else:
            report = services.item_import(
                project=project,
                stream=upload,
                filename=upload.name or "",
                fmt=data["format"] or None,
                size=upload.size,
                skip_invalid=data["skip_invalid"],
                keep_labels=data["keep_labels"],
                labels_for_existing=data["labels_for_existing"],
            ).to_dict()
    context = {
        "project": project,
        "form": form,
        "report": report,
        "jobs": selectors.import_jobs_recent(project),
        "async_bytes": settings.IMPORT_ASYNC_BYTES,
        "max_bytes": settings.IMPORT_MAX_BYTES,
    }
    return render(request, "annotate/item_import.html", context)


@login_required
@require_GET
# One URL answers with the page or its #job-status partial: caches must tell them apart.
@vary_on_headers("HX-Request")
def import_job(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    job = get_object_or_404(ImportJob.objects.select_related("created_by"), pk=pk, project=project)
    template = "annotate/import_job.html"
    if request.htmx:
        template += "#job-status"
    return render(request, template, {"project": project, "job": job})


# Members ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def members(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    form = MemberAddForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            user = services.user_by_username(form.cleaned_data["username"].strip())
            membership, created = services.membership_set(
                project=project, user=user, role=form.cleaned_data["role"]
            )
        except ServiceError as exc:
            _add_service_error(form, exc)
        else:
            verb = "added as" if created else "is now"
            messages.success(request, f"{user.username} {verb} {membership.get_role_display()}.")
            return _redirect_after_member_change(request, project)
    context = {
        "project": project,
        "form": form,
        "members": selectors.members_for_project(project),
        "roles": Role.choices,
    }
    return render(request, "annotate/members.html", context)


@login_required
@require_POST
def member_role(request, slug, user_id):
    project = project_for_user(request.user, slug, Role.ADMIN)
    membership = get_object_or_404(Membership, project=project, user_id=user_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
    else:
        try:
            membership, _ = services.membership_set(
                project=project, user=membership.user, role=form.cleaned_data["role"]
            )
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            role = membership.get_role_display()
            messages.success(request, f"{membership.user.username} is now {role}.")
    return _redirect_after_member_change(request, project)


@login_required
@require_POST
def member_remove(request, slug, user_id):
    project = project_for_user(request.user, slug, Role.ADMIN)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), project=project, user_id=user_id
    )
    try:
        services.membership_remove(project=project, user=membership.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("annotate:members", slug=project.slug)
    messages.success(request, f"{membership.user.username} was removed from {project.name}.")
    return _redirect_after_member_change(request, project)


def _redirect_after_member_change(request, project: Project):
    # Admins may demote or remove themselves; the members page is then closed to them.
    role = project.role_of(request.user)
    if role is None:
        return redirect("annotate:project-list")
    if ROLE_RANK[role] < ROLE_RANK[Role.ADMIN]:
        return redirect(project)
    return redirect("annotate:members", slug=project.slug)


# Annotating ---------------------------------------------------------------------------------
# One page, /projects/<slug>/annotate/: its #work partial (the item, its form, progress and my
# recent labels) is what every htmx POST answers with, so the next item comes without a reload.


@login_required
@require_GET
@vary_on_headers("HX-Request")
def annotate(request, slug):
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    if not _opened_by_the_annotator(request):
        # Nothing leased: the page asks for a click (a navigation from our own page) first.
        return _render_work(request, project, None, start_here=True)
    assignment = assignment_next(project=project, annotator=request.user)
    return _render_work(request, project, assignment)


def _opened_by_the_annotator(request) -> bool:
    """Whether this GET may take a lease: the page itself opened from our own pages or from the
    address bar (Sec-Fetch-Site same-origin or none), as a document or by htmx (Sec-Fetch-Dest
    document or empty); never an image, a frame or a link on another site. Clients that send no
    Sec-Fetch-* headers (older browsers, scripts) are not browsers to be tricked: allowed."""
    site = request.headers.get("Sec-Fetch-Site")
    dest = request.headers.get("Sec-Fetch-Dest")
    if site is None and dest is None:
        return True
    return site in ("same-origin", "none") and dest in ("document", "empty")


@login_required
@require_POST
def annotate_submit(request, slug, pk):
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    assignment = _get_assignment_for_user(request, project, pk)
    if assignment.status == Assignment.Status.SUBMITTED:
        # A double click or a retried request: the label is stored already, move on.
        return _next(request, project)
    config = get_kind(project.kind).clean_config(project.config)
    responses = responses_in_display_order(assignment)
    try:
        label = label_from_post(project.kind, request.POST, responses, config)
        annotation_submit(
            assignment=assignment,
            label=label,
            time_spent_ms=_time_spent_ms(request, project, assignment),
            request_id=request.POST.get("request_id", "")[:100],
        )
    except LabelInputError as exc:
        return _form_again(request, project, assignment, exc)
    except AssignmentConflict as exc:
        return _next(request, project, notice=str(exc), level=messages.WARNING)
    except ServiceError as exc:
        field = form_field_for(project.kind, exc.field, responses, config)
        errors = {field: str(exc)}
        return _render_work(request, project, assignment, values=request.POST, errors=errors)
    return _next(request, project)


@login_required
@require_POST
def annotate_skip(request, slug, pk):
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    assignment = _get_assignment_for_user(request, project, pk)
    try:
        assignment_skip(assignment=assignment, reason=skip_reason_from_post(request.POST))
    except PostRefused as exc:
        return _form_again(request, project, assignment, exc)
    except AssignmentConflict as exc:
        return _next(request, project, notice=str(exc), level=messages.WARNING)
    except ServiceError as exc:
        errors = {"skip": str(exc)}
        return _render_work(request, project, assignment, values=request.POST, errors=errors)
    return _next(request, project, notice="Skipped.")


@login_required
@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def annotation_edit(request, slug, pk):
    """Reopen one of my labels in the annotate page and correct it."""
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    annotation = selectors.annotation_of_user(project=project, user=request.user, pk=pk)
    # A label stored without an assignment (through the API) is shown in the item's order.
    assignment = annotation.assignment or Assignment(
        item=annotation.item, annotator=request.user, order=[], expires_at=timezone.now()
    )
    responses = responses_in_display_order(assignment)
    values, errors = None, {}
    if request.method == "POST":
        config = get_kind(project.kind).clean_config(project.config)
        try:
            label = label_from_post(project.kind, request.POST, responses, config)
            annotation_correct(annotation=annotation, label=label, annotator=request.user)
        except LabelInputError as exc:
            return _form_again(request, project, assignment, exc, editing=annotation)
        except ServiceError as exc:
            errors = {form_field_for(project.kind, exc.field, responses, config): str(exc)}
        else:
            return _next(request, project, notice="Label corrected.")
        values = request.POST
    else:
        values = post_from_label(project.kind, label_for_display(annotation), responses)
    return _render_work(
        request, project, assignment, values=values, errors=errors, editing=annotation
    )


def _get_assignment_for_user(request, project: Project, pk: int) -> Assignment:
    return get_object_or_404(
        Assignment.objects.select_related("item"),
        pk=pk,
        item__project=project,
        annotator=request.user,
    )


def _time_spent_ms(request, project: Project, assignment: Assignment) -> int:
    """What the page measured; else the time since the lease began (pages without JS)."""
    measured = request.POST.get("time_spent_ms", "")
    if measured.isdigit() and int(measured) <= MAX_TIME_SPENT_MS:
        return int(measured)
    leased_at = assignment.expires_at - timedelta(minutes=project.lease_minutes)
    elapsed = (timezone.now() - leased_at).total_seconds() * 1000
    return int(min(max(elapsed, 0), MAX_TIME_SPENT_MS))


def _next(request, project: Project, notice: str = "", level: int = messages.SUCCESS):
    """After a submit, skip or correction: the next item (htmx) or a redirect to it (POST,
    redirect, GET)."""
    if not request.htmx:
        if notice:
            messages.add_message(request, level, notice)
        return redirect("annotate:annotate", slug=project.slug)
    assignment = assignment_next(project=project, annotator=request.user)
    response = _render_work(request, project, assignment, notice=notice)
    response["HX-Push-Url"] = reverse("annotate:annotate", args=[project.slug])
    return response


def _form_again(request, project: Project, assignment: Assignment, exc: LabelInputError, **kw):
    """The form again with the posted fields and `exc`'s messages; a post no page sends
    (PostRefused) is a 400, its fields shown less what could not be stored."""
    refused = isinstance(exc, PostRefused)
    values = exc.values if refused else request.POST
    return _render_work(
        request, project, assignment, values=values, errors=exc.errors, refused=refused, **kw
    )


def _render_work(
    request,
    project: Project,
    assignment: Assignment | None,
    *,
    values=None,
    errors: dict | None = None,
    notice: str = "",
    editing: Annotation | None = None,
    start_here: bool = False,
    refused: bool = False,
):
    errors = dict(errors or {})
    if errors and "form" not in errors and "skip" not in errors:
        errors["form"] = "Some answers are missing or invalid: see the messages below."
    context = {
        "project": project,
        "assignment": assignment,
        "editing": editing,
        "errors": errors,
        "notice": notice,
        "progress": annotator_progress(project, request.user),
        "recent": _recent_labels(project, request.user),
        "skip_reasons": SKIP_REASONS,
        "guidelines": render_markdown(project.guidelines, images=project.load_images),
        "config": get_kind(project.kind).clean_config(project.config),
        "start_here": start_here,
    }
    if assignment is not None:
        context.update(_item_context(project, assignment, values or {}, errors, context["config"]))
    template = "annotate/annotate.html"
    if request.htmx:
        template += "#work"
    status = 400 if refused else 200
    if errors and request.htmx:
        # htmx swaps a 422 too (the page's htmx-config): the form comes back with its errors.
        status = 422
    response = render(request, template, context, status=status)
    response["HX-Trigger"] = json.dumps({"progress-changed": context["progress"]})
    return _images_allowed(response, project)


def _item_context(project: Project, assignment: Assignment, values, errors, config) -> dict:
    responses = responses_in_display_order(assignment)
    item = assignment.item

    def _render(text: str):
        return render_markdown(text, images=project.load_images)

    if item.is_chat:
        prompt = [{"role": m["role"], "html": _render(m["content"])} for m in item.prompt]
    else:
        prompt = _render(item.prompt)
    return {
        "item": item,
        "prompt": prompt,
        "values": values,
        "kind": kind_context(
            project.kind, config, responses, values, errors, images=project.load_images
        ),
        "kind_template": f"annotate/kinds/{project.kind}.html",
        # A fresh id per rendered form: the engine stores it with the submission.
        "request_id": uuid.uuid4().hex,
    }


def _recent_labels(project: Project, user) -> list[dict]:
    recent = []
    for annotation in annotations_recent(project=project, annotator=user, limit=10):
        assignment = annotation.assignment
        if assignment is not None:
            # The same item, loaded already: no query per label.
            assignment.item = annotation.item
        responses = (
            responses_in_display_order(assignment) if assignment else annotation.item.responses
        )
        letters = letter_of(responses)
        label = label_for_display(annotation)
        recent.append(
            {
                "annotation": annotation,
                "summary": label_summary(annotation.kind, label, letters),
                "prompt": _prompt_text(annotation.item)[:80],
            }
        )
    return recent


def _prompt_text(item) -> str:
    if item.is_chat:
        users = [m["content"] for m in item.prompt if m["role"] == "user"]
        return (users or [item.prompt[-1]["content"]])[-1]
    return item.prompt
