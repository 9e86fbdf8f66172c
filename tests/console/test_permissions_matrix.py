"""Permissions on every staff action (issue 16, item 8): each action x {no permission, other hotel,
own hotel}, in admin and in the API.

- **no permission**: a staff user of hotel A without model permissions: 403 (the same answer for
  every id), and nothing happens.
- **other hotel**: a staff user of hotel B in the "hotel staff" group: hotel A's object is a 404; a
  list or a bulk action simply does not see A's rows (nothing happens to them).
- **own hotel**: a staff user of hotel A in the "hotel staff" group: it works.

Breakers and degradation are shared by every hotel: hotel staff get 403 whatever their hotel; only
the operations group, with the model permissions, changes them (an operations member without the
permissions gets 403 too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging import permissions
from messaging.models import ReplyJob
from messaging.permissions import OPERATIONS_GROUP
from reliability.breaker import registry
from reliability.models import BreakerConfig, DeadLetter, DegradationState
from tests.console.admin_world import (
    HotelRows,
    RecordingHandler,
    handler_registered,
    hotel_rows,
    operations_user,
)

pytestmark = pytest.mark.django_db

API = "/api/v1"


# --- the group the migration made ------------------------------------------------------------------
def test_the_migration_made_the_hotel_staff_group_with_exactly_the_listed_permissions() -> None:
    import importlib

    migration = importlib.import_module("messaging.migrations.0011_hotel_staff_group")
    texts = importlib.import_module("messaging.migrations.0017_guest_language_opt_out_hotel_texts")
    assert migration.HOTEL_STAFF_GROUP == texts.HOTEL_STAFF_GROUP == permissions.HOTEL_STAFF_GROUP
    added = tuple(migration.HOTEL_STAFF_PERMISSIONS) + tuple(texts.ADDED_PERMISSIONS)
    assert added == permissions.HOTEL_STAFF_PERMISSIONS
    group = Group.objects.get(name=permissions.HOTEL_STAFF_GROUP)
    held = {(p.content_type.app_label, p.codename) for p in group.permissions.select_related("content_type")}
    assert held == set(permissions.HOTEL_STAFF_PERMISSIONS)
    assert ("messaging", "answer_guests") in held
    # Nothing the system writes is theirs to add or delete; their hotel's own texts are.
    assert {c for _, c in held if c.startswith(("add_", "delete_"))} == {"add_hoteltext", "delete_hoteltext"}
    assert not {c for a, c in held if a == "reliability" and "breaker" in c}  # operations only
    answer = Permission.objects.get(codename="answer_guests")
    assert (answer.content_type.model, answer.name) == ("replyjob", "Can answer guests by hand")


# --- the world ---------------------------------------------------------------------------------------
@dataclass
class World:
    a: HotelRows
    b: HotelRows
    users: dict[str, User]
    handler: RecordingHandler
    quarantine_a: DeadLetter

    @property
    def job(self) -> ReplyJob:
        return self.a.rows[ReplyJob]

    @property
    def letter(self) -> DeadLetter:
        return self.a.rows[DeadLetter]

    def fresh_letter(self) -> DeadLetter:
        return DeadLetter.objects.get(pk=self.letter.pk)

    def fresh_job(self) -> ReplyJob:
        return ReplyJob.objects.get(pk=self.job.pk)


def _staff(username: str, hotel: Any, *, group: bool) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    hotel.staff.add(user)
    if group:
        user.groups.add(Group.objects.get(name=permissions.HOTEL_STAFF_GROUP))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def permission_world(django_capture_on_commit_callbacks: Any) -> Iterator[World]:
    a = hotel_rows("Alpha Hotel", "1101000011", "79001110001@c.us", "alice-all")
    b = hotel_rows("Bravo Hotel", "1101000022", "79002220002@c.us", "bob-all")
    quarantine = DeadLetter.objects.create(
        kind=DeadLetter.Kind.WEBHOOK_QUARANTINE,
        subject="1101000011",
        tenant=str(a.hotel.pk),
        reason_code="not_json",
        reason="Alpha Hotel: body is not JSON",
        category=DeadLetter.Category.VALIDATION,
        raw="{not json",
        raw_size=9,
    )
    ops_bare = User.objects.create_user("ops-bare", "ob@example.com", "pw", is_staff=True)
    ops_bare.groups.add(Group.objects.get_or_create(name=OPERATIONS_GROUP)[0])
    users = {
        "no permission": _staff("bare", a.hotel, group=False),
        "other hotel": _staff("rival", b.hotel, group=True),
        "own hotel": _staff("desk", a.hotel, group=True),
        "operations": operations_user(),
        "operations without permissions": User.objects.get(pk=ops_bare.pk),
    }
    recording = RecordingHandler()
    with (
        handler_registered(DeadLetter.Kind.REPLY_SEND, recording),
        handler_registered(DeadLetter.Kind.WEBHOOK_QUARANTINE, recording),
        django_capture_on_commit_callbacks(execute=False),  # no task leaves for a broker
    ):
        yield World(a=a, b=b, users=users, handler=recording, quarantine_a=quarantine)


def _admin(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _api(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _action(action: str, ids: list[int], **extra: Any) -> dict[str, Any]:
    return {"action": action, helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids], "index": "0", **extra}


# --- hotel-scoped actions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """``call(permission_world, user)`` makes the request; ``touched(permission_world, response)`` says
    whether hotel A's row was acted on (writes) or shown (reads); ``other`` is the status the other
    hotel's staff get."""

    name: str
    call: Callable[[World, User], Any]
    touched: Callable[[World, Any], bool]
    ok: tuple[int, ...]
    other: tuple[int, ...] = (404,)
    api: bool = False


