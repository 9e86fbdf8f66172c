"""The instance-state probe at scale: a bounded slice per run, within its budget, rotating over
every hotel (issue 18 item 2), and the green_api_instances check's verdict over every hotel."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from fakes.green_api import FakeGreenApi
from messaging import health as checks
from messaging import selectors
from messaging.models import Hotel
from messaging.services import instance_states
from reliability import health
from tests.factories import HotelFactory

HOTELS = 10_000
FIRST_INSTANCE = 1_200_000_000


def hotels_insert(count: int) -> None:
    """``count`` hotels in one INSERT ... SELECT copying a template hotel (its encrypted token too):
    instances FIRST_INSTANCE + 1.., names "Hotel 00001".., no state known."""
    template = HotelFactory.create(name="template", green_api_instance_id=str(FIRST_INSTANCE))
    columns = [
        f.column for f in Hotel._meta.concrete_fields if f.name not in ("id", "name", "green_api_instance_id")
    ]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    table = connection.ops.quote_name(Hotel._meta.db_table)
    name = "'Hotel ' || substr(CAST(100000 + i AS TEXT), 2, 5)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "  # noqa: S608
            f"INSERT INTO {table} (name, green_api_instance_id, {quoted}) "
            f"SELECT {name}, CAST({FIRST_INSTANCE} + i AS TEXT), {quoted} FROM n, {table} t WHERE t.id = %s",
            [count, template.pk],
        )
    template.delete()


@pytest.fixture
def many_hotels(fake_green: FakeGreenApi, settings) -> FakeGreenApi:
    """10,000 hotels, every one answered by the fake (at 200 ms a call), 50 asked per run."""
    hotels_insert(HOTELS)
    fake_green.any_instance = True
    fake_green.add_fault({"mode": "latency", "latency_ms": 200, "match": {"method_name": "getStateInstance"}})
    settings.HEALTH_GREEN_API_PROBE_SLICE = 50
    settings.HEALTH_GREEN_API_PROBE_CONCURRENCY = 4
    settings.HEALTH_GREEN_API_PROBE_BUDGET = 1.0  # room for ~20 calls of 200 ms, 4 at a time
    return fake_green


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the probe's threads see the rows
def test_one_run_asks_at_most_the_slice_within_its_budget_and_the_next_run_moves_on(
    many_hotels: FakeGreenApi, settings
) -> None:
    assert Hotel.objects.count() == HOTELS

    run = instance_states.instance_states_probe(limit=50, budget=1.0, concurrency=4)

    calls = len(many_hotels.journal("getStateInstance"))
    assert len(run.asked) == 50
    assert len(run.states) + len(run.failed) <= calls <= 50
    assert len(run.states) + len(run.failed) + len(run.unfinished) + len(run.skipped) == 50
    assert run.states
    assert set(run.states.values()) == {"authorized"}
    assert run.skipped, "at 200 ms a call, 4 at a time, 1 s cannot ask 50 hotels"
    assert run.elapsed < run.budget + 0.5  # the run ended at its budget, not after the last call
    answered = set(run.states)
    assert set(Hotel.objects.filter(green_api_state="authorized").values_list("pk", flat=True)) == answered

    # The next slice: the skipped hotels first (no call was made for them), none asked this run.
    following = {h.pk for h in selectors.hotels_to_probe(limit=50)}
    asked = {h.pk for h in run.asked} - set(run.skipped)
    assert set(run.skipped) <= following
    assert not following & asked


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_check_over_ten_thousand_hotels_names_a_few_and_says_the_budget_ran_out(
    many_hotels: FakeGreenApi,
) -> None:
    with pytest.raises(health.ServiceWarning) as info:  # 9,980-odd hotels have no state known yet
        checks.green_api_instances()
    message = info.value.message
    assert "hotel(s) with no instance state known within 60 min: hotel 'Hotel 0" in message
    assert "more; every hotel is asked within 200 run(s)" in message
    assert "budget of 1 s ran out" in message
    assert len(message) < 2000  # ten names, not ten thousand
    assert len(many_hotels.journal("getStateInstance")) <= 50
    assert REGISTRY.get_sample_value("hotelbot_whatsapp_instances_not_authorized") == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_rotation_reaches_every_hotel_in_ceil_hotels_over_slice_runs(fake_green: FakeGreenApi) -> None:
    """The slice moves on whatever the answers: hotels Green API answered for and those it did not."""
    hotels_insert(HOTELS)
    slice_size = 500
    seen: set[int] = set()
    for turn in range(math.ceil(HOTELS / slice_size)):
        hotels = selectors.hotels_to_probe(limit=slice_size)
        run = instance_states.ProbeRun(budget=1.0, asked=hotels)
        for hotel in hotels:  # half answer, half fail: both move to the back
            if hotel.pk % 2:
                run.states[hotel.pk] = "authorized"
            else:
                run.failed[hotel.pk] = "503"
        instance_states.instance_states_record(run=run, asked_since=timezone.now())
        batch = {h.pk for h in hotels}
        assert not batch & seen, f"turn {turn} asked a hotel again before every hotel was asked"
        seen |= batch
    assert len(seen) == HOTELS
    assert not Hotel.objects.filter(green_api_state_checked_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_pushed_states_order_the_slice_and_a_pushed_not_authorized_fails_without_a_call(
    fake_green: FakeGreenApi, settings
) -> None:
    fake_green.any_instance = True
    settings.HEALTH_GREEN_API_PROBE_SLICE = 1
    now = timezone.now()
    HotelFactory.create(name="Lobby", green_api_instance_id="1101000002")  # no state known: asked first
    HotelFactory.create(
        name="Harbour",
        green_api_instance_id="1101000003",
        green_api_state="notAuthorized",
        green_api_state_changed_at=now - timedelta(minutes=5),
    )
    HotelFactory.create(
        name="Dune",
        green_api_instance_id="1101000004",
        green_api_state="authorized",
        green_api_state_changed_at=now - timedelta(minutes=1),
    )

    with pytest.raises(health.ServiceUnavailable) as info:
        checks.green_api_instances()

    message = info.value.message
    assert message.startswith("1 of 3 instance(s) not authorized: hotel 'Harbour' (instance 1101000003)")
    assert "is notAuthorized (known 5 min ago)" in message
    assert "QR code" in message
    assert [entry["path"].split("/")[1] for entry in fake_green.journal("getStateInstance")] == [
        "waInstance1101000002"  # only the hotel never known was asked
    ]
    assert Hotel.objects.get(name="Lobby").green_api_state == "authorized"
    assert REGISTRY.get_sample_value("hotelbot_whatsapp_instances_not_authorized") == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_state_known_longer_ago_than_the_max_age_is_unknown_and_asked_first(
    fake_green: FakeGreenApi, settings
) -> None:
    settings.HEALTH_GREEN_API_STATE_MAX_AGE = 600
    settings.HEALTH_GREEN_API_PROBE_SLICE = 1
    fake_green.add_fault({"mode": "error", "status": 503, "match": {"method_name": "getStateInstance"}})
    HotelFactory.create(
        name="Old news",
        green_api_state="authorized",
        green_api_state_changed_at=timezone.now() - timedelta(hours=3),
    )

    with pytest.raises(health.ServiceWarning) as info:
        checks.green_api_instances()

    message = info.value.message
    assert "1 hotel(s) with no instance state known within 10 min: hotel 'Old news'" in message
    assert "Green API did not answer for 1 of 1 hotel(s) asked: hotel 'Old news'" in message
    assert "503" in message
    assert "test-token" not in message
    hotel = Hotel.objects.get()
    assert hotel.green_api_state_checked_at is not None  # asked: moves to the back of the line
    assert hotel.green_api_state == "authorized"  # a failed call erases nothing
