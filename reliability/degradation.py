"""Graceful degradation: levels, rules, feature switches, manual override and dependency maintenance.

**Asking** (the hot path): ``is_enabled("ai_replies")``, ``under_maintenance("green_api")``,
``snapshot().read_only``. Each answer comes from a process-local snapshot of the one
``DegradationState`` row; the snapshot is re-read (one primary-key SELECT) at most every
``DEGRADATION_REFRESH_SECONDS`` (1 s), by the first caller after the interval, so every process
agrees within that interval plus one request. Between refreshes an answer costs a clock read and a
set lookup, no I/O. If the database cannot be read the last snapshot stays in force (stale but
safe: it was the truth a moment ago) and the failure is logged once. An override's or a
maintenance's end is checked by the reader against the row's ``*_until``, so it ends on time in
every process, not only when the evaluator next runs.

**Deciding** (beat, every ``DEGRADATION_EVALUATE_INTERVAL`` s): ``degradation_evaluate()`` checks
the enabled ``DegradationRule`` rows; each whose condition holds asks for a minimum level and some
switches off. Worse goes in force at once; better only after the rules have asked for less for
``DEGRADATION_RECOVERY_SECONDS`` without a break (hysteresis: a flapping breaker holds the level, it
does not flap it). A staff override (level, switches off, reason, optional end) replaces what the
rules ask until it ends or is cleared. Every change of the level or switches in force is a
``DegradationEvent`` row, a log line, the ``system_degradation_level`` gauge and the
``degradation_events_total`` counter, and a mail to ``ADMINS`` on a move to SEVERE or worse and on
recovery below it.

**Conditions** come from the breakers (by dependency name), from named health checks and signals
that other apps register at start-up (``register_health_check``, ``register_signal``: messaging
registers ``reply_backlog`` and ``reply_p95_seconds``), and from the dead-letter table. This module
never imports messaging.

**Probes are never switched off.** A switch that stops every call to a dependency (registered with
``register_gating_switch``: ``ai_replies`` stops DeepSeek, ``outbound_sending`` Green API) also stops
the calls that would probe its breaker, so a rule on that breaker turning it off could hold for
ever: the breaker stays OPEN until a call comes. So once the breaker waits for a probe (OPEN with
its open time over, or HALF_OPEN) a rule on it keeps its level but no longer asks for that switch
off: it comes back on (after the usual hysteresis), the next calls probe the breaker, success
closes it and the level recovers; a failed probe opens it again and the switch goes off at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability import services
from reliability.audit import audit_record
from reliability.metrics import DEGRADATION_EVENTS, DEGRADATION_LEVEL
from reliability.models import (
    DeadLetter,
    DegradationEvent,
    DegradationLevel,
    DegradationRule,
    DegradationState,
    DependencyMaintenance,
    Switch,
)

logger = logging.getLogger(__name__)

Level = DegradationLevel
SWITCHES: tuple[str, ...] = tuple(Switch.values)
_KNOWN_SWITCHES = frozenset(SWITCHES)
STATE_PK = 1

#: Signals messaging registers (reliability never imports messaging).
REPLY_BACKLOG = "reply_backlog"
REPLY_P95_SECONDS = "reply_p95_seconds"


def _name(level: int) -> str:
    return DegradationLevel(level).label


# --- the snapshot every process reads ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Snapshot:
    level: int = DegradationLevel.NORMAL
    switches_off: frozenset[str] = frozenset()
    maintenance: dict[str, float | None] = field(default_factory=dict)  # dependency -> end (unix) or None
    cause: str = ""
    since: datetime | None = None

    @property
    def read_only(self) -> bool:
        """Unsafe requests are refused: CRITICAL, or the ``writes`` switch off."""
        return self.level >= DegradationLevel.CRITICAL or Switch.WRITES in self.switches_off


_NORMAL = Snapshot()
_snapshot: Snapshot = _NORMAL
_next_refresh = 0.0  # monotonic time of the next refresh; 0 = at the next call
_refresh_lock = threading.Lock()
_read_failed = False
#: Injected in tests; must be monotonic.
clock: Callable[[], float] = time.monotonic


def is_enabled(switch: str) -> bool:
    """Is feature ``switch`` on? No I/O unless the snapshot is older than the refresh interval."""
    if switch not in _KNOWN_SWITCHES:
        raise ValueError(f"unknown degradation switch {switch!r} (known: {', '.join(SWITCHES)})")
    snap = _snapshot if clock() < _next_refresh else _refresh()
    return switch not in snap.switches_off


def snapshot() -> Snapshot:
    """The state in force in this process (refreshed at most every DEGRADATION_REFRESH_SECONDS)."""
    return _snapshot if clock() < _next_refresh else _refresh()


def under_maintenance(dependency: str) -> bool:
    """Is ``dependency`` under staff maintenance? Its work must wait (treat it like a forced-open breaker)."""
    snap = _snapshot if clock() < _next_refresh else _refresh()
    if dependency not in snap.maintenance:
        return False
    until = snap.maintenance[dependency]
    return until is None or until > time.time()


def prime() -> BaseException | None:
    """Refresh the snapshot if it is due and return the database error the read met (None when
    it was fresh, read fine, or another thread is refreshing). The database breaker middleware
    calls it first, so a request that meets a database outage here is answered 503 at once
    instead of waiting a second pool timeout in its view."""
    if clock() < _next_refresh:
        return None
    error: list[BaseException] = []
    _refresh(errors=error)
    return error[0] if error else None


def refresh_now() -> Snapshot:
    """Re-read the row at once (after a change made in this process)."""
    return _refresh(force=True)


def reset_for_tests() -> None:
    global _snapshot, _next_refresh, _read_failed
    _snapshot, _next_refresh, _read_failed = _NORMAL, 0.0, False


def _refresh(*, force: bool = False, errors: list[BaseException] | None = None) -> Snapshot:
    global _snapshot, _next_refresh, _read_failed
    if not _refresh_lock.acquire(blocking=force):
        return _snapshot  # another thread is refreshing: the current snapshot is good enough
    try:
        _next_refresh = clock() + settings.DEGRADATION_REFRESH_SECONDS
        try:
            row = _read_row()
        except Exception as e:  # database down, not migrated, or not allowed (tests): keep the last one
            if errors is not None and isinstance(e, DatabaseError | InterfaceError):
                errors.append(e)
            if not _read_failed:
                logger.warning("degradation state unavailable, keeping the last one: %s", e)
                _read_failed = True
            return _snapshot
        _read_failed = False
        _snapshot = _NORMAL if row is None else _from_row(row, timezone.now())
        DEGRADATION_LEVEL.set(_snapshot.level)
        return _snapshot
    finally:
        _refresh_lock.release()


_FIELDS = (
    "level",
    "switches_off",
    "maintenance",
    "cause",
    "since",
    "override_level",
    "override_until",
    "auto_level",
    "auto_switches_off",
    "auto_cause",
)


def _read_row() -> dict[str, Any] | None:
    query = DegradationState.objects.filter(pk=STATE_PK).values(*_FIELDS)
    if connection.in_atomic_block:  # a failed read must not doom the caller's transaction
        with transaction.atomic():
            return query.first()
    return query.first()


def _from_row(row: dict[str, Any], now: datetime) -> Snapshot:
    level, switches, cause = row["level"], row["switches_off"], row["cause"]
    ended = row["override_level"] is not None and row["override_until"] is not None
    if ended and row["override_until"] <= now:
        # The override's time is up: the rules' state is in force now, in every process (the
        # evaluator records the change on its next run).
        level, switches, cause = row["auto_level"], row["auto_switches_off"], row["auto_cause"]
    maintenance: dict[str, float | None] = {}
    for dependency, until in row["maintenance"] or []:
        maintenance[str(dependency)] = None if until is None else float(until)
    return Snapshot(
        level=int(level),
        switches_off=frozenset(str(s) for s in switches or []),
        maintenance=maintenance,
        cause=str(cause),
        since=row["since"],
    )


# --- condition providers (registered by other apps at start-up) ---------------------------------
_health_checks: dict[str, Callable[[], bool]] = {}
_signals: dict[str, Callable[[], float | None]] = {}


def register_health_check(name: str, provider: Callable[[], bool]) -> None:
    """``provider()`` answers True while check ``name`` passes (``health_failing`` rules ask it)."""
    _health_checks[name] = provider


def register_signal(name: str, provider: Callable[[], float | None]) -> None:
    """``provider()`` returns the current value of signal ``name`` (None: unknown)."""
    _signals[name] = provider


#: dependency -> switches that, off, stop every call to it (and so the probes of its breaker)
_gating_switches: dict[str, frozenset[str]] = {}


def register_gating_switch(switch: str, dependency: str) -> None:
    """Switch ``switch`` off means no call reaches ``dependency``: rules on its breaker leave it on
    while the breaker waits for a probe (see the module docstring)."""
    if switch not in _KNOWN_SWITCHES:
        raise ValueError(f"unknown degradation switch {switch!r}")
    _gating_switches[dependency] = _gating_switches.get(dependency, frozenset()) | {switch}


def unregister(name: str) -> None:
    _health_checks.pop(name, None)
    _signals.pop(name, None)


def _signal(name: str) -> float | None:
    provider = _signals.get(name)
    if provider is None:
        logger.warning("degradation: no provider registered for signal %s", name)
        return None
    return provider()


def _rule_asks(rule: DegradationRule) -> tuple[bool, frozenset[str]]:
    """Does the rule's condition hold, and which switches does it ask off now."""
    from reliability.breaker import State, registry

    switches = frozenset(s for s in rule.switches_off or [] if s in _KNOWN_SWITCHES)
    C = DegradationRule.Condition
    if rule.condition not in (C.BREAKER_OPEN, C.BREAKER_HALF_OPEN):
        return _condition_holds(rule), switches
    snap = registry.breaker(rule.target).snapshot()
    wanted = {State.OPEN, State.FORCED_OPEN} if rule.condition == C.BREAKER_OPEN else {State.HALF_OPEN}
    awaits_probe = snap.state is State.HALF_OPEN or (snap.state is State.OPEN and snap.retry_after <= 0)
    if awaits_probe:  # the switches that stop every call to the dependency would stop its probe too
        switches -= _gating_switches.get(rule.target, frozenset())
    return snap.state in wanted, switches


