"""The handoff figures (``selectors.handoff_stats``, one selector for the dashboard, the report and
the metrics): guests waiting now and past their hotel's target, time to first human reply, the
share the bot handled alone. Run on SQLite and PostgreSQL (the durations are SQL arithmetic)."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from messaging import selectors
from messaging.models import ReceptionHours
from reliability.metrics import CONVERSATIONS_HANDLED, CONVERSATIONS_WAITING
from tests.factories import ConversationFactory, HotelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """Two hotels: Seaside (open 24/7, target 15 min) and Hilltop (closed lately, target 5 min)."""
    now = timezone.now()
    seaside = HotelFactory.create(handoff_target_minutes=15)
    hilltop = HotelFactory.create(
        name="Hilltop", green_api_instance_id="1101000002", handoff_target_minutes=5, timezone="UTC"
    )
    later = now.astimezone(UTC) + timedelta(days=3)
    ReceptionHours.objects.create(hotel=hilltop, weekday=later.weekday(), opens="07:00", closes="08:00")

    def conversation(hotel, **fields):
        return ConversationFactory.create(guest__hotel=hotel, **fields)

    # Waiting now: 20 min and 5 min at Seaside (one past 15), 60 min at Hilltop (closed: not past).
    for minutes, hotel in ((20, seaside), (5, seaside), (60, hilltop)):
        since = now - timedelta(minutes=minutes)
        conversation(hotel, owner="waiting", owner_reason="guest_asked", owner_since=since, handoff_at=since)
    # Answered by staff: after 2, 4 and 10 minutes (Seaside), all within the last day.
    for minutes in (2, 4, 10):
        handed = now - timedelta(hours=3)
        conversation(
            seaside,
            owner="staff",
            owner_reason="staff_took",
            owner_since=handed,
            handoff_at=handed,
            staff_replied_at=handed + timedelta(minutes=minutes),
        )
    # The bot alone: four at Seaside; one handed back (not the bot's alone).
    for _ in range(4):
        conversation(seaside)
    conversation(seaside, owner="bot", owner_reason="handed_back", owner_since=now)
    return seaside, hilltop, now


def test_the_figures_of_every_hotel(world):
    _, _, now = world
    stats = selectors.handoff_stats(
        since=now - timedelta(days=1), until=now + timedelta(seconds=1), tenants=None
    )
    assert (stats.waiting, stats.past_target) == (3, 1)
    assert (stats.first_reply.p50, stats.first_reply.p95, stats.first_reply.count) == (240.0, 600.0, 3)
    assert (stats.conversations, stats.by_bot, stats.bot_share) == (11, 4, round(4 / 11, 4))
    assert stats.as_dict()["waiting_past_target"] == 1


def test_a_hotels_staff_see_their_hotel_only(world):
    _, hilltop, now = world
    stats = selectors.handoff_stats(
        since=now - timedelta(days=1), until=now + timedelta(seconds=1), tenants=frozenset({str(hilltop.pk)})
    )
    assert (stats.waiting, stats.past_target, stats.first_reply.count) == (1, 0, 0)
    assert stats.conversations == 1
    assert stats.bot_share == 0.0


def test_the_waiting_time_counts_only_open_reception(world):
    seaside, hilltop, now = world
    times = {w.hotel_id: w for w in selectors.conversations_waiting(now=now) if w.waiting_seconds > 1000}
    assert times[seaside.pk].past_target
    assert 1190 <= times[seaside.pk].waiting_seconds <= 1210
    [closed] = [w for w in selectors.conversations_waiting(now=now) if w.hotel_id == hilltop.pk]
    assert (closed.waiting_seconds, closed.target_seconds, closed.past_target) == (0.0, 300.0, False)


def test_the_gauges_are_read_at_scrape_time(world):
    CONVERSATIONS_WAITING.reset()
    assert REGISTRY.get_sample_value("hotelbot_conversations_waiting") == 3
    assert REGISTRY.get_sample_value("hotelbot_conversations_waiting_past_target") == 1
    CONVERSATIONS_WAITING.reset()


def test_the_share_resolved_by_the_bot_is_a_gauge_of_the_last_day(world):
    """The gauge counts the conversations of the last 24 h with the dashboard's definition: the
    world's 11 (4 by the bot alone), and not one whose last message is older than a day."""
    seaside, _, now = world
    ConversationFactory.create(guest__hotel=seaside, last_message_at=now - timedelta(hours=25))
    CONVERSATIONS_HANDLED.reset()
    assert REGISTRY.get_sample_value("hotelbot_conversations_recent", {"by": "bot"}) == 4
    assert REGISTRY.get_sample_value("hotelbot_conversations_recent", {"by": "staff"}) == 7
    assert selectors.handled_counts(now=timezone.now()) == (4, 7)
    CONVERSATIONS_HANDLED.reset()
