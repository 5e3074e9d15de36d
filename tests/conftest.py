import pytest
from django.core.cache import cache

from annotate.models import Role
from config.celery import app as celery_app

from .factories import MembershipFactory, ProjectFactory, UserFactory
from .llm_server import LLMServer


@pytest.fixture(autouse=True)
def _fresh_default_cache():
    """The API's request counts (DRF throttles) live in the default cache, in this process's
    memory: each test starts from none, as if it came minutes after the one before."""
    cache.clear()


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
def annotator(project, charlie):
    """Charlie annotates alice's project."""
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    return charlie


@pytest.fixture
def bob_project(bob):
    project = ProjectFactory(name="Bob's pairs", slug="bobs-pairs")
    MembershipFactory(project=project, user=bob, role=Role.ADMIN)
    return project


@pytest.fixture
def eager_celery(settings):
    """Tasks run in the calling process (and still go through apply_async and the broker pool)."""
    # Read first: the first read loads Celery's config from the settings, which are patched next.
    before = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def media(settings, tmp_path):
    """Uploads, built files and reward models go to a temporary MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARDS_DIR = settings.MEDIA_ROOT / "rewards"
    return settings.MEDIA_ROOT


@pytest.fixture
def llm_server():
    """An OpenAI- and Anthropic-speaking server on 127.0.0.1 (tests/llm_server.py)."""
    with LLMServer() as server:
        yield server
