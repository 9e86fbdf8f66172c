"""The infrastructure checks: the database, Redis (or the local cache), the broker, the workers,
the beat's heartbeats, dead letters, breakers, degradation, disk and memory, and a check made of a
function (what other apps register)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections, transaction
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from reliability.health.probe import (
    _CACHE_PREFIX,
    TimedCheck,
    _age,
    _ms,
    host_port,
)

logger = logging.getLogger(__name__)


# --- infrastructure checks ---------------------------------------------------------------------------
@dataclasses.dataclass(repr=False)
class DatabaseCheck(TimedCheck):
    """``SELECT 1`` on a database alias; on PostgreSQL under ``SET LOCAL statement_timeout``."""

    alias: str = "default"

    @property
    def name(self) -> str:
        return "database" if self.alias == "default" else f"database:{self.alias}"

    def _where(self) -> str:
        db = settings.DATABASES.get(self.alias) or connections.settings.get(self.alias) or {}
        engine = str(db.get("ENGINE", ""))
        if engine.endswith("sqlite3"):
            return f"SQLite {Path(str(db.get('NAME', ''))).name or 'database'}"
        kind = "PostgreSQL" if "postgresql" in engine else engine.rsplit(".", 1)[-1]
        return f"{kind} at {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME', '')}"

    def probe(self) -> str:
        conn = connections[self.alias]
        millis = max(1, round(settings.HEALTH_CHECK_TIMEOUT * 1000))
        # PostgreSQL: SET LOCAL (set_config(..., true)) needs a transaction and ends with it, so a
        # pooled connection goes back unchanged. SQLite: no transaction (BEGIN IMMEDIATE would take
        # the write lock just to read).
        postgres = conn.vendor == "postgresql"
        try:
            scope = transaction.atomic(using=self.alias) if postgres else contextlib.nullcontext()
            with scope, conn.cursor() as cursor:
                if postgres:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{millis}ms"])
                cursor.execute("SELECT 1")
                row = cursor.fetchone()
        except DatabaseError as e:
            first_line = (str(e).strip().splitlines() or [""])[0][:200]
            raise ServiceUnavailable(
                f"{self._where()} failed: {type(e).__name__}: {first_line}. Check the database service "
                "(pg_isready, its logs, max_connections); while it is down the webhook answers 503 "
                "and Green API redelivers"
            ) from e
        if row is None or row[0] != 1:
            raise ServiceUnavailable(f"{self._where()} answered SELECT 1 with {row!r}")
        return f"{self._where()} answered"

    def timeout_message(self, seconds: float) -> str:
        return (
            f"{self._where()} did not answer within {_ms(seconds)}: timeout. Check the database service "
            "(pg_isready, locks, CPU, connection limit); while it hangs webhooks answer 503 and Green "
            "API redelivers"
        )


@dataclasses.dataclass(repr=False)
class RedisCheck(TimedCheck):
    """``PING`` with socket timeouts of the check's deadline."""

    critical: ClassVar[bool] = False  # breakers, pacing and the cache fall back without it
    url: str = dataclasses.field(default="", repr=False)
    role: str = "redis"

    @property
    def name(self) -> str:
        return self.role

    def _consequence(self) -> str:
        return "breakers and pacing fall back to the database, the cache is skipped"

    def probe(self) -> str:
        import redis

        timeout = settings.HEALTH_CHECK_TIMEOUT
        client = redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        where = host_port(self.url)
        try:
            client.ping()
        except redis.TimeoutError as e:
            raise ServiceUnavailable(self.timeout_message(timeout)) from e
        except redis.RedisError as e:
            raise ServiceUnavailable(
                f"Redis at {where} is unreachable ({type(e).__name__}): check the redis service; "
                f"{self._consequence()}"
            ) from e
        finally:
            client.close()
        return f"Redis at {where} answered PING"

    def timeout_message(self, seconds: float) -> str:
        return (
            f"Redis at {host_port(self.url)} did not answer within {_ms(seconds)}: timeout. Check the "
            f"redis service (redis-cli -h ... ping, memory, persistence stalls); {self._consequence()}"
        )


@dataclasses.dataclass(repr=False)
class LocalCacheCheck(TimedCheck):
    """Set and get a key in the Django cache (the embedded default's local-memory cache)."""

    check_name: ClassVar[str] = "cache"
    critical: ClassVar[bool] = False

    def probe(self) -> str:
        key, value = f"{_CACHE_PREFIX}probe:{threading.get_ident()}", str(time.time())
        cache.set(key, value, timeout=10)
        if cache.get(key) != value:
            raise ServiceUnavailable("the Django cache did not return the value just stored")
        backend = str(settings.CACHES["default"]["BACKEND"]).rsplit(".", 1)[-1]
        return f"Django cache ({backend}) works"


