"""Reads the reliability adapters (health pages, monitor tasks, commands) call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from reliability.breaker import State, registry
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter, Heartbeat

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


def dead_letter_pending(*, now: datetime | None = None) -> tuple[int, float | None]:
    """(count of pending dead letters, age in seconds of the oldest one)."""
    now = now or timezone.now()
    stats = DeadLetter.objects.filter(status=DeadLetter.Status.PENDING).aggregate(
        count=Count("id"), oldest=Min("created_at")
    )
    oldest = stats["oldest"]
    return int(stats["count"] or 0), (now - oldest).total_seconds() if oldest else None


def dead_letter_summary(*, now: datetime | None = None) -> dict[str, Any]:
    """Dead letters grouped by kind, status and reason, with the oldest pending one's age."""
    now = now or timezone.now()
    groups = (
        DeadLetter.objects.values("kind", "status", "reason_code")
        .annotate(count=Count("id"), oldest=Min("created_at"))
        .order_by("kind", "status", "reason_code")
    )
    pending, oldest_age = dead_letter_pending(now=now)
    by_kind: dict[str, int] = {}
    by_status: dict[str, int] = {}
    rows = []
    for group in groups:
        by_kind[group["kind"]] = by_kind.get(group["kind"], 0) + group["count"]
        by_status[group["status"]] = by_status.get(group["status"], 0) + group["count"]
        rows.append(
            {
                "kind": group["kind"],
                "status": group["status"],
                "reason": group["reason_code"],
                "count": group["count"],
                "oldest": _iso(group["oldest"]),
            }
        )
    return {
        "pending": pending,
        "oldest_pending_age_seconds": round(oldest_age, 1) if oldest_age is not None else None,
        "by_kind": by_kind,
        "by_status": by_status,
        "groups": rows,
    }


def heartbeat_age(*, name: str, now: datetime | None = None) -> float | None:
    """Seconds since periodic job ``name`` last recorded a run (None: never)."""
    last = Heartbeat.objects.filter(name=name).values_list("last_seen_at", flat=True).first()
    return None if last is None else ((now or timezone.now()) - last).total_seconds()
