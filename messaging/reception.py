"""Reception hours: when a hotel's staff are at the desk (docs/handoff.md). Pure functions, no ORM.

A hotel's hours are a few :class:`Opening` rows (weekday, opens, closes, in the hotel's own
clock). Several rows per weekday are allowed; a weekday without rows is closed; **no rows at all
is open 24/7** (the default: a hotel that never set hours behaves as before). A row whose
``closes`` is before its ``opens`` runs past midnight into the next day (Friday 22:00-02:00 ends
on Saturday at 02:00); ``00:00-00:00`` is the whole day.

Open means *the hotel's wall clock shows a time inside the hours*. Around a DST change the hours
follow the clock: on the night the clocks go back, 01:00-02:00 is open for two real hours; on the
night they go forward, a row inside the skipped hour is never open. Everything is computed over
spans of constant UTC offset (:func:`_constant_offset_spans`), so the results are exact to the
microsecond, and tested against a minute-by-minute reference (tests/messaging/test_reception.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = timedelta(days=1)
#: A span of constant offset is looked at in pieces this long: no zone changes its offset twice
#: within it (transitions are months apart), so a change inside is found by bisection.
_PIECE = timedelta(hours=12)
#: :func:`next_opening` looks this far ahead (a week of hours, plus a DST-swallowed row's week).
_HORIZON = timedelta(days=15)


@dataclass(frozen=True, slots=True)
class Opening:
    """Reception is open on ``weekday`` (0 Monday .. 6 Sunday) from ``opens`` to ``closes``, hotel
    time; ``closes`` <= ``opens`` ends on the next day (00:00-00:00: the whole day)."""

    weekday: int
    opens: time
    closes: time

    def on(self, day: date) -> tuple[datetime, datetime]:
        """This opening on ``day`` (which must be its weekday), as naive local datetimes."""
        start = datetime.combine(day, self.opens)
        end = datetime.combine(day, self.closes)
        if end <= start:
            end += DAY
        return start, end


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"Unknown time zone {name!r} (an IANA name such as Europe/Lisbon).") from e


def _offset(tz: tzinfo, at: datetime) -> timedelta:
    return at.astimezone(tz).utcoffset() or timedelta(0)


def _constant_offset_spans(
    tz: tzinfo, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime, timedelta]]:
    """[start, end) cut where ``tz`` changes its UTC offset: (span start, span end, offset), UTC."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    while start < end:
        offset = _offset(tz, start)
        stop = start
        while stop < end:
            probe = min(stop + _PIECE, end)
            if _offset(tz, probe) == offset:
                stop = probe
                continue
            low, high = stop, probe  # the offset changes in (low, high]: bisect to the microsecond
            while high - low > timedelta(microseconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if _offset(tz, middle) == offset else (low, middle)
            stop = high
            break
        yield start, stop, offset
        start = stop


def _local_intervals(hours: Sequence[Opening], first: date, last: date) -> list[tuple[datetime, datetime]]:
    """The openings of the days ``first`` - 1 .. ``last`` (naive local), sorted and merged."""
    intervals: list[tuple[datetime, datetime]] = []
    day = first - DAY
    while day <= last:
        intervals.extend(o.on(day) for o in hours if o.weekday == day.weekday())
        day += DAY
    intervals.sort()
    merged: list[tuple[datetime, datetime]] = []
    for begin, finish in intervals:
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((begin, finish))
    return merged


def _naive(at: datetime, offset: timedelta) -> datetime:
    return (at + offset).replace(tzinfo=None)


def is_open(hours: Sequence[Opening], tz: tzinfo, at: datetime) -> bool:
    """Reception is open at the instant ``at`` (aware)."""
    if not hours:
        return True
    local = _naive(at.astimezone(UTC), _offset(tz, at))
    return any(
        begin <= local < finish for begin, finish in _local_intervals(hours, local.date(), local.date())
    )


def open_seconds_between(hours: Sequence[Opening], tz: tzinfo, start: datetime, end: datetime) -> float:
    """Seconds of [start, end) during which reception is open (0 when ``end`` <= ``start``)."""
    if end <= start:
        return 0.0
    if not hours:
        return (end - start).total_seconds()
    total = timedelta(0)
    for span_start, span_end, offset in _constant_offset_spans(tz, start, end):
        low, high = _naive(span_start, offset), _naive(span_end, offset)
        for begin, finish in _local_intervals(hours, low.date(), high.date()):
            overlap = min(finish, high) - max(begin, low)
            if overlap > timedelta(0):
                total += overlap
    return total.total_seconds()


def next_opening(hours: Sequence[Opening], tz: tzinfo, at: datetime) -> datetime | None:
    """The first instant at or after ``at`` when reception is open (``at`` itself when open
    now); None if the hours never open within two weeks (every row swallowed by a DST change)."""
    if is_open(hours, tz, at):
        return at
    for span_start, span_end, offset in _constant_offset_spans(tz, at, at + _HORIZON):
        low, high = _naive(span_start, offset), _naive(span_end, offset)
        for begin, finish in _local_intervals(hours, low.date(), high.date()):
            if finish > low and begin < high:
                return span_start + (max(begin, low) - low)
    return None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A hotel's reception hours in its time zone (``selectors.hotel_schedules`` builds them)."""

    hours: tuple[Opening, ...]
    tz: tzinfo

    def is_open(self, at: datetime) -> bool:
        return is_open(self.hours, self.tz, at)

    def open_seconds_between(self, start: datetime, end: datetime) -> float:
        return open_seconds_between(self.hours, self.tz, start, end)

    def closed_until(self, at: datetime) -> datetime | None:
        """None while reception is open at ``at``; else when it opens next, in hotel time (None too
        if it never opens: nothing honest to promise)."""
        opens = next_opening(self.hours, self.tz, at)
        return None if opens is None or opens == at else opens.astimezone(self.tz)


ALWAYS_OPEN = Schedule(hours=(), tz=UTC)
