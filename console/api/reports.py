"""``GET /api/v1/reports/reliability/?hours=24``: the reliability report, cut to the caller's hotels."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console import reports
from console.api.policies import HasModelPermissions
from hotelbot.exceptions import ValidationFailed


class _Period(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()


class _Latency(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True, help_text="Median seconds, guest message → reply accepted.")
    p95 = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField(help_text="Answered replies measured.")


class _Replies(serializers.Serializer):
    by_result = serializers.DictField(
        child=serializers.IntegerField(), help_text="done, degraded, dead, pending, in_progress, ..."
    )
    latency_seconds = _Latency()


class _DeadLetters(serializers.Serializer):
    open = serializers.IntegerField(
        help_text="Open now (pending, retrying, manual), recorded before `until`."
    )
    created = serializers.IntegerField(help_text="Recorded in the period.")
    by_category = serializers.DictField(child=serializers.IntegerField())
    by_dependency = serializers.DictField(child=serializers.IntegerField())
    by_kind = serializers.DictField(child=serializers.IntegerField())


class _Breaker(serializers.Serializer):
    name = serializers.CharField()
    state_now = serializers.CharField()
    transitions = serializers.IntegerField()
    seconds_open = serializers.FloatField(help_text="Seconds open or forced open within the period.")


class _Reason(serializers.Serializer):
    reason_code = serializers.CharField()
    count = serializers.IntegerField()


class ReliabilityReportSerializer(serializers.Serializer):
    period = _Period()
    replies = _Replies()
    dead_letters = _DeadLetters()
    breakers = _Breaker(many=True)
    top_failure_reasons = _Reason(many=True)


class _Error(serializers.Serializer):
    error = serializers.DictField(help_text='{"code", "message", "details"}')


def _hours(request: Request) -> int:
    raw = request.query_params.get("hours", "24")
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(
            f"hours must be a whole number, not {raw[:20]!r}.", details={"hours": "1 to 720."}
        ) from None


class ReliabilityReportView(APIView):
    """Staff with ``reliability.view_reliabilityreport``; numbers of their own hotels only."""

    permission_classes = [IsAdminUser, HasModelPermissions]
    read_perms = ("reliability.view_reliabilityreport",)

    @extend_schema(
        operation_id="reliability_report",
        summary="Reliability report of the last N hours",
        description="Replies by result and latency, dead letters by category / dependency / kind, "
        "breaker transitions and time open, top failure reasons. Replies and dead letters are cut "
        "to the hotels the caller staffs (operations: every hotel).",
        parameters=[
            OpenApiParameter("hours", OpenApiTypes.INT, description="Period in hours, 1-720 (default 24).")
        ],
        responses={
            200: ReliabilityReportSerializer,
            400: OpenApiResponse(_Error, description="Bad `hours`, in the error envelope."),
        },
        tags=["reports"],
    )
    def get(self, request: Request) -> Response:
        return Response(reports.reliability_report_last(hours=_hours(request), user=request.user))
