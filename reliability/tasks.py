"""Celery adapters of the reliability layer: each calls one service. Idempotent (acks_late)."""

from __future__ import annotations

from celery import shared_task

from reliability import health, services


@shared_task(name="reliability.tasks.health_monitor", ignore_result=True)
def health_monitor() -> dict[str, str]:
    """Every minute: run every check, refresh the cached ones (workers, providers) and the metrics."""
    return health.monitor_run()


@shared_task(name="reliability.tasks.breaker_monitor", ignore_result=True)
def breaker_monitor() -> int:
    """Every 2 minutes: alert once per episode for breakers open longer than BREAKER_OPEN_ALERT_SECONDS."""
    return services.breaker_open_alerts_send()
