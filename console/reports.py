"""The reliability report: how one period went, as a JSON-able dict (admin, API, command, beat).

Reply numbers come from ``messaging.selectors.reply_stats`` (the one definition of reply latency and
its percentile, shared with the dashboard, the API and the degradation rule); dead letters and
breakers are reliability's rows.

Shape::

    {"period": {"since", "until"},                      # ISO 8601, UTC; [since, until)
     "replies": {"by_result": {"done", "degraded", "dead", "pending", ...},
                 "latency_seconds": {"p50", "p95", "count"}},
     "dead_letters": {"open", "created", "by_category", "by_dependency", "by_kind"},
     "breakers": [{"name", "state_now", "transitions", "seconds_open"}],
     "top_failure_reasons": [{"reason_code", "count"}],
     "handoffs": {"waiting", "waiting_past_target",      # a snapshot when the report is made
                  "first_human_reply_seconds": {"p50", "p95", "count"},
                  "conversations", "resolved_by_bot", "resolved_by_bot_share"}}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from console import tenancy
from hotelbot.exceptions import ValidationFailed
from messaging import selectors
from reliability.breaker import State, registry
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter, ReliabilityReport

#: Breaker states that reject calls: time spent in them is "time open".
OPEN_STATES = frozenset({State.OPEN.value, State.FORCED_OPEN.value})
TOP_REASONS = 10


def _counts(qs: QuerySet[DeadLetter], field: str) -> dict[str, int]:
    rows = qs.order_by().values(field).annotate(n=Count("id")).order_by("-n", field)
    return {str(row[field] or "-"): int(row["n"]) for row in rows}


def _dead_letter_section(letters: QuerySet[DeadLetter], since: datetime, until: datetime) -> dict[str, Any]:
    created = letters.filter(created_at__gte=since, created_at__lt=until)
    return {
        "open": letters.filter(status__in=DeadLetter.OPEN_STATUSES, created_at__lt=until).count(),
        "created": created.count(),
        "by_category": _counts(created, "category"),
        "by_dependency": _counts(created, "dependency"),
        "by_kind": _counts(created, "kind"),
    }


def _top_reasons(letters: QuerySet[DeadLetter], since: datetime, until: datetime) -> list[dict[str, Any]]:
    created = letters.filter(created_at__gte=since, created_at__lt=until)
    rows = created.order_by().values("reason_code").annotate(n=Count("id")).order_by("-n", "reason_code")
    return [{"reason_code": row["reason_code"], "count": int(row["n"])} for row in rows[:TOP_REASONS]]


def seconds_open(
    events: Sequence[tuple[datetime, str]], *, open_at_start: bool, since: datetime, until: datetime
) -> float:
    """Seconds in [since, until) spent open or forced open, from the transitions (``at``, ``to_state``)
    in the period, oldest first; ``open_at_start``: the last transition before ``since`` opened it."""
    total = 0.0
    opened_at: datetime | None = since if open_at_start else None
    for at, to_state in events:
        if to_state in OPEN_STATES:
            if opened_at is None:
                opened_at = at
        elif opened_at is not None:
            total += (at - opened_at).total_seconds()
            opened_at = None
    if opened_at is not None:
        total += (until - opened_at).total_seconds()
    return round(max(total, 0.0), 3)


def _state_now(name: str) -> str:
    try:
        return registry.breaker(name).snapshot().state.value
    except Exception:  # a breaker whose store cannot be read: the report still renders
        return "unknown"


def _breaker_section(since: datetime, until: datetime) -> list[dict[str, Any]]:
    in_period = BreakerEvent.objects.filter(at__gte=since, at__lt=until).order_by("at", "id")
    configured = set(BreakerConfig.objects.values_list("name", flat=True))
    names = configured | set(in_period.values_list("breaker", flat=True).distinct())
    section = []
    for name in sorted(names):
        events = [(e.at, e.to_state) for e in in_period.filter(breaker=name).only("at", "to_state")]
        before = BreakerEvent.objects.filter(breaker=name, at__lt=since).order_by("-at", "-id").first()
        section.append(
            {
                "name": name,
                "state_now": _state_now(name) if name in configured else "unknown",
                "transitions": len(events),
                "seconds_open": seconds_open(
                    events,
                    open_at_start=before is not None and before.to_state in OPEN_STATES,
                    since=since,
                    until=until,
                ),
            }
        )
    return section


def reliability_report(*, since: datetime, until: datetime, user: Any = None) -> dict[str, Any]:
    """The report for [since, until). ``user`` cuts replies and dead letters to that user's tenants
    (``console.tenancy.visible_tenants``; None = every tenant). Breakers are shared
    infrastructure: every user sees them."""
    if until <= since:
        raise ValidationFailed("The period must end after it starts.", details={"until": "After since."})
    tenants = tenancy.visible_tenants(user) if user is not None else None
    letters = DeadLetter.objects.all()
    if tenants is not None:
        letters = letters.filter(tenant__in=sorted(tenants))
    replies = selectors.reply_stats(since=since, until=until, tenants=tenants)
    return {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "replies": {"by_result": replies.by_result, "latency_seconds": replies.latency.as_dict()},
        "dead_letters": _dead_letter_section(letters, since, until),
        "breakers": _breaker_section(since, until),
        "top_failure_reasons": _top_reasons(letters, since, until),
        "handoffs": selectors.handoff_stats(since=since, until=until, tenants=tenants).as_dict(),
    }


def reliability_report_last(*, hours: int, user: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The report for the last ``hours`` hours (1 to 720)."""
    if not 1 <= hours <= 720:
        raise ValidationFailed("hours must be between 1 and 720.", details={"hours": "1 to 720."})
    until = now or timezone.now()
    return reliability_report(since=until - timedelta(hours=hours), until=until, user=user)


def report_store_hourly(*, now: datetime | None = None) -> ReliabilityReport:
    """Beat: store the report of the last full clock hour (every tenant). Idempotent: a second run
    for the same hour (acks_late, beat restarts) replaces the stored report."""
    now = now or timezone.now()
    until = now.replace(minute=0, second=0, microsecond=0)
    since = until - timedelta(hours=1)
    data = reliability_report(since=since, until=until)
    with transaction.atomic():
        report, _ = ReliabilityReport.objects.update_or_create(
            period_start=since, period_end=until, defaults={"data": data}
        )
    return report
