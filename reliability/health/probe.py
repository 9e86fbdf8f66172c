"""The probe machinery every health check runs on: a small thread pool with a hard deadline per
check and single flight per check, the check base class (:class:`TimedCheck`) and the cache of
expensive answers (in the process and in the Django cache)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from health_check.base import HealthCheck
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
