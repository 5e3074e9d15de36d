from django.core.management.base import CommandError

from annotate.models import Project


def project_by_ref(ref: str) -> Project:
    """A project by slug, name or id, as a user would type it on the command line."""
    project = (
        Project.objects.filter(slug=ref).first()
        or Project.objects.filter(name=ref).first()
        or (Project.objects.filter(pk=int(ref)).first() if ref.isdigit() else None)
    )
    if project is None:
        raise CommandError(f"No project {ref!r} (give its slug, name or id).")
    return project
