"""Degradation: rules → levels, hysteresis, override and maintenance expiry, events, metrics, mail,
audit, and that asking a switch costs no I/O within the refresh interval."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability import degradation, services
from reliability.middleware import DegradationMiddleware
from reliability.models import (
    AuditEntry,
    BreakerConfig,
    DeadLetter,
    DegradationEvent,
    DegradationLevel,
    DegradationRule,
    DegradationState,
    DependencyMaintenance,
)

pytestmark = pytest.mark.django_db

L = DegradationLevel


@pytest.fixture
def only_rules():
    """No seeded rules: each test declares the rules it needs."""
    DegradationRule.objects.all().delete()


def rule(name: str, condition: str, level: int, *, target: str = "", threshold: float = 0.0, off=()):
    return DegradationRule.objects.create(
        name=name,
        condition=condition,
        target=target,
        threshold=threshold,
        level=level,
        switches_off=list(off),
    )


def force(name: str, mode: str = BreakerConfig.Mode.FORCED_OPEN) -> None:
    services.breaker_set_mode(name=name, mode=mode, reason="drill" if mode != BreakerConfig.Mode.AUTO else "")


def state() -> DegradationState:
    return DegradationState.objects.get(pk=1)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# --- rules → levels ----------------------------------------------------------------------------------
def test_seeded_rules_guard_real_conditions_without_blocking_recovery_probes():
    rules = {r.name: r for r in DegradationRule.objects.all()}
    assert rules["DeepSeek unavailable"].switches_off == []  # the pipeline already falls back
    assert rules["Green API unavailable"].switches_off == []  # sends already park while open
    assert rules["Reply backlog"].switches_off == ["ai_replies"]
    assert rules["Reply backlog"].level == L.SEVERE


def test_no_rule_holds_normal_everything_on():
    degradation.degradation_evaluate()
    assert state().level == L.NORMAL
    assert all(degradation.is_enabled(s) for s in degradation.SWITCHES)
    assert DegradationEvent.objects.count() == 0


def test_breaker_rules_give_the_worst_level_and_the_union_of_switches(only_rules):
    rule("ai", "breaker_open", L.MINOR, target="deepseek", off=["ai_replies"])
    rule("send", "breaker_open", L.MODERATE, target="green_api", off=["outbound_sending"])
    force("deepseek")
    degradation.degradation_evaluate()
    assert (state().level, state().switches_off) == (L.MINOR, ["ai_replies"])
    assert not degradation.is_enabled("ai_replies")
    assert degradation.is_enabled("outbound_sending")
    force("green_api")
    degradation.degradation_evaluate()
    assert (state().level, state().switches_off) == (L.MODERATE, ["ai_replies", "outbound_sending"])
    assert state().cause == "send, ai"  # worst rule first


def test_half_open_rule(only_rules):
    from reliability.breaker import registry

    rule("probing", "breaker_half_open", L.MINOR, target="green_api")
    force("green_api")
    degradation.degradation_evaluate()
    assert state().level == L.NORMAL  # open is not half-open
    registry.breaker("green_api").force_open("drill", until=timezone.now())  # ends → half-open
    degradation.degradation_evaluate()
    assert state().level == L.MINOR


def _trip(name: str) -> None:
    """Open breaker ``name`` the real way: consecutive failed calls."""
    from reliability.breaker import registry

    cb = registry.breaker(name)
    for _ in range(cb.config.failure_threshold):
        with cb.guard() as call:
            call.record_status(503)


def _succeed(name: str) -> None:
    from reliability.breaker import registry

    with registry.breaker(name).guard():
        pass


def test_a_rule_switching_off_its_breakers_only_caller_lets_the_probe_through(only_rules, settings):
    """A rule on DeepSeek's breaker turning ai_replies off stopped every DeepSeek call, so the
    breaker stayed OPEN (it only moves on when a call comes) and the level never recovered. Once
    the open time is over the rule keeps its level but gives ai_replies back; the probes close the
    breaker and the level goes back to NORMAL by itself."""
    from reliability.breaker import State, registry

    settings.DEGRADATION_RECOVERY_SECONDS = 5
    BreakerConfig.objects.filter(name="deepseek").update(recovery_timeout=1.0, recovery_timeout_multiplier=1)
    rule("ai", "breaker_open", L.MODERATE, target="deepseek", off=["ai_replies", "webhook_intake"])
    _trip("deepseek")
    t0 = timezone.now()
    degradation.degradation_evaluate(now=t0)
    assert (state().level, state().switches_off) == (L.MODERATE, ["ai_replies", "webhook_intake"])
    time.sleep(1.1)  # the open time is over; nobody calls DeepSeek (ai_replies is off)
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=1))
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=6))
    assert registry.breaker("deepseek").state == State.OPEN
    # The level holds, and so does the switch that does not gate DeepSeek; ai_replies is back on.
    assert (state().level, state().switches_off) == (L.MODERATE, ["webhook_intake"])
    assert degradation.is_enabled("ai_replies")
    # A failed probe opens the breaker again: ai_replies off at once.
    with registry.breaker("deepseek").guard() as call:
        call.record_status(503)
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=7))
    assert state().switches_off == ["ai_replies", "webhook_intake"]
    time.sleep(1.1)
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=8))
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=13))
    assert state().switches_off == ["webhook_intake"]
    for _ in range(registry.breaker("deepseek").config.success_threshold):  # DeepSeek is back
        _succeed("deepseek")
    assert registry.breaker("deepseek").state == State.CLOSED
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=14))
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=19))
    assert (state().level, state().switches_off) == (L.NORMAL, [])
    assert degradation.is_enabled("ai_replies")
    assert degradation.is_enabled("webhook_intake")


def test_a_half_open_rule_never_switches_off_its_breakers_probes(only_rules):
    from reliability.breaker import registry

    rule("probing", "breaker_half_open", L.MINOR, target="deepseek", off=["ai_replies"])
    registry.breaker("deepseek").force_open("drill", until=timezone.now())  # ends → half-open
    degradation.degradation_evaluate()
    assert (state().level, state().switches_off) == (L.MINOR, [])
    assert degradation.is_enabled("ai_replies")


def test_a_forced_open_breaker_keeps_its_rules_switches_off(only_rules):
    rule("ai", "breaker_open", L.MODERATE, target="deepseek", off=["ai_replies"])
    force("deepseek")  # staff decide when it ends: no probe is due
    degradation.degradation_evaluate()
    assert state().switches_off == ["ai_replies"]


def test_health_failing_rule_asks_a_registered_provider(only_rules):
    healthy = {"value": True}
    degradation.register_health_check("test_disk", lambda: healthy["value"])
    try:
        rule("disk", "health_failing", L.SEVERE, target="test_disk")
        rule("ghost", "health_failing", L.CRITICAL, target="not_registered")  # unknown: never holds
        degradation.degradation_evaluate()
        assert state().level == L.NORMAL
        healthy["value"] = False
        degradation.degradation_evaluate()
        assert state().level == L.SEVERE
    finally:
        degradation.unregister("test_disk")


def test_backlog_and_latency_rules(only_rules):
    rule("dlq", "dead_letter_backlog_above", L.MINOR, threshold=1)
    rule("backlog", "reply_backlog_above", L.MODERATE, threshold=10)
    rule("slow", "reply_p95_above", L.SEVERE, threshold=30)
    for i in range(2):
        DeadLetter.objects.create(kind="reply_send", reason_code="refused", reason=f"r{i}")
    assert degradation.rules_evaluate().causes == ("dlq",)
    degradation.register_signal(degradation.REPLY_BACKLOG, lambda: 11)
    degradation.register_signal(degradation.REPLY_P95_SECONDS, lambda: 31.0)
    try:
        ask = degradation.rules_evaluate()
        assert (ask.level, set(ask.causes)) == (L.SEVERE, {"dlq", "backlog", "slow"})
    finally:  # put back messaging's providers
        from messaging import selectors

        degradation.register_signal(degradation.REPLY_BACKLOG, selectors.reply_backlog_count)
        degradation.register_signal(degradation.REPLY_P95_SECONDS, selectors.reply_latency_p95)


def test_messaging_signals_count_due_work():
    from messaging import selectors
    from tests.factories import ReplyJobFactory

    ReplyJobFactory.create()
    ReplyJobFactory.create(next_attempt_at=timezone.now() + timedelta(hours=1))  # not due
    assert selectors.reply_backlog_count() == 1
    assert selectors.reply_latency_p95() is None


def test_a_disabled_rule_or_a_broken_condition_does_not_count(only_rules):
    r = rule("ai", "breaker_open", L.MINOR, target="deepseek")
    r.enabled = False
    r.save()
    degradation.register_signal(degradation.REPLY_BACKLOG, lambda: 1 / 0)
    try:
        rule("broken", "reply_backlog_above", L.CRITICAL, threshold=1)
        force("deepseek")
        assert degradation.rules_evaluate().level == L.NORMAL
    finally:
        from messaging import selectors

        degradation.register_signal(degradation.REPLY_BACKLOG, selectors.reply_backlog_count)


# --- hysteresis -------------------------------------------------------------------------------------
def test_a_flapping_breaker_does_not_flap_the_level(only_rules, settings):
    settings.DEGRADATION_RECOVERY_SECONDS = 60
    rule("ai", "breaker_open", L.MODERATE, target="deepseek", off=["ai_replies"])
    t0 = timezone.now()
    force("deepseek")
    degradation.degradation_evaluate(now=t0)
    assert state().level == L.MODERATE  # up at once
    for step in range(1, 9):  # closes and opens again every 15 s for two minutes
        force("deepseek", BreakerConfig.Mode.AUTO if step % 2 else BreakerConfig.Mode.FORCED_OPEN)
        degradation.degradation_evaluate(now=t0 + timedelta(seconds=15 * step))
        assert state().level == L.MODERATE
    assert DegradationEvent.objects.count() == 1
    # Stays clear: down only after 60 s of clear evaluations.
    force("deepseek", BreakerConfig.Mode.AUTO)
    clear_from = t0 + timedelta(seconds=135)
    degradation.degradation_evaluate(now=clear_from)
    degradation.degradation_evaluate(now=clear_from + timedelta(seconds=59))
    assert state().level == L.MODERATE
    assert not degradation.is_enabled("ai_replies")
    degradation.degradation_evaluate(now=clear_from + timedelta(seconds=60))
    assert (state().level, state().switches_off) == (L.NORMAL, [])
    assert degradation.is_enabled("ai_replies")
    events = list(DegradationEvent.objects.order_by("at").values_list("from_level", "to_level", "actor"))
    assert events == [(L.NORMAL, L.MODERATE, "system"), (L.MODERATE, L.NORMAL, "system")]


def test_recovery_goes_to_the_worst_level_asked_during_the_window(only_rules, settings):
    settings.DEGRADATION_RECOVERY_SECONDS = 60
    rule("ai", "breaker_open", L.MINOR, target="deepseek")
    rule("send", "breaker_open", L.SEVERE, target="green_api")
    t0 = timezone.now()
    force("deepseek")
    force("green_api")
    degradation.degradation_evaluate(now=t0)
    assert state().level == L.SEVERE
    force("green_api", BreakerConfig.Mode.AUTO)  # MINOR still asked
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=10))
    force("deepseek", BreakerConfig.Mode.AUTO)  # then nothing
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=40))
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=70))
    assert state().level == L.MINOR  # the worst asked in the window
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=129))
    assert state().level == L.MINOR
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=130))
    assert state().level == L.NORMAL


# --- an evaluation that changes nothing writes nothing -------------------------------------------
def _writes(queries: CaptureQueriesContext) -> list[str]:
    verbs = ("UPDATE", "INSERT", "DELETE", "SAVEPOINT", "BEGIN")
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(verbs)]


def test_an_evaluation_that_changes_nothing_takes_no_lock_and_writes_nothing(only_rules):
    """The usual run (every 15 s, nothing changed): the row is read, not locked or written;
    ``evaluated_at`` still moves on once it is EVALUATED_AT_STALE_SECONDS old."""
    from reliability.degradation import services as degradation_services

    t0 = timezone.now()
    degradation.degradation_evaluate(now=t0)
    assert state().evaluated_at == t0
    with CaptureQueriesContext(connection) as queries:
        degradation.degradation_evaluate(now=t0 + timedelta(seconds=15))
    assert _writes(queries) == []
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert state().evaluated_at == t0
    stale = t0 + timedelta(seconds=degradation_services.EVALUATED_AT_STALE_SECONDS)
    degradation.degradation_evaluate(now=stale)
    assert state().evaluated_at == stale


def test_a_change_found_by_the_unlocked_read_is_still_written_under_the_lock(only_rules):
    t0 = timezone.now()
    degradation.degradation_evaluate(now=t0)
    rule("ai", "breaker_open", L.MINOR, target="deepseek", off=["ai_replies"])
    force("deepseek")
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=15))
    assert (state().level, state().switches_off) == (L.MINOR, ["ai_replies"])
    assert state().evaluated_at == t0 + timedelta(seconds=15)
    assert not degradation.is_enabled("ai_replies")
    assert DegradationEvent.objects.count() == 1
    # Staff's override is left alone by a run that changes nothing, and ends by the evaluator.
    degradation.degradation_override_set(
        level="moderate", reason="drill", actor=None, via="test", until=t0 + timedelta(seconds=40)
    )
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=30))
    assert state().override_level == L.MODERATE
    degradation.degradation_evaluate(now=t0 + timedelta(seconds=45))
    assert state().override_level is None
    assert state().level == L.MINOR


# --- events, metrics, mail -------------------------------------------------------------------------
def test_moves_to_severe_and_back_mail_admins_log_and_count(
    only_rules, settings, mailoutbox, django_capture_on_commit_callbacks, caplog
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DEGRADATION_RECOVERY_SECONDS = 0
    rule("send", "breaker_open", L.SEVERE, target="green_api")
    up_before = metric("degradation_events_total", {"from": "normal", "to": "severe"})
    down_before = metric("degradation_events_total", {"from": "severe", "to": "normal"})
    force("green_api")
    with django_capture_on_commit_callbacks(execute=True):
        degradation.degradation_evaluate()
    assert metric("system_degradation_level") == L.SEVERE
    assert len(mailoutbox) == 1
    assert "NORMAL -> SEVERE" in mailoutbox[0].subject
    assert "send" in mailoutbox[0].body
    assert "degradation normal -> severe by system: send" in caplog.text
    force("green_api", BreakerConfig.Mode.AUTO)
    with django_capture_on_commit_callbacks(execute=True):
        degradation.degradation_evaluate()
    assert len(mailoutbox) == 2
    assert "SEVERE -> NORMAL" in mailoutbox[1].subject
    assert metric("system_degradation_level") == L.NORMAL
    assert metric("degradation_events_total", {"from": "normal", "to": "severe"}) == up_before + 1
    assert metric("degradation_events_total", {"from": "severe", "to": "normal"}) == down_before + 1


def test_minor_changes_do_not_mail(only_rules, settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.ADMINS = [("Ops", "ops@example.com")]
    rule("ai", "breaker_open", L.MODERATE, target="deepseek")
    force("deepseek")
    with django_capture_on_commit_callbacks(execute=True):
        degradation.degradation_evaluate()
    assert state().level == L.MODERATE
    assert mailoutbox == []


# --- manual override ---------------------------------------------------------------------------------
def test_override_holds_until_it_expires_in_every_reader_then_the_evaluator_records_it(
    only_rules, monkeypatch
):
    degradation.degradation_override_set(
        level="critical",
        reason="database migration",
        until=timezone.now() + timedelta(minutes=5),
        switches_off=["webhook_intake"],
        actor=None,
        via="command",
    )
    snap = degradation.snapshot()
    assert snap.level == L.CRITICAL
    assert snap.read_only
    assert not degradation.is_enabled("webhook_intake")
    entry = AuditEntry.objects.get(action="degradation.override_set")
    assert (entry.reason, entry.details["level"]) == ("database migration", "critical")
    # Five minutes later: the readers drop it on their own, before any evaluator run.
    DegradationState.objects.filter(pk=1).update(override_until=timezone.now() - timedelta(seconds=1))
    degradation.refresh_now()
    assert degradation.snapshot().level == L.NORMAL
    assert degradation.is_enabled("webhook_intake")
    degradation.degradation_evaluate()
    assert state().override_level is None
    assert AuditEntry.objects.filter(action="degradation.override_end", reason="expired").exists()
    assert list(DegradationEvent.objects.order_by("at").values_list("to_level", flat=True)) == [
        L.CRITICAL,
        L.NORMAL,
    ]


def test_override_replaces_the_rules_and_clearing_gives_them_back(only_rules):
    rule("ai", "breaker_open", L.MODERATE, target="deepseek")
    force("deepseek")
    degradation.degradation_evaluate()
    degradation.degradation_override_set(level=L.NORMAL, reason="known outage", actor=None, via="api")
    degradation.degradation_evaluate()
    assert state().level == L.NORMAL
    degradation.degradation_override_clear(actor=None, via="api")
    assert state().level == L.MODERATE
    with pytest.raises(NotFound):
        degradation.degradation_override_clear(actor=None, via="api")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level": "panic", "reason": "x"},
        {"level": "minor", "reason": " "},
        {"level": "minor", "reason": "x", "switches_off": ["coffee"]},
        {"level": "minor", "reason": "x", "until": timezone.now() - timedelta(minutes=1)},
    ],
)
def test_override_is_validated(kwargs):
    with pytest.raises(ValidationFailed):
        degradation.degradation_override_set(actor=None, via="api", **kwargs)
    assert not AuditEntry.objects.exists()


# --- dependency maintenance ---------------------------------------------------------------------
def test_maintenance_is_seen_at_once_and_ended_by_the_evaluator_when_expired():
    degradation.maintenance_start(
        dependency="green_api", reason="provider window", until=timezone.now() + timedelta(minutes=30),
        actor=None, via="command",
    )  # fmt: skip
    assert degradation.under_maintenance("green_api")
    assert not degradation.under_maintenance("deepseek")
    DependencyMaintenance.objects.update(until=timezone.now() - timedelta(seconds=1))
    DegradationState.objects.filter(pk=1).update(maintenance=[["green_api", timezone.now().timestamp() - 1]])
    degradation.refresh_now()
    assert not degradation.under_maintenance("green_api")  # ends on time in every reader
    degradation.degradation_evaluate()
    row = DependencyMaintenance.objects.get()
    assert (row.active, row.ended_by) == (False, "system")
    assert state().maintenance == []
    assert AuditEntry.objects.filter(action="degradation.maintenance_end", reason="expired").exists()


# --- no I/O on the hot path ------------------------------------------------------------------------
class _CacheCalls:
    def __init__(self, monkeypatch) -> None:
        self.count = 0
        backend = type(caches["default"])
        for name in ("get", "set", "add", "get_many", "set_many", "incr", "delete", "has_key", "touch"):
            original = getattr(backend, name)

            def counted(*args, _original=original, **kwargs):
                self.count += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(backend, name, counted)


def test_the_degradation_check_adds_no_io_to_a_request(settings, monkeypatch):
    settings.DEGRADATION_REFRESH_SECONDS = 3600  # "within the refresh interval", however slow the machine
    degradation.degradation_override_set(
        level="minor", reason="x", switches_off=["api_writes"], actor=None, via="api"
    )
    cache_calls = _CacheCalls(monkeypatch)
    middleware = DegradationMiddleware(lambda request: HttpResponse("ok"))
    factory = RequestFactory()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(2000):
            assert not degradation.is_enabled("api_writes")
            assert degradation.is_enabled("ai_replies")
            assert not degradation.under_maintenance("green_api")
        for _ in range(50):
            assert middleware(factory.get("/admin/")).status_code == 200
            assert middleware(factory.post("/api/v1/things/")).status_code == 503
    assert len(queries) == 0
    assert cache_calls.count == 0


def test_the_snapshot_is_refreshed_once_per_interval(settings, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(degradation.state, "clock", lambda: now[0])
    settings.DEGRADATION_REFRESH_SECONDS = 1.0
    degradation.is_enabled("ai_replies")  # first read
    DegradationState.objects.filter(pk=1).update(switches_off=["ai_replies"])  # another process wrote
    with CaptureQueriesContext(connection) as queries:
        assert degradation.is_enabled("ai_replies")  # still the snapshot
        now[0] += 1.0
        assert not degradation.is_enabled("ai_replies")  # refreshed: one query
        assert not degradation.is_enabled("ai_replies")
    # One SELECT (inside the test's transaction it is wrapped in a savepoint, so a failed read
    # cannot doom the caller's transaction; outside a transaction that is the only query).
    reads = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(reads) == 1
    assert "reliability_degradationstate" in reads[0]


def test_stale_but_safe_when_the_database_cannot_be_read(settings, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(degradation.state, "clock", lambda: now[0])
    DegradationState.objects.filter(pk=1).update(switches_off=["outbound_sending"])
    degradation.refresh_now()
    assert not degradation.is_enabled("outbound_sending")

    def down():
        raise DatabaseError("connection refused")

    monkeypatch.setattr(degradation.state, "_read_row", down)
    now[0] += 5
    assert not degradation.is_enabled("outbound_sending")  # the last known state, not a default


def test_an_unknown_switch_is_a_bug_not_a_silent_yes():
    with pytest.raises(ValueError, match="unknown degradation switch"):
        degradation.is_enabled("ai_reply")


# --- the command ---------------------------------------------------------------------------------
def test_degrade_command(capsys):
    call_command("degrade", "set", "severe", "--reason", "drill", "--minutes", "10", "--off", "ai_replies")
    out = capsys.readouterr().out
    assert "level:        SEVERE" in out
    assert "switches off: ai_replies" in out
    assert "override:     SEVERE by system" in out
    call_command("degrade", "maintenance", "green_api", "--reason", "provider window")
    assert "maintenance:  green_api until ended by system: provider window" in capsys.readouterr().out
    assert degradation.under_maintenance("green_api")
    call_command("degrade", "maintenance-end", "green_api")
    call_command("degrade", "clear")
    call_command("degrade", "show")
    assert "level:        NORMAL" in capsys.readouterr().out
    assert list(AuditEntry.objects.order_by("id").values_list("action", "via")) == [
        ("degradation.override_set", "command"),
        ("degradation.maintenance_start", "command"),
        ("degradation.maintenance_end", "command"),
        ("degradation.override_clear", "command"),
    ]
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not under maintenance"):
        call_command("degrade", "maintenance-end", "green_api")


def test_override_minutes_beyond_30_days_are_invalid_not_a_500() -> None:
    """Schemathesis found it: a huge ``minutes`` overflowed timedelta (a 500) instead of a 400."""
    assert degradation.override_until(degradation.MAX_OVERRIDE_MINUTES) is not None
    with pytest.raises(ValidationFailed, match="between 1 and"):
        degradation.override_until(10**12)
