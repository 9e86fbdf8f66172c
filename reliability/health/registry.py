"""Which checks run: the infrastructure ones plus those other apps register (:func:`register`),
what a pod needs to be ready, the JSON a health page shows, and the periodic monitor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from health_check.base import HealthCheckResult
from health_check.exceptions import ServiceWarning

from reliability.health.checks import (
    BreakerCheck,
    BrokerCheck,
    DatabaseCheck,
    DeadLetterCheck,
    DegradationCheck,
    DiskCheck,
    FunctionCheck,
    HeartbeatCheck,
    LocalCacheCheck,
    MemoryCheck,
    RedisCheck,
    WorkerCheck,
)
from reliability.health.probe import (
    DEGRADED,
    FAILING,
    OK,
    WARNING,
    TimedCheck,
)

logger = logging.getLogger(__name__)

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
    ``{check: level}`` and logs what is not OK. Called by the ``health_monitor`` task.

    One event loop for the whole run, the checks one after the other as before (a loop, and its
    executor thread, per check was about a fifth of a run's CPU: docs/cost.md)."""
    return asyncio.run(_monitor(wait))


async def _monitor(wait: float) -> dict[str, str]:
    levels: dict[str, str] = {}
    for check in all_checks():
        if check.cached:
            outcome = check.refresh(wait=wait)  # waits for the probe pool; nothing else uses this loop
            level, message = outcome.level, outcome.message
        else:
            result = await check.get_result()
            level, message = result_level(result), check.detail
        levels[check.name] = level
        if level != OK:
            logger.warning("health: %s is %s: %s", check.name, level, message)
    return levels
