"""``POST /api/v1/reply-jobs/{id}/answer/``: answer a guest by hand over the API.

The same service as admin's "Answer by hand" page (``manual.reply_answer_manually``: through the
reply pipeline, exactly once, audited ``via="api"``). Needs ``messaging.answer_guests`` (403 for
every id without it); a reply job of a hotel the caller does not staff is a 404 (the service's
hotel scope), in the error envelope.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.api.policies import HasModelPermissions
from hotelbot.exceptions import ValidationFailed
from messaging import permissions
from messaging.models import ReplyJob
from messaging.services import manual
from reliability.models import AuditEntry


class AnswerSerializer(serializers.Serializer):
    text = serializers.CharField(
        max_length=manual.MAX_TEXT, help_text="The answer sent to the guest on WhatsApp, exactly once."
    )
    allow_after_delivery = serializers.BooleanField(
        default=False, help_text="Send even though a reply was already delivered (a follow-up)."
    )


class AnsweredJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReplyJob
        fields = ("id", "status", "manual_at")
        read_only_fields = fields


class ReplyJobAnswerView(APIView):
    """Staff with ``messaging.answer_guests``; the job must belong to one of their hotels."""

    permission_classes = [IsAdminUser, HasModelPermissions]
    write_perms = (permissions.ANSWER_GUESTS,)

    @extend_schema(
        operation_id="reply_jobs_answer",
        summary="Answer the guest of a reply job by hand (sent through the pipeline once; audited)",
        tags=["reply-jobs"],
        parameters=[
            OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="Reply job id.")
        ],
        request=AnswerSerializer,
        responses={
            200: AnsweredJobSerializer,
            400: OpenApiResponse(
                description="Empty or too long text, or a reply already delivered "
                "without `allow_after_delivery` (error envelope)."
            ),
            403: OpenApiResponse(description="Without the permission `messaging.answer_guests`."),
            404: OpenApiResponse(description="No such reply job, or not one of your hotels'."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        serializer = AnswerSerializer(data=request.data)
        if not serializer.is_valid():
            raise ValidationFailed(details=serializer.errors)
        job = manual.reply_answer_manually(
            job_id=pk,
            text=serializer.validated_data["text"],
            actor=request.user,
            via=AuditEntry.Via.API,
            allow_after_delivery=serializer.validated_data["allow_after_delivery"],
        )
        return Response(AnsweredJobSerializer(job).data)
