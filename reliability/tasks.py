"""Celery adapters of the reliability layer: each calls one service. Idempotent (acks_late)."""

from __future__ import annotations

from celery import shared_task

from reliability import dead_letters, health, retention, services


@shared_task(name="reliability.tasks.redrive_dead_letters", ignore_result=True)
def redrive_dead_letters() -> dict[str, int]:
    outcome = dead_letters.redrive_due()
    return {"retried": outcome.retried, "resolved": outcome.resolved, "refused": outcome.refused}


@shared_task(name="reliability.tasks.purge_old_records", ignore_result=True)
def purge_old_records() -> dict[str, int]:
    """Daily: every table's rows past retention (reliability.retention), in keyset batches."""
    return retention.purge().counts


@shared_task(name="reliability.tasks.health_monitor", ignore_result=True)
def health_monitor() -> dict[str, str]:
    """Every minute: run every check, refresh the cached ones (workers, providers) and the metrics."""
    return health.monitor_run()


@shared_task(name="reliability.tasks.breaker_monitor", ignore_result=True)
def breaker_monitor() -> int:
    """Every 2 minutes: alert once per episode for breakers open longer than BREAKER_OPEN_ALERT_SECONDS."""
    return services.breaker_open_alerts_send()


# --- Degradation (issue 9) ---
@shared_task(name="reliability.tasks.evaluate_degradation", ignore_result=True)
def evaluate_degradation() -> int:
    from reliability import degradation

    return int(degradation.degradation_evaluate().level)
