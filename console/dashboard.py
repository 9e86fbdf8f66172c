"""Reads of the staff console: the ops dashboard and what the domain adds to dead-letter pages.

Generic: reply numbers and a dead letter's subject history (e.g. the delivery attempts of its reply
job) come from providers the domain registers at start-up (``messaging`` registers both), so the
toolkit never imports the domain. Everything a hotel's staff see is scoped to their tenants;
breakers (cards and timeline) are shown to operations only.

The charts are plain numbers here (positions and sizes in a fixed view box); the template draws
them as inline SVG: no JavaScript, no CDN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count

from reliability import degradation, tenancy
from reliability.breaker import registry
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter

WINDOW = timedelta(hours=24)
RESULTS = ("delivered", "degraded", "dead")


# --- providers ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReplyStats:
    """Replies of the tenants asked for, over a period: ``hourly`` maps the start of each hour
    (aware, UTC) to counts by result (delivered / degraded / dead); ``latencies`` are the seconds
    from a guest's message to our reply being accepted by the provider."""

    hourly: dict[datetime, dict[str, int]] = field(default_factory=dict)
    latencies: Sequence[float] = ()


ReplyStatsProvider = Callable[..., ReplyStats]
_reply_stats: ReplyStatsProvider | None = None
_histories: dict[str, Callable[[int], list[dict[str, Any]]]] = {}


def register_reply_stats(provider: ReplyStatsProvider) -> None:
    """``provider(*, since, until, tenants)`` → :class:`ReplyStats`; ``tenants`` None = all."""
    global _reply_stats
    _reply_stats = provider


def register_subject_history(subject_type: str, provider: Callable[[int], list[dict[str, Any]]]) -> None:
    """``provider(subject_id)`` → rows (column → value, secrets and phone numbers masked) shown
    on the page of a dead letter whose subject is of ``subject_type`` (e.g. ``messaging.replyjob``)."""
    _histories[subject_type] = provider


def subject_history(letter: DeadLetter) -> list[dict[str, Any]]:
    provider = _histories.get(letter.subject_type)
    if provider is None or letter.subject_id is None:
        return []
    return provider(letter.subject_id)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- dashboard ------------------------------------------------------------------------------------
@dataclass(slots=True)
class BreakerCard:
    name: str
    state: str
    since: datetime | None
    seconds_in_state: float | None
    exact: bool  # the last recorded transition led to the live state
    retry_after: float
    failure_rate: float
    calls: int
    override: str
    override_reason: str
    override_until: datetime | None


@dataclass(slots=True)
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    value: int
    css: str

    @property
    def text_x(self) -> float:
        return round(self.x + self.width + 6, 1)

    @property
    def text_y(self) -> float:
        return round(self.y + 12, 1)


@dataclass(slots=True)
class Segment:
    x: float
    width: float
    state: str
    title: str


@dataclass(slots=True)
class Lane:
    name: str
    y: float
    segments: list[Segment]

    @property
    def text_y(self) -> float:
        return self.y + 14


@dataclass(slots=True)
class DashboardData:
    now: datetime
    since: datetime
    operations: bool
    tenants: list[str]
    breakers: list[BreakerCard]
    dead_by_category: list[tuple[str, str, int]]
    dead_open: int
    category_bars: list[Bar]
    trend_bars: list[Bar]
    trend_ticks: list[tuple[float, str]]
    trend_max: int
    totals: dict[str, int]
    latency_p50: float | None
    latency_p95: float | None
    latency_count: int
    lanes: list[Lane]
    transitions: list[BreakerEvent]
    #: ``reliability.degradation.degradation_status()``: level, cause, switches, override, maintenance.
    degradation: dict[str, Any]

    @property
    def category_height(self) -> float:
        return len(self.category_bars) * 24.0

    @property
    def timeline_height(self) -> float:
        return len(self.lanes) * 28.0


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _breaker_cards(now: datetime) -> list[BreakerCard]:
    rows = {row.name: row for row in BreakerConfig.objects.all()}
    names = sorted(
        set(rows) | set(BreakerEvent.objects.filter(at__gte=now - WINDOW).values_list("breaker", flat=True))
    )
    cards = []
    for name in names:
        snap = registry.breaker(name).snapshot()
        last = BreakerEvent.objects.filter(breaker=name).order_by("-at", "-id").first()
        row = rows.get(name)
        active = row is not None and row.override_active(now)
        cards.append(
            BreakerCard(
                name=name,
                state=snap.state.value,
                since=last.at if last else None,
                seconds_in_state=(now - last.at).total_seconds() if last else None,
                exact=last is not None and last.to_state == snap.state.value,
                retry_after=snap.retry_after,
                failure_rate=snap.failure_rate,
                calls=snap.calls,
                override=row.mode if active and row is not None else "",
                override_reason=row.mode_reason if active and row is not None else "",
                override_until=row.mode_until if active and row is not None else None,
            )
        )
    return cards