def _condition_holds(rule: DegradationRule) -> bool:
    """The conditions other than a breaker's."""
    C = DegradationRule.Condition
    if rule.condition == C.HEALTH_FAILING:
        check = _health_checks.get(rule.target)
        if check is None:
            logger.warning("degradation rule %s: no health check named %s", rule.name, rule.target)
            return False
        return not check()
    if rule.condition == C.DEAD_LETTER_BACKLOG_ABOVE:
        return DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES).count() > rule.threshold
    name = REPLY_BACKLOG if rule.condition == C.REPLY_BACKLOG_ABOVE else REPLY_P95_SECONDS
    value = _signal(name)
    return value is not None and value > rule.threshold


@dataclass(frozen=True, slots=True)
class Ask:
    """What the rules ask for right now."""

    level: int
    switches_off: frozenset[str]
    causes: tuple[str, ...]

    @property
    def cause(self) -> str:
        return ", ".join(self.causes)[:300]


def rules_evaluate(*, rules: Iterable[DegradationRule] | None = None) -> Ask:
    """The worst level and every switch the enabled rules whose condition holds ask for."""
    level, switches, causes = int(DegradationLevel.NORMAL), set[str](), []
    for rule in DegradationRule.objects.filter(enabled=True) if rules is None else rules:
        try:
            holds, off = _rule_asks(rule)
        except Exception:  # one broken condition must not stop the others (nor the evaluator)
            logger.exception("degradation rule %s could not be evaluated", rule.name)
            continue
        if holds:
            level = max(level, int(rule.level))
            switches.update(off)
            causes.append(rule.name)
    return Ask(level=level, switches_off=frozenset(switches), causes=tuple(causes))


