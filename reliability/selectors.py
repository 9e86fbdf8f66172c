"""Reads the reliability adapters call (health pages, monitor tasks, API, admin, commands): breakers
with their live shared state (dead letters are read in reliability.dead_letters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from hotelbot.exceptions import NotFound
from reliability.breaker import BreakerSnapshot, State, registry
from reliability.models import BreakerConfig, BreakerEvent, Heartbeat

#: States in which a breaker is not in trouble: an episode of trouble starts at the first event
#: after the last move into one of them.
_CALM = (State.CLOSED.value, State.DISABLED.value, State.METRICS_ONLY.value)
REJECTING = (State.OPEN.value, State.FORCED_OPEN.value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def breaker_episode_start(*, name: str) -> BreakerEvent | None:
    """The first event since breaker ``name`` last became calm (closed, disabled, metrics-only):
    the start of its current episode of trouble, or None when it has no such event."""
    events = BreakerEvent.objects.filter(breaker=name)
    calm_at = events.filter(to_state__in=_CALM).order_by("-at", "-id").values_list("at", flat=True).first()
    later = events if calm_at is None else events.filter(at__gt=calm_at)
    return later.order_by("at", "id").first()


def breaker_last_event(*, name: str) -> BreakerEvent | None:
    return BreakerEvent.objects.filter(breaker=name).order_by("-at", "-id").first()


def breaker_overview(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every configured breaker: live state (from the shared store), time in state, counts, override."""
    now = now or timezone.now()
    rows: list[dict[str, Any]] = []
    for config in BreakerConfig.objects.all():
        snap = registry.breaker(config.name).snapshot()
        last = breaker_last_event(name=config.name)
        in_state_since = last.at if last is not None and last.to_state == snap.state.value else None
        episode = breaker_episode_start(name=config.name) if snap.state.value not in _CALM else None
        since = episode.at if episode is not None else in_state_since
        rows.append(
            {
                "name": config.name,
                "state": snap.state.value,
                "since": _iso(since),
                "seconds_in_state": (
                    round((now - in_state_since).total_seconds(), 1) if in_state_since else None
                ),
                "seconds_since_trouble_began": round((now - since).total_seconds(), 1) if since else None,
                "retry_after": round(snap.retry_after, 1),
                "counts": {
                    "calls": snap.calls,
                    "failures": snap.failures,
                    "slow_calls": snap.slow_calls,
                    "consecutive_failures": snap.consecutive_failures,
                    "trips": snap.trips,
                    "probes_in_flight": snap.probes_in_flight,
                    "failure_rate": round(snap.failure_rate, 1),
                    "slow_call_rate": round(snap.slow_call_rate, 1),
                },
                "source": snap.source,
                "override": {
                    "mode": config.mode,
                    "active": config.override_active(now),
                    "reason": config.mode_reason,
                    "until": _iso(config.mode_until),
                },
            }
        )
    return rows


def heartbeat_age(*, name: str, now: datetime | None = None) -> float | None:
    """Seconds since periodic job ``name`` last recorded a run (None: never)."""
    last = Heartbeat.objects.filter(name=name).values_list("last_seen_at", flat=True).first()
    return None if last is None else ((now or timezone.now()) - last).total_seconds()


# --- breakers -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BreakerView:
    """A breaker's admin config, its live shared state and its recent transitions."""

    config: BreakerConfig
    snapshot: BreakerSnapshot
    #: When the breaker entered its current state (its last transition to it), if recorded.
    state_since: datetime | None
    recent_transitions: list[BreakerEvent]

    @property
    def seconds_in_state(self) -> float | None:
        if self.state_since is None:
            return None
        return max(0.0, (timezone.now() - self.state_since).total_seconds())

    @property
    def override_active(self) -> bool:
        return self.config.override_active()


def _view(config: BreakerConfig, *, transitions: int) -> BreakerView:
    snapshot = registry.breaker(config.name).snapshot()
    events = list(
        BreakerEvent.objects.filter(breaker=config.name).order_by("-at", "-id")[: max(1, transitions)]
    )
    last = events[0] if events else None
    since = last.at if last is not None and last.to_state == snapshot.state.value else None
    return BreakerView(
        config=config, snapshot=snapshot, state_since=since, recent_transitions=events[:transitions]
    )


def breaker_list(*, transitions: int = 0) -> list[BreakerView]:
    """Every configured breaker (ordered by name) with its live state."""
    return [_view(row, transitions=transitions) for row in BreakerConfig.objects.order_by("name")]


def breaker_detail(*, name: str, transitions: int = 20) -> BreakerView:
    """One breaker by name with its last ``transitions`` transitions; NotFound for an unknown name
    (never creates a breaker for it)."""
    row = BreakerConfig.objects.filter(name=name).first()
    if row is None:
        raise NotFound(f"No breaker named {name!r}.")
    return _view(row, transitions=transitions)