@dataclasses.dataclass(repr=False)
class BrokerCheck(TimedCheck):
    """Connect to the Celery broker with the request path's short timeouts (``reliability.broker``)."""

    check_name: ClassVar[str] = "broker"
    critical: ClassVar[bool] = False  # workers take due replies from the database meanwhile

    def _where(self) -> str:
        from celery import current_app

        url = str(current_app.conf.broker_url or "")
        scheme = url.split("://", 1)[0]
        if scheme in ("hotelfs", "filesystem", "memory"):
            return f"broker {scheme}://"
        return f"broker {scheme}://{host_port(url)}"

    def probe(self) -> str:
        from celery import current_app

        from reliability.broker import request_path_transport_options

        timeout = settings.HEALTH_CHECK_TIMEOUT
        options = request_path_transport_options()
        options.update(
            socket_timeout=timeout, socket_connect_timeout=timeout, connect_retries_timeout=timeout
        )
        connection = current_app.connection_for_write(transport_options=options, connect_timeout=timeout)
        try:
            connection.connect()
        except Exception as e:
            raise ServiceUnavailable(
                f"{self._where()} refused or failed the connection ({type(e).__name__}): check the broker "
                "service; new replies wait in the database and the sweeper publishes them when it is back"
            ) from e
        finally:
            connection.collect()
        return f"{self._where()} accepted a connection"

    def timeout_message(self, seconds: float) -> str:
        return (
            f"{self._where()} did not answer within {_ms(seconds)}: timeout. Check the broker service; "
            "new replies wait in the database and the sweeper publishes them when it is back"
        )


def ping_workers(timeout: float) -> list[str]:
    """Names of the Celery workers that answered a broadcast ping."""
    from celery import current_app

    answers = current_app.control.ping(timeout=timeout) or []
    return sorted(name for answer in answers for name in answer)


@dataclasses.dataclass(repr=False)
class WorkerCheck(TimedCheck):
    """At least one Celery worker answers a ping (cached: a ping waits for every worker's answer)."""

    check_name: ClassVar[str] = "celery_workers"
    cached: ClassVar[bool] = True
    # A ping needs the broker: workers answering from the database while it is away would fail it.
    # Replies no longer taken show in the (critical) reply backlog.
    critical: ClassVar[bool] = False

    def probe(self) -> str:
        timeout = settings.HEALTH_WORKER_PING_TIMEOUT
        try:
            workers = ping_workers(timeout)
        except Exception as e:
            raise ServiceUnavailable(
                f"could not ping Celery workers ({type(e).__name__}): check the broker first"
            ) from e
        if not workers:
            raise ServiceUnavailable(
                f"no Celery worker answered a ping within {timeout:g} s: start one "
                "(celery -A hotelbot worker) or read the worker logs; replies wait in the database"
            )
        return f"{len(workers)} worker(s) answered: {', '.join(workers)[:200]}"


@dataclasses.dataclass(repr=False)
class HeartbeatCheck(TimedCheck):
    """A periodic job (run by beat) finished recently: its heartbeat is at most 3 x its interval old."""

    critical: ClassVar[bool] = False  # the sweeper is a safety net; replies go out without it
    job: str = "reply_sweeper"
    interval: Callable[[], float] = dataclasses.field(default=lambda: 60.0, repr=False)

    @property
    def name(self) -> str:
        return f"beat:{self.job}"

    def probe(self) -> str:
        from reliability.selectors import heartbeat_age

        limit = 3 * self.interval()
        age = heartbeat_age(name=self.job)
        if age is None:
            raise ServiceUnavailable(
                f"{self.job} has never recorded a run: is celery beat running (exactly one), and a worker?"
            )
        if age > limit:
            raise ServiceUnavailable(
                f"{self.job} last ran {_age(age)} ago (limit {_age(limit)} = 3 x its interval): check "
                "that celery beat runs (exactly one replica) and that workers take its tasks"
            )
        return f"{self.job} ran {_age(age)} ago"


@dataclasses.dataclass(repr=False)
class DeadLetterCheck(TimedCheck):
    """Pending dead letters stay under ``HEALTH_DEAD_LETTER_MAX`` (above: a warning)."""

    check_name: ClassVar[str] = "dead_letters"

    def probe(self) -> str:
        from reliability.dead_letters import dead_letter_pending

        count, oldest = dead_letter_pending()
        text = f"{count} pending dead letter(s)" + (f", oldest {_age(oldest)} old" if oldest else "")
        if count > settings.HEALTH_DEAD_LETTER_MAX:
            raise ServiceWarning(
                f"{text} (more than {settings.HEALTH_DEAD_LETTER_MAX}): review them in admin "
                "(Reliability > Dead letters) or /health/dlq/, fix the cause, then resolve or redrive"
            )
        return text


