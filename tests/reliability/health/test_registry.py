"""Health probes: endpoints, JSON shape, hard deadlines against hung dependencies, metrics, command."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from fakes.hung_tcp import HungTcpServer
from reliability import dead_letters, health, selectors, services
from reliability.breaker import registry
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter, Heartbeat

# Generous bound for "answers within 200 ms" on a busy 2-core machine; the cause is asserted too.
PROBE_BOUND = 1.0


@pytest.fixture(autouse=True)
def _fresh_health(fresh_health: None) -> None:
    """Every test here starts with fresh health (tests/conftest.py)."""


MONITORING_TOKEN = "test-monitoring-token"


@pytest.fixture
def client(settings) -> Client:
    """Monitoring's view of the health pages (the token); tests/reliability/test_views_health_access.py
    covers what anyone else gets."""
    settings.HEALTH_MONITORING_TOKEN = MONITORING_TOKEN
    return Client(HTTP_AUTHORIZATION=f"Bearer {MONITORING_TOKEN}")


def get_json(client: Client, path: str) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    response = client.get(path, HTTP_ACCEPT="application/json")
    return response.status_code, response.json(), time.perf_counter() - started


@pytest.fixture
def broken_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: BaseDatabaseWrapper) -> None:
        raise OperationalError("connection refused (test)")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)


@pytest.fixture
def hung_postgres(settings) -> Iterator[str]:
    """A database alias whose PostgreSQL accepts TCP connections and never answers."""
    with HungTcpServer() as server:
        connections.settings["hung"] = {
            **connections.settings["default"],
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "hotelbot",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": server.host,
            "PORT": str(server.port),
            "OPTIONS": {"connect_timeout": 2},
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
        }
        try:
            yield "hung"
        finally:
            del connections.settings["hung"]


# --- endpoints ------------------------------------------------------------------------------------
def test_live_answers_without_asking_any_dependency_even_with_the_database_broken(
    client: Client, broken_database: None
) -> None:
    status, body, _ = get_json(client, "/health/live/")
    assert status == 200
    assert body == {"status": "ok"}


def test_ready_fails_503_without_the_database_and_says_why_only_on_the_detailed_page(
    client: Client, broken_database: None
) -> None:
    status, body, _ = get_json(client, "/health/ready/?format=json")
    assert (status, body) == (503, {"status": "failing"})  # public: a status, nothing else
    status, body, _ = get_json(client, "/health/")
    assert (status, body["status"]) == (503, "failing")
    assert "connection refused" in body["checks"]["database"]["message"]
    assert "webhook answers 503" in body["checks"]["database"]["message"]


@pytest.mark.django_db
def test_ready_checks_the_database_only_and_ignores_a_hung_redis(client: Client, settings) -> None:
    with HungTcpServer() as hung:
        settings.REDIS_URL = settings.BREAKER_REDIS_URL = settings.RATE_LIMIT_REDIS_URL = hung.url
        status, body, _ = get_json(client, "/health/ready/")
        assert hung.accepted == 0  # readiness never connected to Redis
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_detailed_reports_every_check_with_status_time_and_diagnosis(client: Client, settings) -> None:
    # The shape of every check's answer, not its 150 ms budget (its own tests): a busy machine may be slow.
    settings.HEALTH_CHECK_TIMEOUT = 5.0
    services.heartbeat_record(name="reply_sweeper")
    status, body, _ = get_json(client, "/health/detailed/")
    names = set(body["checks"])
    infra = {"database", "broker", "celery_workers", "dead_letters", "circuit_breakers", "degradation"}
    infra |= {"disk", "memory"}
    assert infra <= names
    assert {"reply_backlog", "beat:reply_sweeper", "green_api_instances", "deepseek"} <= names  # messaging's
    assert ("redis" in names) or ("cache" in names)
    for check in body["checks"].values():
        assert set(check) == {"status", "critical", "response_time_ms", "message"}
        assert check["status"] in {"ok", "warning", "failing"}
        assert check["message"]  # a diagnosis even when OK
    for name in ("database", "dead_letters", "circuit_breakers", "beat:reply_sweeper", "reply_backlog"):
        assert body["checks"][name]["status"] == "ok", body["checks"][name]
    assert body["status"] in {"ok", "degraded", "failing"}
    assert status == (503 if body["status"] == "failing" else 200)
    _same_status, same_body, _ = get_json(client, "/health/?format=json")
    assert set(same_body["checks"]) == names


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_a_warning_answers_200_degraded_and_a_failure_503(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def warn() -> str:
        raise health.ServiceWarning("just so you know")

    monkeypatch.setattr(
        health, "all_checks", lambda: [health.DatabaseCheck(), health.FunctionCheck(label="w", fn=warn)]
    )
    status, body, _ = get_json(client, "/health/")
    assert (status, body["status"], body["checks"]["w"]["message"]) == (200, "degraded", "just so you know")

    def fail() -> str:
        raise health.ServiceUnavailable("down")

    monkeypatch.setattr(health, "all_checks", lambda: [health.FunctionCheck(label="f", fn=fail)])
    status, body, _ = get_json(client, "/health/")
    assert (status, body["status"], body["checks"]["f"]["status"]) == (503, "failing", "failing")


# --- hard deadlines -----------------------------------------------------------------------------------
def test_database_check_answers_in_time_while_postgres_hangs(
    hung_postgres: str, client: Client, monkeypatch, django_db_blocker
) -> None:
    # No django_db mark: Django's test case forbids connections to an alias it did not set up;
    # the hung alias has no test database, only a server that never answers.
    with django_db_blocker.unblock():
        _probe_hung_database(hung_postgres, client, monkeypatch)


def _probe_hung_database(hung_postgres: str, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    check = health.DatabaseCheck(alias=hung_postgres)
    started = time.perf_counter()
    result = asyncio.run(check.get_result())
    elapsed = time.perf_counter() - started
    assert elapsed < PROBE_BOUND
    assert result.error is not None
    assert "did not answer within 150 ms: timeout" in result.error.message
    assert "PostgreSQL at 127.0.0.1:" in result.error.message

    # Through the endpoints too: readiness answers 503 in time (a status only, it is public); the
    # detailed page says why and reports the check's time.
    monkeypatch.setattr(health, "readiness_checks", lambda: [health.DatabaseCheck(alias=hung_postgres)])
    status, body, elapsed = get_json(client, "/health/ready/")
    assert (status, body) == (503, {"status": "failing"})
    assert elapsed < PROBE_BOUND
    monkeypatch.setattr(health, "all_checks", lambda: [health.DatabaseCheck(alias=hung_postgres)])
    status, body, elapsed = get_json(client, "/health/")
    assert status == 503
    assert elapsed < PROBE_BOUND
    reported = body["checks"][f"database:{hung_postgres}"]
    assert "did not answer within 150 ms" in reported["message"]
    assert reported["response_time_ms"] < PROBE_BOUND * 1000


def test_redis_check_answers_in_time_while_redis_hangs() -> None:
    with HungTcpServer() as hung:
        started = time.perf_counter()
        result = asyncio.run(health.RedisCheck(url=hung.url).get_result())
        elapsed = time.perf_counter() - started
        assert hung.accepted >= 1  # it did connect: the server hangs, it is not refusing
    assert elapsed < PROBE_BOUND
    assert result.error is not None
    assert f"Redis at 127.0.0.1:{hung.port} did not answer within 150 ms: timeout" in result.error.message
    assert "fall back to the database" in result.error.message


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_the_full_probe_answers_in_time_while_redis_hangs(client: Client, settings) -> None:
    # Each check gets 400 ms here, not the default 150: on a busy test machine the breakers' read
    # (which falls back to the database while Redis hangs) could pass 150 ms and fail a critical
    # check; what this test is about is the hung Redis check and the whole probe's bound.
    settings.HEALTH_CHECK_TIMEOUT = 0.4
    with HungTcpServer() as hung:
        settings.REDIS_URL = hung.url
        status, body, elapsed = get_json(client, "/health/")
    assert elapsed < PROBE_BOUND
    # Redis is not critical (breakers, pacing and the cache fall back): degraded, not 503.
    assert (status, body["status"]) == (200, "degraded"), body
    assert body["checks"]["redis"]["status"] == "failing"
    assert "did not answer within 400 ms" in body["checks"]["redis"]["message"]
    assert body["checks"]["database"]["status"] == "ok"


def test_a_hung_probe_is_not_started_twice() -> None:
    calls = []

    def slow() -> str:
        calls.append(1)
        time.sleep(0.5)
        return "done"

    check = health.FunctionCheck(label="slow", fn=slow)
    first = asyncio.run(check.get_result())
    second = asyncio.run(health.FunctionCheck(label="slow", fn=slow).get_result())
    assert first.error is not None
    assert second.error is not None
    assert "did not answer within" in second.error.message
    assert len(calls) == 1  # the second probe joined the first run instead of starting another


def test_cached_check_probes_once_within_the_cache_period(settings) -> None:
    settings.HEALTH_CHECK_TIMEOUT = 2.0
    calls = []

    def expensive() -> str:
        calls.append(1)
        return "fine"

    for _ in range(3):
        result = asyncio.run(health.FunctionCheck(label="exp", fn=expensive, is_cached=True).get_result())
        assert result.error is None
    assert len(calls) == 1


@pytest.mark.django_db
def test_a_heartbeat_is_one_update_once_its_row_exists() -> None:
    """The sweeper stamps its heartbeat every run (15 s): one UPDATE, no lock and no transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Heartbeat.objects.filter(name="idle_job").delete()
    services.heartbeat_record(name="idle_job")  # the first run creates the row
    first = Heartbeat.objects.get(name="idle_job").last_seen_at
    with CaptureQueriesContext(connection) as queries:
        services.heartbeat_record(name="idle_job")
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    row = Heartbeat.objects.get(name="idle_job")
    assert row.last_seen_at >= first
    assert row.process == registry.process_label()


