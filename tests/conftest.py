import pytest

from annotate.models import Role

from .factories import MembershipFactory, ProjectFactory, UserFactory


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def charlie(db):
    return UserFactory(username="charlie")


@pytest.fixture
def project(alice):
    """Alice's pairwise project; alice is its admin. Bob and charlie are not members."""
    project = ProjectFactory(name="Alice's pairs", slug="alices-pairs")
    MembershipFactory(project=project, user=alice, role=Role.ADMIN)
    return project


@pytest.fixture
def bob_project(bob):
    project = ProjectFactory(name="Bob's pairs", slug="bobs-pairs")
    MembershipFactory(project=project, user=bob, role=Role.ADMIN)
    return project
