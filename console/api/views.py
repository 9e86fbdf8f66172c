"""The reliability API for integrations: breakers (operations only), dead letters and quarantined
notifications (each user sees their tenants' only; another tenant's id is a 404).

Adapters, one call deep: validate, call one selector or service, serialize. Every write is
audited by the service it calls (``via="api"``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView, ListAPIView, RetrieveAPIView
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from console import tenancy
from console.api import serializers as s
from console.api.policies import HasModelPermissions, IsOperations, NewestFirstCursor, ReliabilityThrottle
from hotelbot.exceptions import NotFound
from reliability import dead_letters, selectors, services
from reliability.models import DeadLetter

VIA = "api"
QUARANTINE = DeadLetter.Kind.WEBHOOK_QUARANTINE

_ERROR_TEXT = {
    400: "Invalid request (`details` holds the messages field by field) or an action the letter's "
    "state does not allow.",
    401: "Not authenticated (send `Authorization: Token <key>` or log in).",
    403: "Authenticated but not allowed: staff only, with the model permission the call needs "
    "(dead letters: view to read, change to act; breakers: the operations group).",
    404: "No such object, or not one of your hotels'.",
    429: "Too many requests for this client (see Retry-After).",
    503: "Temporarily unavailable: the database is unreachable, or writes are paused by the "
    "degradation level (see Retry-After).",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error envelope documented for each of ``codes`` (401, 403, 429 and 503 always)."""
    return {
        code: OpenApiResponse(s.ErrorEnvelopeSerializer, description=_ERROR_TEXT[code])
        for code in sorted({401, 403, 429, 503, *codes})
    }


def _name_param() -> OpenApiParameter:
    return OpenApiParameter(
        "name", OpenApiTypes.STR, OpenApiParameter.PATH, description="Breaker name, e.g. green_api."
    )


def _id_param() -> OpenApiParameter:
    return OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Dead letter id.")


