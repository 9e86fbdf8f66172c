"""Client-side pacing of calls to a rate-limited dependency, shared by every process.

A *stream* is a named call sequence with its own rate (``"green_api:1101000001:sendMessage"`` at
40/s). Each call reserves the stream's next free slot: slots are ``1/rate`` apart, so no window of
one second ever holds more than ``rate`` calls, whichever processes make them. The reservation is
one atomic step in a shared store, and the caller then sleeps until its slot. If the next free slot
is further away than ``max_wait``, nothing is reserved and the caller gets a denial with the time
until a slot frees up: a job reschedules instead of holding a worker.

Stores, best first (the first that answers is used; a failed store is retried after a few seconds):

* Redis (``RATE_LIMIT_REDIS_URL``, default ``BREAKER_REDIS_URL`` / ``REDIS_URL``): one Lua script
  (``lua/reserve_slot.lua``) timed by Redis ``TIME``, so processes never compare clocks.
* The Django database: one conditional ``UPDATE ... RETURNING`` on a small table
  (:class:`~reliability.models.RateLimitSlot`), the same on SQLite and PostgreSQL. Uses the
  processes' wall clocks (keep them NTP-synced). Call it outside a transaction: inside one, the row
  lock is held until commit.
* Per process, the last resort when both are down: then each process paces only itself.

This module knows stream names and rates, nothing about who calls: callers choose the names.

**Server-side limits** (:func:`admit`) reuse the same slots as a GCRA ("generic cell rate"
algorithm): a request is admitted at once when the stream's next free slot is at most
``(burst - 1)`` intervals away, so a client may send ``burst`` requests together and then
``rate`` per second; a refused request reserves nothing and learns when it may retry. Stores:
Redis (``RATE_LIMIT_REDIS_URL``, keys under ``RATE_LIMIT_REDIS_PREFIX:in``), else per process,
and **per process while Redis is down**: limits keep limiting (each process enforces the full
rate on its own, so the cluster admits at most ``processes x rate``), and the shared store is
asked again every ``RETRY_STORE_AFTER`` seconds. Not the database: a write per API call or
webhook would load the one dependency every request needs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis
from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from redis.backoff import NoBackoff
from redis.retry import Retry

from reliability.metrics import (
    FALLBACK_USAGE,
    RATE_LIMIT_CALLS,
    RATE_LIMIT_INBOUND,
    RATE_LIMIT_WAIT_SECONDS,
)

logger = logging.getLogger(__name__)

_LUA = (Path(__file__).resolve().parent / "lua" / "reserve_slot.lua").read_text()
#: A store that failed is asked again after this many seconds (not on every call).
RETRY_STORE_AFTER = 2.0


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to a reservation. ``wait``: granted, seconds until the slot; denied, seconds
    until the next free slot (a retry-after hint)."""

    granted: bool
    wait: float
    store: str
    count: int = 1  # slots reserved (``count`` asked for: as many as fit, at least one when granted)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A store's answer: ``slot`` is the granted slot on the store's clock (None when refused)."""

    granted: bool
    wait: float
    slot: float | None
    count: int = 1


class SlotStore(Protocol):
    name: str

    def reserve(self, key: str, interval: float, max_wait: float, count: int = 1) -> Reservation:
        """Atomically reserve the stream's next slot if it is at most ``max_wait`` away, and with it
        as many of the following ``count - 1`` slots as are at most ``max_wait`` away too."""
        ...


class MemorySlots:
    """Per-process slots (the last resort, and unit tests)."""

    name = "memory"
    #: Streams kept before the ones whose slot is in the past (they hold no state) are dropped.
    PRUNE_AT = 10_000

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._prune_at = self.PRUNE_AT
        self._clock = clock

    def reserve(self, key: str, interval: float, max_wait: float, count: int = 1) -> Reservation:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(key, 0.0))
            wait = slot - now
            if wait > max_wait:
                return Reservation(False, wait, None)
            count = max(1, min(count, int((max_wait - wait) / interval) + 1))
            self._next[key] = slot + count * interval
            if len(self._next) > self._prune_at:  # one stream per client IP: keep memory bounded
                self._next = {k: v for k, v in self._next.items() if v > now}
                self._prune_at = max(self.PRUNE_AT, 2 * len(self._next))
            return Reservation(True, wait, slot, count)