# --- individual checks -----------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_beat_heartbeat_fails_when_missing_or_older_than_three_intervals(settings) -> None:
    settings.REPLY_SWEEP_INTERVAL = 10.0
    check = health.HeartbeatCheck(job="reply_sweeper", interval=lambda: settings.REPLY_SWEEP_INTERVAL)
    result = asyncio.run(check.get_result())
    assert result.error is not None
    assert "never recorded a run" in result.error.message

    services.heartbeat_record(name="reply_sweeper")
    assert asyncio.run(check.get_result()).error is None

    Heartbeat.objects.filter(name="reply_sweeper").update(last_seen_at=timezone.now() - timedelta(seconds=31))
    result = asyncio.run(check.get_result())
    assert result.error is not None
    assert "limit 30 s = 3 x its interval" in result.error.message


def _dead_letter(reason: str = "not_json") -> DeadLetter:
    return dead_letters.dead_letter_quarantine(
        kind=DeadLetter.Kind.WEBHOOK_QUARANTINE, subject="1101", raw=b"{", reason_code=reason, reason="bad"
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_dead_letter_backlog_warns_above_the_threshold(settings) -> None:
    settings.HEALTH_DEAD_LETTER_MAX = 1
    _dead_letter()
    assert asyncio.run(health.DeadLetterCheck().get_result()).error is None
    _dead_letter()
    result = asyncio.run(health.DeadLetterCheck().get_result())
    assert isinstance(result.error, health.ServiceWarning)
    assert "2 pending dead letter(s)" in result.error.message


@pytest.mark.django_db
def test_dlq_endpoint_groups_open_letters_by_kind_status_and_reason(client: Client) -> None:
    _dead_letter("not_json")
    _dead_letter("not_json")
    resolved = _dead_letter("too_large")
    DeadLetter.objects.filter(pk=resolved.pk).update(status=DeadLetter.Status.RESOLVED)
    response = client.get("/health/dlq/")
    body = response.json()
    assert response.status_code == 200
    assert body["pending"] == 2
    # Only open letters are grouped: the resolved one is history, not backlog.
    assert body["by_kind"] == {"webhook_quarantine": 2}
    assert body["by_status"] == {"pending": 2}
    assert {(g["status"], g["reason"], g["count"]) for g in body["groups"]} == {("pending", "not_json", 2)}
    assert body["oldest_pending_age_seconds"] >= 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_open_breaker_is_a_warning_naming_it_and_since_when(client: Client) -> None:
    for name in ("green_api", "deepseek"):  # transactional tests flush the seeded rows
        BreakerConfig.objects.get_or_create(name=name)
    services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    registry.write_pending_events()
    result = asyncio.run(health.BreakerCheck().get_result())
    assert isinstance(result.error, health.ServiceWarning)
    assert "deepseek forced_open since 20" in result.error.message
    assert "(staff: drill)" in result.error.message

    body = client.get("/health/circuit-breakers/").json()
    rows = {row["name"]: row for row in body["breakers"]}
    assert set(rows) >= {"green_api", "deepseek"}
    assert rows["deepseek"]["state"] == "forced_open"
    assert rows["deepseek"]["override"] == {
        "mode": "forced_open",
        "active": True,
        "reason": "drill",
        "until": None,
    }
    assert rows["deepseek"]["since"] is not None
    assert rows["deepseek"]["seconds_in_state"] >= 0
    assert rows["green_api"]["state"] == "closed"
    assert set(rows["green_api"]["counts"]) >= {"calls", "failures", "consecutive_failures", "trips"}


@pytest.mark.django_db
def test_breaker_monitor_alerts_once_per_open_episode(settings, mailoutbox) -> None:
    settings.ADMINS = [("ops", "ops@example.com")]
    settings.BREAKER_OPEN_ALERT_SECONDS = 600
    BreakerConfig.objects.get_or_create(name="green_api")
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    registry.write_pending_events()
    assert services.breaker_open_alerts_send() == 0  # open, but not for long yet
    BreakerEvent.objects.filter(breaker="green_api").update(at=timezone.now() - timedelta(seconds=700))
    assert services.breaker_open_alerts_send() == 1
    assert services.breaker_open_alerts_send() == 0  # same episode: no second mail
    assert len(mailoutbox) == 1
    assert "green_api" in mailoutbox[0].subject
    assert "runbook" in mailoutbox[0].body

    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.AUTO)  # closes: episode over
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="again")
    registry.write_pending_events()
    start = selectors.breaker_episode_start(name="green_api")
    assert start is not None
    assert start.alerted_at is None
    assert start.reason == "admin: again"
    ago = timezone.now() - timedelta(seconds=700)
    # Lay the history out in order: first episode, the close that ended it, the second episode.
    BreakerEvent.objects.filter(breaker="green_api", alerted_at__isnull=False).update(
        at=ago - timedelta(seconds=100)
    )
    BreakerEvent.objects.filter(breaker="green_api", to_state="closed").update(at=ago - timedelta(seconds=1))
    BreakerEvent.objects.filter(pk=start.pk).update(at=ago)
    assert services.breaker_open_alerts_send() == 1
    assert len(mailoutbox) == 2