# --- the evaluator ------------------------------------------------------------------------------
def _state_for_update() -> DegradationState:
    state = DegradationState.objects.select_for_update().filter(pk=STATE_PK).first()
    if state is None:
        DegradationState.objects.get_or_create(pk=STATE_PK)
        state = DegradationState.objects.select_for_update().get(pk=STATE_PK)
    return state


def _worse_or_equal(a: tuple[int, frozenset[str]], b: tuple[int, frozenset[str]]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1]


def _apply_hysteresis(state: DegradationState, ask: Ask, now: datetime) -> None:
    """Move what the rules hold (``auto_*``) towards what they ask: worse at once, better only after
    they have asked for less for DEGRADATION_RECOVERY_SECONDS without a break."""
    held = (int(state.auto_level), frozenset(state.auto_switches_off))
    asked = (ask.level, ask.switches_off)
    merged = (max(held[0], asked[0]), held[1] | asked[1])
    if merged != held:  # something got worse: in force at once
        state.auto_level, state.auto_switches_off = merged[0], sorted(merged[1])
        state.auto_cause = ask.cause
        _restart_recovery(state, asked, merged, now)
        return
    if asked == held:
        state.auto_cause = ask.cause or state.auto_cause
        _restart_recovery(state, asked, held, now)
        return
    # The rules ask for less than they hold.
    if state.clear_since is None or state.recovery_level is None:
        _restart_recovery(state, asked, held, now)
    else:  # remember the worst they asked during the window: recovery goes there, not below
        state.recovery_level = max(int(state.recovery_level), asked[0])
        state.recovery_switches_off = sorted(set(state.recovery_switches_off) | asked[1])
    assert state.clear_since is not None
    assert state.recovery_level is not None
    if (now - state.clear_since).total_seconds() >= settings.DEGRADATION_RECOVERY_SECONDS:
        target = (int(state.recovery_level), frozenset(state.recovery_switches_off))
        state.auto_level, state.auto_switches_off = target[0], sorted(target[1])
        state.auto_cause = ask.cause if target == asked else state.auto_cause
        _restart_recovery(state, asked, target, now)