def _shows_alpha(permission_world: World, response: Any) -> bool:
    return "Alpha Hotel" in response.content.decode()


def _redriven(permission_world: World, response: Any) -> bool:
    return permission_world.letter.pk in permission_world.handler.redriven


def _letter_status(status: str) -> Callable[[World, Any], bool]:
    return lambda permission_world, response: permission_world.fresh_letter().status == status


def _api_ids(permission_world: World, response: Any) -> bool:
    body = response.json()
    return permission_world.letter.pk in {row["id"] for row in body.get("results", [])}


def _answered(permission_world: World, response: Any) -> bool:
    return permission_world.fresh_job().manual_text == "Check-out is at noon."


def _letter_url(name: str) -> Callable[[World], str]:
    return lambda permission_world: reverse(
        f"admin:reliability_deadletter_{name}", args=[permission_world.letter.pk]
    )


def _changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


ANSWER = "Check-out is at noon."

SCOPED: list[Case] = [
    # admin: answer by hand
    Case(
        "admin answer page",
        lambda w, u: _admin(u).get(reverse("admin:messaging_replyjob_answer", args=[w.job.pk])),
        lambda w, r: "Question to Alpha Hotel" in r.content.decode(),
        ok=(200,),
    ),
    Case(
        "admin answer by hand",
        lambda w, u: _admin(u).post(
            reverse("admin:messaging_replyjob_answer", args=[w.job.pk]), {"text": ANSWER}
        ),
        _answered,
        ok=(302,),
    ),
    # admin: reply jobs
    Case(
        "admin reply job retry now (action)",
        lambda w, u: _admin(u).post(_changelist("messaging_replyjob"), _action("retry_now", [w.job.pk])),
        lambda w, r: w.fresh_job().status == ReplyJob.Status.PENDING,
        ok=(302,),
        other=(302,),
    ),
    Case(
        "admin reply job list",
        lambda w, u: _admin(u).get(_changelist("messaging_replyjob")),
        lambda w, r: f"/admin/messaging/replyjob/{w.job.pk}/change/" in r.content.decode(),
        ok=(200,),
        other=(200,),
    ),
    Case(
        "admin reply job detail",
        lambda w, u: _admin(u).get(reverse("admin:messaging_replyjob_change", args=[w.job.pk])),
        lambda w, r: "Question to Alpha Hotel" in r.content.decode(),
        ok=(200,),
    ),
    # admin: dead letters, one by one
    Case(
        "admin dead letter retry",
        lambda w, u: _admin(u).post(_letter_url("retry")(w)),
        _redriven,
        ok=(302,),
    ),
    Case(
        "admin dead letter discard",
        lambda w, u: _admin(u).post(_letter_url("discard")(w), {"reason": "guest left"}),
        _letter_status(DeadLetter.Status.DISCARDED),
        ok=(302,),
    ),
    Case(
        "admin dead letter park",
        lambda w, u: _admin(u).post(_letter_url("park")(w), {"reason": "call them"}),
        _letter_status(DeadLetter.Status.MANUAL),
        ok=(302,),
    ),
    Case(
        "admin dead letter annotate",
        lambda w, u: _admin(u).post(_letter_url("change")(w), {"staff_notes": "called the guest"}),
        lambda w, r: w.fresh_letter().staff_notes == "called the guest",
        ok=(302,),
    ),
    Case(
        "admin dead letter detail",
        lambda w, u: _admin(u).get(_letter_url("change")(w)),
        _shows_alpha,
        ok=(200,),
    ),
    # admin: dead letters in bulk (another hotel's ids are simply not in the user's queryset)
    Case(
        "admin dead letters bulk retry (action)",
        lambda w, u: _admin(u).post(
            _changelist("reliability_deadletter"), _action("retry_selected", [w.letter.pk])
        ),
        _redriven,
        ok=(302,),
        other=(302,),
    ),
    Case(
        "admin dead letters bulk discard (action)",
        lambda w, u: _admin(u).post(
            _changelist("reliability_deadletter"),
            _action("discard_selected", [w.letter.pk], confirm="yes", reason="duplicates"),
        ),
        _letter_status(DeadLetter.Status.DISCARDED),
        ok=(302,),
        other=(302,),
    ),
    Case(
        "admin dead letters bulk park (action)",
        lambda w, u: _admin(u).post(
            _changelist("reliability_deadletter"), _action("park_selected", [w.letter.pk])
        ),
        _letter_status(DeadLetter.Status.MANUAL),
        ok=(302,),
        other=(302,),
    ),
    Case(
        "admin dead letters retry the filtered list",
        lambda w, u: _admin(u).post(reverse("admin:reliability_deadletter_retry_filtered")),
        _redriven,
        ok=(302,),
        other=(302,),
    ),
    Case(
        "admin dead letters redrive a category",
        lambda w, u: _admin(u).post(
            reverse("admin:reliability_deadletter_redrive_category", args=[DeadLetter.Category.PROVIDER_5XX])
        ),
        _redriven,
        ok=(302,),
        other=(302,),
    ),
    Case(
        "admin dead letter list",
        lambda w, u: _admin(u).get(_changelist("reliability_deadletter")),
        _shows_alpha,
        ok=(200,),
        other=(200,),
    ),
    Case(
        "admin dashboard",
        lambda w, u: _admin(u).get(reverse("admin:reliability_dashboard")),
        lambda w, r: r.status_code == 200 and r.context["data"].dead_open == 2,  # A's two, not B's one
        ok=(200,),
        other=(200,),
    ),
    # API
    Case(
        "API answer by hand",
        lambda w, u: _api(u).post(f"{API}/reply-jobs/{w.job.pk}/answer/", {"text": ANSWER}, format="json"),
        _answered,
        ok=(200,),
        api=True,
    ),
    Case(
        "API dead letter list",
        lambda w, u: _api(u).get(f"{API}/dead-letters/"),
        _api_ids,
        ok=(200,),
        other=(200,),
        api=True,
    ),
    Case(
        "API dead letter detail",
        lambda w, u: _api(u).get(f"{API}/dead-letters/{w.letter.pk}/"),
        _shows_alpha,
        ok=(200,),
        api=True,
    ),
    Case(
        "API dead letter retry",
        lambda w, u: _api(u).post(
            f"{API}/dead-letters/{w.letter.pk}/retry/", {"reason": "provider back"}, format="json"
        ),
        _redriven,
        ok=(200,),
        api=True,
    ),
    Case(
        "API dead letter discard",
        lambda w, u: _api(u).post(
            f"{API}/dead-letters/{w.letter.pk}/discard/", {"reason": "guest left"}, format="json"
        ),
        _letter_status(DeadLetter.Status.DISCARDED),
        ok=(200,),
        api=True,
    ),
    Case(
        "API dead letters bulk retry",
        lambda w, u: _api(u).post(
            f"{API}/dead-letters/retry-bulk/", {"ids": [w.letter.pk], "reason": "back"}, format="json"
        ),
        _redriven,
        ok=(200,),
        other=(200,),
        api=True,
    ),
    Case(
        "API quarantine list",
        lambda w, u: _api(u).get(f"{API}/quarantined-notifications/"),
        lambda w, r: w.quarantine_a.pk in {row["id"] for row in r.json().get("results", [])},
        ok=(200,),
        other=(200,),
        api=True,
    ),
    Case(
        "API quarantine detail",
        lambda w, u: _api(u).get(f"{API}/quarantined-notifications/{w.quarantine_a.pk}/"),
        _shows_alpha,
        ok=(200,),
        api=True,
    ),
    Case(
        "API quarantine resolve",
        lambda w, u: _api(u).post(
            f"{API}/quarantined-notifications/{w.quarantine_a.pk}/resolve/",
            {"reason": "replayed by hand"},
            format="json",
        ),
        lambda w, r: DeadLetter.objects.get(pk=w.quarantine_a.pk).status == DeadLetter.Status.RESOLVED,
        ok=(200,),
        api=True,
    ),
    Case(
        "API quarantine discard",
        lambda w, u: _api(u).post(
            f"{API}/quarantined-notifications/{w.quarantine_a.pk}/discard/",
            {"reason": "spam"},
            format="json",
        ),
        lambda w, r: DeadLetter.objects.get(pk=w.quarantine_a.pk).status == DeadLetter.Status.DISCARDED,
        ok=(200,),
        api=True,
    ),
    Case(
        "API reliability report",
        lambda w, u: _api(u).get(f"{API}/reports/reliability/", {"hours": 24}),
        lambda w, r: r.status_code == 200 and r.json()["dead_letters"]["created"] == 2,  # A's, not B's
        ok=(200,),
        other=(200,),
        api=True,
    ),
]


