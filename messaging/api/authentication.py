from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request


class GreenApiWebhookAuthentication(BaseAuthentication):
    """``Authorization: Bearer <GREEN_API_WEBHOOK_TOKEN>``, compared in constant time."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, str]:
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        expected = settings.GREEN_API_WEBHOOK_TOKEN.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise AuthenticationFailed("Missing or invalid webhook token.")
        return AnonymousUser(), "green_api_webhook"

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="green-api-webhook"'


class GreenApiWebhookAuthScheme(OpenApiAuthenticationExtension):
    """Documents the webhook's Bearer token in the OpenAPI schema."""

    target_class = "messaging.api.authentication.GreenApiWebhookAuthentication"
    name = "greenApiWebhookToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "GREEN_API_WEBHOOK_TOKEN (webhookUrlToken)",
        }
