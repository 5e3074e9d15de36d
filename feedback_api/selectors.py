"""Reads for the API: querysets shaped for the serializers, with the joins they need."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from annotate.access import projects_for
from annotate.models import Annotation, Item, Membership, Project, Role


def projects_for_user(user) -> QuerySet[Project]:
    """The user's projects, each with `my_role` (superusers act as admins of every project)."""
    projects = projects_for(user).order_by("name")
    if user.is_superuser:
        return projects.annotate(my_role=Value(Role.ADMIN))
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return projects.annotate(my_role=Subquery(role))


def _label_count(**filters) -> Coalesce:
    # A correlated subquery, not a JOIN + GROUP BY: with a page LIMIT only the page's rows count.
    counts = (
        Annotation.objects.filter(item=OuterRef("pk"), **filters)
        .order_by()
        .values("item")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def items_for_project(project: Project) -> QuerySet[Item]:
    """Items with their label counts: `human_labels` and `labels` (any source)."""
    return Item.objects.filter(project=project).annotate(
        human_labels=_label_count(source=Annotation.Source.HUMAN),
        labels=_label_count(),
    )


def annotations_for_project(project: Project) -> QuerySet[Annotation]:
    return Annotation.objects.filter(item__project=project).select_related(
        "item", "annotator", "judge"
    )


def members_for_project(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def project_stats(project: Project) -> dict:
    """Counts for a dashboard or a script: items, labeled items, labels by source, members."""
    annotations = Annotation.objects.filter(item__project=project).order_by()
    by_source = dict(annotations.values_list("source").annotate(n=Count("id")).order_by())
    by_role = dict(project.memberships.values_list("role").annotate(n=Count("id")).order_by())
    labels = {source: by_source.get(source, 0) for source in Annotation.Source.values}
    return {
        "items": Item.objects.filter(project=project).count(),
        "labeled_items": annotations.values("item").distinct().count(),
        "human_labeled_items": annotations.filter(source=Annotation.Source.HUMAN)
        .values("item")
        .distinct()
        .count(),
        "annotations": {**labels, "total": sum(labels.values())},
        "members": {role: by_role.get(role, 0) for role in Role.values},
    }
