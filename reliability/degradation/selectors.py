"""Reads of the degradation state for the API, the command and the console."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from reliability.degradation.services import _effective
from reliability.degradation.state import STATE_PK, SWITCHES, _name
from reliability.models import (
    DegradationLevel,
    DegradationState,
    DependencyMaintenance,
    Switch,
)


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
