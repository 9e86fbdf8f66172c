"""Django wiring of the circuit breakers: store from settings, config from the DB, events to rows.

``breaker(name)`` returns the process's breaker for a named dependency, created on first use with
the store chosen by settings and the thresholds of its ``BreakerConfig`` row. The store (``store()``,
built once per process on first use; also the default store of ``get_circuit_breaker``, so both
entry points return the same shared breaker) is, in order: Redis when ``BREAKER_REDIS_URL``
(default ``REDIS_URL``) is set, with the database store as its fallback while Redis is unreachable;
else the database store (alias ``BREAKER_DB_ALIAS``); per-process state only as the last resort
(both down) or with ``BREAKER_DB_STORE=false``.
Every ``BREAKER_CONFIG_REFRESH`` seconds (checked lazily, at most one indexed query per breaker per
interval, plain SQL for the row's version and override; the whole row through the ORM only when the
version moved on) the row is read: a new ``version`` applies the thresholds without a restart, and the staff
override on the row is the truth for the live state every time: a timed override is handed to the
store with its end (the store ends it on time, in every process), an override the shared store has
lost (Redis restarted without persistence, flushed) is re-asserted, and an override the row no longer
holds is ended. If the database is unreachable the last known config stays in force.

Every transition event is recorded where it arrives (``hotelbot_breaker_transitions_total``, the
``hotelbot_breaker_open`` gauge); the gauge is also set from the live state on every refresh, so a
process that learns of a transition from the shared store (reported by another process) agrees.

Transition events go to a queue drained by one daemon thread per process that writes
``BreakerEvent`` rows on its own connection: the protected call never waits for the database and a
caller's rolled-back transaction cannot swallow an event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from reliability.breaker import (
    OVERRIDE_STATES,
    BreakerStore,
    CircuitBreaker,
    InMemoryStore,
    State,
    TransitionEvent,
    add_global_listener,
    get_circuit_breaker,
)
from reliability.metrics import (
    BREAKER_STATE,
    BREAKER_STATE_CODES,
    BREAKER_TRANSITIONS,
    CIRCUIT_BREAKER_STATE,
)

logger = logging.getLogger(__name__)

_REJECTING = {State.OPEN, State.FORCED_OPEN}
#: An override within this many seconds of its end is left to the store to end (clocks differ a
#: little: the row's end is database time, the store's is Redis or process time).
_END_GRACE = 1.0

_Override = tuple[str, str, datetime | None]  # (mode, reason, until) of a row


@dataclass
class _Loaded:
    version: int
    next_check: float
    override: _Override | None = None  # the row's override last applied or seen by this process


_lock = threading.Lock()
_store: BreakerStore | None = None
_loaded: dict[str, _Loaded] = {}
_events: queue.Queue[TransitionEvent] = queue.Queue(maxsize=10_000)
_writer: threading.Thread | None = None
_writer_pid = 0
_db_down_logged = False


def process_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


def _make_store() -> BreakerStore:
    """Redis -> database -> process (no I/O here: stores connect on first use)."""
    from reliability.breaker.stores.database import DatabaseBreakerStore
    from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions

    options = RedisStoreOptions(prefix=settings.BREAKER_REDIS_PREFIX)
    database = DatabaseBreakerStore(settings.BREAKER_DB_ALIAS, options) if settings.BREAKER_DB_STORE else None
    url = settings.BREAKER_REDIS_URL
    if url:
        return RedisBreakerStore.from_url(url, options, fallback=database)
    return database if database is not None else InMemoryStore()


def store() -> BreakerStore:
    global _store
    with _lock:
        if _store is None:
            _store = _make_store()
            add_global_listener(_enqueue_event)
        return _store


def breaker(name: str) -> CircuitBreaker:
    """The breaker of dependency ``name`` with its current admin config (hot path: one dict lookup)."""
    loaded = _loaded.get(name)
    if loaded is not None and time.monotonic() < loaded.next_check:
        return get_circuit_breaker(name)
    return _refresh(name)


def apply_now(name: str) -> CircuitBreaker:
    """Re-read the config row at once and apply its override (after a staff edit in this process)."""
    return _refresh(name, staff_edit=True)


def _refresh(name: str, *, staff_edit: bool = False) -> CircuitBreaker:
    global _db_down_logged

    cb = get_circuit_breaker(name, store=store()) if name not in _loaded else get_circuit_breaker(name)
    loaded = _loaded.setdefault(name, _Loaded(version=0, next_check=0.0))
    loaded.next_check = time.monotonic() + settings.BREAKER_CONFIG_REFRESH
    try:
        head = _read_head(name)
        if head is not None and head[0] != loaded.version:
            _apply_config(cb, name, loaded)
        _db_down_logged = False
    except DatabaseError as e:
        if not _db_down_logged:
            logger.warning("breaker %s: config unavailable, keeping the last one: %s", name, e)
            _db_down_logged = True
        return cb
    if head is None:
        _set_gauge(name, cb.state)
        return cb
    _apply_mode(cb, head[1], loaded, staff_edit=staff_edit)
    _set_gauge(name, cb.state)
    return cb


def _read_head(name: str) -> tuple[int, _Override] | None:
    """The row's ``version`` and staff override in one plain-SQL read (each refresh; every probe
    of the ``redis`` breaker): a fifth of the ORM's cost, which compiles the query each time. The
    whole row is read only when its version moved on."""
    from reliability.models import BreakerConfig

    table = connection.ops.quote_name(BreakerConfig._meta.db_table)  # our model's table, not input
    sql = f"SELECT version, mode, mode_reason, mode_until FROM {table} WHERE name = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [name])
        found = cursor.fetchone()
    if found is None:
        return None
    version, mode, reason, until = found
    if isinstance(until, str):  # SQLite hands datetimes over as text (UTC, naive)
        until = parse_datetime(until)
    if until is not None and timezone.is_naive(until):
        until = timezone.make_aware(until, UTC)
    return int(version), (str(mode), str(reason), until)


def _apply_config(cb: CircuitBreaker, name: str, loaded: _Loaded) -> None:
    from reliability.models import BreakerConfig

    row = BreakerConfig.objects.filter(name=name).first()
    if row is None:
        return
    try:
        cb.update_config(row.to_config())
    except ValueError as e:  # rows are validated in admin; a bad manual edit must not break calls
        logger.error("breaker %s: invalid config version %s ignored: %s", name, row.version, e)
    loaded.version = row.version


def _apply_mode(cb: CircuitBreaker, override: _Override, loaded: _Loaded, *, staff_edit: bool) -> None:
    """Make the live state agree with the row's staff override (on every refresh: the row is the truth).

    Active override: applied when the live state differs (first sight in this process, or the
    shared store lost it: re-asserted), or re-applied after a staff edit of its reason or end.
    Ended or cleared override still live: ended (the store normally ends a timed one by itself).
    """
    from reliability.models import BreakerConfig

    mode, mode_reason, mode_until = override
    now = timezone.now()
    state = cb.state  # ends an override whose time is up, in stores that keep the end
    edited, loaded.override = override != loaded.override, override
    if BreakerConfig.mode_in_force(mode, mode_until, now):
        target = State(mode)
        left = None if mode_until is None else (mode_until - now).total_seconds()
        if state == target and not (staff_edit and edited):
            return
        if not (edited or staff_edit) and left is not None and left < _END_GRACE:
            return  # the store ended it a moment early by its clock: not lost
        kind = "admin" if edited or staff_edit else "admin (re-asserted)"  # unchanged row: store lost it
        reason = f"{kind}: {mode_reason}"[:200]
        if target == State.FORCED_OPEN:
            cb.force_open(reason, until=mode_until)
        elif target == State.DISABLED:
            cb.disable(reason, until=mode_until)
        else:
            cb.metrics_only(reason, until=mode_until)
        return
    if state not in OVERRIDE_STATES:
        return
    if mode == BreakerConfig.Mode.AUTO:
        cb.force_close("admin: override cleared")
        return
    if mode_until is not None and (now - mode_until).total_seconds() < _END_GRACE:
        return  # ended by the row's clock a moment ago: the store ends it by its own
    if state == State.FORCED_OPEN:  # a force-open ends in HALF_OPEN, as when the store ends it
        cb.force_open("admin: override ended", until=now)
        _ = cb.state  # reading the state makes the store end it now
    else:
        cb.force_close("admin: override ended")


def _set_gauge(name: str, state: State) -> None:
    BREAKER_STATE.labels(breaker=name).set(1 if state in _REJECTING else 0)
    CIRCUIT_BREAKER_STATE.labels(breaker=name).set(BREAKER_STATE_CODES[state.value])


# --- events -> metrics and BreakerEvent rows ------------------------------------------------------
def _enqueue_event(event: TransitionEvent) -> None:
    """Global listener: every transition this process makes or infers is counted and becomes a row."""
    global _writer, _writer_pid
    BREAKER_TRANSITIONS.labels(breaker=event.name, to_state=str(event.to_state)).inc()
    _set_gauge(event.name, event.to_state)
    logger.info(
        "breaker %s: %s -> %s (%s)",
        event.name,
        event.from_state,
        event.to_state,
        event.reason,
        extra={
            "breaker": event.name,
            "dependency": event.name,
            "state": str(event.to_state),
            "from_state": str(event.from_state),
        },
    )
    try:
        _events.put_nowait(event)
    except queue.Full:
        logger.error(
            "breaker event queue full; dropped %s %s->%s", event.name, event.from_state, event.to_state
        )
        return
    if not settings.BREAKER_EVENT_WRITER:
        return  # events wait for write_pending_events() (tests)
    pid = os.getpid()
    if _writer is None or _writer_pid != pid or not _writer.is_alive():  # first event, or after fork
        with _lock:
            if _writer is None or _writer_pid != pid or not _writer.is_alive():
                _writer = threading.Thread(target=_write_events_forever, name="breaker-events", daemon=True)
                _writer_pid = pid
                _writer.start()


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def write_pending_events(*, block: float = 0.0) -> int:
    """Write queued events as rows; returns how many. Keeps them queued if the database is down."""
    from reliability.models import BreakerEvent

    batch: list[TransitionEvent] = []
    try:
        batch.append(_events.get(timeout=block) if block else _events.get_nowait())
        while len(batch) < 500:
            batch.append(_events.get_nowait())
    except queue.Empty:
        pass
    if not batch:
        return 0
    label = process_label()
    rows = [
        BreakerEvent(
            breaker=e.name,
            from_state=str(e.from_state),
            to_state=str(e.to_state),
            reason=e.reason[:300],
            failure_rate=e.failure_rate,
            slow_call_rate=e.slow_call_rate,
            source=e.source,
            process=label,
            at=_timestamp(e.at) or timezone.now(),
            open_until=_timestamp(e.open_until),
        )
        for e in batch
    ]
    try:
        BreakerEvent.objects.bulk_create(rows)
    except DatabaseError as e:
        logger.warning("could not store %d breaker events yet: %s", len(rows), e)
        for event in batch:
            try:
                _events.put_nowait(event)
            except queue.Full:
                break
        raise
    return len(rows)


def _write_events_forever() -> None:
    while True:
        try:
            write_pending_events(block=1.0)
        except DatabaseError:
            time.sleep(2.0)
        except Exception:  # never let the writer die
            logger.exception("breaker event writer failed")
            time.sleep(2.0)
        with contextlib.suppress(Exception):  # a broken connection is replaced on next use
            close_old_connections()
