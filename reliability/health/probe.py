"""Health checks: django-health-check 4.x check classes with a hard deadline each.

Every check here answers within ``HEALTH_CHECK_TIMEOUT`` (150 ms by default) whatever its
dependency does: the probe itself runs in a small thread pool and the request waits for it at most
that long, so a PostgreSQL, Redis or broker that accepts connections and never answers is
*reported* ("... did not answer within 150 ms: ...") instead of holding the probe. Each check has
its own socket/statement timeouts too, so the thread left behind ends soon after; a check whose
previous run is still hanging does not start another one (single flight), so a hung dependency
cannot pile up threads.

Every result carries a diagnosis a person can act on and its response time, and every run records
``health_check_duration_seconds``, ``health_check_status`` and ``health_check_total``
(``reliability.metrics``).

A check is *critical* when its failure means guests cannot be answered at all (the database, the
webhook intake switched off, replies no longer taken): it fails ``/health/`` (503). The others
report a dependency the bot is designed to ride out (Redis, the broker, a provider, the beat) and
make the overall status ``degraded`` (200).

Expensive checks (a Celery worker ping, provider states) are cached for ``HEALTH_CACHE_SECONDS``,
in the process and in the Django cache: a probe never calls a provider while a cached answer
exists; the ``reliability.tasks.health_monitor`` task refreshes them every minute.

The toolkit knows no domain: ``messaging`` registers its checks (reply backlog, the sweeper's
heartbeat, the provider states) with :func:`register` in ``MessagingConfig.ready()``, the way
django-health-check registered checks with its plugin registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections, transaction
from health_check.base import HealthCheck, HealthCheckResult
from health_check.exceptions import HealthCheckException, ServiceUnavailable, ServiceWarning

from reliability.metrics import HEALTH_CHECK_SECONDS, HEALTH_CHECK_STATUS, HEALTH_CHECKS

logger = logging.getLogger(__name__)

OK, WARNING, FAILING = "ok", "warning", "failing"
#: Overall status of /health/ when something is wrong but guests are still answered.
DEGRADED = "degraded"
_CACHE_PREFIX = "hotelbot:health:"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def host_port(url: str) -> str:
    """``host:port`` of a URL, never its credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or '?'}:{port}" if port else (parts.hostname or parts.scheme or "?")


# --- the probe thread pool: deadlines and single flight ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one run of a probe found: ``level`` ok / warning / failing, a diagnosis, and when."""

    level: str
    message: str
    at: float  # time.time() when the probe finished
    duration: float

    def fresh(self, max_age: float) -> bool:
        return time.time() - self.at < max_age


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_inflight: dict[str, Future[Outcome]] = {}
_memo: dict[str, Outcome] = {}


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():  # built lazily, and again after a fork
        _pool, _pool_pid = ThreadPoolExecutor(max_workers=16, thread_name_prefix="health"), os.getpid()
        _inflight.clear()
    return _pool


def _in_thread(fn: Callable[[], Outcome]) -> Outcome:
    try:
        return fn()
    finally:
        for conn in connections.all(initialized_only=True):  # this thread's own connections
            with contextlib.suppress(Exception):  # a broken connection is simply dropped
                conn.close()


def _submit(key: str, fn: Callable[[], Outcome], *, force: bool = False) -> Future[Outcome]:
    """Run ``fn`` in the probe pool, or join the run of ``key`` that is still going (single flight)."""
    with _pool_lock:
        running = _inflight.get(key)
        if running is not None and not running.done() and not force:
            return running
        future = _executor().submit(_in_thread, fn)
        _inflight[key] = future
        return future


def reset_for_tests() -> None:
    """Forget cached outcomes (here and in the Django cache) and in-flight probes (tests only)."""
    with _pool_lock:
        names = {*_memo, *_inflight}
        _memo.clear()
        _inflight.clear()
    for name in names | set(_registered):
        _cache_delete(name)
    _cache_delete(WorkerCheck.check_name)