def test_disk_and_memory_warn_at_their_thresholds(settings, tmp_path) -> None:
    assert asyncio.run(health.DiskCheck(path=str(tmp_path)).get_result()).error is None
    settings.HEALTH_DISK_MAX_PERCENT = 0.0
    settings.HEALTH_MEMORY_MAX_PERCENT = 0.0
    disk = asyncio.run(health.DiskCheck(path=str(tmp_path)).get_result())
    memory = asyncio.run(health.MemoryCheck().get_result())
    assert isinstance(disk.error, health.ServiceWarning)
    assert "GiB free" in disk.error.message
    assert isinstance(memory.error, health.ServiceWarning)
    assert "memory used" in memory.error.message


# --- metrics, monitor, command -------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_every_check_run_records_duration_and_status() -> None:
    def sample(name: str, check: str) -> float:
        return REGISTRY.get_sample_value(name, {"check": check}) or 0.0

    before = sample("health_check_duration_seconds_count", "database")
    assert asyncio.run(health.DatabaseCheck().get_result()).error is None
    assert sample("health_check_duration_seconds_count", "database") == before + 1
    assert sample("health_check_status", "database") == 1.0

    def fail() -> str:
        raise health.ServiceUnavailable("down")

    asyncio.run(health.FunctionCheck(label="always_down", fn=fail).get_result())
    assert sample("health_check_status", "always_down") == 0.0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_health_monitor_task_refreshes_cached_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    from reliability.tasks import health_monitor

    pings: list[float] = []

    def ping(timeout: float) -> list[str]:
        pings.append(timeout)
        return ["celery@a"]

    monkeypatch.setattr(health.checks, "ping_workers", ping)
    levels = health_monitor.apply().get()
    assert levels["celery_workers"] == "ok"
    assert levels["database"] == "ok"
    health_monitor.apply().get()
    assert len(pings) == 2  # the monitor refreshes even within the cache period


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_the_monitor_runs_every_check_in_one_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loop (and its executor thread) per check was about a fifth of a run's CPU (docs/cost.md).
    loops: list[object] = []
    run = asyncio.run

    def counting_run(main: Any) -> Any:
        loops.append(main)
        return run(main)

    monkeypatch.setattr(health.checks, "ping_workers", lambda timeout: ["celery@a"])
    monkeypatch.setattr(asyncio, "run", counting_run)
    levels = health.monitor_run()
    assert len(loops) == 1
    # And every check still ran and reported, the uncached ones as the cached ones
    assert set(levels) == {check.name for check in health.all_checks()}
    assert levels["database"] == "ok"
    assert levels["celery_workers"] == "ok"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_manage_py_health_check_runs_our_checks_without_http(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call_command("health_check", "health-ready", "--no-http")
    assert exit_info.value.code == 0
    assert "database: OK" in capsys.readouterr().out


def test_manage_py_health_check_exits_1_when_the_database_is_down(broken_database: None, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call_command("health_check", "health-ready", "--no-http")
    assert exit_info.value.code == 1
    assert "database: Unavailable" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded rows
def test_degradation_is_a_health_warning_and_has_its_own_endpoint(client: Client) -> None:
    from django.contrib.auth.models import User

    from reliability import degradation

    assert asyncio.run(health.DegradationCheck().get_result()).error is None  # NORMAL: ok
    ops = User.objects.create_superuser("ops", "ops@example.com", "pw")
    degradation.degradation_override_set(
        level="severe", reason="provider incident", actor=ops, via="admin", switches_off=["ai_replies"]
    )
    result = asyncio.run(health.DegradationCheck().get_result())
    assert isinstance(result.error, health.ServiceWarning)
    assert "level SEVERE" in result.error.message
    assert "switched off: ai_replies" in result.error.message
    assert "staff override by ops: provider incident" in result.error.message

    status, body, _ = get_json(client, "/health/degradation/")
    assert status == 200
    assert body["level"] == "SEVERE"
    assert body["switches"]["ai_replies"] is False
    assert body["override"]["reason"] == "provider incident"
