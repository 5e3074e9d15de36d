"""A finished judge run routes its project: its verdicts may settle waiting items or promote
unsure ones to people. Routed on a worker (routing.route), never in the finishing request."""

from django.db import transaction
from django.dispatch import receiver

from judges.signals import run_finished


@receiver(run_finished, dispatch_uid="routing.route_after_judge_run")
def route_after_judge_run(sender, run, **kwargs) -> None:
    from .models import RoutingPolicy
    from .tasks import route

    if not RoutingPolicy.objects.filter(project_id=run.project_id).exists():
        return  # never configured: every item goes to people, nothing to decide
    transaction.on_commit(lambda: route.delay(run.project_id, f"after judge run {run.pk}"))
