"""Degradation over the API: read the state (staff), set or clear the override (operations only)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console import tenancy
from console.api.policies import HasModelPermissions
from hotelbot.exceptions import ValidationFailed
from reliability import degradation
from reliability.models import AuditEntry, DegradationLevel, Switch


class IsOperations(BasePermission):
    message = "Only the operations group may change degradation."

    def has_permission(self, request: Request, view: Any) -> bool:
        return tenancy.is_operations(request.user)


class OverrideSerializer(serializers.Serializer):
    level = serializers.ChoiceField(
        choices=[level.label.upper() for level in DegradationLevel], help_text="Level to hold."
    )
    reason = serializers.CharField(max_length=300, help_text="Why (kept in the audit log and events).")
    minutes = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=degradation.MAX_OVERRIDE_MINUTES,
        help_text="The override ends by itself after this many minutes (at most 30 days).",
    )
    switches_off = serializers.ListField(
        child=serializers.ChoiceField(choices=Switch.values),
        required=False,
        default=list,
        help_text="Switches turned off while the override holds.",
    )


class DegradationView(APIView):
    """The degradation level and switches in force, the rules' state, override and maintenance
    (staff with ``reliability.view_degradationstate``)."""

    permission_classes = [IsAdminUser, HasModelPermissions]
    read_perms = ("reliability.view_degradationstate",)

    @extend_schema(responses={200: OpenApiResponse(description="The degradation state.")})
    def get(self, request: Request) -> Response:
        return Response(degradation.degradation_status())


class DegradationOverrideView(APIView):
    """Set (POST) or clear (DELETE) the staff override of the degradation level (the operations
    group, with ``reliability.change_degradationstate``: the level is shared by every hotel)."""

    permission_classes = [IsAdminUser, IsOperations, HasModelPermissions]
    write_perms = ("reliability.change_degradationstate",)

    @extend_schema(
        request=OverrideSerializer,
        responses={200: OpenApiResponse(description="The degradation state after the change.")},
    )
    def post(self, request: Request) -> Response:
        serializer = OverrideSerializer(data=request.data)
        if not serializer.is_valid():
            raise ValidationFailed(details=serializer.errors)
        data = serializer.validated_data
        degradation.degradation_override_set(
            level=data["level"],
            reason=data["reason"],
            until=degradation.override_until(data.get("minutes")),
            switches_off=data["switches_off"],
            actor=request.user,
            via=AuditEntry.Via.API,
        )
        return Response(degradation.degradation_status())

    @extend_schema(responses={200: OpenApiResponse(description="The degradation state after the change.")})
    def delete(self, request: Request) -> Response:
        degradation.degradation_override_clear(actor=request.user, via=AuditEntry.Via.API)
        return Response(degradation.degradation_status())
