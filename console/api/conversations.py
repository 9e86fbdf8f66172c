"""The staff inbox over the API: ``/api/v1/conversations/`` (docs/handoff.md, "The API").

The same selectors and services as the console's inbox pages: conversations waiting for staff and
those staff hold (cursor pages, the oldest owner change first), one conversation's thread, take,
hand back, a staff reply (through the reply pipeline, exactly once: the same request key queues
it once) and internal notes. Reading needs ``messaging.view_conversation``; acting needs it and
``messaging.answer_guests`` (403 for every id without them). A conversation of a hotel the caller
does not staff is a 404, in the error envelope. Every action is audited ``via="api"`` by its service.
Clearing the guest's opt-out (STOP) needs ``messaging.clear_opt_out`` instead of answering.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from console.api.policies import HasModelPermissions
from console.api.views import _errors
from hotelbot.exceptions import ValidationFailed
from messaging import permissions, selectors
from messaging.models import Conversation, ConversationNote, ReplyJob
from messaging.services import handoff, inbox, opt_out
from reliability.models import AuditEntry

VIA = AuditEntry.Via.API
#: The request header that may carry a staff reply's idempotency key (instead of ``request_key``).
IDEMPOTENCY_HEADER = "Idempotency-Key"
VIEW = "messaging.view_conversation"


# --- shapes ----------------------------------------------------------------------------------------
class _Hotel(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ConversationSerializer(serializers.Serializer[Any]):
    """A conversation of the inbox (a ``selectors.InboxRow``)."""

    id = serializers.IntegerField(source="conversation.pk")
    hotel = _Hotel(source="conversation.hotel")
    guest = serializers.CharField(help_text="The guest's chat id, masked to its last 4 digits.")
    guest_name = serializers.CharField(source="conversation.guest.display_name")
    owner = serializers.ChoiceField(
        source="conversation.owner", choices=Conversation.Owner.choices, help_text="bot, waiting or staff."
    )
    owner_reason = serializers.CharField(source="conversation.owner_reason")
    owner_since = serializers.DateTimeField(source="conversation.owner_since", allow_null=True)
    owner_until = serializers.DateTimeField(
        source="conversation.owner_until",
        allow_null=True,
        help_text="End of a hold taken from the hotel's phone (null: until handed back).",
    )
    owner_user = serializers.SerializerMethodField(help_text="Username of the staff who took it.")
    waited_seconds = serializers.FloatField(help_text="Seconds since the owner last changed.")
    target_seconds = serializers.FloatField(help_text="The hotel's handoff target (handoff_target_minutes).")
    overdue = serializers.BooleanField(help_text="Waiting for staff longer than the hotel's target.")
    last_message = serializers.CharField(help_text="The latest message's text ([type] for media).")
    guest_opted_out_at = serializers.DateTimeField(
        source="conversation.guest.opted_out_at",
        allow_null=True,
        help_text="When the guest opted out (STOP): no bot message goes to them until they write "
        "again or staff clear it (`clear-opt-out/`). Null: not opted out.",
    )

    def get_owner_user(self, row: selectors.InboxRow) -> str | None:
        user = row.conversation.owner_user
        return user.get_username() if user is not None else None


class ThreadItemSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        choices=["message", "queued", "note"],
        help_text="message; queued (a staff reply not sent yet, or dead before it left); note "
        "(internal, never sent to the guest).",
    )
    id = serializers.IntegerField(source="pk", help_text="Message, reply job or note id (by kind).")
    at = serializers.DateTimeField()
    who = serializers.CharField(help_text="guest, bot, staff, staff (phone), or a note's author.")
    text = serializers.CharField()
    status = serializers.CharField(help_text="Delivery status of a message (received for the guest's).")
    status_detail = serializers.CharField()


class ConversationDetailSerializer(ConversationSerializer):
    thread = ThreadItemSerializer(many=True, help_text="Oldest first: messages, queued replies, notes.")
    thread_truncated = serializers.BooleanField(help_text="Older messages than the latest 300 are left out.")


class OwnerFilterSerializer(serializers.Serializer[Any]):
    owner = serializers.ChoiceField(
        choices=selectors.INBOX_OWNERS,
        required=False,
        help_text="waiting (for staff) or staff (held); omitted: both.",
    )


class ReplySerializer(serializers.Serializer[Any]):
    text = serializers.CharField(
        max_length=handoff.MAX_TEXT, help_text="The message sent to the guest on WhatsApp, exactly once."
    )
    request_key = serializers.CharField(
        max_length=64,
        required=False,
        help_text=f"Idempotency key (or the `{IDEMPOTENCY_HEADER}` header): the same key queues the "
        "message once and answers with the same job.",
    )


class QueuedReplySerializer(serializers.ModelSerializer[ReplyJob]):
    class Meta:
        model = ReplyJob
        fields = ("id", "kind", "status", "request_key", "created_at")
        read_only_fields = fields


class NoteSerializer(serializers.ModelSerializer[ConversationNote]):
    author = serializers.SerializerMethodField()

    class Meta:
        model = ConversationNote
        fields = ("id", "author", "text", "created_at")
        read_only_fields = fields

    def get_author(self, note: ConversationNote) -> str | None:
        return note.author.get_username() if note.author is not None else None


class NoteInSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=inbox.MAX_NOTE, help_text="For staff only: never sent.")


# --- views -----------------------------------------------------------------------------------------
def _pk() -> OpenApiParameter:
    return OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Conversation id.")


def _validated(serializer_class: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ValidationFailed(details=serializer.errors)
    return dict(serializer.validated_data)


def _row(request: Request, pk: int) -> selectors.InboxRow:
    conversation = selectors.inbox_conversation_get(user=request.user, pk=pk)
    return selectors.inbox_rows([conversation], now=timezone.now())[0]


class OldestOwnerChangeFirst(CursorPagination):
    """Stable pages, the longest wait first (position: when the owner last changed)."""

    ordering = ("owner_since", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ConversationView(GenericAPIView[Any]):
    """Staff only; ``messaging.view_conversation`` to read, with ``messaging.answer_guests`` to act."""

    permission_classes = [IsAdminUser, HasModelPermissions]
    read_perms: tuple[str, ...] = (VIEW,)
    write_perms: tuple[str, ...] = (VIEW, permissions.ANSWER_GUESTS)


@extend_schema(tags=["conversations"])
class ConversationListView(ConversationView, ListAPIView[Any]):
    serializer_class = ConversationSerializer
    pagination_class = OldestOwnerChangeFirst

    @extend_schema(
        operation_id="conversations_list",
        summary="Conversations waiting for staff and those staff hold, the longest wait first",
        parameters=[OwnerFilterSerializer],
        responses={200: ConversationSerializer(many=True), **_errors(400)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        owner = _validated(OwnerFilterSerializer, request.query_params).get("owner")
        now = timezone.now()
        conversations = selectors.inbox_conversations(
            user=request.user, now=now, owners=(owner,) if owner else selectors.INBOX_OWNERS
        )
        page = self.paginate_queryset(conversations)
        rows = selectors.inbox_rows(page if page is not None else conversations, now=now)
        return self.get_paginated_response(ConversationSerializer(rows, many=True).data)


@extend_schema(tags=["conversations"], parameters=[_pk()])
class ConversationDetailView(ConversationView):
    @extend_schema(
        operation_id="conversations_retrieve",
        summary="One conversation: owner, reason, wait, and the whole thread with notes",
        responses={200: ConversationDetailSerializer, **_errors(404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        row = _row(request, pk)
        thread = selectors.conversation_thread(conversation=row.conversation)
        data = ConversationSerializer(row).data
        data["thread"] = ThreadItemSerializer(thread.items, many=True).data
        data["thread_truncated"] = thread.truncated
        return Response(data)


class _OwnerChangeView(ConversationView):
    """Take or hand back: one owner-change service, then the conversation as it is now."""

    change: Any = None  # handoff.conversation_take or handoff.conversation_hand_back

    def post(self, request: Request, pk: int) -> Response:
        type(self).change(conversation_id=pk, actor=request.user, via=VIA)
        return Response(ConversationSerializer(_row(request, pk)).data)


@extend_schema(tags=["conversations"], parameters=[_pk()])
@extend_schema_view(
    post=extend_schema(
        operation_id="conversations_take",
        summary="Take the conversation: the bot stays silent until handed back (audited)",
        request=None,
        responses={200: ConversationSerializer, **_errors(404)},
    )
)
class ConversationTakeView(_OwnerChangeView):
    change = handoff.conversation_take


@extend_schema(tags=["conversations"], parameters=[_pk()])
@extend_schema_view(
    post=extend_schema(
        operation_id="conversations_hand_back",
        summary="Hand the conversation back to the bot (audited)",
        request=None,
        responses={200: ConversationSerializer, **_errors(404)},
    )
)
class ConversationHandBackView(_OwnerChangeView):
    change = handoff.conversation_hand_back


@extend_schema(tags=["conversations"], parameters=[_pk()])
class ConversationReplyView(ConversationView):
    @extend_schema(
        operation_id="conversations_reply",
        summary="Send the guest a message written by staff, through the pipeline once (audited)",
        description="Staff replying take the conversation. The same `request_key` (or "
        f"`{IDEMPOTENCY_HEADER}` header) queues the message once: a repeat answers with the same job.",
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Idempotency key (the body's `request_key` wins when both are given).",
            )
        ],
        request=ReplySerializer,
        responses={202: QueuedReplySerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _validated(ReplySerializer, request.data)
        key = data.get("request_key") or request.headers.get(IDEMPOTENCY_HEADER, "")
        if len(key) > 64:
            raise ValidationFailed(details={"request_key": ["At most 64 characters."]})
        job = handoff.staff_reply_queue(
            conversation_id=pk, text=data["text"], actor=request.user, via=VIA, request_key=key or None
        )
        return Response(QueuedReplySerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["conversations"], parameters=[_pk()])
class ConversationNotesView(ConversationView):
    #: The notes listed (the latest ones, oldest first).
    limit = 500

    @extend_schema(
        operation_id="conversations_notes_list",
        summary="The conversation's internal notes, oldest first (never sent to the guest)",
        responses={200: NoteSerializer(many=True), **_errors(404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        conversation = selectors.inbox_conversation_get(user=request.user, pk=pk)
        notes = selectors.conversation_notes(conversation_id=conversation.pk).order_by("-created_at", "-id")
        return Response(NoteSerializer(list(notes[: self.limit])[::-1], many=True).data)

    @extend_schema(
        operation_id="conversations_notes_create",
        summary="Add an internal note (staff only; audited)",
        request=NoteInSerializer,
        responses={201: NoteSerializer, **_errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _validated(NoteInSerializer, request.data)
        note = inbox.note_add(conversation_id=pk, actor=request.user, text=data["text"], via=VIA)
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["conversations"], parameters=[_pk()])
@extend_schema_view(
    post=extend_schema(
        operation_id="conversations_clear_opt_out",
        summary="Clear the guest's opt-out (STOP): the bot may write to them again (audited)",
        description="Needs `messaging.clear_opt_out`. Audited as `guest.opt_out_clear` when the guest "
        "was opted out; a guest who was not is left as is (200 all the same).",
        request=None,
        responses={200: ConversationSerializer, **_errors(404)},
    )
)
class ConversationClearOptOutView(ConversationView):
    write_perms = (VIEW, permissions.CLEAR_OPT_OUT)

    def post(self, request: Request, pk: int) -> Response:
        opt_out.conversation_opt_out_clear(conversation_id=pk, actor=request.user, via=VIA)
        return Response(ConversationSerializer(_row(request, pk)).data)
