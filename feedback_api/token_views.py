"""API tokens: the endpoints (obtain with a password, rotate, revoke) and the settings page.

One token per user (DRF's authtoken): rotating replaces it, revoking deletes it. The page shows
a new token in full once, right after it is made; afterwards only its first characters.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.services import ServiceError
from config import lockout

from . import services
from .parsers import JSONParser
from .serializers import TokenObtainSerializer, TokenSerializer
from .views import errors, invalid

NEW_TOKEN_SESSION_KEY = "feedback_api:new-token"


class TokenView(APIView):
    """POST with a username and password: your token (made on first use). DELETE: revoke it."""

    parser_classes = [JSONParser]

    def _obtaining(self) -> bool:
        request = getattr(self, "request", None)
        return request is not None and request.method == "POST"

    def get_authenticators(self):
        # Obtaining a token is logging in: no token or session to check yet (and no CSRF).
        return [] if self._obtaining() else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self._obtaining() else [IsAuthenticated()]

    @extend_schema(
        operation_id="auth_token_obtain",
        request=TokenObtainSerializer,
        responses={
            200: OpenApiResponse(TokenSerializer, description="Your existing token."),
            201: OpenApiResponse(TokenSerializer, description="A token made now."),
            **errors(400, 415, 429),
        },
        auth=[],
        description="Trade a username and password for your API token; send it as "
        "`Authorization: Token <key>`. Asking again returns the same token.",
    )
    def post(self, request):
        serializer = TokenObtainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            token, created = services.token_obtain(request=request, **serializer.validated_data)
        except ServiceError as exc:
            # Too many failed logins for this username or from this address (django-axes).
            if lockout.locked_out(request):
                throttled = Throttled(detail=lockout.message(request))
                throttled.wait = lockout.retry_after(request)  # the Retry-After header
                raise throttled from None
            raise invalid(exc) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(TokenSerializer(token).data, status=code)

    @extend_schema(
        operation_id="auth_token_revoke",
        responses={204: None, **errors(401)},
        description="Revoke your token: requests with it fail from now on.",
    )
    def delete(self, request):
        services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenRotateView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="auth_token_rotate",
        request=None,
        responses={201: TokenSerializer, **errors(401)},
        description="Replace your token with a new one; the old one stops working at once.",
    )
    def post(self, request):
        token = services.token_rotate(user=request.user)
        return Response(TokenSerializer(token).data, status=status.HTTP_201_CREATED)


# The settings page ---------------------------------------------------------------------------


@login_required
@require_GET
def token_settings(request):
    token = Token.objects.filter(user=request.user).first()
    new_key = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    context = {
        "token": token,
        "new_key": new_key if token and new_key == token.key else None,
    }
    return render(request, "feedback_api/tokens.html", context)


@login_required
@require_POST
def token_create(request):
    """Make a token, or replace the one there is; shown in full on the next page only."""
    token = services.token_rotate(user=request.user)
    request.session[NEW_TOKEN_SESSION_KEY] = token.key
    messages.success(request, "New API token created. Copy it now: it is shown only once.")
    return redirect("api:tokens")


@login_required
@require_POST
def token_revoke(request):
    if services.token_revoke(user=request.user):
        messages.success(request, "API token revoked.")
    return redirect("api:tokens")
