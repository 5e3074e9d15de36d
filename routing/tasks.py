"""Celery tasks of the routing app: thin, named, take ids, call the services."""

from celery import shared_task
from django.conf import settings
from django.db import transaction

from annotate.models import Project

from . import services


@shared_task(name="routing.route", acks_late=True, max_retries=0)
def route(project_id: int, trigger: str = "on demand") -> dict:
    """One routing pass over the project, then the router judge on what it sent to judges; the
    learned router is trained again when enough new double-labelled items came in."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "gone"}
    report = services.route_items(project=project, trigger=trigger)
    run = services.judge_routed(project=project)
    retrain = services.router_retrain_due(project)
    if retrain:
        transaction.on_commit(lambda: train_router.delay(project_id))
    return {
        "project": project_id,
        "routed": report.routed,
        "waiting": report.waiting,
        "promoted": report.promoted,
        "over_budget": report.over_budget,
        "judge_run": run.pk if run else None,
        "router_retrain": retrain,
    }


# Queue "training" through CELERY_TASK_ROUTES: the MiniLM embeddings need torch.
@shared_task(
    name="routing.train_router",
    acks_late=True,
    max_retries=0,
    time_limit=3600,
    soft_time_limit=3300,
)
def train_router(project_id: int, embeddings: bool | None = None) -> dict:
    """Train the project's learned router; with `embeddings` (default ROUTING_ROUTER_EMBEDDINGS),
    first store the MiniLM similarity of the responses it reads (skipped where this worker has
    no torch: the router's feature list says which it used)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "gone"}
    if embeddings is None:
        embeddings = settings.ROUTING_ROUTER_EMBEDDINGS
    if embeddings:
        try:
            from rewards.embeddings import similarity
        except ImportError:  # a worker without the training extras: the router goes without
            embeddings = False
        else:
            services.response_similarity_compute(project=project, similarity=similarity)
    try:
        router = services.router_train(project=project, embeddings=embeddings)
    except services.ServiceError as exc:
        return {"project": project_id, "status": "refused", "error": exc.message}
    return {"project": project_id, "status": router.status, "router": router.pk, "auc": router.auc}
