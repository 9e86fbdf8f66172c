"""Reads the reliability adapters call (API, admin, commands): breakers with their live shared state,
and dead letters cut to what the user may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from hotelbot.exceptions import NotFound
from reliability.breaker import BreakerSnapshot, registry
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter
from reliability.tenancy import scope_by_tenant


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


# --- dead letters -------------------------------------------------------------------------------
#: Filters a dead-letter list accepts (``None`` or empty = no filter).
DEAD_LETTER_FILTERS = (
    "status",
    "kind",
    "category",
    "dependency",
    "tenant",
    "created_after",
    "created_before",
)


def dead_letter_list(*, user: Any, filters: dict[str, Any] | None = None) -> QuerySet[DeadLetter]:
    """The dead letters ``user`` may see (their tenants', all for operations), filtered by
    ``filters`` (keys of ``DEAD_LETTER_FILTERS``; ``created_after`` inclusive, ``created_before``
    exclusive), newest first."""
    queryset = scope_by_tenant(DeadLetter.objects.all(), user)
    lookups = {
        "status": "status",
        "kind": "kind",
        "category": "category",
        "dependency": "dependency",
        "tenant": "tenant",
        "created_after": "created_at__gte",
        "created_before": "created_at__lt",
    }
    for key, value in (filters or {}).items():
        if key not in lookups:
            raise ValueError(f"unknown dead-letter filter {key!r}")
        if value is None or value == "":
            continue
        queryset = queryset.filter(**{lookups[key]: value})
    return queryset.select_related("resolved_by").order_by("-created_at", "-id")


def dead_letter_get(*, user: Any, pk: int, kind: str | None = None) -> DeadLetter:
    """One dead letter ``user`` may see; NotFound when it does not exist *or* belongs to another
    tenant (so ids cannot be probed) or is not of ``kind``."""
    queryset = scope_by_tenant(DeadLetter.objects.select_related("resolved_by"), user)
    if kind is not None:
        queryset = queryset.filter(kind=kind)
    letter = queryset.filter(pk=pk).first()
    if letter is None:
        raise NotFound(f"No dead letter {pk}.")
    return letter


def dead_letter_bulk_set(
    *, user: Any, filters: dict[str, Any] | None = None, ids: list[int] | None = None, limit: int
) -> QuerySet[DeadLetter]:
    """The open letters a bulk action takes: ``ids`` (the visible ones among them) or the filtered
    set, the oldest ``limit`` of them."""
    queryset = dead_letter_list(user=user, filters=filters).filter(status__in=DeadLetter.OPEN_STATUSES)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    chosen = list(queryset.order_by("created_at", "id").values_list("pk", flat=True)[:limit])
    return DeadLetter.objects.filter(pk__in=chosen)
