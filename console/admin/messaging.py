"""Read-mostly admin: hotels are configuration; messages and jobs are records staff inspect.

Each hotel's staff see only their hotels (``Hotel.staff``): every admin here is a ``ScopedAdmin``
whose queryset is cut to ``selectors.hotels_visible_to(user)`` (operations see every hotel), so a
foreign id answers 404 and actions ignore foreign ids. Phone numbers (chat ids) show their last 4
digits only. Deferred statuses cannot be attributed to a hotel: operations only.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from console import tenancy
from console.admin import scale
from console.admin.mixins import ReadOnlyMixin
from console.site import ScopedAdmin
from hotelbot.exceptions import NotFound, ValidationFailed
from messaging import permissions, selectors
from messaging.clients import staff_webhook
from messaging.models import (
    CannedResponse,
    Conversation,
    DeferredStatus,
    DeliveryAttempt,
    Guest,
    Hotel,
    Message,
    ReceptionHours,
    ReplyJob,
    StaffEvent,
    default_timezone,
)
from messaging.selectors import hotels_visible_to
from messaging.services import hotels as hotel_services
from messaging.services import manual, opt_out, replies, retention
from reliability import masking
from reliability.egress import UnsafeUrl
from reliability.fields import is_set, secret_hint
from reliability.masking import mask_numbers
from reliability.models import AuditEntry

#: The time zones a hotel may choose (IANA names known to this machine's zoneinfo).
TIME_ZONES = sorted(zoneinfo.available_timezones())
#: Search help shared by the lists of a guest's traffic (docs/scale.md).
NUMBER_HELP = "a guest's phone number or its first digits (spaces, + and - are ignored)"


def _of_guests_by_number(queryset: QuerySet[Any], search_term: str, lookup: str) -> QuerySet[Any]:
    """The rows of ``queryset`` whose guest (``lookup``: ``pk__in`` for guests, ``guest__in``) has the
    number typed, exactly or by prefix; all rows for an empty term, none for a term that is no number."""
    term = search_term.strip()
    if not term:
        return queryset
    guests = _guests_by_number(term)
    return queryset.filter(**{lookup: guests}) if guests is not None else queryset.none()


def _guests_by_number(term: str) -> QuerySet[Guest] | None:
    """Guests whose chat id starts with the typed number (index ``guest_chat_prefix``), or None."""
    prefix = scale.chat_prefix(term)
    return Guest.objects.filter(chat_id__startswith=prefix) if prefix else None


def _message_q(term: str) -> Q:
    """A message by id, by Green API id (or its start), by its guest's number, or (PostgreSQL:
    trigram index; SQLite: a scan of a small database) by words of its text."""
    q = Q(provider_message_id__startswith=term)
    if term.isdigit():
        q |= Q(pk=int(term))
    guests = _guests_by_number(term)
    if guests is not None:
        # Ids, not a subquery: an OR of index conditions (PostgreSQL's BitmapOr), never a scan.
        conversations = Conversation.objects.filter(guest__in=guests).values_list("pk", flat=True)
        q |= Q(conversation_id__in=list(conversations[: scale.COUNT_CAP]))
    if len(term) >= 3:
        q |= Q(text__icontains=term)
    return q


class HotelScopedAdmin(ScopedAdmin):
    """Rows reached from a hotel through ``hotel_path`` (e.g. ``conversation__hotel``)."""

    hotel_path = "hotel"

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if tenancy.is_operations(request.user):
            return queryset
        hotels = selectors.hotels_visible_to(user=request.user)
        return queryset.filter(**{f"{self.hotel_path}__in": hotels})


class ReadOnlyAdmin(ReadOnlyMixin, HotelScopedAdmin):
    """A hotel's rows the system writes: its staff look, nobody edits."""


class OperationsOnlyReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Not attributable to a hotel: the site makes it operations-only; nobody edits it (operations
    may delete one)."""

    deletable = True


@admin.display(description="guest")
def _guest(guest: Guest) -> str:
    return mask_numbers(str(guest))


class WriteOnlyField(forms.CharField):
    """A secret's form field: never rendered back; changed only when something was typed."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)


class HotelForm(forms.ModelForm):
    """The Green API token is write-only: never rendered back; left empty, the stored one is kept
    as it is (its ciphertext is not even decrypted). The page shows its last four characters."""

    green_api_token = WriteOnlyField(
        required=False,
        max_length=128,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Green API apiTokenInstance. Never shown again; leave empty to keep the current one.",
    )

    staff_hold_minutes = forms.IntegerField(
        required=False,
        min_value=0,
        help_text=Hotel._meta.get_field("staff_hold_minutes").help_text + " Empty: the default.",
    )
    timezone = forms.ChoiceField(
        required=False,
        choices=[("", "the deployment's time zone"), *((name, name) for name in TIME_ZONES)],
        help_text=Hotel._meta.get_field("timezone").help_text,
    )
    handoff_target_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        help_text=Hotel._meta.get_field("handoff_target_minutes").help_text + ". Empty: the default (15).",
    )
    staff_webhook_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=Hotel._meta.get_field("staff_webhook_url").help_text,
    )
    staff_webhook_secret = WriteOnlyField(
        required=False,
        max_length=200,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=Hotel._meta.get_field("staff_webhook_secret").help_text
        + " Never shown again; leave empty to keep the current one.",
    )
    staff_webhook_secret_clear = forms.BooleanField(
        required=False, label="Remove the webhook secret", help_text="Events are then sent unsigned."
    )

    class Meta:
        model = Hotel
        fields = (
            "name",
            "address",
            "staff_contact",
            "staff_hold_minutes",
            "handoff_target_minutes",
            "check_in",
            "check_out",
            "wifi",
            "breakfast",
            "parking",
            "extra_facts",
            "guest_data_retention_days",
            "green_api_instance_id",
            "green_api_token",
            "timezone",
            "handoff_target_minutes",
            "staff_webhook_url",
            "staff_webhook_secret",
        )

    def _minutes_or_default(self, name: str) -> int:
        minutes = self.cleaned_data.get(name)
        default: Any = getattr(Hotel._meta.get_field(name), "default", None)
        return int(default) if minutes is None else int(minutes)

    def clean_staff_hold_minutes(self) -> int:
        return self._minutes_or_default("staff_hold_minutes")

    def clean_handoff_target_minutes(self) -> int:
        return self._minutes_or_default("handoff_target_minutes")

    def clean_timezone(self) -> str:
        return str(self.cleaned_data.get("timezone") or default_timezone())

    def clean_staff_webhook_url(self) -> str:
        """Against SSRF: https to a public host (unless the deployment allows private ones), checked
        when the URL changes; each POST checks again (DNS can change)."""
        url: str = self.cleaned_data.get("staff_webhook_url") or ""
        if url and "staff_webhook_url" in self.changed_data:
            try:
                staff_webhook.url_check(url)
            except UnsafeUrl as e:
                raise forms.ValidationError(e.message, code="unsafe_url") from e
        return url

    def clean_green_api_token(self) -> str:
        token: str = self.cleaned_data.get("green_api_token") or ""
        if token:
            return token
        if self.instance.pk is not None and is_set(self.instance, "green_api_token"):
            return ""  # keep the stored one: dropped in clean(), so the model is never given it
        raise forms.ValidationError("A new hotel needs its Green API token.")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if "green_api_token" in cleaned and not cleaned["green_api_token"]:
            del cleaned["green_api_token"]  # construct_instance skips it: the stored value stays
        if cleaned.pop("staff_webhook_secret_clear", False):
            cleaned["staff_webhook_secret"] = ""
        elif "staff_webhook_secret" in cleaned and not cleaned["staff_webhook_secret"]:
            del cleaned["staff_webhook_secret"]  # kept as stored
        return cleaned


