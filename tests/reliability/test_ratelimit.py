"""The shared rate limiter: N processes reserving slots never exceed the rate, in every store."""

from __future__ import annotations

import copy
import itertools
import multiprocessing
import queue
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.module_loading import import_string

from reliability.ratelimit import DatabaseSlots, MemorySlots, RateLimiter, RedisSlots, Reservation, SlotStore

CTX = multiprocessing.get_context("fork")
PROCESSES = 6
RATE = 20.0
SECONDS = 1.5


def _assert_paced(slots: list[float], rate: float, seconds: float) -> None:
    slots.sort()
    interval = 1.0 / rate
    jitter = 1e-6  # float rounding (Redis: microseconds)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= interval - jitter, f"two grants {min(gaps):.4f}s apart"
    for i, start in enumerate(slots):  # no window of one second holds more than `rate` grants
        assert sum(1 for t in slots[i:] if t < start + 1.0 - 2 * jitter) <= rate
    assert len(slots) >= 0.8 * rate * seconds, f"only {len(slots)} grants: the limiter starves callers"


def _reserve_loop(make_store: Callable[[], SlotStore], key: str, results: Any) -> None:
    store = make_store()
    granted: list[float] = []
    denied = 0
    ends = time.time() + SECONDS
    while time.time() < ends:
        answer = store.reserve(key, 1.0 / RATE, 0.25)
        if answer.granted:
            assert answer.slot is not None
            granted.append(answer.slot)  # the limiter's grant, on the store's clock
            time.sleep(answer.wait)
        else:
            denied += 1
            time.sleep(min(answer.wait, 0.05))
    results.put((granted, denied))


def _run(make_store: Callable[[], SlotStore]) -> tuple[list[float], int]:
    key = f"green_api:1101:{uuid.uuid4().hex[:8]}"
    results: Any = CTX.Queue()
    procs = [CTX.Process(target=_reserve_loop, args=(make_store, key, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    granted: list[float] = []
    denied = 0
    try:
        for _ in procs:
            g, d = results.get(timeout=30)
            granted += g
            denied += d
    except queue.Empty:
        pytest.fail("a process did not report")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    return granted, denied


def test_memory_slots_pace_one_process_and_refuse_beyond_the_wait_bound() -> None:
    store = MemorySlots()
    grants = [store.reserve("k", 0.5, 1.0) for _ in range(4)]
    assert [g.granted for g in grants] == [True, True, True, False]
    assert [round(g.wait, 1) for g in grants] == [0.0, 0.5, 1.0, 1.5]  # the refusal says when
    assert store.reserve("other", 0.5, 1.0).wait == 0.0  # streams are independent


def test_limiter_falls_back_when_a_store_fails(caplog) -> None:
    class Broken:
        name = "redis"

        def reserve(self, key: str, interval: float, max_wait: float, count: int = 1) -> Reservation:
            raise redis.ConnectionError("refused")

    limiter = RateLimiter([Broken()])
    grant = limiter.reserve("k", rate=10, max_wait=1)
    assert (grant.granted, grant.store) == (True, "memory")
    assert "redis store unavailable" in caplog.text
    assert limiter.reserve("k", rate=10, max_wait=1).wait == pytest.approx(0.1, abs=0.01)


# --- shared stores: real processes ------------------------------------------------------------------
def _fresh_wrapper(settings_dict: dict[str, Any]) -> BaseDatabaseWrapper:
    backend = import_string(f"{settings_dict['ENGINE']}.base.DatabaseWrapper")
    return backend(settings_dict, alias="ratelimit_test")


@pytest.fixture
def db_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings of a database the child processes can open: PostgreSQL's test database (its table
    comes from the migrations), or for SQLite (in-memory in tests) a file with the table created."""
    from reliability.models import RateLimitSlot

    if connection.vendor == "postgresql":
        request.getfixturevalue("transactional_db")
        settings = copy.deepcopy(connection.settings_dict)
        settings.get("OPTIONS", {}).pop("pool", None)
        settings["CONN_MAX_AGE"] = 0
        yield settings
        return
    settings = copy.deepcopy(connection.settings_dict)
    settings["NAME"] = str(tmp_path / "ratelimit.sqlite3")
    # Our own file, not the test database: the forked processes inherit the unblocked state.
    with sqlite3.connect(settings["NAME"]) as db:
        db.execute(
            f"CREATE TABLE {RateLimitSlot._meta.db_table} (id integer PRIMARY KEY AUTOINCREMENT, "
            "name varchar(200) NOT NULL UNIQUE, next_at real NOT NULL)"
        )
    with request.getfixturevalue("django_db_blocker").unblock():
        yield settings


def _database_store(settings: dict[str, Any]) -> Callable[[], SlotStore]:
    def make() -> SlotStore:
        return DatabaseSlots(connection=_fresh_wrapper(copy.deepcopy(settings)))

    return make


@pytest.mark.slow
def test_database_slots_never_exceed_the_rate_across_processes(db_settings: dict[str, Any]) -> None:
    granted, denied = _run(_database_store(db_settings))
    _assert_paced(granted, RATE, SECONDS)
    assert denied > 0  # 6 processes want more than 20/s: the bound refuses the rest at once


@pytest.mark.slow
@pytest.mark.redis
def test_redis_slots_never_exceed_the_rate_across_processes(redis_url: str) -> None:
    prefix = f"test:rl:{uuid.uuid4().hex[:8]}"

    def make() -> SlotStore:
        return RedisSlots.from_url(redis_url, prefix=prefix)

    granted, denied = _run(make)
    _assert_paced(granted, RATE, SECONDS)
    assert denied > 0
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}:*"):
        assert 0 < client.pttl(key) <= 60_000  # slots expire: no key is left behind for good
        client.delete(key)
