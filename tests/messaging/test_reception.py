"""Reception hours (``messaging.reception``) against a minute-by-minute reference, DST days included."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.reception import Opening, is_open, next_opening, open_seconds_between, zone

#: Zones with DST (an hour, and Lord Howe's half hour), one without, and one south of the equator.
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"]
#: Nights the clocks change (UTC), so the generated periods straddle them often.
DST_DAYS = [
    datetime(2026, 3, 29, tzinfo=UTC),  # Europe forward
    datetime(2026, 10, 25, tzinfo=UTC),  # Europe back
    datetime(2026, 3, 8, tzinfo=UTC),  # US forward
    datetime(2026, 11, 1, tzinfo=UTC),  # US back
    datetime(2026, 4, 5, tzinfo=UTC),  # Lord Howe, Santiago back
    datetime(2026, 10, 4, tzinfo=UTC),  # Lord Howe forward
    datetime(2026, 9, 6, tzinfo=UTC),  # Santiago forward
    datetime(2026, 6, 15, tzinfo=UTC),  # an ordinary day
]


def minute_of_day(m: int) -> time:
    return time(m // 60, m % 60)


openings = st.builds(
    lambda weekday, opens, length: Opening(
        weekday, minute_of_day(opens), minute_of_day((opens + length) % 1440)
    ),
    st.integers(0, 6),
    st.integers(0, 1439),
    st.integers(1, 1440),  # 1440: the whole day (closes == opens, both must then be midnight)
).filter(lambda o: o.opens != o.closes or o.opens == time(0))
hours_lists = st.lists(openings, min_size=0, max_size=6)
moments = st.builds(
    lambda day, minutes: day + timedelta(minutes=minutes),
    st.sampled_from(DST_DAYS),
    st.integers(-36 * 60, 36 * 60),
)


def reference_open(hours: list[Opening], tz: ZoneInfo, at: datetime) -> bool:
    """Open when the wall clock shows a minute inside a row (the brute-force definition)."""
    if not hours:
        return True
    local = at.astimezone(tz)
    minute_of_week = local.weekday() * 1440 + local.hour * 60 + local.minute
    for o in hours:
        start = o.weekday * 1440 + o.opens.hour * 60 + o.opens.minute
        length = (o.closes.hour * 60 + o.closes.minute - (o.opens.hour * 60 + o.opens.minute)) % 1440 or 1440
        if (minute_of_week - start) % (7 * 1440) < length:
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(hours=hours_lists, name=st.sampled_from(ZONES), start=moments, minutes=st.integers(0, 3 * 1440))
def test_open_seconds_match_a_minute_by_minute_count(hours, name, start, minutes):
    tz = ZoneInfo(name)
    end = start + timedelta(minutes=minutes)
    expected = sum(60 for i in range(minutes) if reference_open(hours, tz, start + timedelta(minutes=i)))
    assert open_seconds_between(hours, tz, start, end) == expected


@settings(max_examples=150, deadline=None)
@given(hours=hours_lists, name=st.sampled_from(ZONES), at=moments, seconds=st.integers(0, 59))
def test_is_open_matches_the_reference(hours, name, at, seconds):
    tz = ZoneInfo(name)
    assert is_open(hours, tz, at + timedelta(seconds=seconds)) == reference_open(hours, tz, at)


@settings(max_examples=100, deadline=None)
@given(hours=hours_lists, name=st.sampled_from(ZONES), at=moments)
def test_next_opening_is_the_first_open_minute(hours, name, at):
    tz = ZoneInfo(name)
    found = next_opening(hours, tz, at)
    step = at
    for _ in range(15 * 1440):
        if reference_open(hours, tz, step):
            break
        step += timedelta(minutes=1)
    else:
        assert found is None
        return
    assert found == step


def test_no_rows_is_open_all_week_and_a_weekday_without_rows_is_closed():
    tz = ZoneInfo("Europe/Lisbon")
    sunday_noon = datetime(2026, 6, 14, 11, tzinfo=UTC)
    assert is_open([], tz, sunday_noon)
    assert open_seconds_between([], tz, sunday_noon, sunday_noon + timedelta(hours=2)) == 7200
    weekdays = [Opening(d, time(7), time(23)) for d in range(5)]
    assert not is_open(weekdays, tz, sunday_noon)
    assert next_opening(weekdays, tz, sunday_noon) == datetime(2026, 6, 15, 6, tzinfo=UTC)  # Mon 07:00 WEST


def test_an_overnight_row_runs_into_the_next_day_even_across_the_week():
    tz = ZoneInfo("UTC")
    sunday_night = [Opening(6, time(22), time(2))]
    assert is_open(sunday_night, tz, datetime(2026, 6, 15, 1, 30, tzinfo=UTC))  # Monday 01:30
    assert not is_open(sunday_night, tz, datetime(2026, 6, 15, 2, tzinfo=UTC))
    assert (
        open_seconds_between(
            sunday_night, tz, datetime(2026, 6, 14, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC)
        )
        == 4 * 3600
    )


def test_the_clock_goes_back_and_the_desk_stays_open_two_real_hours():
    tz = ZoneInfo("Europe/Berlin")
    night = [Opening(6, time(2), time(3))]  # Sunday 02:00-03:00, the hour that repeats on 2026-10-25
    day = datetime(2026, 10, 24, 12, tzinfo=UTC)
    assert open_seconds_between(night, tz, day, day + timedelta(days=1)) == 2 * 3600


def test_zone_names_are_checked():
    assert zone("Europe/Lisbon") == ZoneInfo("Europe/Lisbon")
    for bad in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(ValueError, match="Unknown time zone"):
            zone(bad)
