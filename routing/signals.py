"""A finished judge run routes its project: its verdicts may settle waiting items or promote
unsure ones to people; so does an import that left new items waiting for the router (the
routing task then starts the router judge on them). Routed on a worker (routing.route), never
in the request. Verdicts as they are written store their items' text features for that pass."""

import logging

from django.db import transaction
from django.dispatch import receiver

from annotate.signals import items_waiting
from judges.signals import run_finished, verdicts_written

logger = logging.getLogger(__name__)


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


@receiver(verdicts_written, dispatch_uid="routing.text_features_after_verdicts")
def text_features_after_verdicts(sender, run, item_ids, **kwargs) -> None:
    """The judged items' text features, stored by the judge's worker as it writes their
    verdicts (a few dozen microseconds an item beside the judge's call): the routing pass that
    follows reads numbers, not text. A failure here costs the judge nothing: the pass computes
    what is missing."""
    from annotate.models import Item

    from .models import RoutingPolicy
    from .services import text_features_store

    if not RoutingPolicy.objects.filter(project_id=run.project_id).exists():
        return
    try:
        with transaction.atomic():
            text_features_store(Item.objects.filter(pk__in=item_ids))
    except Exception:
        logger.exception("storing the text features of run %s's items failed", run.pk)
