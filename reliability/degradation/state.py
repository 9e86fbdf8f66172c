"""The degradation state every process reads: a process-local snapshot of the one
``DegradationState`` row, re-read at most every ``DEGRADATION_REFRESH_SECONDS``; the questions code
asks on the hot path (``is_enabled``, ``under_maintenance``, ``snapshot().read_only``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.utils import timezone

from reliability.metrics import DEGRADATION_LEVEL
from reliability.models import (
    DegradationLevel,
    DegradationState,
    Switch,
)

logger = logging.getLogger(__name__)

Level = DegradationLevel
SWITCHES: tuple[str, ...] = tuple(Switch.values)
_KNOWN_SWITCHES = frozenset(SWITCHES)
STATE_PK = 1


def _name(level: int) -> str:
    return DegradationLevel(level).label


# --- the snapshot every process reads ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Snapshot:
    level: int = DegradationLevel.NORMAL
    switches_off: frozenset[str] = frozenset()
    maintenance: dict[str, float | None] = field(default_factory=dict)  # dependency -> end (unix) or None
    cause: str = ""
    since: datetime | None = None

    @property
    def read_only(self) -> bool:
        """Unsafe requests are refused: CRITICAL, or the ``writes`` switch off."""
        return self.level >= DegradationLevel.CRITICAL or Switch.WRITES in self.switches_off


_NORMAL = Snapshot()


@dataclass(slots=True)
class _Process:
    """What this process read last and when it reads again (a new one is a fresh process)."""

    snapshot: Snapshot = _NORMAL
    next_refresh: float = 0.0  # monotonic time of the next refresh; 0 = at the next call
    read_failed: bool = False


_process = _Process()
_refresh_lock = threading.Lock()
#: Injected in tests; must be monotonic.
clock: Callable[[], float] = time.monotonic


def is_enabled(switch: str) -> bool:
    """Is feature ``switch`` on? No I/O unless the snapshot is older than the refresh interval."""
    if switch not in _KNOWN_SWITCHES:
        raise ValueError(f"unknown degradation switch {switch!r} (known: {', '.join(SWITCHES)})")
    snap = _process.snapshot if clock() < _process.next_refresh else _refresh()
    return switch not in snap.switches_off


def snapshot() -> Snapshot:
    """The state in force in this process (refreshed at most every DEGRADATION_REFRESH_SECONDS)."""
    return _process.snapshot if clock() < _process.next_refresh else _refresh()


def under_maintenance(dependency: str) -> bool:
    """Is ``dependency`` under staff maintenance? Its work must wait (treat it like a forced-open breaker)."""
    snap = _process.snapshot if clock() < _process.next_refresh else _refresh()
    if dependency not in snap.maintenance:
        return False
    until = snap.maintenance[dependency]
    return until is None or until > time.time()


def prime() -> BaseException | None:
    """Refresh the snapshot if it is due and return the database error the read met (None when
    it was fresh, read fine, or another thread is refreshing). The database breaker middleware
    calls it first, so a request that meets a database outage here is answered 503 at once
    instead of waiting a second pool timeout in its view."""
    if clock() < _process.next_refresh:
        return None
    error: list[BaseException] = []
    _refresh(errors=error)
    return error[0] if error else None


def refresh_now() -> Snapshot:
    """Re-read the row at once (after a change made in this process)."""
    return _refresh(force=True)


def _refresh(*, force: bool = False, errors: list[BaseException] | None = None) -> Snapshot:
    process = _process
    if not _refresh_lock.acquire(blocking=force):
        return process.snapshot  # another thread is refreshing: the current snapshot is good enough
    try:
        process.next_refresh = clock() + settings.DEGRADATION_REFRESH_SECONDS
        try:
            row = _read_row()
        except Exception as e:  # database down, not migrated, or not allowed (tests): keep the last one
            if errors is not None and isinstance(e, DatabaseError | InterfaceError):
                errors.append(e)
            if not process.read_failed:
                logger.warning("degradation state unavailable, keeping the last one: %s", e)
                process.read_failed = True
            return process.snapshot
        process.read_failed = False
        process.snapshot = _NORMAL if row is None else _from_row(row, timezone.now())
        DEGRADATION_LEVEL.set(process.snapshot.level)
        return process.snapshot
    finally:
        _refresh_lock.release()


_FIELDS = (
    "level",
    "switches_off",
    "maintenance",
    "cause",
    "since",
    "override_level",
    "override_until",
    "auto_level",
    "auto_switches_off",
    "auto_cause",
)


def _read_row() -> dict[str, Any] | None:
    query = DegradationState.objects.filter(pk=STATE_PK).values(*_FIELDS)
    if connection.in_atomic_block:  # a failed read must not doom the caller's transaction
        with transaction.atomic():
            return query.first()
    return query.first()


def _from_row(row: dict[str, Any], now: datetime) -> Snapshot:
    level, switches, cause = row["level"], row["switches_off"], row["cause"]
    ended = row["override_level"] is not None and row["override_until"] is not None
    if ended and row["override_until"] <= now:
        # The override's time is up: the rules' state is in force now, in every process (the
        # evaluator records the change on its next run).
        level, switches, cause = row["auto_level"], row["auto_switches_off"], row["auto_cause"]
    maintenance: dict[str, float | None] = {}
    for dependency, until in row["maintenance"] or []:
        maintenance[str(dependency)] = None if until is None else float(until)
    return Snapshot(
        level=int(level),
        switches_off=frozenset(str(s) for s in switches or []),
        maintenance=maintenance,
        cause=str(cause),
        since=row["since"],
    )