def _error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


@pytest.mark.parametrize("who", ["no permission", "other hotel", "own hotel"])
@pytest.mark.parametrize("case", SCOPED, ids=[c.name for c in SCOPED])
def test_hotel_scoped_action(permission_world: World, case: Case, who: str) -> None:
    response = case.call(permission_world, permission_world.users[who])
    if who == "no permission":
        assert response.status_code == 403
        assert not case.touched(permission_world, response)
        if case.api:
            assert _error_code(response) == "permission_denied"
    elif who == "other hotel":
        assert response.status_code in case.other
        assert not case.touched(permission_world, response)  # hotel A's row: neither shown nor acted on
        if response.status_code == 404 and case.api:
            assert _error_code(response) == "not_found"
    else:
        assert response.status_code in case.ok, response.content[:500]
        assert case.touched(permission_world, response)


# --- shared by every hotel: operations only -----------------------------------------------------------
def _breaker_pk() -> int:
    return BreakerConfig.objects.get(name="green_api").pk


def _override_level() -> int | None:
    return DegradationState.objects.get(pk=1).override_level


SHARED: list[Case] = [
    Case(
        "admin breaker force open (action)",
        lambda w, u: _admin(u).post(
            _changelist("reliability_breakerconfig"),
            _action("force_open", [_breaker_pk()], reason="provider incident"),
        ),
        lambda w, r: registry.breaker("green_api").state.value == "forced_open",
        ok=(302,),
    ),
    Case(
        "admin breaker reset (action)",
        lambda w, u: _admin(u).post(
            _changelist("reliability_breakerconfig"), _action("reset", [_breaker_pk()])
        ),
        lambda w, r: r.status_code == 302,
        ok=(302,),
    ),
    Case(
        "admin breaker page",
        lambda w, u: _admin(u).get(reverse("admin:reliability_breakerconfig_change", args=[_breaker_pk()])),
        lambda w, r: r.status_code == 200,
        ok=(200,),
    ),
    Case(
        "admin degradation override",
        lambda w, u: _admin(u).post(
            reverse("admin:reliability_degradationstate_change", args=[1]),
            {"override_level": "3", "override_reason": "provider incident", "minutes": "15"},
        ),
        lambda w, r: _override_level() == 3,
        ok=(302,),
    ),
    Case(
        "admin dependency maintenance",
        lambda w, u: _admin(u).post(
            reverse("admin:reliability_dependencymaintenance_add"),
            {"dependency": "green_api", "reason": "provider window", "minutes": "20"},
        ),
        lambda w, r: _maintenance_active(),
        ok=(302,),
    ),
    Case(
        "admin stored reports",
        lambda w, u: _admin(u).get(_changelist("reliability_reliabilityreport")),
        lambda w, r: r.status_code == 200,
        ok=(200,),
    ),
    Case(
        "API breaker list",
        lambda w, u: _api(u).get(f"{API}/breakers/"),
        lambda w, r: r.status_code == 200,
        ok=(200,),
        api=True,
    ),
    Case(
        "API breaker force open",
        lambda w, u: _api(u).post(
            f"{API}/breakers/green_api/force-open/", {"reason": "drill"}, format="json"
        ),
        lambda w, r: registry.breaker("green_api").state.value == "forced_open",
        ok=(200,),
        api=True,
    ),
    Case(
        "API degradation override",
        lambda w, u: _api(u).post(
            f"{API}/degradation/override/", {"level": "SEVERE", "reason": "drill"}, format="json"
        ),
        lambda w, r: _override_level() is not None,
        ok=(200,),
        api=True,
    ),
]


