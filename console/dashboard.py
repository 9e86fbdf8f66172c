"""Reads of the staff console: the ops dashboard and what the domain adds to dead-letter pages.

Reply numbers come from ``messaging.selectors.reply_stats`` (the one definition of reply latency
and its percentile, shared with the report, the API and the degradation rule), handoff numbers from
``messaging.selectors.handoff_stats`` (shared with the report and the metrics), and a dead letter's
subject history from ``messaging.selectors.reply_job_attempts``. Everything a hotel's staff see is
scoped to their tenants; breakers (cards and timeline) are shown to operations only.

The charts are plain numbers here (positions and sizes in a fixed view box); the template draws
them as inline SVG: no JavaScript, no CDN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count

from console import tenancy
from messaging import selectors
from reliability import degradation
from reliability.breaker import registry
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter

WINDOW = timedelta(hours=24)
RESULTS = ("delivered", "degraded", "dead")


def subject_history(letter: DeadLetter) -> list[dict[str, Any]]:
    """Rows shown on the page of a dead letter about a reply job: its delivery attempts (masked)."""
    if letter.subject_type != "messaging.replyjob" or letter.subject_id is None:
        return []
    return selectors.reply_job_attempts(letter.subject_id)


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
    #: ``messaging.selectors.handoff_stats``: guests waiting for staff now (and past the target),
    #: time to first human reply, the share the bot handled alone.
    handoffs: selectors.HandoffStats

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

    stats = selectors.reply_stats(since=since, until=now, tenants=tenants)
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
        latency_p50=stats.latency.p50,
        latency_p95=stats.latency.p95,
        latency_count=stats.latency.count,
        lanes=lanes,
        transitions=transitions,
        degradation=degradation.degradation_status(now=now),
        handoffs=selectors.handoff_stats(since=since, until=now, tenants=tenants, now=now),
    )