class ReliabilityView(GenericAPIView[Any]):
    """Staff only (``is_staff``), token or session, read/write throttles; the model permissions of
    dead letters (view to read, change to act: 403 without them); each user's hotels only (404)."""

    permission_classes = [IsAdminUser, HasModelPermissions]
    read_perms: tuple[str, ...] = ("reliability.view_deadletter",)
    write_perms: tuple[str, ...] = ("reliability.change_deadletter",)
    throttle_classes = [ReliabilityThrottle]  # also every API view's default (settings)

    def validated(self, serializer_class: type[BaseSerializer[Any]], data: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


# --- breakers ------------------------------------------------------------------------------------
class BreakerView(ReliabilityView):
    """Breakers are shared by every hotel: the operations group, with the breaker permissions."""

    permission_classes = [IsAdminUser, IsOperations, HasModelPermissions]
    read_perms = ("reliability.view_breakerconfig",)
    write_perms = ("reliability.change_breakerconfig",)


@extend_schema(tags=["breakers"])
class BreakerListView(BreakerView):
    @extend_schema(
        operation_id="breakers_list",
        summary="Every circuit breaker with its live shared state",
        responses={200: s.BreakerSerializer(many=True), **_errors()},
    )
    def get(self, request: Request) -> Response:
        return Response(s.BreakerSerializer(selectors.breaker_list(), many=True).data)


@extend_schema(tags=["breakers"], parameters=[_name_param()])
class BreakerDetailView(BreakerView):
    @extend_schema(
        operation_id="breakers_retrieve",
        summary="One breaker: config, live state, time in state, override, recent transitions",
        responses={200: s.BreakerDetailSerializer, **_errors(404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(s.BreakerDetailSerializer(selectors.breaker_detail(name=name)).data)


class _BreakerActionView(BreakerView):
    action_name = ""

    def act(self, request: Request, name: str, *, reason: str, until: Any = None) -> Response:
        services.breaker_act(
            name=name, action=self.action_name, actor=request.user, via=VIA, reason=reason, until=until
        )
        return Response(s.BreakerDetailSerializer(selectors.breaker_detail(name=name)).data)


@extend_schema(tags=["breakers"], parameters=[_name_param()])
class BreakerResetView(_BreakerActionView):
    action_name = "reset"

    @extend_schema(
        operation_id="breakers_reset",
        summary="Reset: clear any override, close with fresh counters (audited)",
        request=s.BreakerActionSerializer,
        responses={200: s.BreakerDetailSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, name: str) -> Response:
        data = self.validated(s.BreakerActionSerializer, request.data)
        return self.act(request, name, reason=data["reason"])


@extend_schema(tags=["breakers"], parameters=[_name_param()])
class BreakerForceOpenView(_BreakerActionView):
    action_name = "force_open"

    @extend_schema(
        operation_id="breakers_force_open",
        summary="Force open: reject every call (reason required; optional minutes) (audited)",
        request=s.BreakerForceOpenSerializer,
        responses={200: s.BreakerDetailSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, name: str) -> Response:
        data = self.validated(s.BreakerForceOpenSerializer, request.data)
        minutes = data.get("minutes")
        until = timezone.now() + timedelta(minutes=minutes) if minutes else None
        return self.act(request, name, reason=data["reason"], until=until)


@extend_schema(tags=["breakers"], parameters=[_name_param()])
class BreakerForceCloseView(_BreakerActionView):
    action_name = "force_close"

    @extend_schema(
        operation_id="breakers_force_close",
        summary="Force close: clear any override and close now, even a tripped breaker (audited)",
        request=s.BreakerActionSerializer,
        responses={200: s.BreakerDetailSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, name: str) -> Response:
        data = self.validated(s.BreakerActionSerializer, request.data)
        return self.act(request, name, reason=data["reason"])


# --- dead letters --------------------------------------------------------------------------------
@extend_schema(tags=["dead-letters"])
class DeadLetterListView(ReliabilityView, ListAPIView[DeadLetter]):
    serializer_class: type[BaseSerializer[Any]] = s.DeadLetterSerializer
    pagination_class = NewestFirstCursor
    filter_serializer: type[s.DeadLetterFilterSerializer] = s.DeadLetterFilterSerializer
    kind: str | None = None

    def get_queryset(self) -> QuerySet[DeadLetter]:
        filters = self.validated(self.filter_serializer, self.request.query_params)
        if self.kind is not None:
            filters["kind"] = self.kind
        return dead_letters.dead_letter_list(
            tenants=tenancy.visible_tenants(self.request.user), filters=filters
        )

    @extend_schema(
        operation_id="dead_letters_list",
        summary="Dead letters you may see, newest first (cursor pages)",
        parameters=[s.DeadLetterFilterSerializer],
        responses={200: s.DeadLetterSerializer(many=True), **_errors(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["dead-letters"], parameters=[_id_param()])
class DeadLetterDetailView(ReliabilityView, RetrieveAPIView[DeadLetter]):
    serializer_class: type[BaseSerializer[Any]] = s.DeadLetterDetailSerializer
    kind: str | None = None

    def get_object(self) -> DeadLetter:
        return dead_letters.dead_letter_get(
            tenants=tenancy.visible_tenants(self.request.user), pk=self.kwargs["pk"], kind=self.kind
        )

    @extend_schema(
        operation_id="dead_letters_retrieve",
        summary="One dead letter: payload, error, raw body, resolution",
        responses={200: s.DeadLetterDetailSerializer, **_errors(404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["dead-letters"], parameters=[_id_param()])
class DeadLetterRetryView(ReliabilityView):
    @extend_schema(
        operation_id="dead_letters_retry",
        summary="Retry (redrive) one open letter through its pipeline (audited)",
        request=s.RetrySerializer,
        responses={200: s.RetryResultSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = self.validated(s.RetrySerializer, request.data)
        letter = dead_letters.dead_letter_get(tenants=tenancy.visible_tenants(request.user), pk=pk)
        result = dead_letters.redrive(letter, actor=request.user, via=VIA, reason=data["reason"])
        return Response(
            s.RetryResultSerializer(
                {
                    "handed_back": result.handed_back,
                    "resolved": result.resolved,
                    "detail": result.detail,
                    "dead_letter": letter,
                }
            ).data
        )


@extend_schema(tags=["dead-letters"], parameters=[_id_param()])
class DeadLetterDiscardView(ReliabilityView):
    kind: str | None = None
    response_serializer: type[BaseSerializer[Any]] = s.DeadLetterDetailSerializer

    @extend_schema(
        operation_id="dead_letters_discard",
        summary="Discard an open letter: nothing more is to be done (reason required; audited)",
        request=s.ReasonSerializer,
        responses={200: s.DeadLetterDetailSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = self.validated(s.ReasonSerializer, request.data)
        letter = dead_letters.dead_letter_get(
            tenants=tenancy.visible_tenants(request.user), pk=pk, kind=self.kind
        )
        dead_letters.discard(letter, actor=request.user, via=VIA, reason=data["reason"])
        return Response(self.response_serializer(letter).data)


@extend_schema(tags=["dead-letters"])
class DeadLetterBulkRetryView(ReliabilityView):
    @extend_schema(
        operation_id="dead_letters_retry_bulk",
        summary="Retry the open letters given by ids or filters, the oldest first (audited; counts)",
        request=s.BulkRetrySerializer,
        responses={200: s.BulkRetryResultSerializer, **_errors(400)},
    )
    def post(self, request: Request) -> Response:
        serializer = s.BulkRetrySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        limit = settings.API_BULK_RETRY_LIMIT
        letters = dead_letters.dead_letter_bulk_set(
            tenants=tenancy.visible_tenants(request.user),
            filters=serializer.filters(),
            ids=serializer.validated_data.get("ids"),
            limit=limit,
        )
        matched = letters.count()
        outcome = dead_letters.redrive_many(
            letters, actor=request.user, via=VIA, reason=serializer.validated_data["reason"]
        )
        return Response(
            s.BulkRetryResultSerializer(
                {
                    "matched": matched,
                    "retried": outcome.retried,
                    "resolved": outcome.resolved,
                    "refused": outcome.refused,
                    "errors": outcome.errors,
                    "limit": limit,
                }
            ).data
        )


# --- quarantined notifications (dead letters of kind webhook_quarantine) -------------------------
class _QuarantineFilterSerializer(s.DeadLetterFilterSerializer):
    kind = None  # type: ignore[assignment]  # always webhook_quarantine
    category = None  # type: ignore[assignment]
    dependency = None  # type: ignore[assignment]


@extend_schema(tags=["quarantined-notifications"])
class QuarantineListView(DeadLetterListView):
    serializer_class = s.QuarantinedNotificationSerializer
    filter_serializer = _QuarantineFilterSerializer
    kind = QUARANTINE

    @extend_schema(
        operation_id="quarantined_notifications_list",
        summary="Webhook notifications acknowledged but quarantined (raw body, reason), newest first",
        parameters=[_QuarantineFilterSerializer],
        responses={200: s.QuarantinedNotificationSerializer(many=True), **_errors(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["quarantined-notifications"], parameters=[_id_param()])
class QuarantineDetailView(DeadLetterDetailView):
    serializer_class = s.QuarantinedNotificationSerializer
    kind = QUARANTINE

    @extend_schema(
        operation_id="quarantined_notifications_retrieve",
        summary="One quarantined notification",
        responses={200: s.QuarantinedNotificationSerializer, **_errors(404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["quarantined-notifications"], parameters=[_id_param()])
class QuarantineDiscardView(DeadLetterDiscardView):
    kind = QUARANTINE
    response_serializer = s.QuarantinedNotificationSerializer

    @extend_schema(
        operation_id="quarantined_notifications_discard",
        summary="Discard a quarantined notification (reason required; audited)",
        request=s.ReasonSerializer,
        responses={200: s.QuarantinedNotificationSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


@extend_schema(tags=["quarantined-notifications"], parameters=[_id_param()])
class QuarantineResolveView(ReliabilityView):
    @extend_schema(
        operation_id="quarantined_notifications_resolve",
        summary="Mark a quarantined notification resolved outside the system (say how; audited)",
        request=s.ReasonSerializer,
        responses={200: s.QuarantinedNotificationSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = self.validated(s.ReasonSerializer, request.data)
        letter = dead_letters.dead_letter_get(
            tenants=tenancy.visible_tenants(request.user), pk=pk, kind=QUARANTINE
        )
        dead_letters.resolve(letter, actor=request.user, via=VIA, reason=data["reason"])
        return Response(s.QuarantinedNotificationSerializer(letter).data)


# --- anything else under /api/v1/ ----------------------------------------------------------------
@extend_schema(exclude=True)
class UnknownPathView(APIView):
    """Any other path under the API answers 404 in the envelope (not Django's HTML page, which
    lists every URL pattern while DEBUG is on)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []  # so throttled per IP (the default throttle)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.http_method_names = [*APIView.http_method_names]
        return super().dispatch(request, *args, **kwargs)

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound("No such API endpoint (paths end with a slash, e.g. /api/v1/dead-letters/).")

    get = post = put = patch = delete = head = options = _not_found
