"""Reliability in admin: breakers (operations only: thresholds, live state, overrides with a reason),
dead letters (scoped by hotel: list, detail, retry / discard / park, bulk and per-category redrive)
and the audit log (read-only, scoped by hotel).

Every page here runs on the site of ``console.site``: admins that are not ``ScopedAdmin``
are operations-only there."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from console import dashboard, tenancy
from console.admin import scale
from console.admin.mixins import ReadOnlyMixin
from console.site import ScopedAdmin
from hotelbot.exceptions import HotelbotError
from reliability import dead_letters, services
from reliability.breaker import knobs, registry
from reliability.masking import mask_numbers
from reliability.models import (
    AuditEntry,
    BreakerConfig,
    BreakerEvent,
    BreakerState,
    DeadLetter,
    Heartbeat,
    RateLimitSlot,
)

VIA = AuditEntry.Via.ADMIN


class RecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Rows the system writes (pacing slots, breaker state, heartbeats): operations look; nobody
    adds, edits or deletes."""


class BreakerActionForm(helpers.ActionForm):
    reason = forms.CharField(
        required=False, help_text="Why (required to force open, disable or metrics-only)."
    )
    minutes = forms.IntegerField(
        required=False, min_value=1, help_text="Override ends after this many minutes (empty: until cleared)."
    )