# --- the base check ------------------------------------------------------------------------------------
@dataclasses.dataclass(repr=False)
class TimedCheck(HealthCheck):
    """A check whose blocking :meth:`probe` runs under a hard deadline in the probe pool.

    ``probe`` returns what it found (the OK diagnosis) or raises ``ServiceWarning`` /
    ``ServiceUnavailable`` with the diagnosis. ``cached`` checks reuse an answer younger than
    ``HEALTH_CACHE_SECONDS`` (in this process, then from the Django cache) and only probe without one.
    """

    check_name: ClassVar[str] = ""
    #: False: a failure is reported but the check is informative (it never fails /health/ on its own).
    critical: ClassVar[bool] = True
    cached: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.timeout = datetime.timedelta(seconds=settings.HEALTH_CHECK_TIMEOUT)
        self.detail = ""  # the diagnosis of the last run (also set for OK)
        self.level = OK

    def __repr__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return self.check_name or type(self).__name__

    @property
    def labels(self) -> dict[str, str]:
        return {"check": self.name}

    # Subclasses ---------------------------------------------------------------------------------------
    def probe(self) -> str:
        raise NotImplementedError

    def timeout_message(self, seconds: float) -> str:
        return f"{self.name} did not answer within {_ms(seconds)}"

    def error_message(self, exc: Exception) -> str:
        return f"{self.name} failed: {type(exc).__name__}"

    # Machinery ----------------------------------------------------------------------------------------
    def _compute(self) -> Outcome:
        started = time.perf_counter()
        if self.cached:
            shared = _cache_get(self.name)
            if shared is not None:
                _memo[self.name] = shared
                return shared
        try:
            level, message = OK, self.probe()
        except ServiceWarning as e:
            level, message = WARNING, e.message
        except HealthCheckException as e:
            level, message = FAILING, e.message
        except Exception as e:
            logger.warning("health check %s failed", self.name, exc_info=True)
            level, message = FAILING, self.error_message(e)
        outcome = Outcome(level, str(message), time.time(), time.perf_counter() - started)
        if self.cached:
            _memo[self.name] = outcome
            _cache_set(self.name, outcome)
        return outcome

    def _cached_outcome(self) -> Outcome | None:
        if not self.cached:
            return None
        memo = _memo.get(self.name)
        return memo if memo is not None and memo.fresh(settings.HEALTH_CACHE_SECONDS) else None

    async def run(self) -> None:
        started = time.perf_counter()
        deadline = settings.HEALTH_CHECK_TIMEOUT
        cached = self._cached_outcome()
        if cached is not None:
            outcome = cached
        else:
            future = _submit(self.name, self._compute)
            try:
                outcome = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), deadline)
            except TimeoutError:
                if self.cached:  # the answer is on its way and will be cached for the next probe
                    outcome = Outcome(
                        WARNING,
                        f"{self.name}: no cached answer yet; a check started in the background did "
                        f"not finish within {_ms(deadline)} (ask again in a few seconds)",
                        time.time(),
                        deadline,
                    )
                else:
                    outcome = Outcome(FAILING, self.timeout_message(deadline), time.time(), deadline)
        self._finish(outcome, time.perf_counter() - started)

    def refresh(self, *, wait: float = 30.0) -> Outcome:
        """Run the probe now, ignoring any cached answer (the health monitor); records metrics."""
        started = time.perf_counter()
        if self.cached:
            _memo.pop(self.name, None)
            _cache_delete(self.name)
        try:
            outcome = _submit(self.name, self._compute, force=True).result(timeout=wait)
        except TimeoutError:
            outcome = Outcome(FAILING, self.timeout_message(wait), time.time(), wait)
        with contextlib.suppress(HealthCheckException):
            self._finish(outcome, time.perf_counter() - started)
        return outcome

    def _finish(self, outcome: Outcome, elapsed: float) -> None:
        self.level, self.detail = outcome.level, outcome.message
        HEALTH_CHECK_SECONDS.labels(check=self.name).observe(elapsed)
        HEALTH_CHECK_STATUS.labels(check=self.name).set(0 if outcome.level == FAILING else 1)
        status = "failure" if outcome.level == FAILING else "success"
        HEALTH_CHECKS.labels(check=self.name, status=status).inc()
        if outcome.level == WARNING:
            raise ServiceWarning(outcome.message)
        if outcome.level == FAILING:
            raise ServiceUnavailable(outcome.message)


def _cache_get(name: str) -> Outcome | None:
    try:
        raw = cache.get(_CACHE_PREFIX + name)
    except Exception:  # the cache (Redis) may be the thing that is down
        return None
    if not isinstance(raw, dict):
        return None
    try:
        outcome = Outcome(str(raw["level"]), str(raw["message"]), float(raw["at"]), float(raw["duration"]))
    except (KeyError, TypeError, ValueError):
        return None
    return outcome if outcome.fresh(settings.HEALTH_CACHE_SECONDS) else None