class RedisSlots:
    """Shared slots in Redis: one EVALSHA per reservation."""

    name = "redis"

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, socket_timeout: float = 0.5) -> RedisSlots:
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(client, prefix=prefix)

    def reserve(self, key: str, interval: float, max_wait: float, count: int = 1) -> Reservation:
        interval_us = max(1, round(interval * 1e6))
        ttl_ms = max(60_000, round(interval * 2000 * count) + round(max_wait * 1000))
        granted, wait_us, slot_us, reserved = self._script(
            keys=[f"{self._prefix}:{{{key}}}"], args=[interval_us, round(max_wait * 1e6), ttl_ms, count]
        )
        slot = int(slot_us) / 1e6 if granted else None
        return Reservation(bool(granted), int(wait_us) / 1e6, slot, int(reserved))


class DatabaseSlots:
    """Shared slots in the Django database: one conditional UPDATE per reservation."""

    name = "database"

    def __init__(self, connection: BaseDatabaseWrapper | None = None) -> None:
        # A connection wrapper other than the default one (tests use a second database file).
        self._connection = connection

    def _conn(self) -> BaseDatabaseWrapper:
        if self._connection is not None:
            return self._connection
        from django.db import connection

        return connection  # the default alias's wrapper

    def reserve(self, key: str, interval: float, max_wait: float, count: int = 1) -> Reservation:
        """One slot at a time (``count`` is not used: paced callers ask for one)."""
        from reliability.models import RateLimitSlot

        conn = self._conn()
        table = conn.ops.quote_name(RateLimitSlot._meta.db_table)
        if conn.vendor == "postgresql":
            # The server's clock, read after the row lock is granted (a waiting UPDATE re-evaluates
            # its SET list on the locked row): every host paces on one clock.
            now, greatest, lock_first = "EXTRACT(EPOCH FROM clock_timestamp())::float8", "GREATEST", False
        else:
            # SQLite: take the write lock first, then read the clock, so a caller that waited for
            # the lock is not handed a slot in the past.
            now, greatest, lock_first = "%(now)s", "MAX", not conn.in_atomic_block
        # The slot granted is max(next_at, now); the row then holds the one after it.
        update = (
            f"UPDATE {table} SET next_at = {greatest}(next_at, {now}) + %(interval)s "  # noqa: S608
            f"WHERE name = %(key)s AND next_at <= {now} + %(max_wait)s RETURNING next_at, {now}"
        )
        select = f"SELECT next_at, {now} FROM {table} WHERE name = %(key)s"  # noqa: S608
        insert = f"INSERT INTO {table} (name, next_at) VALUES (%(key)s, 0) ON CONFLICT (name) DO NOTHING"  # noqa: S608
        for _ in range(2):
            current = None
            with conn.cursor() as cursor:
                if lock_first:
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    params: dict[str, float | str] = {"interval": interval, "key": key, "max_wait": max_wait}
                    if conn.vendor != "postgresql":
                        params["now"] = time.time()
                    cursor.execute(update, params)
                    row = cursor.fetchone()
                    if row is None:
                        cursor.execute(select, params)
                        current = cursor.fetchone()
                        if current is None:  # first call of this stream anywhere: create its row
                            cursor.execute(insert, params)
                except BaseException:
                    if lock_first:
                        cursor.execute("ROLLBACK")
                    raise
                if lock_first:
                    cursor.execute("COMMIT")
            if row is not None:
                slot = float(row[0]) - interval
                return Reservation(True, max(0.0, slot - float(row[1])), slot)
            if current is not None:
                return Reservation(False, max(0.0, float(current[0]) - float(current[1])), None)
        raise RuntimeError(f"rate-limit row for {key!r} vanished while reserving")


_PACING_FALLBACK = {"memory": "process_pacing", "database": "database_pacing"}


