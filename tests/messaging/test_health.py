"""Messaging's health checks: provider states cached and paced, reply backlog, sweeper heartbeat."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from fakes.deepseek import FakeDeepSeek
from fakes.green_api import FakeGreenApi
from messaging import health as checks
from messaging.models import ReplyJob
from messaging.services import replies
from reliability import health
from reliability.models import Heartbeat
from tests.factories import HotelFactory, ReplyJobFactory


@pytest.fixture(autouse=True)
def _fresh_health_with_the_monitoring_token(fresh_health: None, settings) -> None:
    settings.HEALTH_CHECK_TIMEOUT = 3.0  # these tests are about caching, not deadlines
    settings.HEALTH_MONITORING_TOKEN = "test-monitoring-token"  # /health/ is for monitoring


def provider_checks(client: Client) -> dict[str, dict[str, object]]:
    body = client.get(
        "/health/", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION="Bearer test-monitoring-token"
    ).json()
    return {name: body["checks"][name] for name in ("green_api_instances", "deepseek")}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_provider_checks_are_cached_a_second_probe_makes_no_provider_call(
    client: Client, fake_green: FakeGreenApi, fake_deepseek: FakeDeepSeek
) -> None:
    HotelFactory.create()  # instance 1101000001, the fake's
    first = provider_checks(client)
    assert first["green_api_instances"]["status"] == "ok", first
    assert str(first["green_api_instances"]["message"]).startswith("1 instance(s) authorized (1 asked")
    assert first["deepseek"]["status"] == "ok", first
    assert len(fake_green.journal("getStateInstance")) == 1
    assert len(fake_deepseek.journal(path_regex="models")) == 1

    second = provider_checks(client)
    assert second == {
        name: {**check, "response_time_ms": second[name]["response_time_ms"]} for name, check in first.items()
    }
    assert len(fake_green.journal("getStateInstance")) == 1  # answered from the cache
    assert len(fake_deepseek.journal(path_regex="models")) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_health_monitor_refreshes_provider_states_and_names_the_unauthorized_hotel(
    client: Client, fake_green: FakeGreenApi, fake_deepseek: FakeDeepSeek
) -> None:
    HotelFactory.create(name="Seaside Inn")
    assert provider_checks(client)["green_api_instances"]["status"] == "ok"
    fake_green.set_state("notAuthorized")
    assert provider_checks(client)["green_api_instances"]["status"] == "ok"  # cached answer

    levels = health.monitor_run()
    assert levels["green_api_instances"] == "failing"
    check = provider_checks(client)["green_api_instances"]
    assert check["status"] == "failing"
    assert "hotel 'Seaside Inn' (instance 1101000001) is notAuthorized" in str(check["message"])
    assert "QR code" in str(check["message"])
    assert "test-token" not in str(check["message"])
    assert len(fake_green.journal("getStateInstance")) == 2  # first probe + the monitor's refresh
    # ... and the gauge the InstanceNotAuthorized alert reads says one hotel cannot answer anyone.
    assert REGISTRY.get_sample_value("hotelbot_whatsapp_instances_not_authorized") == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_deepseek_check_says_when_the_key_is_refused(fake_deepseek: FakeDeepSeek, settings) -> None:
    settings.DEEPSEEK_API_KEY = "sk-wrong"
    with pytest.raises(health.ServiceUnavailable) as info:
        checks.deepseek_reachable()
    assert "401" in info.value.message
    assert "DEEPSEEK_API_KEY" in info.value.message


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_reply_backlog_warns_then_fails_above_the_limit(settings) -> None:
    settings.HEALTH_REPLY_BACKLOG_SECONDS = 60
    settings.HEALTH_REPLY_BACKLOG_MAX = 2
    assert checks.reply_backlog().startswith("no reply job overdue")
    old = timezone.now() - timedelta(seconds=300)
    ReplyJobFactory.create(next_attempt_at=old)
    ReplyJobFactory.create(next_attempt_at=timezone.now())  # due, but not for long
    with pytest.raises(health.ServiceWarning) as warning:
        checks.reply_backlog()
    assert "1 reply job(s) due for more than 60 s" in warning.value.message
    assert "oldest 5 min" in warning.value.message
    for _ in range(2):
        ReplyJobFactory.create(next_attempt_at=old)
    result = asyncio.run(health.FunctionCheck(label="reply_backlog", fn=checks.reply_backlog).get_result())
    assert isinstance(result.error, health.ServiceUnavailable)
    assert not isinstance(result.error, health.ServiceWarning)
    assert ReplyJob.objects.count() == 4


@pytest.mark.django_db
def test_the_sweeper_records_the_beat_heartbeat() -> None:
    assert not Heartbeat.objects.exists()
    replies.reply_jobs_sweep()
    beat = Heartbeat.objects.get(name=checks.SWEEPER_HEARTBEAT)
    assert (timezone.now() - beat.last_seen_at).total_seconds() < 60
    assert beat.process


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_provider_probes_neither_reset_nor_wait_on_the_breakers_that_guard_replies(
    fake_green: FakeGreenApi, fake_deepseek: FakeDeepSeek, settings
) -> None:
    """A getStateInstance or GET /models success between failed sends must not reset the send
    breaker's count (it once kept 8 failed sends from opening it), and an open breaker must not
    hide the provider's state from the probe."""
    from messaging.clients import green_api
    from reliability.breaker import registry

    settings.DEEPSEEK_RATE_MODELS = settings.GREEN_API_RATE_STATE_INSTANCE = 1000.0  # two probes each
    hotel = HotelFactory.create()
    client = green_api.client_for(id_instance=hotel.green_api_instance_id, api_token=hotel.green_api_token)
    threshold = registry.breaker("green_api").config.failure_threshold
    fake_green.add_fault(
        {"mode": "error", "status": 503, "count": threshold, "match": {"method_name": "sendMessage"}}
    )
    for _ in range(threshold - 1):
        with pytest.raises(green_api.GreenApiError):
            client.send_message(chat_id="79001234567@c.us", text="hi")
    before = registry.breaker("green_api").snapshot()
    assert before.consecutive_failures == threshold - 1

    levels = health.monitor_run()
    assert (levels["green_api_instances"], levels["deepseek"]) == ("ok", "ok"), levels
    after = registry.breaker("green_api").snapshot()
    assert (after.calls, after.consecutive_failures) == (before.calls, before.consecutive_failures)

    with pytest.raises(green_api.GreenApiError):
        client.send_message(chat_id="79001234567@c.us", text="hi")
    assert registry.breaker("green_api").state.value == "open"
    registry.breaker("deepseek").force_open()
    try:
        levels = health.monitor_run()  # both breakers open: the probes still reach the providers
        assert (levels["green_api_instances"], levels["deepseek"]) == ("ok", "ok"), levels
        assert len(fake_green.journal("getStateInstance")) == 2
        assert len(fake_deepseek.journal(path_regex="models")) == 2
    finally:
        registry.breaker("green_api").reset()
        registry.breaker("deepseek").reset()
