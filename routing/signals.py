"""A finished judge run routes its project: its verdicts may settle waiting items or promote
unsure ones to people; so does an import that left new items waiting for the router (the
routing task then starts the router judge on them). Routed on a worker (routing.route), never
in the request."""

from django.db import transaction
from django.dispatch import receiver

from annotate.signals import items_waiting
from judges.signals import run_finished


@receiver(run_finished, dispatch_uid="routing.route_after_judge_run")
def route_after_judge_run(sender, run, **kwargs) -> None:
    from .models import RoutingPolicy
    from .tasks import route

    if not RoutingPolicy.objects.filter(project_id=run.project_id).exists():
        return  # never configured: every item goes to people, nothing to decide
    transaction.on_commit(lambda: route.delay(run.project_id, f"after judge run {run.pk}"))


@receiver(items_waiting, dispatch_uid="routing.route_after_import")
def route_after_import(sender, project, created, **kwargs) -> None:
    from .models import RoutingPolicy
    from .tasks import route

    if not RoutingPolicy.objects.filter(project_id=project.pk).exists():
        return
    trigger = f"after an import of {created} item{'s' if created != 1 else ''}"
    transaction.on_commit(lambda: route.delay(project.pk, trigger))
