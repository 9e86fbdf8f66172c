"""Every write of the degradation state: the evaluator (beat: the rules' ask, hysteresis, events,
mail) and the staff's actions (override, maintenance; each audited)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability.audit import audit_record
from reliability.degradation.rules import Ask, rules_evaluate
from reliability.degradation.state import _KNOWN_SWITCHES, STATE_PK, SWITCHES, _name, refresh_now
from reliability.metrics import DEGRADATION_EVENTS, DEGRADATION_LEVEL
from reliability.models import (
    DegradationEvent,
    DegradationLevel,
    DegradationState,
    DependencyMaintenance,
)

logger = logging.getLogger(__name__)


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


#: With nothing to change, the evaluator writes its row only to move ``evaluated_at`` on, once it is
#: this old: "last run" to within a minute, not an UPDATE (and its WAL flush) every 15 s.
EVALUATED_AT_STALE_SECONDS = 60.0

#: Every field of the row but its key and timestamps: what an evaluation may change (derived, so a
#: field added to the model is compared too).
_NOT_STATE = frozenset({"id", "evaluated_at", "updated_at"})


def _state_values(state: DegradationState) -> tuple[Any, ...]:
    fields = state._meta.concrete_fields
    return tuple(getattr(state, f.attname) for f in fields if f.attname not in _NOT_STATE)


def _evaluation_changes_nothing(state: DegradationState, ask: Ask, now: datetime) -> bool:
    """Would the evaluation change nothing but ``evaluated_at`` (still fresh)? Decided on a copy of
    the row read without a lock; anything else (a change, an expired override or maintenance, no
    row, a stale ``evaluated_at``) goes through the locked transaction."""
    if state.evaluated_at is None:
        return False
    if (now - state.evaluated_at).total_seconds() >= EVALUATED_AT_STALE_SECONDS:
        return False
    if state.override_level is not None and not state.override_active(now):
        return False
    active = list(DependencyMaintenance.objects.filter(active=True).values_list("until", flat=True))
    if any(until is not None and until <= now for until in active):
        return False
    after = copy.deepcopy(state)
    after.maintenance = _maintenance_list(now)
    _apply_hysteresis(after, ask, now)
    level, switches, cause = _effective(after, now)
    if (level, switches) != (int(after.level), sorted(after.switches_off)):
        return False
    after.cause = cause
    return _state_values(after) == _state_values(state)


def degradation_evaluate(*, now: datetime | None = None) -> DegradationState:
    """Beat: evaluate the rules, apply hysteresis, end expired overrides and maintenance, record changes.

    When the evaluation would change nothing (the usual run) the row is only read, without a lock
    or a transaction, and not written; ``evaluated_at`` moves on at least every
    ``EVALUATED_AT_STALE_SECONDS``."""
    now = now or timezone.now()
    ask = rules_evaluate()  # outside the transaction: breaker snapshots may talk to Redis
    current = DegradationState.objects.filter(pk=STATE_PK).first()
    if current is not None and _evaluation_changes_nothing(current, ask, now):
        return current
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
