"""Asking Green API for the instance states of a bounded slice of hotels (the health check's probe).

Green API pushes every change of an instance's state (``stateInstanceChanged``, stored by
``intake.hotel_state_record``); asking ``getStateInstance`` of every hotel on every run would cost
one call per hotel a minute. :func:`instance_states_probe` asks only the hotels known or asked
longest ago (``selectors.hotels_to_probe``), a few calls at a time, and ends within its budget
whatever Green API does: no call outlives the budget (each runs under the time left) and the calls
not started by then are skipped, so they come first next run. Each answer is written back to its
hotel, and each hotel asked (answered or not) moves to the back of the line.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

import tenacity
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from messaging import selectors
from messaging.clients import green_api
from messaging.models import Hotel
from reliability.crypto import FieldEncryptionError


@dataclass
class ProbeRun:
    """What one run asked and found. Hotels are keyed by primary key."""

    budget: float
    asked: list[Hotel] = field(default_factory=list)
    states: dict[int, str] = field(default_factory=dict)  # answered: stateInstance
    failed: dict[int, str] = field(default_factory=dict)  # Green API did not answer: why (masked)
    undecryptable: list[Hotel] = field(default_factory=list)  # token unreadable: never sent
    unfinished: list[int] = field(default_factory=list)  # still in flight when the budget ran out
    skipped: list[int] = field(default_factory=list)  # not started within the budget: no call made
    elapsed: float = 0.0


class _Skipped:
    """A call whose turn came after the run's budget: nothing was sent."""


def _ask(id_instance: str, api_token: str, ends: float) -> str | _Skipped:
    """One getStateInstance within the time left (run in the run's pool; closes its connections)."""
    try:
        left = ends - time.monotonic()
        if left <= 0:
            return _Skipped()
        client = green_api.client_for(id_instance=id_instance, api_token=api_token)
        return client.get_state_instance(deadline=min(settings.GREEN_API_DEADLINE, left))
    finally:
        for conn in connections.all(initialized_only=True):  # pacing may use the database
            with contextlib.suppress(Exception):
                conn.close()


def instance_states_probe(*, limit: int, budget: float, concurrency: int) -> ProbeRun:
    """Ask Green API the state of the ``limit`` hotels known or asked longest ago, ``concurrency``
    calls at a time, within ``budget`` seconds; write the answers back (see the module docs)."""
    started, started_at = time.monotonic(), timezone.now()
    ends = started + budget
    run = ProbeRun(budget=budget, asked=selectors.hotels_to_probe(limit=limit))
    futures: dict[Future[str | _Skipped], int] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="green-api-state")
    try:
        for hotel in run.asked:
            try:
                token = hotel.green_api_token
            except FieldEncryptionError:  # counted by the encrypted_values check; never sent encrypted
                run.undecryptable.append(hotel)
                continue
            futures[pool.submit(_ask, hotel.green_api_instance_id, token, ends)] = hotel.pk
        wait(futures, timeout=max(0.0, ends - time.monotonic()))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a call in flight ends by itself within `ends`
    for future, pk in futures.items():
        if future.cancelled():
            run.skipped.append(pk)
        elif not future.done():
            run.unfinished.append(pk)
        elif (error := future.exception()) is not None:
            run.failed[pk] = (
                str(error) if isinstance(error, green_api.GreenApiError) else type(error).__name__
            )
        elif isinstance(result := future.result(), _Skipped):
            run.skipped.append(pk)
        else:
            run.states[pk] = result
    run.elapsed = time.monotonic() - started
    # A call still in flight past the budget may hold SQLite's write lock for a moment (its pacing
    # slot): the write-back waits for it, briefly, instead of failing the health check.
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(_sqlite_locked),
        stop=tenacity.stop_after_delay(5),
        wait=tenacity.wait_fixed(0.05),
        reraise=True,
    ):
        with attempt:
            instance_states_record(run=run, asked_since=started_at)
    return run


def _sqlite_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "locked" in str(exc)


@transaction.atomic
def instance_states_record(*, run: ProbeRun, asked_since: datetime) -> None:
    """Write a run back: each answer as the hotel's state known now (unless Green API pushed a newer
    one meanwhile), and "asked now" for every hotel a call was made or refused for."""
    now = timezone.now()
    not_newer = Q(green_api_state_changed_at__isnull=True) | Q(green_api_state_changed_at__lt=asked_since)
    by_state: dict[str, list[int]] = {}
    for pk, state in run.states.items():
        by_state.setdefault(state, []).append(pk)
    for state, pks in by_state.items():  # one UPDATE per distinct state (a handful)
        Hotel.objects.filter(not_newer, pk__in=pks).update(
            green_api_state=state, green_api_state_changed_at=now
        )
    skipped = set(run.skipped)
    asked = [hotel.pk for hotel in run.asked if hotel.pk not in skipped]
    Hotel.objects.filter(pk__in=asked).update(green_api_state_checked_at=now)
