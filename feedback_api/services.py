"""Writes behind the API that the annotate services do not cover: project settings, member roles
with the last-admin guard, JSON bulk item creation through the import service, and tokens."""

from __future__ import annotations

import io
import json

from django.contrib.auth import authenticate
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotate import services
from annotate.importing import ImportReport
from annotate.kinds import KindError, get_kind
from annotate.models import Membership, Project
from annotate.services import ServiceError


def project_update(
    *,
    project: Project,
    config: dict | None = None,
    guidelines: str | None = None,
    overlap: int | None = None,
) -> Project:
    """Change a project's kind config, guidelines or overlap; None leaves a setting as it is.

    The config is validated and completed by the project's kind, as at creation.
    """
    fields = []
    if config is not None:
        try:
            project.config = get_kind(project.kind).clean_config(config)
        except KindError as exc:
            raise ServiceError(str(exc), "config") from None
        fields.append("config")
    if guidelines is not None:
        project.guidelines = guidelines
        fields.append("guidelines")
    if overlap is not None:
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= 100:
            raise ServiceError("Overlap must be a whole number from 1 to 100.", "overlap")
        project.overlap = overlap
        fields.append("overlap")
    if fields:
        project.save(update_fields=fields)
    return project


def project_member_set(*, project: Project, username: str, role: str) -> tuple[Membership, bool]:
    """Add a user by username or change their role; the last admin cannot step down."""
    user = services.user_by_username(username)
    return services.membership_set(project=project, user=user, role=role)


def project_member_remove(*, project: Project, username: str) -> None:
    user = services.user_by_username(username)
    if not project.memberships.filter(user=user).exists():
        raise ServiceError(f"{username!r} is not a member of this project.", "username")
    services.membership_remove(project=project, user=user)


def items_create(
    *,
    project: Project,
    records: list,
    skip_invalid: bool = False,
    keep_labels: bool = False,
    labels_for_existing: bool = False,
) -> ImportReport:
    """Create items from JSON records through the file import service, so that validation,
    error reports and dedup by external_id are those of a file import (a record's line is its
    index + 1)."""
    # json, not orjson: a body may hold integers past 64 bits, which the import then reports.
    body = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
    return services.item_import(
        project=project,
        stream=io.BytesIO(body),
        filename="items.jsonl",
        fmt="jsonl",
        size=len(body),
        skip_invalid=skip_invalid,
        keep_labels=keep_labels,
        labels_for_existing=labels_for_existing,
    )


# Tokens -------------------------------------------------------------------------------------


def token_obtain(*, request, username: str, password: str) -> tuple[Token, bool]:
    """The user's API token for a username and password, created on first use."""
    user = authenticate(request=request, username=username, password=password)
    if user is None or not user.is_active:
        raise ServiceError("Unable to log in with these credentials.", "non_field_errors")
    return Token.objects.get_or_create(user=user)


def token_rotate(*, user) -> Token:
    """Replace the user's token with a new one (creating it if they had none)."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def token_revoke(*, user) -> bool:
    """Delete the user's token; returns whether there was one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
