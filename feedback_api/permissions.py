"""Per-project access for the API: the roles of the pages (annotator < researcher < admin)."""

from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from annotate.models import ROLE_RANK, Project, Role


def get_project_for_user(request, slug: str, role: str = Role.ANNOTATOR) -> Project:
    """The project, if the user has at least `role` in it.

    Someone else's project is a 404 (we do not confirm that it exists); a member whose role is
    too low gets a 403, since they can see the project anyway.
    """
    project = get_object_or_404(Project, slug=slug)
    have = project.role_of(request.user)
    if have is None:
        raise Http404("No such project.")
    if ROLE_RANK[have] < ROLE_RANK[role]:
        raise PermissionDenied(f"This needs the {role} role in the project; you are {have}.")
    return project


class CanCreateProjects(BasePermission):
    """Creating projects is for staff users: a role is per project, so there is none to check
    before the project exists. The creator becomes the new project's admin."""

    message = "Only staff users can create projects."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (user.is_staff or user.is_superuser))
