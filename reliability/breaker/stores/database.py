"""Cluster-wide circuit-breaker state in the Django database (SQLite in WAL mode, or PostgreSQL).

The store when Redis is not configured, and the Redis store's fallback while Redis is unreachable
(order: Redis -> database -> per process). It has the Redis store's semantics because it *is* the
Redis store's client side (:class:`~reliability.breaker.stores.redis.RedisBackend`: cached state,
batched successes, failures sent at once, probe leases, per-process stand-in and reconcile); only
``run`` differs. Each operation (``record``, ``acquire``, ``release``, ``command``, and the
fallback's ``seed``/``handover``) is one short transaction on the breaker's ``BreakerState`` row:

    BEGIN (IMMEDIATE on SQLite: the write lock is taken at BEGIN, so decisions are serialised)
    SELECT data [, clock_timestamp()] FROM reliability_breakerstate WHERE name = %s [FOR UPDATE]
    -- the Lua script's rules, in Python (stores/rules.py), on the row's JSON state
    UPDATE reliability_breakerstate SET ... WHERE name = %s        (only when something changed)
    COMMIT

Hot path: admission while CLOSED and rejection while OPEN use the cached state (no database round
trip); the cache is refreshed every ``sync_interval`` (0.5 s, piggybacked on a flush), so a trip
reaches every calling process within ~0.5 s. Successes are sent in batches (``flush_every`` calls or
``flush_interval`` seconds, 0.5: the refresh's); a failure or slow call is sent at once.

Connection. The store runs on its own database alias (``BREAKER_DB_ALIAS``, ``"breaker"``: the same
database as ``default``, its own connection per thread) inside ``transaction.atomic(durable=True)``.
A breaker decision therefore never joins a caller's ``atomic`` block: a caller's rollback cannot
undo a trip, a caller's open transaction does not hold the breaker row's lock for its whole
duration, and ``durable=True`` turns any misconfiguration that would nest it into an error that is
logged (the store is then treated as unavailable) rather than a silent savepoint. SQLite has a
single writer: when the calling thread is itself inside an ``atomic`` block on the same file (it
holds the write lock: IMMEDIATE transactions), the store does not wait for a lock it can never get
but decides in process and reconciles into the row once the store is retried (1-2 s). The reply
pipeline calls providers outside transactions, so this is the exception, not the rule.

Clock. On PostgreSQL every decision uses the server's ``clock_timestamp()``, read in the locking
``SELECT`` (no extra round trip), so processes on different hosts never compare clocks. On SQLite
the database is embedded: every process sharing it runs on the same host, and the host's wall clock
(``wall_clock``, ``time.time``) is the database's clock.

Database unreachable: the first failure logs one warning; the breakers then run per process
(seeded with the last shared view) and the database is retried every 1-2 s; when it answers the
per-process state is reconciled into the row, as the Redis store does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import Error as DjangoDatabaseError
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from reliability.breaker.machine import Clock
from reliability.breaker.stores.redis import (
    RedisStoreOptions,
    SharedStore,
    StoreUnavailable,
    _Reply,
)
from reliability.breaker.stores.rules import execute

__all__ = ["DatabaseBreakerStore"]

_OPEN = ("open", "forced_open")


class DatabaseBreakerStore(SharedStore):
    """Shared breaker state in the rows of ``reliability.BreakerState`` on database alias ``using``.

    ``options`` are the Redis store's (``prefix`` and ``key_ttl`` are unused: the row is keyed by
    the breaker's name and never expires).
    """

    source = "database"
    label = "database"

    def __init__(
        self,
        using: str = "default",
        options: RedisStoreOptions | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        super().__init__(options, clock=clock, wall_clock=wall_clock)
        self.using = using
        self._sql: tuple[str, str, str, bool] | None = None

    def key(self, name: str) -> str:
        return name

    def run(self, script: str, key: str, args: Sequence[str]) -> _Reply:
        """Decide one operation in one transaction; raise :class:`StoreUnavailable` on any database error."""
        try:
            reply = self._run(script, key, args)
        except (DjangoDatabaseError, RuntimeError) as exc:
            self._went_down(exc)
            raise StoreUnavailable(str(exc)) from exc
        if self._down:
            self._came_back()
        return reply

    def _statements(self) -> tuple[str, str, str, bool]:
        """(lock, insert, update, server clock?) for this alias's database, built once."""
        if self._sql is None:
            from reliability.models import BreakerState

            conn = connections[self.using]
            table = conn.ops.quote_name(BreakerState._meta.db_table)
            server_clock = conn.vendor == "postgresql"
            clock = ", (extract(epoch from clock_timestamp()) * 1000)::bigint" if server_clock else ""
            lock = " FOR UPDATE" if conn.features.has_select_for_update else ""
            # Only the quoted table name is interpolated; every value is a query parameter.
            self._sql = (
                f"SELECT data{clock} FROM {table} WHERE name = %s{lock}",  # noqa: S608
                f"INSERT INTO {table} (name, state, epoch, open_until, data, updated_at) "  # noqa: S608
                "VALUES (%s, 'closed', 0, NULL, '{}', %s) ON CONFLICT (name) DO NOTHING",
                f"UPDATE {table} SET state = %s, epoch = %s, open_until = %s, data = %s, "  # noqa: S608
                "updated_at = %s WHERE name = %s",
                server_clock,
            )
        return self._sql

    def _run(self, script: str, key: str, args: Sequence[str]) -> _Reply:
        lock, insert, update, server_clock = self._statements()
        conn = connections[self.using]
        if conn.vendor == "sqlite":
            self._refuse_to_wait_for_this_thread(conn)
        with transaction.atomic(using=self.using, durable=True), conn.cursor() as cursor:
            cursor.execute(lock, [key])
            row = cursor.fetchone()
            if row is None:
                cursor.execute(insert, [key, conn.ops.adapt_datetimefield_value(self._now(None))])
                cursor.execute(lock, [key])
                row = cursor.fetchone()
            now_ms = int(row[1]) if server_clock else round(self.wall_clock() * 1000)
            state: dict[str, Any] = json.loads(row[0]) if row[0] else {}
            result, new = execute(script, state, args, now_ms)
            if new is not None:
                open_until = None
                if new["st"] in _OPEN and new["ou"] >= 0:
                    open_until = conn.ops.adapt_datetimefield_value(self._now(new["ou"]))
                cursor.execute(
                    update,
                    [
                        new["st"],
                        new["ep"],
                        open_until,
                        json.dumps(new, separators=(",", ":")),
                        conn.ops.adapt_datetimefield_value(self._now(now_ms)),
                        key,
                    ],
                )
        return _Reply(*result)

    def _refuse_to_wait_for_this_thread(self, conn: BaseDatabaseWrapper) -> None:
        """SQLite has one writer: if this thread's caller holds it (an ``atomic`` block on another
        alias of the same file, IMMEDIATE), waiting could only time out. Decide in process instead."""
        name = conn.settings_dict["NAME"]
        for other in connections.all(initialized_only=True):
            if other is not conn and other.in_atomic_block and other.settings_dict["NAME"] == name:
                raise OperationalError(
                    f"this thread's transaction on alias {other.alias!r} holds the SQLite write lock"
                )

    def _now(self, millis: int | None) -> datetime:
        seconds = self.wall_clock() if millis is None else millis / 1000.0
        return datetime.fromtimestamp(seconds, tz=UTC)

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, OperationalError | InterfaceError)

    def _drop_connections(self) -> None:
        conn = connections[self.using]
        if not conn.in_atomic_block:
            conn.close()  # this thread's; the next decision reconnects