class ReceptionHoursInline(admin.TabularInline):
    """A hotel's reception hours, edited with the hotel by whoever may change the hotel: no rows is
    open 24/7; a weekday without rows is closed (docs/handoff.md)."""

    model = ReceptionHours
    extra = 0
    fields = ("weekday", "opens", "closes")
    verbose_name = "reception opening"
    verbose_name_plural = (
        "Reception hours, in the hotel's time zone (no rows: open 24/7; a weekday without rows: closed; "
        "closes before opens: past midnight; 00:00-00:00: the whole day)"
    )

    def _may_change_hotel(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("messaging.change_hotel"))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("messaging.view_hotel")) or self._may_change_hotel(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change_hotel(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change_hotel(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change_hotel(request)


@admin.register(Hotel)
class HotelAdmin(HotelScopedAdmin):
    """Staff edit their own hotels' facts; only operations add or delete hotels."""

    hotel_path = "pk"
    form = HotelForm
    inlines = [ReceptionHoursInline]
    list_display = (
        "name",
        "green_api_instance_id",
        "green_api_state",
        "green_api_state_changed_at",
        "updated_at",
    )
    list_filter = ("green_api_state",)
    search_fields = ("name", "green_api_instance_id", "address")
    readonly_fields = (
        "green_api_token_hint",
        "staff_webhook_secret_hint",
        "green_api_state",
        "green_api_state_changed_at",
        "green_api_state_checked_at",
        "created_at",
        "updated_at",
        "webhook_url",
        "webhook_token_issued_at",
        "webhook_token_previous_expires_at",
    )
    actions = ["rotate_webhook_token", "connect_green_api"]
    fieldsets = (
        (
            None,
            {"fields": ("name", "address", "staff_contact", "staff_hold_minutes")},
        ),
        (
            "Handoff to staff (reception hours below)",
            {
                "fields": (
                    "timezone",
                    "handoff_target_minutes",
                    "staff_webhook_url",
                    "staff_webhook_secret_hint",
                    "staff_webhook_secret",
                    "staff_webhook_secret_clear",
                )
            },
        ),
        (
            "Concierge facts",
            {"fields": ("check_in", "check_out", "wifi", "breakfast", "parking", "extra_facts")},
        ),
        ("Guests' data", {"fields": ("guest_data_retention_days",)}),
        (
            "Green API",
            {
                "fields": (
                    "green_api_instance_id",
                    "green_api_token_hint",
                    "green_api_token",
                    "green_api_state",
                    "green_api_state_changed_at",
                    "green_api_state_checked_at",
                )
            },
        ),
        (
            "Webhook (tokens are shown once: use the actions to rotate or connect)",
            {"fields": ("webhook_url", "webhook_token_issued_at", "webhook_token_previous_expires_at")},
        ),
        ("Bookkeeping", {"fields": ("created_at", "updated_at")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return tenancy.is_operations(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return tenancy.is_operations(request.user) and super().has_delete_permission(request, obj)

    @admin.display(description="current Green API token")
    def green_api_token_hint(self, obj: Hotel) -> str:
        """Its last four characters only (the token is encrypted at rest and never shown)."""
        return secret_hint(obj, "green_api_token") if obj.pk is not None else "(not set)"

    @admin.display(description="current webhook secret")
    def staff_webhook_secret_hint(self, obj: Hotel) -> str:
        return secret_hint(obj, "staff_webhook_secret") if obj.pk is not None else "(not set)"

    # --- webhook credentials (docs/hotels.md): each token is shown once, on the page that issues it
    @admin.display(description="webhook URL")
    def webhook_url(self, obj: Hotel) -> str:
        if obj.pk is None or not settings.HOTELBOT_PUBLIC_URL:
            return "-"
        return hotel_services.hotel_webhook_url(hotel=obj)

    def save_model(self, request: HttpRequest, obj: Hotel, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:  # a new hotel gets its webhook token now; response_add shows it once
            request._issued_webhook_tokens = hotel_services.hotels_webhook_tokens_rotate(  # type: ignore[attr-defined]
                hotels=[obj], actor=request.user, via=AuditEntry.Via.ADMIN
            )

    def response_add(
        self, request: HttpRequest, obj: Hotel, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued = getattr(request, "_issued_webhook_tokens", None)
        if issued:
            return self._issued_tokens_page(request, issued, "Hotel created")
        return super().response_add(request, obj, post_url_continue)

    def _issued_tokens_page(self, request: HttpRequest, issued: list[Any], title: str) -> HttpResponse:
        response = TemplateResponse(
            request,
            "admin/messaging/hotel/webhook_tokens.html",
            {**self.admin_site.each_context(request), "title": title, "issued": issued, "opts": self.opts},
        )
        response["Cache-Control"] = "no-store"  # the tokens must not stay in any cache
        return response

    @admin.action(description="Rotate webhook token (the new one is shown once)", permissions=["change"])
    def rotate_webhook_token(self, request: HttpRequest, queryset: QuerySet[Hotel]) -> HttpResponse:
        issued = hotel_services.hotels_webhook_tokens_rotate(
            hotels=queryset, actor=request.user, via=AuditEntry.Via.ADMIN
        )
        return self._issued_tokens_page(request, issued, "New webhook tokens")

    @admin.action(description="Connect to Green API (push URL and a fresh token)", permissions=["change"])
    def connect_green_api(self, request: HttpRequest, queryset: QuerySet[Hotel]) -> None:
        done, failed = hotel_services.hotels_connect(
            hotels=queryset, actor=request.user, via=AuditEntry.Via.ADMIN
        )
        if done:
            self.message_user(request, f"{len(done)} hotel(s) connected to Green API.", messages.SUCCESS)
        for hotel, error in failed.items():
            self.message_user(request, f"{hotel}: {error}", messages.ERROR)


class OptedOutFilter(admin.SimpleListFilter):
    title = "opted out (STOP)"
    parameter_name = "opted_out"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "opted out"), ("no", "not opted out")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(opted_out_at__isnull=self.value() == "no")
        return queryset


@admin.register(Guest)
class GuestAdmin(ReadOnlyAdmin):
    list_display = ("masked_chat_id", "display_name", "hotel", "language", "opted_out_at", "last_seen_at")
    list_filter = (scale.hotel_filter("hotel_id"), OptedOutFilter)
    search_fields = ("chat_id",)
    search_help_text = f"Search: {NUMBER_HELP}."
    paginator = scale.EstimatedCountPaginator
    show_full_result_count = False
    list_select_related = ("hotel",)
    fields = (
        "hotel",
        "masked_chat_id",
        "display_name",
        "language",
        "opted_out_at",
        "created_at",
        "last_seen_at",
    )
    readonly_fields = fields
    actions = ["clear_opt_out", "forget"]

    def has_clear_opt_out_permission(self, request: HttpRequest) -> bool:
        """``messaging.clear_opt_out`` (the hotel staff group has it), on the user's guests."""
        return request.user.has_perm(permissions.CLEAR_OPT_OUT)

    @admin.action(
        description="Clear opt-out (the bot may write to the selected guests again)",
        permissions=["clear_opt_out"],
    )
    def clear_opt_out(self, request: HttpRequest, queryset: QuerySet[Guest]) -> None:
        cleared = opt_out.guests_opt_out_clear(guests=queryset, actor=request.user, via=AuditEntry.Via.ADMIN)
        self.message_user(
            request, f"{cleared} guest(s) may receive the bot's messages again.", messages.SUCCESS
        )

    @admin.display(description="chat id", ordering="chat_id")
    def masked_chat_id(self, obj: Guest) -> str:
        return mask_numbers(obj.chat_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Guest], search_term: str
    ) -> tuple[QuerySet[Guest], bool]:
        return _of_guests_by_number(queryset, search_term, "pk__in"), False

    def has_forget_permission(self, request: HttpRequest) -> bool:
        """Erasing a guest's data cannot be undone: ``messaging.delete_guest`` (operations; not in the
        hotel staff group), on the guests of the user's hotels only (the scoped queryset)."""
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    @admin.action(
        description="Forget selected guests (erase their number, name and messages)", permissions=["forget"]
    )
    def forget(self, request: HttpRequest, queryset: QuerySet[Guest]) -> None:
        done = retention.guests_forget(
            guests=queryset, actor=request.user, via=AuditEntry.Via.ADMIN, reason="admin action"
        )
        messages_erased = sum(o.messages for o in done)
        self.message_user(
            request,
            f"{len(done)} guest(s) forgotten ({messages_erased} message(s) erased).",
            messages.SUCCESS,
        )


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("created_at", "direction", "status", "text", "provider_message_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "masked_guest", "hotel", "owner", "started_at", "last_message_at")
    list_filter = (
        "owner",
        scale.hotel_filter("hotel_id"),
        scale.recent_filter("last_message_at", "last message"),
    )
    fields = (
        "hotel",
        "masked_guest",
        "started_at",
        "last_message_at",
        "owner",
        "owner_reason",
        "owner_since",
        "owner_user",
        "owner_until",
    )
    readonly_fields = fields
    search_fields = ("guest__chat_id",)
    search_help_text = f"Search: {NUMBER_HELP}."
    list_select_related = ("guest", "hotel")
    paginator = scale.EstimatedCountPaginator
    show_full_result_count = False
    inlines = [MessageInline]

    @admin.display(description="guest")
    def masked_guest(self, obj: Conversation) -> str:
        return _guest(obj.guest)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        return _of_guests_by_number(queryset, search_term, "guest__in"), False


@admin.register(Message)
class MessageAdmin(scale.ScaleAdminMixin, ReadOnlyAdmin):
    hotel_path = "hotel"  # the denormalised copy of the conversation's hotel: no join
    list_display = ("id", "created_at", "direction", "status", "short_text", "guest", "provider_message_id")
    list_filter = (
        "direction",
        "status",
        scale.hotel_filter("hotel_id"),
        scale.recent_filter("created_at", "received"),
    )
    ordering = ("-pk",)
    sortable_by = ("id", "created_at")
    exclude = ("conversation", "hotel")  # the hotel is the conversation's (shown via the guest)
    readonly_fields = (
        "guest",
        "direction",
        "text",
        "message_type",
        "provider_message_id",
        "status",
        "status_detail",
        "provider_timestamp",
        "created_at",
        "accepted_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
    )
    search_fields = ("text",)  # the box; get_search_results (ScaleAdminMixin) runs search_q
    search_help_text = (
        f"Search: a message id, a Green API message id or its start, {NUMBER_HELP}, or words of the "
        "text (3 characters or more)."
    )
    list_select_related = ("conversation__guest",)

    def search_q(self, term: str) -> Q:
        return _message_q(term)

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]

    @admin.display(description="guest")
    def guest(self, obj: Message) -> str:
        return _guest(obj.conversation.guest)


class DeliveryAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("started_at", "attempt", "step", "outcome", "http_status", "duration_ms", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False


class ReplyJobAdmin(scale.ScaleAdminMixin, ReadOnlyAdmin):
    hotel_path = "inbound__hotel"
    inlines = [DeliveryAttemptInline]
    exclude = ("inbound", "outbound", "lease_token")
    readonly_fields = (
        "question",
        "kind",
        "status",
        "merged_into",
        "burst_started_at",
        "attempts",
        "reply_text",
        "degraded",
        "degraded_reason",
        "last_error",
        "next_attempt_at",
        "lease_expires_at",
        "send_started_at",
        "published_at",
        "published_task_id",
        "republish_count",
        "request_key",
        "created_at",
        "updated_at",
        "completed_at",
    )
    list_display = (
        "id",
        "kind",
        "status",
        "attempts",
        "degraded",
        "next_attempt_at",
        "created_at",
        "completed_at",
        "error",
    )
    list_filter = (
        "status",
        "kind",
        "degraded",
        scale.hotel_filter(scale.of_hotel_newest()),
        scale.recent_filter("created_at", "created"),
    )
    ordering = ("-pk",)
    sortable_by = ("id", "created_at")
    search_fields = ("reply_text",)  # the box; get_search_results (ScaleAdminMixin) runs search_q
    search_help_text = (
        "Search: a reply job id, the guest's message (its id, Green API id or words of its text), or "
        f"{NUMBER_HELP}."
    )
    list_select_related = ("inbound",)
    actions = ["retry_now"]

    def search_q(self, term: str) -> Q:
        inbound = Message.objects.filter(_message_q(term)).order_by("-pk").values_list("pk", flat=True)
        q = Q(inbound_id__in=list(inbound[: scale.COUNT_CAP]))  # ids: the unique inbound index answers
        return q | Q(pk=int(term)) if term.isdigit() else q

    @admin.display(description="last error")
    def error(self, obj: ReplyJob) -> str:
        return mask_numbers(obj.last_error[:80])

    @admin.display(description="guest's question")
    def question(self, obj: ReplyJob) -> str:
        return f"{_guest(obj.inbound.conversation.guest)}: {obj.inbound.text}"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """The "Retry now" action sends guests the bot's replies: ``change_replyjob`` (the form stays
        read-only for everyone)."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Retry selected pending or dead jobs now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[ReplyJob]) -> None:
        count = replies.reply_jobs_requeue(job_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} job(s) re-queued.", messages.SUCCESS)


@admin.register(StaffEvent)
class StaffEventAdmin(ReadOnlyAdmin):
    """The staff webhook's events (the outbox, docs/handoff.md): what was POSTed, when, the last error."""

    list_display = ("created_at", "event", "hotel", "conversation", "attempts", "delivered_at", "given_up_at")
    list_filter = ("event", scale.hotel_filter("hotel_id"), scale.recent_filter("created_at", "created"))
    list_select_related = ("hotel",)
    ordering = ("-pk",)
    fields = (
        "hotel",
        "conversation",
        "event",
        "key",
        "payload",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "given_up_at",
        "last_error",
    )
    readonly_fields = fields


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(scale.ScaleAdminMixin, ReadOnlyAdmin):
    hotel_path = "job__inbound__hotel"
    list_display = (
        "started_at",
        "job",
        "attempt",
        "step",
        "outcome",
        "http_status",
        "duration_ms",
        "short_error",
    )
    list_filter = (
        "step",
        "outcome",
        scale.hotel_filter(scale.of_hotel_newest(through_jobs=True)),
        scale.recent_filter("started_at", "started"),
    )
    ordering = ("-pk",)
    sortable_by = ("started_at",)
    search_fields = ("job__id",)  # the box; get_search_results (ScaleAdminMixin) runs search_q
    search_help_text = "Search: a reply job id (its attempts)."
    list_select_related = ("job",)

    def search_q(self, term: str) -> Q | None:
        return Q(job_id=int(term)) if term.isdigit() else None

    exclude = ("job",)
    readonly_fields = (
        "job_link",
        "attempt",
        "step",
        "started_at",
        "duration_ms",
        "outcome",
        "http_status",
        "error",
    )

    @admin.display(description="error")
    def short_error(self, obj: DeliveryAttempt) -> str:
        return mask_numbers(obj.error[:80])

    @admin.display(description="reply job")
    def job_link(self, obj: DeliveryAttempt) -> str:
        return str(obj.job)


@admin.register(CannedResponse)
class CannedResponseAdmin(HotelScopedAdmin):
    """A hotel's ready answers, offered in the staff inbox's reply box (per language)."""

    list_display = ("title", "language", "hotel", "ordering", "updated_at")
    list_filter = (scale.hotel_filter("hotel_id"), "language")
    search_fields = ("title",)
    list_select_related = ("hotel",)
    fields = ("hotel", "title", "language", "ordering", "text")
    ordering = ("hotel__name", "ordering", "title", "language")


@admin.register(DeferredStatus)
class DeferredStatusAdmin(OperationsOnlyReadOnlyAdmin):
    """Statuses waiting for their message's id: bookkeeping of the status path, operations only.
    Each names the hotel whose instance reported it, and is applied only to that hotel's message."""

    list_display = ("id_message", "status", "hotel", "provider_timestamp", "received_at")
    list_select_related = ("hotel",)
    list_filter = ("status",)
    search_fields = ("id_message",)


# --- Answer by hand (issue 8): one block, so it merges apart from the list/detail scoping ---------
class AnswerByHandForm(forms.Form):
    text = forms.CharField(
        label="Your answer",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        max_length=manual.MAX_TEXT,
        help_text="Sent to the guest on WhatsApp through the reply pipeline, exactly once.",
    )
    allow_after_delivery = forms.BooleanField(
        required=False,
        label="Send even though a reply was already delivered (a follow-up)",
    )


class ReplyJobAnswerAdmin(ReplyJobAdmin):
    """The reply-job admin plus its "Answer by hand" page (``admin:messaging_replyjob_answer``)."""

    def get_urls(self) -> list[URLPattern]:
        answer = path(
            "<int:job_id>/answer/",
            self.admin_site.admin_view(self.answer_view),
            name="messaging_replyjob_answer",
        )
        return [answer, *super().get_urls()]

    def answer_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """The guest's question and conversation, and a form whose answer goes out through the
        pipeline (``manual.reply_answer_manually``). Without ``messaging.answer_guests`` (or without
        the view permission of reply jobs) a 403 for every id; another hotel's job is a 404."""
        if not (permissions.user_may_answer_guests(user=request.user) and self.has_view_permission(request)):
            raise PermissionDenied
        job = (
            ReplyJob.objects.select_related("inbound__conversation__hotel", "inbound__conversation__guest")
            .filter(pk=job_id, inbound__conversation__hotel__in=hotels_visible_to(user=request.user))
            .first()
        )
        if job is None:
            raise Http404("No such reply job.")
        form = AnswerByHandForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                manual.reply_answer_manually(
                    job_id=job.pk,
                    text=form.cleaned_data["text"],
                    actor=request.user,
                    via=AuditEntry.Via.ADMIN,
                    allow_after_delivery=form.cleaned_data["allow_after_delivery"],
                )
            except NotFound as e:
                raise Http404(str(e)) from e
            except ValidationFailed as e:
                form.add_error(None, e.message)
            else:
                self.message_user(
                    request,
                    "Your answer is on its way to the guest; the dead letter resolves when Green API "
                    "accepts it.",
                    messages.SUCCESS,
                )
                return redirect(reverse("admin:messaging_replyjob_answer", args=[job.pk]))
        conversation = job.inbound.conversation
        context = {
            **self.admin_site.each_context(request),
            "title": f"Answer by hand: {conversation.guest.display_name or 'guest'}",
            "opts": self.model._meta,
            "job": job,
            "hotel": conversation.hotel,
            "guest_name": conversation.guest.display_name,
            "guest_chat": masking.mask_chat_id(conversation.guest.chat_id),
            "question": job.inbound,
            "conversation": conversation.messages.order_by("-created_at", "-id")[:30][::-1],
            "form": form,
        }
        return TemplateResponse(request, "admin/messaging/replyjob/answer.html", context)


admin.site.register(ReplyJob, ReplyJobAnswerAdmin)
