"""Reads of the annotation domain for the pages: counts and lists, each in a fixed number of
queries whatever the size of the project."""

from __future__ import annotations

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from .access import projects_for
from .models import Annotation, ImportJob, Item, Membership, Project, Role


def projects_for_user(user) -> QuerySet[Project]:
    """The user's projects, each with `my_role` and `item_count` (one query)."""
    items = (
        Item.objects.filter(project=OuterRef("pk"))
        .order_by()
        .values("project")
        .annotate(n=Count("id"))
        .values("n")
    )
    projects = projects_for(user).annotate(
        item_count=Coalesce(Subquery(items, output_field=IntegerField()), Value(0))
    )
    if user.is_superuser:
        return projects.annotate(my_role=Value(Role.ADMIN))
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return projects.annotate(my_role=Subquery(role))


def project_counts(project: Project) -> dict:
    """Items, how far their human labelling has got, labels by source and members by role."""
    human_per_item = (
        Annotation.objects.filter(item__project=project, source=Annotation.Source.HUMAN)
        .order_by()
        .values("item")
        .annotate(n=Count("id"))
    )
    labelled = human_per_item.aggregate(
        any=Count("item"), complete=Count("item", filter=Q(n__gte=project.overlap))
    )
    by_source = dict(
        Annotation.objects.filter(item__project=project)
        .order_by()
        .values_list("source")
        .annotate(n=Count("id"))
    )
    by_role = dict(project.memberships.order_by().values_list("role").annotate(n=Count("id")))
    annotations = {source: by_source.get(source, 0) for source in Annotation.Source.values}
    return {
        "items": Item.objects.filter(project=project).count(),
        "items_with_human_label": labelled["any"],
        "items_complete": labelled["complete"],
        "annotations": annotations,
        "annotations_total": sum(annotations.values()),
        "members": {role: by_role.get(role, 0) for role in Role.values},
        "members_total": sum(by_role.values()),
    }


def members_for_project(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def import_jobs_recent(project: Project, limit: int = 10) -> QuerySet[ImportJob]:
    return project.import_jobs.select_related("created_by").order_by("-created_at", "-pk")[:limit]


def annotation_of_user(*, project: Project, user, pk: int) -> Annotation:
    """One of the user's own human labels in the project; 404 for anyone else's."""
    return get_object_or_404(
        Annotation.objects.select_related("item", "assignment"),
        pk=pk,
        item__project=project,
        annotator=user,
        source=Annotation.Source.HUMAN,
    )


def metadata_field(keys: list[str]) -> KeyTransform | F:
    """An item's metadata field as an expression: ["a", "b"] is metadata.a.b. Built from key
    transforms, not a "metadata__a__b" lookup string, so a key may be named like a lookup."""
    field: KeyTransform | F = F("metadata")
    for key in keys:
        field = KeyTransform(key, field)
    return field