def _cache_set(name: str, outcome: Outcome) -> None:
    try:
        cache.set(_CACHE_PREFIX + name, dataclasses.asdict(outcome), timeout=settings.HEALTH_CACHE_SECONDS)
    except Exception:
        logger.debug("health: could not cache %s", name, exc_info=True)


def _cache_delete(name: str) -> None:
    try:
        cache.delete(_CACHE_PREFIX + name)
    except Exception:
        logger.debug("health: could not drop the cached %s", name, exc_info=True)


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


# --- registry of the checks other apps contribute ------------------------------------------------------
_registered: dict[str, Callable[[], TimedCheck]] = {}


def register(name: str, factory: Callable[[], TimedCheck]) -> None:
    """Add a check to /health/ (and the monitor) under ``name``; called from an app's ``ready()``."""
    _registered[name] = factory


def register_function(
    name: str, fn: Callable[[], str], *, cached: bool = False, critical: bool = True
) -> None:
    """Shortcut: a check from a function returning the OK diagnosis or raising a health exception."""
    register(name, lambda: FunctionCheck(label=name, fn=fn, is_cached=cached, is_critical=critical))


def register_heartbeat(job: str, *, interval: Callable[[], float]) -> None:
    """The periodic ``job`` records :func:`reliability.services.heartbeat_record`; warn when it stops."""
    register(f"beat:{job}", lambda: HeartbeatCheck(job=job, interval=interval))


def redis_urls() -> list[tuple[str, str]]:
    """(role, url) of each distinct Redis the process uses."""
    seen: dict[str, str] = {}
    for role, url in (
        ("redis", settings.REDIS_URL),
        ("redis:breakers", settings.BREAKER_REDIS_URL),
        ("redis:rate_limits", settings.RATE_LIMIT_REDIS_URL),
    ):
        if url and url not in seen:
            seen[url] = role
    return [(role, url) for url, role in seen.items()]


def readiness_checks() -> list[TimedCheck]:
    """What a pod needs to take traffic: the database, nothing else (never Redis or a provider)."""
    return [DatabaseCheck()]


def all_checks() -> list[TimedCheck]:
    checks: list[TimedCheck] = [DatabaseCheck()]
    redis_checks = [RedisCheck(url=url, role=role) for role, url in redis_urls()]
    checks += redis_checks or [LocalCacheCheck()]
    checks += [BrokerCheck(), WorkerCheck(), DeadLetterCheck(), BreakerCheck(), DegradationCheck()]
    checks += [DiskCheck(), MemoryCheck()]
    checks += [factory() for factory in _registered.values()]
    return checks


def failing(results: Iterable[HealthCheckResult]) -> list[HealthCheckResult]:
    """Results that fail a probe: errors of critical checks (warnings never fail it)."""
    return [
        r
        for r in results
        if r.error is not None
        and not isinstance(r.error, ServiceWarning)
        and getattr(r.check, "critical", True)
    ]


def result_level(result: HealthCheckResult) -> str:
    if result.error is None:
        return OK
    return WARNING if isinstance(result.error, ServiceWarning) else FAILING


def describe(results: Iterable[HealthCheckResult]) -> dict[str, Any]:
    """The JSON body of a health endpoint: overall status, then each check's status, time, diagnosis."""
    results = list(results)
    checks: dict[str, Any] = {}
    for r in results:
        level = result_level(r)
        message = getattr(r.check, "detail", "") or ("" if r.error is None else r.error.message)
        checks[repr(r.check)] = {
            "status": level,
            "critical": getattr(r.check, "critical", True),
            "response_time_ms": round(r.time_taken * 1000, 1),
            "message": message,
        }
    if failing(results):
        overall = FAILING
    elif any(r.error is not None for r in results):
        overall = DEGRADED
    else:
        overall = OK
    return {"status": overall, "checks": checks}


# --- the periodic monitor ------------------------------------------------------------------------------
def expensive_checks() -> Iterator[TimedCheck]:
    for check in all_checks():
        if check.cached:
            yield check


def monitor_run(*, wait: float = 30.0) -> dict[str, str]:
    """Run every check once, refreshing the cached (expensive) ones and the metrics; returns
    ``{check: level}`` and logs what is not OK. Called by the ``health_monitor`` task."""
    levels: dict[str, str] = {}
    for check in all_checks():
        if check.cached:
            outcome = check.refresh(wait=wait)
            level, message = outcome.level, outcome.message
        else:
            result = asyncio.run(check.get_result())
            level, message = result_level(result), check.detail
        levels[check.name] = level
        if level != OK:
            logger.warning("health: %s is %s: %s", check.name, level, message)
    return levels
