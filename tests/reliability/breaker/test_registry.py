"""Breakers wired to Django: config from BreakerConfig rows, staff overrides, events as rows, admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from reliability import services, testing
from reliability.breaker import CircuitOpenError, State, registry
from reliability.models import BreakerConfig, BreakerEvent, parse_statuses

pytestmark = pytest.mark.django_db


def boom() -> None:
    raise ConnectionError("down")


def test_seeded_breakers_carry_their_thresholds_and_only_guarded_dependencies_are_seeded():
    seeded = {row.name: (row.failure_threshold, row.recovery_timeout) for row in BreakerConfig.objects.all()}
    # Every row names a real call site: green_api_journal (0006) guards journal reads so their 429s
    # never park sends; redis (0012) guards broker publishes. The database breaker guards requests
    # from settings, not from a row in the database it guards (reliability/database_breaker.py).
    assert seeded == {
        "green_api": (5, 60.0),
        "green_api_journal": (5, 30.0),
        "deepseek": (3, 120.0),
        "redis": (3, 10.0),
    }
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


# --- overrides from the row are the truth; transitions are rows and metrics ----------------------
def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def _soon(seconds: float):
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.parametrize("mode", [BreakerConfig.Mode.DISABLED, BreakerConfig.Mode.METRICS_ONLY])
def test_a_timed_disable_or_metrics_only_set_by_staff_ends_on_time(mode):
    import time

    services.breaker_set_mode(name="deepseek", mode=mode, reason="drill", until=_soon(0.3))
    assert registry.breaker("deepseek").state == State(mode)
    time.sleep(0.4)
    assert registry.breaker("deepseek").state == State.CLOSED
    registry.write_pending_events()
    assert list(BreakerEvent.objects.order_by("at", "id").values_list("to_state", "reason")) == [
        (mode, "admin: drill"),
        ("closed", f"{mode}_expired"),
    ]


def test_another_process_override_reaches_this_one_with_its_end(settings):
    """The row changed elsewhere (no services call here): the refresh applies it, and it ends on time."""
    import time

    from django.db.models import F

    settings.BREAKER_CONFIG_REFRESH = 0.0
    assert registry.breaker("deepseek").state == State.CLOSED
    BreakerConfig.objects.filter(name="deepseek").update(
        mode="metrics_only", mode_reason="shadow", mode_until=_soon(0.3), version=F("version") + 1
    )
    assert registry.breaker("deepseek").state == State.METRICS_ONLY
    time.sleep(0.4)
    assert registry.breaker("deepseek").state == State.CLOSED


def test_an_override_the_live_breaker_lost_is_reasserted_from_the_row(settings):
    settings.BREAKER_CONFIG_REFRESH = 0.0
    services.breaker_set_mode(
        name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="incident 7", until=_soon(600)
    )
    cb = registry.breaker("green_api")
    cb._backend.reset("state lost")  # what a store that lost the state shows: closed, admitting
    assert registry.breaker("green_api").state == State.FORCED_OPEN  # same row version: re-asserted
    with pytest.raises(CircuitOpenError) as info:
        registry.breaker("green_api").call(lambda: "never runs")
    assert 590 < info.value.retry_after <= 600  # with the row's end
    registry.write_pending_events()
    assert BreakerEvent.objects.filter(reason="admin (re-asserted): incident 7").count() == 1


def test_a_refresh_of_an_unchanged_row_is_one_narrow_read_and_an_override_without_a_new_version_applies(
    settings,
):
    """Each refresh (every probe of the ``redis`` breaker) reads the row's version and override in
    one statement; the whole row only when its version moved on. An override is the truth on every
    refresh, with or without a new version (a row updated in bulk keeps its version)."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    settings.BREAKER_CONFIG_REFRESH = 0.0
    assert registry.breaker("deepseek").state == State.CLOSED
    connection = connections["default"]
    with CaptureQueriesContext(connection) as queries:
        registry.breaker("deepseek")
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("SELECT version, mode, mode_reason, mode_until FROM")
    BreakerConfig.objects.filter(name="deepseek").update(
        mode="forced_open", mode_reason="bulk", mode_until=_soon(600)
    )
    with CaptureQueriesContext(connection) as queries:
        assert registry.breaker("deepseek").state == State.FORCED_OPEN
    assert len(queries) == 1
    row = BreakerConfig.objects.get(name="deepseek")
    row.mode, row.mode_until, row.failure_threshold = "auto", None, 7
    row.save()
    with CaptureQueriesContext(connection) as queries:
        cb = registry.breaker("deepseek")
    assert len(queries) == 2  # the version moved on: the whole row too
    assert cb.config.failure_threshold == 7
    assert cb.state == State.CLOSED


def test_transitions_are_counted_and_the_open_gauge_follows_the_state():
    before = _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="forced_open")
    services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    after = _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="forced_open")
    assert after - before == 1
    assert _sample("hotelbot_breaker_open", breaker="deepseek") == 1.0
    closed_before = _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="closed")
    services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.AUTO)
    assert _sample("hotelbot_breaker_open", breaker="deepseek") == 0.0
    assert (
        _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="closed") - closed_before
        == 1
    )
    cb = registry.breaker("deepseek")
    open_before = _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="open")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            cb.call(boom)
    assert (
        _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="open") - open_before == 1
    )
    assert _sample("hotelbot_breaker_open", breaker="deepseek") == 1.0


@pytest.mark.redis
def test_redis_losing_an_open_breaker_writes_an_inferred_row_and_a_force_open_survives_flushall(
    settings, throwaway_redis
):
    import time

    settings.BREAKER_REDIS_URL = throwaway_redis.url
    settings.BREAKER_CONFIG_REFRESH = 0.0
    testing.reset_breakers()
    row = BreakerConfig.objects.get(name="deepseek")
    row.recovery_timeout = 0.1
    row.save()
    cb = registry.breaker("deepseek")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            cb.call(boom)
    assert cb.state == State.OPEN
    time.sleep(0.15)
    closed_before = _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="closed")
    throwaway_redis.client().flushall()  # Redis restarted without persistence
    time.sleep(0.55)  # past the store's sync interval
    assert registry.breaker("deepseek").call(lambda: "ok") == "ok"  # admitting, as in the incident
    registry.write_pending_events()
    inferred = BreakerEvent.objects.get(reason__startswith="inferred:")
    assert (inferred.from_state, inferred.to_state, inferred.source) == ("open", "closed", "redis")
    assert "shared state lost" in inferred.reason
    assert (
        _sample("hotelbot_breaker_transitions_total", breaker="deepseek", to_state="closed") - closed_before
        == 1
    )
    assert _sample("hotelbot_breaker_open", breaker="deepseek") == 0.0

    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="maintenance")
    throwaway_redis.client().flushall()
    time.sleep(0.55)
    with pytest.raises(CircuitOpenError):
        registry.breaker("green_api").call(lambda: "never runs")
    testing.reset_breakers()  # a process started after the flush sees it too
    with pytest.raises(CircuitOpenError):
        registry.breaker("green_api").call(lambda: "never runs")
