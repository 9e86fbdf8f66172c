from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api.authentication import GreenApiWebhookAuthentication
from messaging.notifications import parse_notification
from messaging.services.intake import notification_ingest


class GreenApiWebhookView(APIView):
    """Green API posts every notification here; 200 means stored (or deliberately ignored).

    Anything else makes Green API resend the same notification after 60 s for up to 24 h.
    """

    authentication_classes = [GreenApiWebhookAuthentication]
    permission_classes = [AllowAny]  # the authentication class rejects a bad token with 401
    parser_classes = [JSONParser]
    throttle_classes: list[type] = []

    @extend_schema(
        request=dict,
        responses={
            200: OpenApiResponse(description="Stored, duplicate, or ignored."),
            400: OpenApiResponse(description="Malformed JSON or missing fields."),
            401: OpenApiResponse(description="Missing or wrong Bearer token."),
            404: OpenApiResponse(description="No hotel for this Green API instance."),
            503: OpenApiResponse(description="Database unavailable; Green API will redeliver."),
        },
    )
    def post(self, request: Request) -> Response:
        result = notification_ingest(notification=parse_notification(request.data))
        return Response({"status": result.action})