class RateLimiter:
    """Reserve slots in the first store that answers (Redis, database, per process)."""

    def __init__(self, stores: list[SlotStore]) -> None:
        self._stores = [*stores, MemorySlots()] if not any(s.name == "memory" for s in stores) else stores
        self._down_until: dict[str, float] = {}
        self._sleep = time.sleep

    def reserve(self, key: str, *, rate: float, max_wait: float, count: int = 1) -> Grant:
        """Reserve a slot of stream ``key`` paced at ``rate`` calls/s (and up to ``count - 1``
        following ones, see :meth:`SlotStore.reserve`); nothing is slept here."""
        interval = 1.0 / rate
        for store in self._stores:
            if time.monotonic() < self._down_until.get(store.name, 0.0):
                continue
            try:
                answer = store.reserve(key, interval, max_wait, count)
            except Exception as e:  # a pacing store must never fail the call it paces
                if store.name not in self._down_until:
                    logger.warning("rate limiter: %s store unavailable, falling back: %s", store.name, e)
                self._down_until[store.name] = time.monotonic() + RETRY_STORE_AFTER
                continue
            if store.name in self._down_until:
                logger.info("rate limiter: %s store answers again", store.name)
                del self._down_until[store.name]
            return Grant(answer.granted, answer.wait, store.name, answer.count)
        raise AssertionError("the memory store always answers")  # pragma: no cover

    def acquire(self, key: str, *, rate: float, max_wait: float) -> Grant:
        """Reserve a slot and sleep until it (at most ``max_wait``), or return the denial at once."""
        grant = self.reserve(key, rate=rate, max_wait=max_wait)
        stream = key.split(":", 1)[0]
        RATE_LIMIT_CALLS.labels(stream, "granted" if grant.granted else "denied", grant.store).inc()
        if grant.store != self._stores[0].name:  # the first store (shared pacing) did not answer
            FALLBACK_USAGE.labels(stream, _PACING_FALLBACK.get(grant.store, f"{grant.store}_pacing")).inc()
        if grant.granted:
            RATE_LIMIT_WAIT_SECONDS.labels(stream).observe(grant.wait)
            if grant.wait > 0:
                self._sleep(grant.wait)
        return grant


class _PerProcess:
    """A limiter built from settings on first use in each process, and again after a fork."""

    def __init__(self, build: Callable[[], RateLimiter]) -> None:
        self.build = build
        self.lock = threading.Lock()
        self.limiter: RateLimiter | None = None
        self.pid = 0

    def get(self) -> RateLimiter:
        limiter = self.limiter
        if limiter is None or self.pid != os.getpid():
            with self.lock:
                if self.limiter is None or self.pid != os.getpid():
                    self.limiter, self.pid = self.build(), os.getpid()
                limiter = self.limiter
        return limiter


def _build() -> RateLimiter:
    stores: list[SlotStore] = []
    if settings.RATE_LIMIT_REDIS_URL:
        stores.append(
            RedisSlots.from_url(settings.RATE_LIMIT_REDIS_URL, prefix=settings.RATE_LIMIT_REDIS_PREFIX)
        )
    stores.append(DatabaseSlots())
    return RateLimiter(stores)


_limiter = _PerProcess(lambda: _build())


def limiter() -> RateLimiter:
    """The process's limiter, built from settings on first use (and again after a fork)."""
    return _limiter.get()


def acquire(key: str, *, rate: float, max_wait: float) -> Grant:
    """Pace a call of stream ``key``; ``rate <= 0`` means unpaced (always granted, no wait)."""
    if rate <= 0:
        return Grant(True, 0.0, "off")
    return limiter().acquire(key, rate=rate, max_wait=max_wait)