@dataclasses.dataclass(repr=False)
class BreakerCheck(TimedCheck):
    """Any breaker open or forced open is a warning naming it and since when."""

    check_name: ClassVar[str] = "circuit_breakers"

    def probe(self) -> str:
        from reliability.selectors import breaker_overview

        rows = breaker_overview()
        rejecting = [row for row in rows if row["state"] in ("open", "forced_open")]
        if not rejecting:
            return f"{len(rows)} breaker(s), none open"
        parts = []
        for row in rejecting:
            since = row["since"] or "unknown time"
            part = f"{row['name']} {row['state']} since {since}"
            if row["state"] == "forced_open" and row["override"]["reason"]:
                part += f" (staff: {row['override']['reason']})"
            elif row["retry_after"]:
                part += f" (next probe in {row['retry_after']:.0f} s)"
            parts.append(part)
        raise ServiceWarning(
            "; ".join(parts) + ". Calls to these dependencies are rejected: see /health/circuit-breakers/ "
            "and the provider's status; `manage.py breakers` lists them"
        )


#: Degradation switches whose being off means no guest message is taken in at all.
INTAKE_SWITCHES = frozenset({"webhook_intake", "writes"})


class DegradationCheck(TimedCheck):
    """The degradation level in force: a warning when it is not NORMAL, naming the cause, the
    switches off and any staff override or maintenance; a failure when a switch that stops guests'
    messages from being taken at all is off (``webhook_intake``, ``writes``)."""

    check_name: ClassVar[str] = "degradation"

    def probe(self) -> str:
        from reliability.degradation import degradation_status

        status = degradation_status()
        if status["level_value"] == 0 and not status["maintenance"]:
            return "level NORMAL, every switch on"
        off = [name for name, on in status["switches"].items() if not on]
        parts = [f"level {status['level']}"]
        if status["cause"]:
            parts.append(f"because: {status['cause']}")
        if off:
            parts.append(f"switched off: {', '.join(off)}")
        if status["override"]:
            parts.append(f"staff override by {status['override']['actor']}: {status['override']['reason']}")
        parts.extend(f"{m['dependency']} under maintenance: {m['reason']}" for m in status["maintenance"])
        if set(off) & INTAKE_SWITCHES:
            raise ServiceUnavailable(
                "; ".join(parts) + ". Guests' messages are refused (Green API redelivers them for 24 h): "
                "turn the switch back on (admin or `manage.py degrade`) as soon as possible"
            )
        raise ServiceWarning(
            "; ".join(parts) + ". See /health/degradation/ and `manage.py degrade show`; "
            "the level goes back by itself when the cause clears"
        )


@dataclasses.dataclass(repr=False)
class DiskCheck(TimedCheck):
    """Disk use of ``VAR_DIR`` (SQLite, broker files) below ``HEALTH_DISK_MAX_PERCENT``."""

    check_name: ClassVar[str] = "disk"
    path: str = ""

    def probe(self) -> str:
        path = self.path or str(settings.VAR_DIR)
        usage = shutil.disk_usage(path)
        percent = 100.0 * usage.used / usage.total if usage.total else 0.0
        text = f"{percent:.0f}% of the disk holding {path} used, {usage.free / 2**30:.1f} GiB free"
        if percent >= settings.HEALTH_DISK_MAX_PERCENT:
            raise ServiceWarning(f"{text}: free space (logs, var/, old broker files) before it fills up")
        return text


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            number = rest.strip().split(" ")[0]
            if number.isdigit():
                values[key] = int(number) * 1024
    return values


@dataclasses.dataclass(repr=False)
class MemoryCheck(TimedCheck):
    """Memory use of the machine (``MemAvailable``) below ``HEALTH_MEMORY_MAX_PERCENT``."""

    check_name: ClassVar[str] = "memory"

    def probe(self) -> str:
        try:
            info = _meminfo()
            total, available = info["MemTotal"], info["MemAvailable"]
        except (OSError, KeyError):
            return "memory use not measurable on this system (no /proc/meminfo)"
        percent = 100.0 * (total - available) / total if total else 0.0
        text = f"{percent:.0f}% of {total / 2**30:.1f} GiB memory used"
        if percent >= settings.HEALTH_MEMORY_MAX_PERCENT:
            raise ServiceWarning(f"{text}: look for a leaking process or lower worker concurrency")
        return text


@dataclasses.dataclass(repr=False)
class FunctionCheck(TimedCheck):
    """A check registered by another app: ``fn`` returns the OK diagnosis or raises a health exception."""

    label: str = "custom"
    fn: Callable[[], str] = dataclasses.field(default=lambda: "ok", repr=False)
    is_cached: bool = False
    is_critical: bool = True

    @property
    def name(self) -> str:
        return self.label

    def __post_init__(self) -> None:
        super().__post_init__()
        self.cached = self.is_cached  # type: ignore[misc]
        self.critical = self.is_critical  # type: ignore[misc]

    def probe(self) -> str:
        return self.fn()