def _maintenance_active() -> bool:
    from reliability.models import DependencyMaintenance

    return DependencyMaintenance.objects.filter(active=True, dependency="green_api").exists()


@pytest.mark.parametrize(
    "who", ["no permission", "other hotel", "own hotel", "operations without permissions", "operations"]
)
@pytest.mark.parametrize("case", SHARED, ids=[c.name for c in SHARED])
def test_operations_only_control(permission_world: World, case: Case, who: str) -> None:
    response = case.call(permission_world, permission_world.users[who])
    if who == "operations":
        assert response.status_code in case.ok, response.content[:500]
        assert case.touched(permission_world, response)
    else:  # a hotel's staff never change what every hotel shares, whatever their permissions
        assert response.status_code == 403
        assert not case.touched(permission_world, response)
        if case.api:
            assert _error_code(response) == "permission_denied"


def test_reading_the_degradation_level_needs_its_view_permission(permission_world: World) -> None:
    url = f"{API}/degradation/"
    denied = _api(permission_world.users["no permission"]).get(url)
    assert (denied.status_code, _error_code(denied)) == (403, "permission_denied")
    for who in ("other hotel", "own hotel", "operations"):  # shared: the same for every hotel
        assert _api(permission_world.users[who]).get(url).status_code == 200


def test_answering_by_hand_needs_answer_guests_even_with_every_other_permission(
    permission_world: World,
) -> None:
    user = permission_world.users["no permission"]
    user.user_permissions.set(Permission.objects.exclude(codename="answer_guests"))
    user = User.objects.get(pk=user.pk)
    page = reverse("admin:messaging_replyjob_answer", args=[permission_world.job.pk])
    assert _admin(user).get(page).status_code == 403
    assert _admin(user).post(page, {"text": ANSWER}).status_code == 403
    api = _api(user).post(
        f"{API}/reply-jobs/{permission_world.job.pk}/answer/", {"text": ANSWER}, format="json"
    )
    assert (api.status_code, _error_code(api)) == (403, "permission_denied")
    missing = _api(user).post(f"{API}/reply-jobs/987654/answer/", {"text": ANSWER}, format="json")
    assert missing.status_code == 403  # the same answer for an id that does not exist
    assert permission_world.fresh_job().manual_text == ""
    # Given the one permission, the same user answers their hotel's guest.
    user.user_permissions.add(Permission.objects.get(codename="answer_guests"))
    user = User.objects.get(pk=user.pk)
    response = _api(user).post(
        f"{API}/reply-jobs/{permission_world.job.pk}/answer/", {"text": ANSWER}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["id"] == permission_world.job.pk
    assert permission_world.fresh_job().manual_text == ANSWER


def test_api_answer_refuses_bad_input_in_the_envelope(permission_world: World) -> None:
    client = _api(permission_world.users["own hotel"])
    url = f"{API}/reply-jobs/{permission_world.job.pk}/answer/"
    empty = client.post(url, {"text": "   "}, format="json")
    assert (empty.status_code, _error_code(empty)) == (400, "invalid")
    long = client.post(url, {"text": "x" * 20001}, format="json")
    assert (long.status_code, _error_code(long)) == (400, "invalid")
    assert permission_world.fresh_job().manual_text == ""
