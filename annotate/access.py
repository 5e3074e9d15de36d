"""Who may see and do what in a project: the one access rule of every page and API view.

The rule:
- a user who is not a member of the project, or asks for a project that does not exist, gets a
  404: we never reveal that another project exists;
- a member whose role is too low gets a 403: they can see the project anyway, so saying why
  reveals nothing;
- roles rank annotator < researcher < admin (`ROLE_RANK`); superusers act as admins of every
  project (`Project.role_of`); staff and superusers create projects.

Pages and DRF views raise the same Django exceptions (Http404, PermissionDenied); DRF's
exception handler turns them into the same status codes with a JSON body.

The assignment engine's hot path (next item, submit, skip, release) checks membership in SQL
instead (`assignment_sql.project_with_role`, `assignment_sql.assignment_with_item`, through
`assignment.project_for_annotator` / `assignment_for_annotator`): the same rule for the
annotator role (any member may label; superusers everywhere), folded into the lease query so
that it costs no extra round trip. Change one, change the other.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from .models import ROLE_RANK, Project, Role


def projects_for(user, role: str = Role.ANNOTATOR) -> QuerySet[Project]:
    """The projects where the user has at least `role` (every project for a superuser)."""
    return Project.objects.for_user(user, role)


def can(user, project: Project, role: str) -> bool:
    """Whether the user has at least `role` in the project."""
    return project.allows(user, role)


def can_create_projects(user) -> bool:
    """Roles are per project, so there is none to check before one exists: staff create them."""
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def project_for_user(user, slug: str, role: str) -> Project:
    """The project if the user has at least `role` in it.

    Raises Http404 for a non-member or an unknown slug, PermissionDenied for a member whose
    role is too low.
    """
    project = Project.objects.filter(slug=slug).first()
    have = None if project is None else project.role_of(user)
    if have is None:
        raise Http404("No such project.")
    if ROLE_RANK[have] < ROLE_RANK[role]:
        raise PermissionDenied(f"This needs the {role} role in the project; you are {have}.")
    return project
