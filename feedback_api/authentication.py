"""Token authentication with a short per-process memory of each key's user.

Every API request authenticates; looking the key up each time was one query of the few that a
next-item or submit request needs. A key's user is kept here for API_TOKEN_CACHE_SECONDS.
Deleting a token (revoke, rotate, user deleted) or saving its user (deactivated, password
changed) forgets the user's keys at once in the process that did it; another server process
notices within API_TOKEN_CACHE_SECONDS, when its entry runs out.
"""

from __future__ import annotations

import copy
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

# Plenty for the annotators of one server; past it the memory starts again.
MAX_KEYS = 10_000

# key -> (user, token, monotonic time it runs out)
_keys: dict[str, tuple] = {}
_lock = threading.Lock()


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, remembered for a few seconds per key."""

    def authenticate_credentials(self, key):
        now = time.monotonic()
        hit = _keys.get(key)
        if hit is None or hit[2] <= now:
            user, token = super().authenticate_credentials(key)
            seconds = settings.API_TOKEN_CACHE_SECONDS
            if seconds > 0:
                with _lock:
                    if len(_keys) >= MAX_KEYS:
                        _keys.clear()
                    _keys[key] = (user, token, now + seconds)
            hit = (user, token)
        # A request may set attributes on its user: each gets its own copy.
        return copy.copy(hit[0]), hit[1]


def token_user(request):
    """The active user of the request's API token, outside DRF's views; None without a valid
    one."""
    try:
        found = CachedTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None


def forget_user(user_id: int) -> None:
    """Drop this process's memory of the user's keys."""
    with _lock:
        for key in [key for key, hit in _keys.items() if hit[0].pk == user_id]:
            del _keys[key]


@receiver(post_delete, sender=Token, dispatch_uid="feedback_api.token_deleted")
def _token_deleted(sender, instance: Token, **kwargs) -> None:
    forget_user(instance.user_id)


@receiver(post_save, sender=get_user_model(), dispatch_uid="feedback_api.user_saved")
@receiver(post_delete, sender=get_user_model(), dispatch_uid="feedback_api.user_deleted")
def _user_changed(sender, instance, **kwargs) -> None:
    forget_user(instance.pk)
