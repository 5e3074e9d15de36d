"""Celery tasks of the routing app: thin, named, take ids, call the services."""

from celery import shared_task

from annotate.models import Project

from . import services


@shared_task(name="routing.route", acks_late=True, max_retries=0)
def route(project_id: int, trigger: str = "on demand") -> dict:
    """One routing pass over the project, then the router judge on what it sent to judges."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "gone"}
    report = services.route_items(project=project, trigger=trigger)
    run = services.judge_routed(project=project)
    return {
        "project": project_id,
        "routed": report.routed,
        "waiting": report.waiting,
        "promoted": report.promoted,
        "over_budget": report.over_budget,
        "judge_run": run.pk if run else None,
    }
