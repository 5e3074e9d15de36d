"""annotate.access: the one project check of pages and API (404 outsiders, 403 low roles)."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotate.access import can, can_create_projects, project_for_user, projects_for
from annotate.models import Role

from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_member_with_the_role_gets_the_project(alice, project):
    assert project_for_user(alice, project.slug, Role.ADMIN) == project


def test_non_member_and_unknown_slug_get_the_same_404(bob, project):
    with pytest.raises(Http404) as outsider:
        project_for_user(bob, project.slug, Role.ANNOTATOR)
    with pytest.raises(Http404) as unknown:
        project_for_user(bob, "nope", Role.ANNOTATOR)
    assert str(outsider.value) == str(unknown.value)


def test_member_whose_role_is_too_low_gets_403(charlie, project):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    assert project_for_user(charlie, project.slug, Role.ANNOTATOR) == project
    with pytest.raises(PermissionDenied):
        project_for_user(charlie, project.slug, Role.RESEARCHER)
    assert not can(charlie, project, Role.RESEARCHER)


def test_superuser_is_admin_everywhere_and_creates_projects(project):
    root = UserFactory(is_superuser=True)
    assert project_for_user(root, project.slug, Role.ADMIN) == project
    assert list(projects_for(root)) == [project]
    assert can_create_projects(root)


def test_only_staff_create_projects(alice, bob):
    assert not can_create_projects(alice)
    assert can_create_projects(UserFactory(is_staff=True))
