from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from messaging.services.webhook_auth import (
    WebhookCredential,
    global_token_matches,
    webhook_credential_find,
    webhook_refusal_record,
)

#: ``request.auth`` of a notification accepted with the global GREEN_API_WEBHOOK_TOKEN (any instance).
GLOBAL_TOKEN = "green_api_webhook"  # noqa: S105 - a marker, not a secret
_REFUSED = "Missing or invalid webhook token."


class GreenApiWebhookAuthentication(BaseAuthentication):
    """``Authorization: Bearer <webhookUrlToken>``: a hotel's own token (``request.auth`` is its
    :class:`WebhookCredential`), valid only on that hotel's URL ``/webhooks/green-api/<idInstance>/``
    and on the legacy URL; or, on the legacy URL only, the global ``GREEN_API_WEBHOOK_TOKEN`` when
    an install opts in to it. The body's instance is checked by :func:`webhook_instance_authorize`."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, WebhookCredential | str]:
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(_REFUSED)
        url_instance = _url_instance(request)
        if url_instance is None and global_token_matches(token=token):
            return AnonymousUser(), GLOBAL_TOKEN
        credential = webhook_credential_find(token=token)
        if credential is None:
            raise AuthenticationFailed(_REFUSED)
        if url_instance is not None and url_instance != credential.instance_id:
            webhook_refusal_record(
                credential=credential, claimed_instance=url_instance, url_instance=url_instance
            )
            raise AuthenticationFailed(_REFUSED)
        return AnonymousUser(), credential

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="green-api-webhook"'


def _url_instance(request: Request) -> str | None:
    kwargs: dict[str, Any] = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
    instance = kwargs.get("instance")
    return None if instance is None else str(instance)


def webhook_instance_authorize(*, request: Request, instance: str) -> None:
    """Refuse (401, like a wrong token) a body whose ``idInstance`` is not the token's hotel's, and
    record it for staff. A body naming no instance (unreadable) stays with the token's hotel."""
    credential = request.auth
    if not isinstance(credential, WebhookCredential) or not instance or instance == credential.instance_id:
        return
    webhook_refusal_record(
        credential=credential, claimed_instance=instance, url_instance=_url_instance(request) or ""
    )
    raise AuthenticationFailed(_REFUSED)


class GreenApiWebhookAuthScheme(OpenApiAuthenticationExtension):
    """Documents the webhook's Bearer token in the OpenAPI schema."""

    target_class = "messaging.api.authentication.GreenApiWebhookAuthentication"
    name = "greenApiWebhookToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The hotel's webhook token (webhookUrlToken, issued by hotel_create / "
            "hotel_connect); on the legacy URL also GREEN_API_WEBHOOK_TOKEN when an install sets it.",
        }
