"""Every read of dead letters: lists and single letters cut to what the reader may see (tenants),
the set a bulk action takes, and the counts health, reports and the dashboard show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Min, QuerySet
from django.utils import timezone

from hotelbot.exceptions import NotFound
from reliability.models import DeadLetter


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


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


def _scoped(queryset: QuerySet[DeadLetter], tenants: frozenset[str] | None) -> QuerySet[DeadLetter]:
    return queryset if tenants is None else queryset.filter(tenant__in=sorted(tenants))


def dead_letter_list(
    *, tenants: frozenset[str] | None, filters: dict[str, Any] | None = None
) -> QuerySet[DeadLetter]:
    """The dead letters of ``tenants`` (None = every tenant: operations), filtered by
    ``filters`` (keys of ``DEAD_LETTER_FILTERS``; ``created_after`` inclusive, ``created_before``
    exclusive), newest first."""
    queryset = _scoped(DeadLetter.objects.all(), tenants)
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


def dead_letter_get(*, tenants: frozenset[str] | None, pk: int, kind: str | None = None) -> DeadLetter:
    """One dead letter of ``tenants`` (None = any); NotFound when it does not exist *or* belongs to another
    tenant (so ids cannot be probed) or is not of ``kind``."""
    queryset = _scoped(DeadLetter.objects.select_related("resolved_by"), tenants)
    if kind is not None:
        queryset = queryset.filter(kind=kind)
    letter = queryset.filter(pk=pk).first()
    if letter is None:
        raise NotFound(f"No dead letter {pk}.")
    return letter


def dead_letter_bulk_set(
    *,
    tenants: frozenset[str] | None,
    filters: dict[str, Any] | None = None,
    ids: list[int] | None = None,
    limit: int,
) -> QuerySet[DeadLetter]:
    """The open letters a bulk action takes: ``ids`` (the visible ones among them) or the filtered
    set, the oldest ``limit`` of them."""
    queryset = dead_letter_list(tenants=tenants, filters=filters).filter(status__in=DeadLetter.OPEN_STATUSES)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    chosen = list(queryset.order_by("created_at", "id").values_list("pk", flat=True)[:limit])
    return DeadLetter.objects.filter(pk__in=chosen)


def dead_letter_pending(*, now: datetime | None = None) -> tuple[int, float | None]:
    """(count of pending dead letters, age in seconds of the oldest one)."""
    now = now or timezone.now()
    stats = DeadLetter.objects.filter(status=DeadLetter.Status.PENDING).aggregate(
        count=Count("id"), oldest=Min("created_at")
    )
    oldest = stats["oldest"]
    return int(stats["count"] or 0), (now - oldest).total_seconds() if oldest else None


def dead_letter_summary(*, now: datetime | None = None) -> dict[str, Any]:
    """Open dead letters (pending, retrying, manual) grouped by kind, status and reason, with the
    oldest pending one's age. Closed letters (resolved, discarded) are history, not a backlog: they
    are not grouped (index ``deadletter_status_recent``; the closed ones can be 100 times more)."""
    now = now or timezone.now()
    groups = (
        DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES)
        .values("kind", "status", "reason_code")
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
