"""Breakers wired to Django: config from BreakerConfig rows, staff overrides, events as rows, admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from reliability import services
from reliability.breaker import CircuitOpenError, State, registry
from reliability.models import BreakerConfig, BreakerEvent, parse_statuses

pytestmark = pytest.mark.django_db


def boom() -> None:
    raise ConnectionError("down")


def test_seeded_breakers_carry_their_thresholds_and_only_guarded_dependencies_are_seeded():
    seeded = {row.name: (row.failure_threshold, row.recovery_timeout) for row in BreakerConfig.objects.all()}
    # database and redis guarded nothing (migration 0004 removes them): every row names a real call site
    assert seeded == {"green_api": (5, 60.0), "deepseek": (3, 120.0)}
    assert registry.breaker("deepseek").config.failure_threshold == 3


def test_admin_edit_reaches_the_live_breaker_after_the_refresh_interval(settings, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(registry.time, "monotonic", lambda: clock[0])
    settings.BREAKER_CONFIG_REFRESH = 2.0
    assert registry.breaker("green_api").config.failure_threshold == 5
    row = BreakerConfig.objects.get(name="green_api")
    row.failure_threshold = 2
    row.save()
    assert row.version == 2
    clock[0] += 1.0
    assert registry.breaker("green_api").config.failure_threshold == 5  # cached within the interval
    clock[0] += 1.5
    cb = registry.breaker("green_api")
    assert cb.config.failure_threshold == 2
    for _ in range(2):
        with pytest.raises(ConnectionError):
            cb.call(boom)
    assert cb.state == State.OPEN


def test_force_open_with_expiry_rejects_calls_and_is_logged_as_an_event():
    services.breaker_set_mode(
        name="deepseek", mode=BreakerConfig.Mode.FORCED_OPEN, reason="provider incident"
    )
    cb = registry.breaker("deepseek")
    assert cb.state == State.FORCED_OPEN
    with pytest.raises(CircuitOpenError):
        cb.call(lambda: "never runs")
    registry.write_pending_events()
    event = BreakerEvent.objects.get(breaker="deepseek")
    assert (event.from_state, event.to_state) == ("closed", "forced_open")
    assert "provider incident" in event.reason
    assert event.process


def test_clearing_the_override_closes_the_breaker():
    services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.DISABLED, reason="testing")
    assert registry.breaker("deepseek").state == State.DISABLED
    services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.AUTO)
    assert registry.breaker("deepseek").state == State.CLOSED


def test_override_needs_a_reason_and_a_known_breaker():
    from hotelbot.exceptions import NotFound, ValidationFailed

    with pytest.raises(ValidationFailed):
        services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.FORCED_OPEN, reason=" ")
    with pytest.raises(NotFound):
        services.breaker_set_mode(name="nope", mode=BreakerConfig.Mode.AUTO)


def test_reset_closes_an_open_breaker():
    cb = registry.breaker("deepseek")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            cb.call(boom)
    assert cb.state == State.OPEN
    services.breaker_reset(name="deepseek")
    assert cb.state == State.CLOSED


@pytest.mark.parametrize(
    ("field", "value"),
    [("failure_statuses", "500-abc"), ("failure_rate_threshold", 150.0), ("failure_statuses", "600")],
)
def test_invalid_config_is_a_form_error(field, value):
    row = BreakerConfig.objects.get(name="green_api")
    setattr(row, field, value)
    with pytest.raises(ValidationError):
        row.full_clean()


def test_status_ranges_round_trip():
    assert parse_statuses("408, 429,500-502") == {408, 429, 500, 501, 502}
    assert BreakerConfig.objects.get(name="green_api").to_config().failure_statuses == parse_statuses(
        "429,500-599"
    )


def test_admin_changelist_shows_live_state_and_actions_need_a_reason(admin_client):
    resp = admin_client.get("/admin/reliability/breakerconfig/")
    assert resp.status_code == 200
    assert b"closed" in resp.content
    pk = BreakerConfig.objects.get(name="green_api").pk
    url = "/admin/reliability/breakerconfig/"
    resp = admin_client.post(
        url, {"action": "force_open", "_selected_action": [pk], "reason": ""}, follow=True
    )
    assert b"Say why" in resp.content
    assert BreakerConfig.objects.get(pk=pk).mode == "auto"
    resp = admin_client.post(
        url,
        {"action": "force_open", "_selected_action": [pk], "reason": "maintenance", "minutes": "5"},
        follow=True,
    )
    row = BreakerConfig.objects.get(pk=pk)
    assert (row.mode, row.mode_reason) == ("forced_open", "maintenance")
    assert row.mode_until is not None
    assert registry.breaker("green_api").state == State.FORCED_OPEN


def test_admin_change_form_rejects_invalid_values(admin_client):
    pk = BreakerConfig.objects.get(name="green_api").pk
    resp = admin_client.get(f"/admin/reliability/breakerconfig/{pk}/change/")
    assert resp.status_code == 200
    data = {k: v for k, v in resp.context["adminform"].form.initial.items() if v is not None}
    data.update({"failure_statuses": "5xx", "mode_until_0": "", "mode_until_1": ""})
    resp = admin_client.post(f"/admin/reliability/breakerconfig/{pk}/change/", data)
    assert resp.status_code == 200  # re-rendered with errors, not saved
    assert "failure_statuses" in resp.context["adminform"].form.errors