def _restart_recovery(
    state: DegradationState,
    asked: tuple[int, frozenset[str]],
    held: tuple[int, frozenset[str]],
    now: datetime,
) -> None:
    if asked == held:
        state.clear_since, state.recovery_level, state.recovery_switches_off = None, None, []
    else:
        state.clear_since, state.recovery_level, state.recovery_switches_off = now, asked[0], sorted(asked[1])


def _effective(state: DegradationState, now: datetime) -> tuple[int, list[str], str]:
    if state.override_active(now):
        assert state.override_level is not None
        return (
            int(state.override_level),
            sorted(state.override_switches_off),
            f"override by {state.override_actor}: {state.override_reason}"[:300],
        )
    return int(state.auto_level), sorted(state.auto_switches_off), state.auto_cause or ""


def _put_in_force(state: DegradationState, now: datetime, *, actor: str) -> DegradationEvent | None:
    """Make the level and switches in force what the override or the rules say; record a change."""
    level, switches, cause = _effective(state, now)
    before_level, before_switches = int(state.level), sorted(state.switches_off)
    state.cause = cause
    if (level, switches) == (before_level, before_switches):
        return None
    state.level, state.switches_off, state.since = level, switches, now
    return _record_change(before_level, level, switches, cause or "conditions cleared", actor, now)


def _record_change(
    before: int, after: int, switches: list[str], cause: str, actor: str, now: datetime
) -> DegradationEvent:
    event = DegradationEvent.objects.create(
        from_level=before, to_level=after, switches_off=switches, cause=cause[:300], actor=actor[:150], at=now
    )
    log = logger.warning if after > before else logger.info
    log(
        "degradation %s -> %s by %s: %s; switches off: %s",
        _name(before),
        _name(after),
        actor,
        cause,
        ", ".join(switches) or "none",
    )
    DEGRADATION_LEVEL.set(after)
    DEGRADATION_EVENTS.labels(_name(before), _name(after)).inc()
    severe = DegradationLevel.SEVERE
    if (after >= severe and after > before) or (before >= severe > after):
        subject = f"Degradation {_name(before).upper()} -> {_name(after).upper()}"
        body = (
            f"The hotelbot degradation level changed from {_name(before)} to {_name(after)} at "
            f"{now.isoformat(timespec='seconds')} ({actor}).\n\nCause: {cause}\n"
            f"Switches off: {', '.join(switches) or 'none'}\n\n"
            "See Reliability > Degradation state in admin, or `manage.py degrade show`."
        )
        transaction.on_commit(lambda: mail_admins(subject, body, fail_silently=True))
    return event


def _maintenance_list(now: datetime) -> list[list[Any]]:
    rows = DependencyMaintenance.objects.filter(active=True).order_by("dependency", "-started_at")
    seen: dict[str, float | None] = {}
    for row in rows:
        if row.dependency not in seen:
            seen[row.dependency] = None if row.until is None else row.until.timestamp()
    return [[dep, until] for dep, until in sorted(seen.items())]