# --- Server-side limits on incoming requests --------------------------------------------------
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` sustained, ``burst`` at once (at least 1)."""

    per_second: float
    burst: int

    @classmethod
    def parse(cls, text: str | None, *, burst: int | None = None) -> Rate | None:
        """DRF's rate syntax (``"600/min"``, ``"100/s"``, ``"5/hour"``, ``"1000/day"``); empty,
        ``"off"`` or ``"0/..."`` means unlimited (None). The burst defaults to the count, so
        ``"600/min"`` allows 600 at once, then one every 0.1 s (DRF's window, without its edge)."""
        text = (text or "").strip().lower()
        if text in ("", "off", "none"):
            return None
        count_text, _, unit = text.partition("/")
        try:
            count = int(count_text)
            seconds = _UNITS[unit[:1]]
        except (ValueError, KeyError):
            raise ValueError(f"invalid rate {text!r}: expected e.g. '100/s', '600/min', '5/hour'") from None
        if count <= 0:
            return None
        return cls(per_second=count / seconds, burst=max(1, burst if burst is not None else count))


@dataclass(frozen=True, slots=True)
class Admission:
    """A server-side decision; ``retry_after`` (seconds) when refused."""

    allowed: bool
    retry_after: float
    store: str


def _build_inbound() -> RateLimiter:
    stores: list[SlotStore] = []
    if settings.RATE_LIMIT_REDIS_URL:
        stores.append(
            RedisSlots.from_url(
                settings.RATE_LIMIT_REDIS_URL, prefix=f"{settings.RATE_LIMIT_REDIS_PREFIX}:in"
            )
        )
    return RateLimiter(stores)


_inbound = _PerProcess(lambda: _build_inbound())


def inbound_limiter() -> RateLimiter:
    """The process's server-side limiter: Redis when configured, then per process."""
    return _inbound.get()


#: Held slots lapse this many seconds after they were reserved (or when the span they cover has
#: passed, if later): a slot spent later than its time would add to a later burst.
LEASE_LAPSE = 1.0


class _Leases:
    """Slots a process reserved ahead for a stream (``admit(lease=n)``), spent without I/O.

    Each was reserved in the store like any other, within the burst tolerance; one spent after its
    time is credit the limit would not have given then, so a process holds at most ``lease - 1``
    and they lapse after LEASE_LAPSE: the cluster admits at most the limit plus ``lease - 1`` per
    process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, float, str]] = {}  # key -> (slots left, lapse at, store)
        self.clock = clock

    def take(self, key: str) -> str | None:
        """Spend one held slot of ``key``: the store it came from, or None when none is held."""
        with self._lock:
            held = self._held.pop(key, None)
            if held is None:
                return None
            left, lapse_at, store = held
            if self.clock() >= lapse_at:
                return None
            if left > 1:
                self._held[key] = (left - 1, lapse_at, store)
            return store

    def hold(self, key: str, slots: int, *, lapse_at: float, store: str) -> None:
        with self._lock:
            self._held[key] = (slots, lapse_at, store)


_leases = _Leases()


def admit(*, scope: str, client: str, rate: Rate | None, lease: int = 1) -> Admission:
    """May ``client`` make one more request in ``scope`` (``api_read``, ``webhook``, ...)?

    One atomic step in the store; nothing is slept. ``lease > 1``: the step reserves up to that
    many slots (as many as the burst tolerance holds), and this process admits the next requests
    from them without asking the store, until they run out or lapse (``_Leases``): one store call
    per ``lease`` requests, for a stream that runs hot on few keys (the webhook, per Green API
    instance), at the price of up to ``lease - 1`` requests per process above the limit.
    Recorded in ``hotelbot_inbound_rate_limit_total`` (and ``fallback_usage_total{dependency=
    "redis", fallback="process_rate_limit"}`` when Redis is configured but did not answer).
    """
    if rate is None:
        return Admission(True, 0.0, "off")
    key = f"{scope}:{client}"
    held = _leases.take(key) if lease > 1 else None
    if held is not None:
        RATE_LIMIT_INBOUND.labels(scope, "allowed", held).inc()
        return Admission(True, 0.0, held)
    interval = 1.0 / rate.per_second
    tolerance = (rate.burst - 1) * interval
    limiter_ = inbound_limiter()
    grant = limiter_.reserve(key, rate=rate.per_second, max_wait=tolerance, count=max(1, lease))
    RATE_LIMIT_INBOUND.labels(scope, "allowed" if grant.granted else "limited", grant.store).inc()
    if grant.store == "memory" and settings.RATE_LIMIT_REDIS_URL:
        FALLBACK_USAGE.labels("redis", "process_rate_limit").inc()
    if grant.granted:
        if grant.count > 1:
            span = grant.wait + grant.count * interval
            lapse_at = _leases.clock() + max(span, LEASE_LAPSE)
            _leases.hold(key, grant.count - 1, lapse_at=lapse_at, store=grant.store)
        return Admission(True, 0.0, grant.store)
    return Admission(False, max(interval, grant.wait - tolerance), grant.store)