def _timeline(now: datetime, since: datetime, width: float = 720.0) -> tuple[list[Lane], list[BreakerEvent]]:
    events = list(BreakerEvent.objects.filter(at__gte=since, at__lte=now).order_by("at", "id")[:2000])
    span = (now - since).total_seconds()
    lanes: list[Lane] = []
    for index, name in enumerate(sorted({e.breaker for e in events})):
        own = [e for e in events if e.breaker == name]
        segments: list[Segment] = []
        start, state = since, own[0].from_state
        for event in [*own, None]:
            end = event.at if event is not None else now
            x0 = (start - since).total_seconds() / span * width
            x1 = (end - since).total_seconds() / span * width
            if x1 > x0:
                title = f"{state} from {start:%H:%M:%S} to {end:%H:%M:%S}"
                segments.append(
                    Segment(x=round(x0, 1), width=round(max(x1 - x0, 2.0), 1), state=state, title=title)
                )
            if event is not None:
                start, state = event.at, event.to_state
        lanes.append(Lane(name=name, y=index * 28.0, segments=segments))
    return lanes, list(reversed(events))[:50]


def dashboard_data(*, user: Any, now: datetime) -> DashboardData:
    """Everything the dashboard shows for ``user``: their tenants' dead letters and replies, and
    for operations the breakers."""
    since = now - WINDOW
    tenants = tenancy.visible_tenants(user)
    operations = tenants is None

    letters = tenancy.scope_by_tenant(DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES), user)
    counts = {
        row["category"]: row["n"] for row in letters.order_by().values("category").annotate(n=Count("id"))
    }
    labels = dict(DeadLetter.Category.choices)
    by_category = [(key, str(labels[key]), counts.get(key, 0)) for key in labels]
    top = max([n for _, _, n in by_category] + [1])
    category_bars = [
        Bar(
            label=str(label),
            x=150.0,
            y=i * 24.0,
            width=round(n / top * 400, 1),
            height=16.0,
            value=n,
            css=key,
        )
        for i, (key, label, n) in enumerate(by_category)
    ]

    stats = (
        _reply_stats(since=since, until=now, tenants=tenants) if _reply_stats is not None else ReplyStats()
    )
    first_hour = _hour(since) + timedelta(hours=1)
    hours = [first_hour + timedelta(hours=i) for i in range(24)]
    totals = {r: 0 for r in RESULTS}
    per_hour = []
    for hour in hours:
        bucket = stats.hourly.get(hour, {})
        per_hour.append([bucket.get(r, 0) for r in RESULTS])
    for hour, bucket in stats.hourly.items():
        if hour >= _hour(since):
            for r in RESULTS:
                totals[r] += bucket.get(r, 0)
    trend_max = max([sum(v) for v in per_hour] + [1])
    chart_h, bar_w = 160.0, 24.0
    trend_bars: list[Bar] = []
    for i, values in enumerate(per_hour):
        y = chart_h
        for result, value in zip(RESULTS, values, strict=True):
            if not value:
                continue
            h = value / trend_max * chart_h
            y -= h
            trend_bars.append(
                Bar(
                    label=f"{hours[i]:%H}:00 {result}: {value}",
                    x=40.0 + i * 28.0,
                    y=round(y, 1),
                    width=bar_w,
                    height=round(h, 1),
                    value=value,
                    css=result,
                )
            )
    ticks = [(40.0 + i * 28.0 + bar_w / 2, f"{hours[i]:%H}") for i in range(0, 24, 3)]

    lanes, transitions = _timeline(now, since) if operations else ([], [])
    return DashboardData(
        now=now,
        since=since,
        operations=operations,
        tenants=sorted(tenancy.tenant_labels(tenants).values()) if tenants is not None else [],
        breakers=_breaker_cards(now) if operations else [],
        dead_by_category=by_category,
        dead_open=sum(n for _, _, n in by_category),
        category_bars=category_bars,
        trend_bars=trend_bars,
        trend_ticks=ticks,
        trend_max=trend_max,
        totals=totals,
        latency_p50=percentile(stats.latencies, 50),
        latency_p95=percentile(stats.latencies, 95),
        latency_count=len(stats.latencies),
        lanes=lanes,
        transitions=transitions,
        degradation=degradation.degradation_status(now=now),
    )
