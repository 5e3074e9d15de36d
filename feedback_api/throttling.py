"""API rate limits: DRF's throttles with their rates read from settings on each request.

DRF reads DEFAULT_THROTTLE_RATES once, when its throttling module is imported; these read
API_THROTTLE_USER_PER_MINUTE and API_THROTTLE_ANON_PER_MINUTE (0: no limit) on each request, so
the rates are plain settings that a test can change.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


def _per_minute(count: int) -> str | None:
    return f"{count}/min" if count > 0 else None


class UserThrottle(UserRateThrottle):
    """Per user, for authenticated requests (token or session)."""

    def get_rate(self) -> str | None:
        return _per_minute(settings.API_THROTTLE_USER_PER_MINUTE)

    def get_cache_key(self, request, view) -> str | None:
        # DRF's would count anonymous requests here too, by address: AnonThrottle's alone.
        if not (request.user and request.user.is_authenticated):
            return None
        return super().get_cache_key(request, view)


class AnonThrottle(AnonRateThrottle):
    """Per client address, for requests without a user (obtaining a token, public pages)."""

    def get_rate(self) -> str | None:
        return _per_minute(settings.API_THROTTLE_ANON_PER_MINUTE)