@admin.register(BreakerConfig)
class BreakerConfigAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "live_state",
        "live_failure_rate",
        "mode",
        "mode_until",
        "failure_threshold",
        "recovery_timeout",
        "version",
        "updated_at",
    )
    list_filter = ("mode", "window_type")
    search_fields = ("name", "description", "mode_reason")
    readonly_fields = ("version", "updated_at", "live_state", "live_failure_rate")
    action_form = BreakerActionForm
    actions = ["reset", "force_open", "force_close", "disable", "metrics_only"]
    fieldsets = (
        (None, {"fields": ("name", "description", "live_state", "live_failure_rate")}),
        ("Staff override", {"fields": ("mode", "mode_reason", "mode_until")}),
        # Every tunable knob, declared once in reliability.breaker.knobs (a new one shows up here).
        ("When to open", {"fields": tuple(n for n in knobs.TUNABLE if n not in knobs.RECOVERY)}),
        ("Recovery", {"fields": tuple(n for n in knobs.TUNABLE if n in knobs.RECOVERY)}),
        ("Bookkeeping", {"fields": ("version", "updated_at")}),
    )

    @admin.display(description="live state")
    def live_state(self, obj: BreakerConfig) -> str:
        snap = registry.breaker(obj.name).snapshot()
        wait = f" (retry in {snap.retry_after:.0f}s)" if snap.retry_after else ""
        return f"{snap.state.value}{wait}"

    @admin.display(description="failure rate")
    def live_failure_rate(self, obj: BreakerConfig) -> str:
        snap = registry.breaker(obj.name).snapshot()
        return f"{snap.failure_rate:.0f}% of {snap.calls}"

    def save_model(self, request: HttpRequest, obj: BreakerConfig, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        registry.apply_now(obj.name)

    def _override(self, request: HttpRequest, queryset: QuerySet[BreakerConfig], mode: str) -> None:
        reason = request.POST.get("reason", "")
        minutes = request.POST.get("minutes") or ""
        try:
            until = services.override_until(int(minutes)) if minutes.isdigit() else None
        except HotelbotError as e:
            self.message_user(request, e.message, messages.ERROR)
            return
        done = 0
        for name in queryset.values_list("name", flat=True):
            try:
                services.breaker_set_mode(name=name, mode=mode, reason=reason, until=until)
            except HotelbotError as e:
                self.message_user(request, f"{name}: {e.message}", messages.ERROR)
                return
            done += 1
        self.message_user(request, f"{done} breaker(s) set to {mode}.", messages.SUCCESS)

    @admin.action(description="Reset (close, clear counters and override)", permissions=["change"])
    def reset(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        names = list(queryset.values_list("name", flat=True))
        for name in names:
            services.breaker_reset(name=name)
        self.message_user(request, f"{len(names)} breaker(s) reset.", messages.SUCCESS)

    @admin.action(description="Force open (reason, optional minutes)", permissions=["change"])
    def force_open(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.FORCED_OPEN)

    @admin.action(description="Force close (clear override)", permissions=["change"])
    def force_close(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.AUTO)

    @admin.action(description="Disable (admit every call; reason, optional minutes)", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.DISABLED)

    @admin.action(description="Metrics only (never reject; reason, optional minutes)", permissions=["change"])
    def metrics_only(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.METRICS_ONLY)


@admin.register(BreakerEvent)
class BreakerEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    deletable = True  # operations may clear events (with the delete permission)
    list_display = (
        "at",
        "breaker",
        "from_state",
        "to_state",
        "reason",
        "failure_rate",
        "source",
        "process",
        "alerted_at",
    )
    list_filter = ("breaker", "to_state", "source")
    search_fields = ("breaker", "reason", "process")
    date_hierarchy = "at"


# --- dead letters ------------------------------------------------------------------------------------
class HotelFilter(admin.SimpleListFilter):
    """The hotels the user may see (names from the domain's tenant labels); operations also get
    "no hotel" (letters nobody can attribute, e.g. a notification for an unknown instance)."""

    title = "hotel"
    parameter_name = "hotel"
    NONE = "-"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        present: list[str] = []
        if tenancy.is_operations(
            request.user
        ):  # every hotel, from the Hotel table (no DISTINCT over letters)
            present = _every_hotel_key()
        choices = tenancy.tenant_choices(request.user, present=present)
        if tenancy.is_operations(request.user):
            choices.append((self.NONE, "(no hotel)"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == self.NONE:
            return queryset.filter(tenant="")
        if value:
            return queryset.filter(tenant=value)
        return queryset


class DependencyFilter(admin.SimpleListFilter):
    """The dependencies with a breaker (from the breaker table, not a DISTINCT over the letters),
    and "none" (our own failures, quarantined notifications)."""

    title = "dependency"
    parameter_name = "dependency"
    NONE = "-"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = BreakerConfig.objects.order_by("name").values_list("name", flat=True)
        return [(name, name) for name in names] + [(self.NONE, "(none)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(dependency="" if value == self.NONE else value)


def _every_hotel_key() -> list[str]:
    from messaging.models import Hotel

    return [str(pk) for pk in Hotel.objects.order_by("name", "pk").values_list("pk", flat=True)[:500]]


class AgeFilter(admin.SimpleListFilter):
    """How long ago the letter was recorded."""

    title = "age"
    parameter_name = "age"
    BUCKETS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("1h", "< 1 hour"), ("24h", "< 24 hours"), ("7d", "< 7 days"), ("older", "older than 7 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value, now = self.value(), timezone.now()
        if value in self.BUCKETS:
            return queryset.filter(created_at__gte=now - self.BUCKETS[value])
        if value == "older":
            return queryset.filter(created_at__lt=now - self.BUCKETS["7d"])
        return queryset


class DiscardForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=2000,
        help_text="Why nothing more is to be done (kept in the letter's notes and the audit log).",
    )


class ParkForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, help_text="Optional: what you will do.")


def _pretty_json(value: Any) -> str:
    return mask_numbers(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


@admin.register(DeadLetter)
class DeadLetterAdmin(ScopedAdmin):
    """What failed for good, per hotel: look, retry, discard with a reason, park for a human."""

    list_display = (
        "created_at",
        "kind",
        "status",
        "category",
        "dependency",
        "masked_subject",
        "reason_code",
        "short_reason",
        "attempts",
        "redrive_count",
        "next_redrive_at",
    )
    list_filter = ("status", "kind", "category", DependencyFilter, HotelFilter, AgeFilter)
    search_fields = ("subject",)  # the box; get_search_results looks up what an index answers
    search_help_text = (
        "Search: a dead letter id, a reply job id, a subject exactly (e.g. a Green API instance id), "
        "a reason code (e.g. attempts_exhausted), or words of the reason or error (3 characters or "
        "more; among the newest 2,000 letters)."
    )
    list_per_page = 50
    paginator = scale.EstimatedCountPaginator  # the age filter replaces date_hierarchy (docs/scale.md)
    show_full_result_count = False
    actions = ["retry_selected", "discard_selected", "park_selected"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "kind",
                    "status",
                    "category",
                    "dependency",
                    "hotel",
                    "masked_subject",
                    "reason_code",
                    "reason",
                    "attempts",
                    "handler_links",
                )
            },
        ),
        ("Error", {"fields": ("error_class", "masked_error")}),
        ("Payload", {"fields": ("pretty_payload", "masked_raw", "raw_size", "raw_truncated")}),
        ("Redrive", {"fields": ("redrive_count", "next_redrive_at", "alerted_at")}),
        ("Resolution", {"fields": ("resolved_at", "resolved_by", "resolution", "staff_notes")}),
        ("Times", {"fields": ("first_failed_at", "last_failed_at", "created_at", "updated_at")}),
        ("Attempt history", {"fields": ("attempt_history",)}),
        ("Audit", {"fields": ("audit_trail",)}),
    )

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return tenancy.scope_by_tenant(queryset, request.user)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter], search_term: str
    ) -> tuple[QuerySet[DeadLetter], bool]:
        """Indexed equalities only (``icontains`` over the texts scans every letter: docs/scale.md)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(subject=term) | Q(reason_code=term)
        if term.isdigit():
            q |= Q(pk=int(term)) | Q(subject=f"reply job {term}")
        if len(term) >= 3:
            q |= scale.words_among_newest(DeadLetter, ("reason", "error_message"), term)
        return queryset.filter(q), False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        shown = [str(f) for _, opts in self.fieldsets for f in opts["fields"]]
        return [f for f in shown if f != "staff_notes"]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        keys: list[str] | frozenset[str] | None = tenancy.visible_tenants(request.user)
        if keys is None:
            keys = _every_hotel_key()
        labels = tenancy.tenant_labels(keys)

        @admin.display(description="hotel", ordering="tenant")
        def hotel(obj: DeadLetter) -> str:
            return labels.get(obj.tenant, obj.tenant) or "—"

        display = list(super().get_list_display(request))
        display.insert(5, hotel)
        return display

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # letters are closed (discarded, resolved), never deleted here; retention ages them out

    # --- read-only columns -----------------------------------------------------------------------
    @admin.display(description="hotel")
    def hotel(self, obj: DeadLetter) -> str:
        return tenancy.tenant_labels([obj.tenant]).get(obj.tenant, "") or "— (not attributable)"

    @admin.display(description="subject", ordering="subject")
    def masked_subject(self, obj: DeadLetter) -> str:
        return mask_numbers(obj.subject)

    @admin.display(description="reason")
    def short_reason(self, obj: DeadLetter) -> str:
        text = mask_numbers(obj.reason)
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="error message")
    def masked_error(self, obj: DeadLetter) -> str:
        return (
            format_html("<pre class='hb-pre'>{}</pre>", mask_numbers(obj.error_message))
            if obj.error_message
            else "—"
        )

    @admin.display(description="payload")
    def pretty_payload(self, obj: DeadLetter) -> str:
        return format_html("<pre class='hb-pre'>{}</pre>", _pretty_json(obj.payload))

    @admin.display(description="raw body")
    def masked_raw(self, obj: DeadLetter) -> str:
        return format_html("<pre class='hb-pre'>{}</pre>", mask_numbers(obj.raw)) if obj.raw else "—"

    @admin.display(description="links")
    def handler_links(self, obj: DeadLetter) -> str:
        links = getattr(dead_letters.handler_for(obj.kind), "links", None)
        pairs = list(links(obj)) if callable(links) else []
        if not pairs:
            return "—"
        return format_html_join(" · ", '<a href="{}">{}</a>', ((url, label) for label, url in pairs))

    @admin.display(description="delivery attempts")
    def attempt_history(self, obj: DeadLetter) -> str:
        rows = dashboard.subject_history(obj)
        if not rows:
            return "—"
        head = format_html_join("", "<th>{}</th>", ((column,) for column in rows[0]))
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            ((format_html_join("", "<td>{}</td>", ((value,) for value in row.values())),) for row in rows),
        )
        return format_html("<table class='hb-table'><tr>{}</tr>{}</table>", head, body)

    @admin.display(description="audit entries")
    def audit_trail(self, obj: DeadLetter) -> str:
        entries = AuditEntry.objects.filter(target_type="reliability.deadletter", target_id=str(obj.pk))[:50]
        if not entries:
            return "—"
        return format_html(
            "<table class='hb-table'><tr><th>when</th><th>who</th><th>via</th><th>action</th>"
            "<th>reason</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.actor_name, e.via, e.action, e.reason)
                    for e in entries
                ),
            ),
        )

    def save_model(self, request: HttpRequest, obj: DeadLetter, form: Any, change: bool) -> None:
        dead_letters.dead_letter_set_notes(
            letter=obj, notes=form.cleaned_data.get("staff_notes", ""), actor=request.user, via=VIA
        )

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None  # the audit log (services) records it

    # --- list actions (each calls one dead_letters service per letter and reports counts) ------
    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[DeadLetter],
        verb: str,
        act: Callable[[DeadLetter], Any],
    ) -> None:
        done, errors = 0, []
        for letter in queryset.order_by("created_at", "pk"):
            try:
                act(letter)
            except HotelbotError as e:
                errors.append(f"{letter.pk}: {e.message}")
                continue
            done += 1
        self.message_user(request, f"{done} dead letter(s) {verb}.", messages.SUCCESS)
        if errors:
            shown = "; ".join(errors[:5]) + (" …" if len(errors) > 5 else "")
            self.message_user(request, f"{len(errors)} not {verb}: {shown}", messages.WARNING)

    @admin.action(description="Retry selected dead letters", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self._each(
            request,
            queryset,
            "retried",
            lambda letter: dead_letters.redrive(letter, actor=request.user, via=VIA),
        )

    @admin.action(description="Discard selected dead letters (asks for a reason)", permissions=["change"])
    def discard_selected(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter]
    ) -> TemplateResponse | None:
        form = DiscardForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            self._each(
                request,
                queryset,
                "discarded",
                lambda letter: dead_letters.discard(letter, actor=request.user, via=VIA, reason=reason),
            )
            return None
        return self._confirm_page(
            request,
            title="Discard dead letters",
            question=f"Discard {queryset.count()} dead letter(s)? Nothing more will be tried for them.",
            form=form,
            action="discard_selected",
            selected=[str(pk) for pk in queryset.values_list("pk", flat=True)],
        )

    @admin.action(description="Park selected for a human (no automatic redrive)", permissions=["change"])
    def park_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self._each(
            request,
            queryset,
            "parked",
            lambda letter: dead_letters.park(
                letter, actor=request.user, via=VIA, reason="parked from the list"
            ),
        )

    def _confirm_page(
        self,
        request: HttpRequest,
        *,
        title: str,
        question: str,
        form: forms.Form | None = None,
        action: str = "",
        selected: Sequence[str] = (),
        post_url: str = "",
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "question": question,
            "form": form,
            "action": action,
            "selected": selected,
            "post_url": post_url,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:reliability_deadletter_changelist"),
        }
        return TemplateResponse(request, "admin/reliability/deadletter/confirm.html", context)

    # --- changelist and detail extras ----------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "retry-filtered/",
                wrap(self.retry_filtered_view),
                name="reliability_deadletter_retry_filtered",
            ),
            path(
                "redrive-category/<str:category>/",
                wrap(self.redrive_category_view),
                name="reliability_deadletter_redrive_category",
            ),
            path("<path:object_id>/retry/", wrap(self.retry_view), name="reliability_deadletter_retry"),
            path("<path:object_id>/discard/", wrap(self.discard_view), name="reliability_deadletter_discard"),
            path("<path:object_id>/park/", wrap(self.park_view), name="reliability_deadletter_park"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        open_letters = self.get_queryset(request).filter(status__in=DeadLetter.OPEN_STATUSES)
        counts = {
            row["category"]: row["n"]
            for row in open_letters.order_by().values("category").annotate(n=Count("id"))
        }
        extra = {
            **(extra_context or {}),
            "can_act": self.has_change_permission(request),
            "open_by_category": [
                (key, label, counts[key]) for key, label in DeadLetter.Category.choices if counts.get(key)
            ],
        }
        return super().changelist_view(request, extra)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "discard_form": DiscardForm(),
            "open_statuses": DeadLetter.OPEN_STATUSES,
        }
        return super().change_view(request, object_id, form_url, extra)

    def _letter_or_404(self, request: HttpRequest, object_id: str) -> DeadLetter:
        letter = self.get_object(request, unquote(object_id))
        if letter is None:
            raise Http404("No dead letter matches the given query.")
        if not self.has_change_permission(request, letter):
            raise PermissionDenied
        return letter

    def _back(self, letter: DeadLetter) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:reliability_deadletter_change", args=[letter.pk]))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        letter = self._letter_or_404(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            result = dead_letters.redrive(letter, actor=request.user, via=VIA)
        except HotelbotError as e:
            self.message_user(request, e.message, messages.ERROR)
        else:
            done = "resolved" if result.resolved else "handed back for another try"
            self.message_user(
                request, f"Dead letter {letter.pk} {done}. {result.detail}".strip(), messages.SUCCESS
            )
        return self._back(letter)

    def park_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        letter = self._letter_or_404(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        form = ParkForm(request.POST)
        reason = form.cleaned_data["reason"] if form.is_valid() else ""
        try:
            dead_letters.park(letter, actor=request.user, via=VIA, reason=reason)
        except HotelbotError as e:
            self.message_user(request, e.message, messages.ERROR)
        else:
            self.message_user(request, f"Dead letter {letter.pk} parked for a human.", messages.SUCCESS)
        return self._back(letter)

    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        letter = self._letter_or_404(request, object_id)
        form = DiscardForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                dead_letters.discard(letter, actor=request.user, via=VIA, reason=form.cleaned_data["reason"])
            except HotelbotError as e:
                self.message_user(request, e.message, messages.ERROR)
            else:
                self.message_user(request, f"Dead letter {letter.pk} discarded.", messages.SUCCESS)
            return self._back(letter)
        return self._confirm_page(
            request, title="Discard dead letter", question=f"Discard dead letter {letter.pk}?", form=form
        )

    def _bulk(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter], *, what: str, reason: str
    ) -> HttpResponse:
        """GET: a confirmation page with the count; POST: redrive them all (one service call)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        letters = queryset.filter(status__in=DeadLetter.OPEN_STATUSES)
        if request.method != "POST":
            return self._confirm_page(
                request,
                title="Retry dead letters",
                question=f"Retry {letters.count()} open dead letter(s): {what}?",
                post_url=request.get_full_path(),
            )
        outcome = dead_letters.redrive_many(letters, actor=request.user, via=VIA, reason=reason)
        self.message_user(
            request,
            f"{outcome.retried} handed back, {outcome.resolved} resolved, "
            f"{outcome.refused} refused ({what}).",
            messages.SUCCESS if not outcome.refused else messages.WARNING,
        )
        for error in outcome.errors[:5]:
            self.message_user(request, error, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:reliability_deadletter_changelist"))

    def retry_filtered_view(self, request: HttpRequest) -> HttpResponse:
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:reliability_deadletter_changelist"))
        query = request.GET.urlencode()
        return self._bulk(
            request,
            changelist.get_queryset(request),
            what=f"the filtered list ({query or 'no filter'})",
            reason=f"bulk retry of the filtered list: {query}",
        )

    def redrive_category_view(self, request: HttpRequest, category: str) -> HttpResponse:
        if category not in DeadLetter.Category.values:
            raise Http404("No such category.")
        label = DeadLetter.Category(category).label
        return self._bulk(
            request,
            self.get_queryset(request).filter(category=category),
            what=f"category {label}",
            reason=f"redrive of category {category}",
        )


class StaffUserFilter(admin.RelatedFieldListFilter):
    """The staff users (from the user table), not a DISTINCT over the audit log."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        return field.get_choices(
            include_blank=False, limit_choices_to={"is_staff": True}, ordering=("username",)
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyMixin, ScopedAdmin):
    """Who did what, when and why (read-only; staff see their hotels' entries)."""

    list_display = ("created_at", "actor_name", "via", "action", "target_type", "target_id", "short_reason")
    list_filter = (
        "via",
        scale.recent_values_filter("action", "action"),
        ("actor", StaffUserFilter),
        scale.recent_filter("created_at"),
    )
    search_fields = ("action",)  # the box; get_search_results looks up what an index answers
    search_help_text = (
        "Search: an action (e.g. dead_letter.retry), a target's id, a staff username, or words of "
        "the reason or the actor's name (3 characters or more; among the newest 2,000 entries)."
    )
    paginator = scale.EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = (
        "created_at",
        "actor",
        "actor_name",
        "via",
        "action",
        "target_type",
        "target_id",
        "tenant",
        "reason",
        "details",
    )

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return tenancy.scope_by_tenant(queryset, request.user)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEntry], search_term: str
    ) -> tuple[QuerySet[AuditEntry], bool]:
        """Indexed equalities only (``icontains`` over the texts scans the whole log: docs/scale.md)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        actors = get_user_model().objects.filter(username=term).values_list("pk", flat=True)
        q = Q(action=term) | Q(target_id=term) | Q(actor_id__in=list(actors))
        if len(term) >= 3:
            q |= scale.words_among_newest(AuditEntry, ("reason", "actor_name"), term)
        return queryset.filter(q), False

    @admin.display(description="reason")
    def short_reason(self, obj: AuditEntry) -> str:
        return obj.reason[:120]


@admin.register(RateLimitSlot)
class RateLimitSlotAdmin(RecordAdmin):
    """Pacing slots kept in the database when Redis is not configured (operations only)."""

    list_display = ("name", "next_at")
    readonly_fields = ("name", "next_at")


@admin.register(BreakerState)
class BreakerStateAdmin(RecordAdmin):
    """The database store's rows (read-only: only the breaker store writes them)."""

    list_display = ("name", "state", "open_until", "epoch", "updated_at")
    readonly_fields = ("name", "state", "open_until", "epoch", "data", "updated_at")


@admin.register(Heartbeat)
class HeartbeatAdmin(RecordAdmin):
    """When each periodic job last finished (the beat heartbeat health check reads these)."""

    list_display = ("name", "last_seen_at", "process")