def _end_expired_maintenance(now: datetime) -> list[str]:
    ended = list(
        DependencyMaintenance.objects.select_for_update().filter(
            active=True, until__isnull=False, until__lte=now
        )
    )
    for row in ended:
        row.active, row.ended_at, row.ended_by = False, now, "system"
        row.save(update_fields=["active", "ended_at", "ended_by"])
        audit_record(
            actor=None,
            via="system",
            action="degradation.maintenance_end",
            target=row,
            reason="expired",
            details={"dependency": row.dependency},
        )
        logger.info("maintenance of %s ended (expired): its waiting work drains now", row.dependency)
    return [row.dependency for row in ended]


def degradation_evaluate(*, now: datetime | None = None) -> DegradationState:
    """Beat: evaluate the rules, apply hysteresis, end expired overrides and maintenance, record changes."""
    now = now or timezone.now()
    ask = rules_evaluate()  # outside the transaction: breaker snapshots may talk to Redis
    with transaction.atomic():
        state = _state_for_update()
        _end_expired_maintenance(now)
        state.maintenance = _maintenance_list(now)
        if state.override_level is not None and not state.override_active(now):
            audit_record(
                actor=None,
                via="system",
                action="degradation.override_end",
                target=state,
                reason="expired",
                details={"level": _name(state.override_level), "set_by": state.override_actor},
            )
            _clear_override_fields(state)
        _apply_hysteresis(state, ask, now)
        _put_in_force(state, now, actor="system")
        state.evaluated_at = now
        state.save()
    refresh_now()
    return state


# --- staff actions (admin, API, command): each audited ----------------------------------------
def _actor_name(actor: Any) -> str:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return str(actor.get_username())
    return "system"


def _clear_override_fields(state: DegradationState) -> None:
    state.override_level, state.override_switches_off = None, []
    state.override_reason, state.override_until, state.override_actor = "", None, ""


def parse_level(value: str | int) -> int:
    """``"severe"``, ``"SEVERE"`` or ``3`` → 3; raises ValidationFailed."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if number in DegradationLevel.values:
            return number
    else:
        for level in DegradationLevel:
            if level.label == str(value).strip().lower():
                return int(level)
    names = [level.label.upper() for level in DegradationLevel]
    raise ValidationFailed(f"Unknown level {value!r}.", details={"level": names})


def _check_switches(switches: Iterable[str]) -> list[str]:
    switches = sorted(set(switches))
    unknown = [s for s in switches if s not in _KNOWN_SWITCHES]
    if unknown:
        raise ValidationFailed(
            f"Unknown switch {', '.join(unknown)}.", details={"switches_off": list(SWITCHES)}
        )
    return switches


def degradation_override_set(
    *,
    level: int | str,
    reason: str,
    actor: Any,
    via: str,
    until: datetime | None = None,
    switches_off: Iterable[str] = (),
) -> DegradationState:
    """Staff set the level (and switches off) in force, with a reason, until ``until`` or cleared."""
    number = parse_level(level)
    switches = _check_switches(switches_off)
    if not reason.strip():
        raise ValidationFailed("Say why the level is overridden.", details={"reason": "Required."})
    now = timezone.now()
    if until is not None and until <= now:
        raise ValidationFailed("The override must end in the future.", details={"until": "In the past."})
    with transaction.atomic():
        state = _state_for_update()
        state.override_level, state.override_switches_off = number, switches
        state.override_reason, state.override_until = reason.strip()[:300], until
        state.override_actor = _actor_name(actor)[:150]
        _put_in_force(state, now, actor=state.override_actor)
        state.save()
        audit_record(
            actor=actor,
            via=via,
            action="degradation.override_set",
            target=state,
            reason=reason.strip(),
            details={
                "level": _name(number),
                "switches_off": switches,
                "until": until.isoformat() if until else None,
            },
        )
    refresh_now()
    return state


def degradation_override_clear(*, actor: Any, via: str, reason: str = "") -> DegradationState:
    """End the staff override: the rules decide again (their held state, no hysteresis wait)."""
    now = timezone.now()
    with transaction.atomic():
        state = _state_for_update()
        if state.override_level is None:
            raise NotFound("No degradation override is set.")
        previous = {"level": _name(state.override_level), "set_by": state.override_actor}
        _clear_override_fields(state)
        _put_in_force(state, now, actor=_actor_name(actor))
        state.save()
        audit_record(
            actor=actor,
            via=via,
            action="degradation.override_clear",
            target=state,
            reason=reason,
            details=previous,
        )
    refresh_now()
    return state


def maintenance_start(
    *, dependency: str, reason: str, actor: Any, via: str, until: datetime | None = None
) -> DependencyMaintenance:
    """Mark ``dependency`` under maintenance: its work waits until it ends (at ``until`` or by staff)."""
    dependency = dependency.strip()
    if not dependency or not dependency.replace("_", "").isalnum():
        raise ValidationFailed("Name a dependency, e.g. green_api.", details={"dependency": "Required."})
    if not reason.strip():
        raise ValidationFailed(
            "Say why the dependency is under maintenance.", details={"reason": "Required."}
        )
    now = timezone.now()
    if until is not None and until <= now:
        raise ValidationFailed("Maintenance must end in the future.", details={"until": "In the past."})
    with transaction.atomic():
        state = _state_for_update()
        row = DependencyMaintenance.objects.filter(dependency=dependency, active=True).first()
        if row is None:
            row = DependencyMaintenance(dependency=dependency, started_at=now)
        row.reason, row.until, row.actor = reason.strip()[:300], until, _actor_name(actor)[:150]
        row.save()
        state.maintenance = _maintenance_list(now)
        state.save(update_fields=["maintenance", "updated_at"])
        audit_record(
            actor=actor,
            via=via,
            action="degradation.maintenance_start",
            target=row,
            reason=row.reason,
            details={"dependency": dependency, "until": until.isoformat() if until else None},
        )
    logger.warning("maintenance of %s started by %s: %s", dependency, row.actor, row.reason)
    refresh_now()
    return row


def maintenance_end(*, dependency: str, actor: Any, via: str) -> DependencyMaintenance:
    """End the maintenance of ``dependency``: its waiting work drains at the provider's rate."""
    now = timezone.now()
    with transaction.atomic():
        state = _state_for_update()
        row = (
            DependencyMaintenance.objects.select_for_update()
            .filter(dependency=dependency, active=True)
            .first()
        )
        if row is None:
            raise NotFound(f"{dependency} is not under maintenance.")
        row.active, row.ended_at, row.ended_by = False, now, _actor_name(actor)[:150]
        row.save(update_fields=["active", "ended_at", "ended_by"])
        state.maintenance = _maintenance_list(now)
        state.save(update_fields=["maintenance", "updated_at"])
        audit_record(
            actor=actor,
            via=via,
            action="degradation.maintenance_end",
            target=row,
            details={"dependency": dependency},
        )
    logger.info("maintenance of %s ended by %s", dependency, row.ended_by)
    refresh_now()
    return row


