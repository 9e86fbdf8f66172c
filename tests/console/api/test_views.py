"""The reliability API: auth, breakers, dead letters, quarantined notifications, the envelope."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from reliability.breaker import registry
from reliability.models import AuditEntry, BreakerEvent, DeadLetter
from tests.console.api.support import RecordingHandler, World, client_for, hotel_staff_group, letter

pytestmark = pytest.mark.django_db

API = "/api/v1"


def _envelope(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["request_id"] == response["X-Request-ID"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


# --- authentication and permissions ---------------------------------------------------------------
def test_anonymous_calls_get_401_with_the_token_challenge(api_world: World) -> None:
    response = APIClient().get(f"{API}/dead-letters/")
    _envelope(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_is_401(api_world: World) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    _envelope(client.get(f"{API}/dead-letters/"), 401, "authentication_failed")


def test_non_staff_users_are_refused(api_world: World) -> None:
    from django.contrib.auth.models import User

    guest = User.objects.create_user("mallory", password="pw")
    _envelope(client_for(guest).get(f"{API}/dead-letters/"), 403, "permission_denied")


def test_session_auth_works_and_writes_need_csrf(api_world: World) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(api_world.ops)
    assert client.get(f"{API}/breakers/").status_code == 200
    response = client.post(f"{API}/breakers/green_api/reset/", {}, format="json")
    error = _envelope(response, 403, "permission_denied")
    assert "CSRF" in error["message"]


def test_basic_auth_is_not_accepted(api_world: World) -> None:
    import base64

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"olga:pw").decode())
    _envelope(client.get(f"{API}/breakers/"), 401)


# --- breakers -------------------------------------------------------------------------------------
def test_breakers_are_for_operations_only(api_world: World) -> None:
    for path in ("/breakers/", "/breakers/green_api/"):
        _envelope(client_for(api_world.staff_a).get(API + path), 403, "permission_denied")
    response = client_for(api_world.staff_a).post(
        f"{API}/breakers/green_api/force-open/", {"reason": "x"}, format="json"
    )
    _envelope(response, 403)
    assert registry.breaker("green_api").state.value == "closed"
    assert not AuditEntry.objects.exists()


def test_breaker_list_shows_every_breaker_with_live_state(api_world: World) -> None:
    body = client_for(api_world.ops).get(f"{API}/breakers/").json()
    names = [b["name"] for b in body]
    assert {"green_api", "green_api_journal", "deepseek"} <= set(names)
    green = next(b for b in body if b["name"] == "green_api")
    assert green["state"] == "closed"
    assert green["override"] == {"mode": "auto", "reason": "", "until": None, "active": False}
    assert green["live"]["calls"] == 0


def test_force_open_needs_a_reason_field_by_field(api_world: World) -> None:
    client = client_for(api_world.ops)
    error = _envelope(client.post(f"{API}/breakers/green_api/force-open/", {}, format="json"), 400, "invalid")
    assert "reason" in error["details"]
    error = _envelope(
        client.post(f"{API}/breakers/green_api/force-open/", {"reason": "  ", "minutes": 0}, format="json"),
        400,
        "invalid",
    )
    assert set(error["details"]) == {"reason", "minutes"}
    assert registry.breaker("green_api").state.value == "closed"


def test_force_open_for_minutes_then_force_close_are_live_and_audited(api_world: World) -> None:
    client = client_for(api_world.ops)
    before = timezone.now()
    response = client.post(
        f"{API}/breakers/green_api/force-open/",
        {"reason": "provider maintenance", "minutes": 30},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "forced_open"
    assert registry.breaker("green_api").state.value == "forced_open"
    assert body["override"]["mode"] == "forced_open"
    assert body["override"]["reason"] == "provider maintenance"
    assert body["override"]["active"] is True
    until = body["override"]["until"]
    assert until is not None
    registry.write_pending_events()
    detail = client.get(f"{API}/breakers/green_api/").json()
    assert detail["recent_transitions"][0]["to_state"] == "forced_open"
    assert detail["state_since"] is not None
    assert 0 <= detail["seconds_in_state"] < 600
    assert detail["config"]["failure_threshold"] == 5
    entry = AuditEntry.objects.get(action="breaker.force_open")
    assert (entry.actor, entry.via, entry.target_id, entry.reason) == (
        api_world.ops,
        "api",
        "green_api",
        "provider maintenance",
    )
    assert (entry.details["from_state"], entry.details["to_state"]) == ("closed", "forced_open")
    assert entry.created_at >= before

    response = client.post(f"{API}/breakers/green_api/force-close/", {"reason": "back up"}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "closed"
    assert response.json()["override"]["mode"] == "auto"
    assert registry.breaker("green_api").state.value == "closed"
    entry = AuditEntry.objects.get(action="breaker.force_close")
    assert entry.details == {"from_state": "forced_open", "to_state": "closed", "until": None}


def test_force_close_closes_a_tripped_breaker(api_world: World) -> None:
    cb = registry.breaker("deepseek")
    while cb.state.value == "closed":  # deepseek trips after 3 consecutive failures
        with pytest.raises(RuntimeError), cb.guard():
            raise RuntimeError("boom")
    assert cb.state.value == "open"
    response = client_for(api_world.ops).post(f"{API}/breakers/deepseek/force-close/", {}, format="json")
    assert response.status_code == 200
    assert cb.state.value == "closed"
    assert AuditEntry.objects.get(action="breaker.force_close").details["from_state"] == "open"


def test_reset_clears_an_override_and_counters(api_world: World) -> None:
    client = client_for(api_world.ops)
    client.post(f"{API}/breakers/deepseek/force-open/", {"reason": "drill"}, format="json")
    response = client.post(f"{API}/breakers/deepseek/reset/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "closed"
    assert response.json()["live"]["consecutive_failures"] == 0
    assert AuditEntry.objects.filter(action="breaker.reset", via="api").count() == 1


def test_unknown_breaker_is_404_and_creates_nothing(api_world: World) -> None:
    client = client_for(api_world.ops)
    _envelope(client.get(f"{API}/breakers/nope/"), 404, "not_found")
    _envelope(client.post(f"{API}/breakers/nope/reset/", {}, format="json"), 404, "not_found")
    assert not BreakerEvent.objects.filter(breaker="nope").exists()
    assert not AuditEntry.objects.exists()


# --- dead letters ---------------------------------------------------------------------------------
def test_list_filters_and_scopes(api_world: World) -> None:
    ids = lambda response: {row["id"] for row in response.json()["results"]}  # noqa: E731
    ops, staff_a = client_for(api_world.ops), client_for(api_world.staff_a)
    assert ids(ops.get(f"{API}/dead-letters/")) == {
        api_world.letter_a.pk,
        api_world.letter_b.pk,
        api_world.quarantine_a.pk,
        api_world.quarantine_b.pk,
    }
    assert ids(staff_a.get(f"{API}/dead-letters/")) == {api_world.letter_a.pk, api_world.quarantine_a.pk}
    assert ids(staff_a.get(f"{API}/dead-letters/", {"tenant": api_world.hotel_b.pk})) == set()
    assert ids(ops.get(f"{API}/dead-letters/", {"kind": "reply_send"})) == {
        api_world.letter_a.pk,
        api_world.letter_b.pk,
    }
    assert ids(ops.get(f"{API}/dead-letters/", {"category": "validation"})) == {
        api_world.quarantine_a.pk,
        api_world.quarantine_b.pk,
    }
    assert ids(
        ops.get(f"{API}/dead-letters/", {"dependency": "green_api", "tenant": api_world.hotel_a.pk})
    ) == {api_world.letter_a.pk}
    old = letter(str(api_world.hotel_a.pk), status=DeadLetter.Status.MANUAL)
    DeadLetter.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    cut = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(ops.get(f"{API}/dead-letters/", {"created_before": cut})) == {old.pk}
    assert old.pk not in ids(ops.get(f"{API}/dead-letters/", {"created_after": cut}))
    assert ids(ops.get(f"{API}/dead-letters/", {"status": "manual"})) == {old.pk}


def test_invalid_filters_are_400_field_by_field(api_world: World) -> None:
    response = client_for(api_world.ops).get(
        f"{API}/dead-letters/", {"status": "lost", "created_after": "yesterday", "category": "x"}
    )
    error = _envelope(response, 400, "invalid")
    assert set(error["details"]) == {"status", "created_after", "category"}


def test_cursor_pages_walk_every_letter_once_newest_first(api_world: World) -> None:
    for _ in range(7):
        letter(str(api_world.hotel_a.pk))
    client = client_for(api_world.ops)
    url: str | None = f"{API}/dead-letters/?page_size=3"
    seen: list[int] = []
    pages = 0
    while url:
        body = client.get(url).json()
        assert len(body["results"]) <= 3
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 4
    assert len(seen) == len(set(seen)) == 11
    assert seen == sorted(seen, reverse=True)
    _envelope(client.get(f"{API}/dead-letters/?cursor=garbage"), 404, "not_found")


def test_detail_shows_the_error_and_payload(api_world: World) -> None:
    body = client_for(api_world.staff_a).get(f"{API}/dead-letters/{api_world.letter_a.pk}/").json()
    assert body["reason"] == "Green API answered 503 six times"
    assert body["category"] == "provider_5xx"
    assert {"staff_notes", "payload", "error_message", "raw"} <= set(body)


def test_retry_redrives_through_the_handler_and_audits(api_world: World, handler: RecordingHandler) -> None:
    response = client_for(api_world.staff_a).post(
        f"{API}/dead-letters/{api_world.letter_a.pk}/retry/", {"reason": "provider is back"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["handed_back"], body["resolved"]) == (True, False)
    assert body["dead_letter"]["status"] == "retrying"
    assert handler.redriven == [api_world.letter_a.pk]
    entry = AuditEntry.objects.get(action="dead_letter.retry")
    assert (entry.actor, entry.via, entry.tenant, entry.reason) == (
        api_world.staff_a,
        "api",
        str(api_world.hotel_a.pk),
        "provider is back",
    )


def test_retry_of_a_closed_letter_is_400(api_world: World, handler: RecordingHandler) -> None:
    DeadLetter.objects.filter(pk=api_world.letter_a.pk).update(status=DeadLetter.Status.DISCARDED)
    response = client_for(api_world.staff_a).post(
        f"{API}/dead-letters/{api_world.letter_a.pk}/retry/", {}, format="json"
    )
    _envelope(response, 400, "cannot_redrive")
    assert handler.redriven == []


def test_discard_needs_a_reason_and_audits(api_world: World) -> None:
    client = client_for(api_world.staff_a)
    url = f"{API}/dead-letters/{api_world.letter_a.pk}/discard/"
    error = _envelope(client.post(url, {"reason": ""}, format="json"), 400, "invalid")
    assert "reason" in error["details"]
    response = client.post(url, {"reason": "guest checked out"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "discarded"
    assert response.json()["resolved_by"] == "alice"
    api_world.letter_a.refresh_from_db()
    assert api_world.letter_a.status == DeadLetter.Status.DISCARDED
    assert "guest checked out" in api_world.letter_a.staff_notes
    entry = AuditEntry.objects.get(action="dead_letter.discard")
    assert (entry.actor, entry.via, entry.reason) == (api_world.staff_a, "api", "guest checked out")
    _envelope(client.post(url, {"reason": "again"}, format="json"), 400, "invalid")


def test_bulk_retry_by_filters_and_by_ids(api_world: World, handler: RecordingHandler) -> None:
    more = [letter(str(api_world.hotel_a.pk), category=DeadLetter.Category.TIMEOUT) for _ in range(3)]
    client = client_for(api_world.ops)
    response = client.post(
        f"{API}/dead-letters/retry-bulk/", {"category": "timeout", "reason": "network fixed"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("matched", "retried", "resolved", "refused")} == {
        "matched": 3,
        "retried": 3,
        "resolved": 0,
        "refused": 0,
    }
    assert sorted(handler.redriven) == sorted(m.pk for m in more)
    entry = AuditEntry.objects.get(action="dead_letter.retry_bulk")
    assert (entry.via, entry.reason, entry.details["retried"]) == ("api", "network fixed", 3)

    # ids: a quarantined letter has no handler (refused); closed letters are not taken.
    response = client.post(
        f"{API}/dead-letters/retry-bulk/",
        {"ids": [api_world.letter_a.pk, api_world.quarantine_a.pk, more[0].pk]},
        format="json",
    )
    body = response.json()
    assert (body["matched"], body["retried"], body["refused"]) == (3, 2, 1)
    assert str(api_world.quarantine_a.pk) in body["errors"][0]


def test_bulk_retry_must_say_what(api_world: World) -> None:
    error = _envelope(
        client_for(api_world.ops).post(f"{API}/dead-letters/retry-bulk/", {}, format="json"), 400
    )
    assert "ids" in error["details"]


def test_bulk_retry_honours_the_limit(api_world: World, handler: RecordingHandler, settings: Any) -> None:
    settings.API_BULK_RETRY_LIMIT = 1
    body = (
        client_for(api_world.ops)
        .post(f"{API}/dead-letters/retry-bulk/", {"kind": "reply_send"}, format="json")
        .json()
    )
    assert (body["matched"], body["retried"], body["limit"]) == (1, 1, 1)
    assert handler.redriven == [api_world.letter_a.pk]  # the oldest first


# --- quarantined notifications ------------------------------------------------------------------------
def test_quarantine_list_and_detail_show_raw_body_and_reason(api_world: World) -> None:
    client = client_for(api_world.staff_a)
    rows = client.get(f"{API}/quarantined-notifications/").json()["results"]
    assert [r["id"] for r in rows] == [api_world.quarantine_a.pk]
    assert (rows[0]["raw"], rows[0]["reason_code"]) == ("{not json", "not_json")
    detail = client.get(f"{API}/quarantined-notifications/{api_world.quarantine_a.pk}/").json()
    assert detail["reason"] == "body is not JSON"
    # a reply letter is not a quarantined notification
    _envelope(client.get(f"{API}/quarantined-notifications/{api_world.letter_a.pk}/"), 404)


def test_quarantine_resolve_and_discard(api_world: World) -> None:
    client = client_for(api_world.staff_a)
    second = letter(str(api_world.hotel_a.pk), kind=DeadLetter.Kind.WEBHOOK_QUARANTINE)
    response = client.post(
        f"{API}/quarantined-notifications/{api_world.quarantine_a.pk}/resolve/",
        {"reason": "guest re-sent the message"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "resolved"
    response = client.post(
        f"{API}/quarantined-notifications/{second.pk}/discard/", {"reason": "spam"}, format="json"
    )
    assert response.json()["status"] == "discarded"
    assert set(AuditEntry.objects.values_list("action", flat=True)) == {
        "dead_letter.resolve",
        "dead_letter.discard",
    }


# --- tenant isolation: hotel A's staff can neither read nor act on hotel B's letters ----------------
FOREIGN_CALLS = [
    ("get", "/dead-letters/{letter}/", None),
    ("post", "/dead-letters/{letter}/retry/", {"reason": "x"}),
    ("post", "/dead-letters/{letter}/discard/", {"reason": "x"}),
    ("get", "/dead-letters/{quarantine}/", None),
    ("get", "/quarantined-notifications/{quarantine}/", None),
    ("post", "/quarantined-notifications/{quarantine}/discard/", {"reason": "x"}),
    ("post", "/quarantined-notifications/{quarantine}/resolve/", {"reason": "x"}),
]


@pytest.mark.parametrize(("method", "path", "data"), FOREIGN_CALLS)
def test_foreign_letters_are_404_for_every_endpoint(
    api_world: World, handler: RecordingHandler, method: str, path: str, data: Any
) -> None:
    url = API + path.format(letter=api_world.letter_b.pk, quarantine=api_world.quarantine_b.pk)
    client = client_for(api_world.staff_a)
    response = getattr(client, method)(url, data, format="json") if data else client.get(url)
    _envelope(response, 404, "not_found")
    # the same call by hotel B's staff works: the 404 is scoping, not a broken URL
    own = client_for(api_world.staff_b)
    response = getattr(own, method)(url, data, format="json") if data else own.get(url)
    assert response.status_code == 200, response.content


def test_foreign_letters_404_changes_nothing(api_world: World, handler: RecordingHandler) -> None:
    client = client_for(api_world.staff_a)
    for method, path, data in FOREIGN_CALLS:
        url = API + path.format(letter=api_world.letter_b.pk, quarantine=api_world.quarantine_b.pk)
        getattr(client, method)(url, data, format="json") if data else client.get(url)
    for row in (api_world.letter_b, api_world.quarantine_b):
        row.refresh_from_db()
        assert row.status == DeadLetter.Status.PENDING
    assert handler.redriven == []
    assert not AuditEntry.objects.exists()


def test_foreign_letters_are_invisible_to_lists_and_bulk_retry(
    api_world: World, handler: RecordingHandler
) -> None:
    client = client_for(api_world.staff_a)
    for path in ("/dead-letters/", "/quarantined-notifications/"):
        ids = {r["id"] for r in client.get(API + path, {"tenant": api_world.hotel_b.pk}).json()["results"]}
        assert ids == set()
    body = client.post(
        f"{API}/dead-letters/retry-bulk/",
        {"ids": [api_world.letter_b.pk, api_world.quarantine_b.pk]},
        format="json",
    ).json()
    assert body["matched"] == 0
    body = client.post(
        f"{API}/dead-letters/retry-bulk/", {"tenant": str(api_world.hotel_b.pk)}, format="json"
    ).json()
    assert body["matched"] == 0
    assert handler.redriven == []


def test_staff_of_no_hotel_see_nothing(api_world: World) -> None:
    from django.contrib.auth.models import User

    loner = User.objects.create_user("lonely", password="pw", is_staff=True)
    loner.groups.add(hotel_staff_group())  # every permission a hotel's staff hold, but no hotel
    assert client_for(loner).get(f"{API}/dead-letters/").json()["results"] == []
    _envelope(client_for(loner).get(f"{API}/dead-letters/{api_world.letter_a.pk}/"), 404)


# --- errors are always the envelope ---------------------------------------------------------------
def test_wrong_method_is_405_in_the_envelope(api_world: World) -> None:
    client = client_for(api_world.ops)
    _envelope(client.get(f"{API}/dead-letters/{api_world.letter_a.pk}/retry/"), 405, "method_not_allowed")
    _envelope(client.delete(f"{API}/dead-letters/{api_world.letter_a.pk}/"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path", ["/nothing/", "/dead-letters/abc/", "/dead-letters", "/breakers/green_api/explode/"]
)
def test_unknown_paths_are_404_in_the_envelope(api_world: World, path: str) -> None:
    _envelope(client_for(api_world.ops).get(API + path), 404, "not_found")
    _envelope(APIClient().post(API + path, {}), 404, "not_found")


def test_malformed_json_is_400_in_the_envelope(api_world: World) -> None:
    response = client_for(api_world.ops).post(
        f"{API}/breakers/green_api/force-open/", "{nope", content_type="application/json"
    )
    _envelope(response, 400, "parse_error")


def test_hostile_text_is_refused_not_500(api_world: World) -> None:
    client = client_for(api_world.staff_a)
    for body in ('{"reason": "nul\\u0000byte"}', '{"reason": "lone \\ud800 surrogate"}'):
        response = client.post(
            f"{API}/dead-letters/{api_world.letter_a.pk}/discard/", body, content_type="application/json"
        )
        assert "reason" in _envelope(response, 400, "invalid")["details"]
    response = client.get(f"{API}/dead-letters/", {"dependency": "x\x00"})
    assert "dependency" in _envelope(response, 400, "invalid")["details"]
    _envelope(client.get(f"{API}/dead-letters/{2**70}/"), 404, "not_found")
