"""The routing pages of a project: the policy and budget with the latest decisions, "Route now",
and the routing report (what each policy's routing buys) with its CSV.

Researchers see them; admins change the policy and budget and route. Writes go through
routing.services (a routing pass only ever runs on a worker: routing.route), reads through
routing.selectors.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate.access import can, project_for_user
from annotate.models import Item, Project, Role

from . import selectors, services
from .chart import chart
from .forms import RoutingForm

DECISIONS_PER_PAGE = 50


@login_required
@require_http_methods(["GET", "POST"])
def routing_settings(request, slug):
    role = Role.ADMIN if request.method == "POST" else Role.RESEARCHER
    project = project_for_user(request.user, slug, role)
    row = selectors.policy_of(project)
    data = request.POST if request.method == "POST" else None
    form = RoutingForm(data, project=project, row=row)
    if request.method == "POST" and form.is_valid():
        try:
            row = services.policy_save(
                project=project, data=form.data_for_service(), user=request.user
            )
        except services.ServiceError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"Routing saved: {row.get_policy_display()}.")
            return redirect("routing:settings", slug=project.slug)
    return render(
        request,
        "routing/settings.html",
        _settings_context(request, project, row, form),
        status=400 if form.errors else 200,
    )


def _settings_context(request, project: Project, row, form: RoutingForm) -> dict:
    decisions = Paginator(selectors.decisions_for(project), DECISIONS_PER_PAGE)
    return {
        "project": project,
        "row": row,
        "form": form,
        "budget": services.budget(project, row),
        "routes": Item.Route,
        "decisions": decisions.get_page(request.GET.get("page")),
        "router": services.router_current(project, row.judge) if row.judge_id else None,
        "min_router_items": services.learning.min_items(),
        "can_configure": can(request.user, project, Role.ADMIN),
    }


def _add_error(form: RoutingForm, exc: services.ServiceError) -> None:
    field = exc.param if exc.field == "params" and exc.param in form.fields else exc.field
    form.add_error(field if field in form.fields else None, exc.message)


@login_required
@require_POST
def route_now(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    task_id = services.route_enqueue(
        project=project, trigger=f"on demand by {request.user.get_username()}"
    )
    messages.success(
        request,
        f"Routing queued (task {task_id}): a worker routes the waiting items; "
        "reload to see its decisions.",
    )
    return redirect("routing:settings", slug=project.slug)


@login_required
@require_POST
def train_router(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    try:
        task_id = services.router_train_enqueue(project=project)
    except services.ServiceError as exc:
        messages.error(request, f"The router was not trained: {exc.message}.")
    else:
        messages.success(
            request,
            f"Router training queued (task {task_id}) on the training worker; reload to see it.",
        )
    return redirect("routing:settings", slug=project.slug)


@login_required
@require_GET
def routing_report(request, slug):
    """Agreement with the people's labels by share routed to people, per policy; ?format=csv
    downloads the numbers behind the chart."""
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    report = selectors.routing_report(project)
    if request.GET.get("format") == "csv":
        response = HttpResponse(selectors.report_csv(report), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="routing-{project.slug}.csv"'
        return response
    context = {"project": project, "report": report, "chart": chart(report)}
    return render(request, "routing/report.html", context)