# --- reads (API, command, admin) --------------------------------------------------------------
def degradation_status(*, now: datetime | None = None) -> dict[str, Any]:
    """The state in force, the rules' held state and the override, JSON-able."""
    now = now or timezone.now()
    state = DegradationState.objects.filter(pk=STATE_PK).first() or DegradationState(pk=STATE_PK)
    level, switches, cause = _effective(state, now)
    if state.override_level is None:  # before the first evaluation the row's level is the truth
        level, switches, cause = int(state.level), sorted(state.switches_off), state.cause
    override = None
    if state.override_active(now):
        override = {
            "level": _name(state.override_level or 0).upper(),
            "switches_off": sorted(state.override_switches_off),
            "reason": state.override_reason,
            "until": state.override_until.isoformat() if state.override_until else None,
            "actor": state.override_actor,
        }
    maintenance = [
        {
            "dependency": row.dependency,
            "reason": row.reason,
            "until": row.until.isoformat() if row.until else None,
            "actor": row.actor,
        }
        for row in DependencyMaintenance.objects.filter(active=True).order_by("dependency")
        if row.until is None or row.until > now
    ]
    return {
        "level": _name(level).upper(),
        "level_value": level,
        "switches": {name: name not in switches for name in SWITCHES},
        "read_only": level >= DegradationLevel.CRITICAL or Switch.WRITES in switches,
        "cause": cause,
        "since": state.since.isoformat() if state.since else None,
        "override": override,
        "rules": {
            "level": _name(state.auto_level).upper(),
            "switches_off": sorted(state.auto_switches_off),
            "cause": state.auto_cause,
            "recovering_since": state.clear_since.isoformat() if state.clear_since else None,
        },
        "maintenance": maintenance,
        "evaluated_at": state.evaluated_at.isoformat() if state.evaluated_at else None,
    }


def retry_after_seconds() -> int:
    return max(1, round(settings.DEGRADATION_RETRY_AFTER))


MAX_OVERRIDE_MINUTES = services.MAX_OVERRIDE_MINUTES
override_until = services.override_until
