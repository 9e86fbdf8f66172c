"""Health checks: django-health-check 4.x check classes with a hard deadline each.

The public API (import ``reliability.health``). Layers: :mod:`.probe` (the thread pool, deadlines,
single flight, the base class, the cache), :mod:`.checks` (the infrastructure checks),
:mod:`.registry` (which checks run, readiness, the JSON of a page, the monitor, registration).

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

from health_check.exceptions import (
    HealthCheckException,
    ServiceUnavailable,
    ServiceWarning,
)

from reliability.health.checks import (
    INTAKE_SWITCHES,
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
    ping_workers,
)
from reliability.health.probe import (
    DEGRADED,
    FAILING,
    OK,
    WARNING,
    Outcome,
    TimedCheck,
    host_port,
)
from reliability.health.registry import (
    all_checks,
    describe,
    expensive_checks,
    failing,
    monitor_run,
    readiness_checks,
    redis_urls,
    register,
    register_function,
    register_heartbeat,
    result_level,
)

__all__ = [
    "DEGRADED",
    "FAILING",
    "INTAKE_SWITCHES",
    "OK",
    "WARNING",
    "BreakerCheck",
    "BrokerCheck",
    "DatabaseCheck",
    "DeadLetterCheck",
    "DegradationCheck",
    "DiskCheck",
    "FunctionCheck",
    "HealthCheckException",
    "HeartbeatCheck",
    "LocalCacheCheck",
    "MemoryCheck",
    "Outcome",
    "RedisCheck",
    "ServiceUnavailable",
    "ServiceWarning",
    "TimedCheck",
    "WorkerCheck",
    "all_checks",
    "describe",
    "expensive_checks",
    "failing",
    "host_port",
    "monitor_run",
    "ping_workers",
    "readiness_checks",
    "redis_urls",
    "register",
    "register_function",
    "register_heartbeat",
    "result_level",
]
