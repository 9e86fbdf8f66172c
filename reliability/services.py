"""Writes the reliability adapters call: staff overrides of breakers (persisted, then applied live)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability.breaker import registry
from reliability.models import BreakerConfig


def _row(name: str) -> BreakerConfig:
    row = BreakerConfig.objects.select_for_update().filter(name=name).first()
    if row is None:
        raise NotFound(f"No breaker named {name!r}.")
    return row


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
