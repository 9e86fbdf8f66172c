"""Each hotel's staff see and act on only their hotel, through every admin URL (issue 8, item 8).

Hotel A's staff user holds EVERY model permission, so nothing but the hotel scoping keeps hotel B's
rows from them: changelists don't list B's rows, B's ids answer 404 (like a missing id: not
probeable) on the change, history and delete pages, actions on posted B ids change nothing, and
models that belong to no hotel (breakers, rate-limit slots, users, schedules) are operations-only.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from rest_framework.authtoken.models import Token, TokenProxy

from console.site import ScopedAdmin
from messaging.models import DeferredStatus, ReplyJob
from messaging.permissions import OPERATIONS_GROUP
from reliability.models import (
    AuditEntry,
    BreakerState,
    DeadLetter,
    DegradationEvent,
    DependencyMaintenance,
    Heartbeat,
    RateLimitSlot,
    ReliabilityReport,
)
from tests.console.admin_world import (
    HotelRows,
    RecordingHandler,
    breaker_event,
    hotel_rows,
    operations_user,
)

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry, key=lambda m: m._meta.label)
MISSING = "987654321"


@pytest.fixture
def scoping_world() -> dict[str, Any]:
    a = hotel_rows("Alpha Hotel", "1101000011", "79001110001@c.us", "alice")
    b = hotel_rows("Bravo Hotel", "1101000022", "79002220002@c.us", "bob")
    # Rows no hotel owns.
    others = {
        # Now kept per hotel (issue 16), but still shown to operations only.
        DeferredStatus: DeferredStatus.objects.create(
            hotel=a.hotel, id_message="X1", status="sent", provider_timestamp="2026-01-01T00:00:00Z"
        ),
        BreakerState: BreakerState.objects.create(name="green_api", updated_at="2026-01-01T00:00:00Z"),
        RateLimitSlot: RateLimitSlot.objects.create(name="green_api:1:sendMessage"),
        Group: Group.objects.get_or_create(name=OPERATIONS_GROUP)[0],
        CrontabSchedule: CrontabSchedule.objects.create(minute="5"),
        SolarSchedule: SolarSchedule.objects.create(event="sunrise", latitude=0, longitude=0),
        ClockedSchedule: ClockedSchedule.objects.create(clocked_time=timezone.now()),
    }
    interval = IntervalSchedule.objects.create(every=10, period="seconds")
    others[IntervalSchedule] = interval
    others[PeriodicTask] = PeriodicTask.objects.create(name="probe", task="x.y", interval=interval)
    others[type(breaker_event())] = breaker_event()
    now = timezone.now()
    others[DegradationEvent] = DegradationEvent.objects.create(
        from_level=0, to_level=2, cause="rule: green_api open", actor="system"
    )
    others[DependencyMaintenance] = DependencyMaintenance.objects.create(
        dependency="green_api", reason="provider notice", until=now, actor="ops"
    )
    others[Heartbeat] = Heartbeat.objects.create(name="reply_sweeper", last_seen_at=now)
    others[ReliabilityReport] = ReliabilityReport.objects.create(period_start=now, period_end=now, data={})
    token = Token.objects.create(user=User.objects.create_user("integration", is_staff=True))
    others[TokenProxy] = TokenProxy.objects.get(key=token.key)
    return {"a": a, "b": b, "others": others}


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _foreign_row(model: Any, scoping_world: dict[str, Any]) -> Any:
    """A row hotel A's staff must not reach: hotel B's, or any row of a hotel-less model."""
    b: HotelRows = scoping_world["b"]
    if model in b.rows:
        return b.rows[model]
    if model in scoping_world["others"]:
        return scoping_world["others"][model]
    return model._default_manager.order_by("pk").first()  # BreakerConfig (seeded), User, Group, ...


def _url(model: Any, view: str, pk: Any = None) -> str:
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"
    return reverse(name, args=[quote(pk)] if pk is not None else None)


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_hotel_staff_cannot_read_or_reach_another_hotels_rows(
    model: Any, scoping_world: dict[str, Any]
) -> None:
    a: HotelRows = scoping_world["a"]
    model_admin = admin.site._registry[model]
    client = _client(a.staff)
    foreign = _foreign_row(model, scoping_world)
    assert foreign is not None, f"no row of {model._meta.label} to probe with"

    listing = client.get(_url(model, "changelist"))
    if isinstance(model_admin, ScopedAdmin):
        assert listing.status_code == 200
        shown = {row.pk for row in listing.context["cl"].result_list}
        assert foreign.pk not in shown
        assert a.rows[model].pk in shown  # the scoping is not simply "nothing"
        own = client.get(_url(model, "change", a.rows[model].pk))
        assert own.status_code == 200
    else:
        assert listing.status_code == 403, f"{model._meta.label} is operations-only"

    for view in ("change", "history", "delete"):
        existing = client.get(_url(model, view, foreign.pk))
        missing = client.get(_url(model, view, MISSING))
        # The same answer as for an id that does not exist: ids cannot be probed.
        assert existing.status_code == missing.status_code, view
        expected = 404 if isinstance(model_admin, ScopedAdmin) else 403
        assert existing.status_code == expected, f"{view} of a foreign {model._meta.label}"
        posted = client.post(_url(model, view, foreign.pk), {"post": "yes"})
        assert posted.status_code == expected
    # The delete POST did nothing (the primary key's value: TokenProxy's ``pk`` is its user's id).
    assert model._default_manager.filter(pk=foreign._meta.pk.value_from_object(foreign)).exists()


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_operations_see_every_hotel(model: Any, scoping_world: dict[str, Any]) -> None:
    client = _client(operations_user())
    listing = client.get(_url(model, "changelist"))
    assert listing.status_code == 200
    foreign = _foreign_row(model, scoping_world)
    assert client.get(_url(model, "change", foreign.pk)).status_code == 200


@pytest.mark.parametrize(
    ("action", "extra"),
    [
        ("retry_selected", {}),
        ("park_selected", {}),
        ("discard_selected", {"confirm": "yes", "reason": "spam"}),
    ],
)
def test_dead_letter_actions_ignore_posted_foreign_ids(
    action: str, extra: dict[str, str], scoping_world: dict[str, Any], handler: RecordingHandler
) -> None:
    a, b = scoping_world["a"], scoping_world["b"]
    theirs = b.rows[DeadLetter]
    audits = AuditEntry.objects.count()

    client = _client(a.staff)
    client.post(_url(DeadLetter, "changelist"), {"action": action, "_selected_action": [theirs.pk], **extra})

    theirs.refresh_from_db()
    assert theirs.status == DeadLetter.Status.PENDING
    assert handler.redriven == []
    assert AuditEntry.objects.count() == audits


@pytest.mark.parametrize("view", ["retry", "park", "discard"])
def test_dead_letter_buttons_answer_404_for_foreign_letters(
    view: str, scoping_world: dict[str, Any], handler: RecordingHandler
) -> None:
    theirs = scoping_world["b"].rows[DeadLetter]
    client = _client(scoping_world["a"].staff)

    response = client.post(_url(DeadLetter, view, theirs.pk), {"reason": "mine now"})

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == DeadLetter.Status.PENDING
    assert handler.redriven == []


def test_bulk_and_category_redrive_touch_only_own_letters(
    scoping_world: dict[str, Any], handler: RecordingHandler
) -> None:
    a, b = scoping_world["a"], scoping_world["b"]
    client = _client(a.staff)

    confirm = client.get(reverse("admin:reliability_deadletter_retry_filtered"))
    assert "Retry 1 open dead letter(s)" in confirm.content.decode()
    client.post(reverse("admin:reliability_deadletter_retry_filtered"))
    client.post(reverse("admin:reliability_deadletter_redrive_category", args=["provider_5xx"]))

    assert set(handler.redriven) == {a.rows[DeadLetter].pk}  # twice: once per bulk path
    b.rows[DeadLetter].refresh_from_db()
    assert b.rows[DeadLetter].status == DeadLetter.Status.PENDING


def test_reply_job_retry_action_ignores_foreign_jobs(scoping_world: dict[str, Any]) -> None:
    theirs = scoping_world["b"].rows[ReplyJob]
    client = _client(scoping_world["a"].staff)

    client.post(_url(ReplyJob, "changelist"), {"action": "retry_now", "_selected_action": [theirs.pk]})

    theirs.refresh_from_db()
    assert theirs.status == ReplyJob.Status.DEAD


def test_hotel_filter_offers_only_own_hotels_and_phone_numbers_are_masked(
    scoping_world: dict[str, Any],
) -> None:
    client = _client(scoping_world["a"].staff)

    letters = client.get(_url(DeadLetter, "changelist")).content.decode()
    guests = client.get(
        _url(type(scoping_world["a"].rows[DeadLetter]), "change", scoping_world["a"].rows[DeadLetter].pk)
    )
    guest_list = client.get(reverse("admin:messaging_guest_changelist")).content.decode()

    assert "Alpha Hotel" in letters
    assert "Bravo Hotel" not in letters
    assert "79001110001" not in guests.content.decode()
    assert "***0001" in guests.content.decode()  # the payload's chatId, masked
    assert "79001110001" not in guest_list
    assert "***0001@c.us" in guest_list


def test_dashboard_numbers_are_scoped_and_breakers_are_for_operations(scoping_world: dict[str, Any]) -> None:
    DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND,
        tenant=str(scoping_world["b"].hotel.pk),
        reason_code="x",
        reason="x",
        category=DeadLetter.Category.TIMEOUT,
    )
    staff = _client(scoping_world["a"].staff).get(reverse("admin:reliability_dashboard"))
    ops = _client(operations_user()).get(reverse("admin:reliability_dashboard"))

    assert staff.status_code == ops.status_code == 200
    assert staff.context["data"].dead_open == 1
    assert ops.context["data"].dead_open == 3
    assert staff.context["data"].breakers == []
    assert 'id="breakers"' not in staff.content.decode()
    assert any(card.name == "green_api" for card in ops.context["data"].breakers)
    assert "Bravo Hotel" not in staff.content.decode()


def test_dashboard_shows_the_degradation_level_staff_set(scoping_world: dict[str, Any]) -> None:
    from reliability import degradation

    degradation.degradation_override_set(
        level="severe",
        reason="Green API maintenance window",
        actor=operations_user(),
        via="admin",
        switches_off=["ai_replies"],
    )

    page = _client(scoping_world["a"].staff).get(reverse("admin:reliability_dashboard")).content.decode()

    assert 'id="degradation-level"' in page
    assert "SEVERE" in page
    assert "Green API maintenance window" in page
    assert "ai_replies: <strong>off</strong>" in page


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_every_admin_writes_the_checkbox_django_renders(model: Any, scoping_world: dict[str, Any]) -> None:
    """console.site.PlainActionCheckbox: the changelist row's checkbox written out as HTML is the
    markup Django's own ``action_checkbox`` renders through the widget templates."""
    model_admin = admin.site._registry[model]
    obj = model._default_manager.order_by("-pk").first()  # the newest: on the changelist's first page
    if obj is None:
        obj = model(pk=7)  # an unsaved row of an empty table: only its pk and str() are read
    assert str(model_admin.action_checkbox(obj)) == str(admin.ModelAdmin.action_checkbox(model_admin, obj))
    page = _client(operations_user()).get(_url(model, "changelist"))
    assert page.status_code == 200
    if obj.pk is not None and obj._state.adding is False and model_admin.get_actions(page.wsgi_request):
        assert str(model_admin.action_checkbox(obj)) in page.content.decode()
