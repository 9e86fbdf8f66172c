from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api.authentication import GreenApiWebhookAuthentication, webhook_instance_authorize
from messaging.notifications import instance_of, parse_webhook_body, read_body
from messaging.services.intake import notification_ingest
from reliability import ratelimit

WEBHOOK_SCOPE = "webhook"


def _content_length(request: Request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


class GreenApiWebhookView(APIView):
    """Green API posts every notification here; an authenticated request is always answered 200
    (stored, duplicate, ignored, or quarantined for staff) unless the database is unavailable.

    Anything else makes Green API resend the same notification after 60 s for up to 24 h, and it
    delivers in order: one rejected notification would hold every later message of the hotel.
    """

    authentication_classes = [GreenApiWebhookAuthentication]
    permission_classes = [AllowAny]  # the authentication class rejects a bad token with 401
    parser_classes: list[type] = []  # the body is read by read_body, bounded (never request.data)
    throttle_classes: list[type] = []  # limited per Green API instance, once the body names it

    @extend_schema(
        request=dict,
        responses={
            200: OpenApiResponse(
                description="Acknowledged: stored, duplicate, status applied, ignored, or quarantined "
                "(a body that cannot be parsed or stored, or an unknown instance, is kept as a dead "
                'letter for staff and answered `{"status": "quarantined"}`).',
                examples=[
                    OpenApiExample("stored", value={"status": "stored"}),
                    OpenApiExample("quarantined", value={"status": "quarantined"}),
                ],
            ),
            401: OpenApiResponse(
                description="Missing or wrong Bearer token, or a token of another hotel than the body's "
                "idInstance (nothing stored)."
            ),
            429: OpenApiResponse(
                description="More notifications from this instance than `WEBHOOK_RATE_LIMIT` (with "
                "Retry-After; nothing stored, Green API redelivers)."
            ),
            503: OpenApiResponse(
                description="Database unavailable (with Retry-After); Green API will redeliver."
            ),
        },
    )
    def post(self, request: Request, instance: str | None = None) -> Response:
        # ``instance``: the per-hotel URL's idInstance, checked by the authentication class.
        body = read_body(
            request.stream,
            content_length=_content_length(request),
            limit=settings.WEBHOOK_MAX_BODY_BYTES,
            keep=settings.DEAD_LETTER_RAW_MAX_CHARS,
        )
        notification = parse_webhook_body(body)
        claimed = instance_of(notification)
        webhook_instance_authorize(request=request, instance=claimed)  # the token's hotel's, or 401
        self.check_instance_rate(claimed)
        result = notification_ingest(notification=notification, body=body)
        return Response({"status": result.action})

    def check_instance_rate(self, instance: str) -> None:
        """The per-instance limit (generous: Green API's normal ~50/s never meets it), checked in
        the shared store once per WEBHOOK_RATE_LEASE notifications (``ratelimit.admit``)."""
        rate = ratelimit.Rate.parse(settings.WEBHOOK_RATE_LIMIT, burst=settings.WEBHOOK_RATE_BURST)
        lease = settings.WEBHOOK_RATE_LEASE
        admission = ratelimit.admit(scope=WEBHOOK_SCOPE, client=instance or "-", rate=rate, lease=lease)
        if not admission.allowed:
            raise Throttled(wait=admission.retry_after)


@extend_schema_view(post=extend_schema(operation_id="webhooks_green_api_hotel_create"))
class GreenApiHotelWebhookView(GreenApiWebhookView):
    """One hotel's webhook URL (what ``hotel_connect`` configures): accepts only that hotel's own
    token and only notifications of its instance; otherwise the same as the shared URL (its own
    class only so that the two OpenAPI operations have distinct ids)."""
