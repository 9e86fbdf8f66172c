"""Writes the reliability adapters call: staff overrides of breakers (persisted, then applied live),
dead letters (what was accepted but could not be processed), heartbeats of periodic jobs and the
alerts of breakers stuck open."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability import selectors
from reliability.audit import audit_record
from reliability.breaker import State, registry
from reliability.models import BreakerConfig, BreakerEvent, Heartbeat

logger = logging.getLogger(__name__)


def _row(name: str) -> BreakerConfig:
    row = BreakerConfig.objects.select_for_update().filter(name=name).first()
    if row is None:
        raise NotFound(f"No breaker named {name!r}.")
    return row


#: The longest timed override or maintenance (30 days), for breakers and degradation alike:
#: longer ones are "until cleared". Also keeps ``timedelta`` from overflowing on absurd input.
MAX_OVERRIDE_MINUTES = 30 * 24 * 60


def override_until(minutes: int | None) -> datetime | None:
    """When an override of ``minutes`` minutes ends (None: until cleared); out of range: ValidationFailed."""
    if minutes is None:
        return None
    if not 1 <= minutes <= MAX_OVERRIDE_MINUTES:
        raise ValidationFailed(
            f"Minutes must be between 1 and {MAX_OVERRIDE_MINUTES} (30 days).",
            details={"minutes": f"Between 1 and {MAX_OVERRIDE_MINUTES}."},
        )
    return timezone.now() + timedelta(minutes=minutes)


def breaker_set_mode(
    *, name: str, mode: str, reason: str = "", until: datetime | None = None
) -> BreakerConfig:
    """Persist a staff override (forced_open / disabled / metrics_only, or auto to clear it) and
    apply it to the live breaker now; other processes follow via shared state or config refresh."""
    if mode not in BreakerConfig.Mode.values:
        raise ValidationFailed(f"Unknown mode {mode!r}.", details={"mode": BreakerConfig.Mode.values})
    if mode != BreakerConfig.Mode.AUTO and not reason.strip():
        raise ValidationFailed("Say why the breaker is overridden.", details={"reason": "Required."})
    with transaction.atomic():
        row = _row(name)
        row.mode = mode
        row.mode_reason = reason.strip()[:200] if mode != BreakerConfig.Mode.AUTO else ""
        row.mode_until = until if mode != BreakerConfig.Mode.AUTO else None
        row.save()
    registry.apply_now(name)
    return row


def breaker_reset(*, name: str) -> BreakerConfig:
    """Clear any override and close the breaker with fresh counters."""
    row = breaker_set_mode(name=name, mode=BreakerConfig.Mode.AUTO)
    registry.breaker(name).reset()
    return row


# --- heartbeats and alerts (issue 10) -------------------------------------------------------------
def heartbeat_record(*, name: str) -> None:
    """Periodic job ``name`` finished a run now (the beat heartbeat health check reads it).

    One ``UPDATE`` in autocommit (every sweeper run, every 15 s); the row is created on the first
    run only (``update_or_create`` locked it in a transaction every time: four statements)."""
    now, process = timezone.now(), registry.process_label()
    if Heartbeat.objects.filter(name=name).update(last_seen_at=now, process=process):
        return
    Heartbeat.objects.update_or_create(name=name, defaults={"last_seen_at": now, "process": process})


def breaker_open_alerts_send(*, now: datetime | None = None) -> int:
    """Mail ADMINS (and log an error) for each breaker that has rejected calls for longer than
    ``BREAKER_OPEN_ALERT_SECONDS``, once per episode: the episode's first event is marked
    ``alerted_at`` by a conditional update, so concurrent monitors never alert twice. Returns how many
    alerts were sent."""
    now = now or timezone.now()
    limit = settings.BREAKER_OPEN_ALERT_SECONDS
    sent = 0
    for name in BreakerConfig.objects.values_list("name", flat=True):
        state = registry.breaker(name).state.value
        if state not in selectors.REJECTING:
            continue
        episode = selectors.breaker_episode_start(name=name)
        if episode is None:
            logger.warning("breaker %s is %s but has no recorded event: cannot tell since when", name, state)
            continue
        seconds = (now - episode.at).total_seconds()
        if seconds < limit:
            continue
        if not BreakerEvent.objects.filter(pk=episode.pk, alerted_at__isnull=True).update(alerted_at=now):
            continue  # this episode was alerted already
        minutes = seconds / 60
        subject = f"Breaker {name} has rejected calls for {minutes:.0f} min ({state})"
        body = (
            f"The circuit breaker {name!r} is {state} and has not closed since "
            f"{episode.at.isoformat(timespec='seconds')} ({minutes:.0f} minutes; alert threshold "
            f"{limit / 60:.0f} minutes).\n\nFirst event of this episode: {episode.from_state} -> "
            f"{episode.to_state}: {episode.reason}\n\n"
            "What to do: see docs/runbook.md#breakeropentoolong; GET /health/circuit-breakers/ and "
            "`manage.py breakers` show every breaker; check the provider's status and our credentials."
        )
        logger.error("%s", subject)
        mail_admins(subject, body, fail_silently=True)
        sent += 1
    return sent


# --- breaker actions by staff through the API (audited) ----------------------------------------
BREAKER_ACTIONS = ("reset", "force_open", "force_close")


def breaker_act(
    *,
    name: str,
    action: str,
    actor: Any,
    via: str,
    reason: str = "",
    until: datetime | None = None,
) -> BreakerConfig:
    """One staff action on a breaker, applied live and audited (who, how, why, before/after):

    - ``reset``: clear any override, close with fresh counters (``breaker_reset``);
    - ``force_open``: reject every call until ``until`` (then half-open) or until cleared; a reason
      is required;
    - ``force_close``: clear any override and close now, whatever the state (a tripped OPEN
      included; counters cleared, like a reset).
    """
    if action not in BREAKER_ACTIONS:
        raise ValidationFailed(
            f"Unknown breaker action {action!r}.", details={"action": list(BREAKER_ACTIONS)}
        )
    before = registry.breaker(name).state.value if BreakerConfig.objects.filter(name=name).exists() else None
    if before is None:
        raise NotFound(f"No breaker named {name!r}.")
    if action == "reset":
        row = breaker_reset(name=name)
    elif action == "force_open":
        row = breaker_set_mode(name=name, mode=BreakerConfig.Mode.FORCED_OPEN, reason=reason, until=until)
    else:
        row = breaker_set_mode(name=name, mode=BreakerConfig.Mode.AUTO)
        cb = registry.breaker(name)
        if cb.state != State.CLOSED:  # clearing the override closed a forced state; a tripped one too
            cb.force_close(
                f"{via}: force close: {reason.strip()}" if reason.strip() else f"{via}: force close"
            )
    after = registry.breaker(name).state.value
    audit_record(
        actor=actor,
        via=via,
        action=f"breaker.{action}",
        target=row,
        target_id=name,
        reason=reason.strip(),
        details={
            "from_state": before,
            "to_state": after,
            "until": until.isoformat() if until is not None and action == "force_open" else None,
        },
    )
    return row
