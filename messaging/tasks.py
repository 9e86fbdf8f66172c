"""Celery adapters: load by id, call one service. Tasks are idempotent (acks_late may run them twice)."""

from __future__ import annotations

from celery import shared_task

from messaging.services import alerts, replies
from messaging.services.retention import DEFERRED_TABLE
from reliability import retention


@shared_task(name="messaging.tasks.process_reply_job", acks_late=True, ignore_result=True)
def process_reply_job(job_id: int) -> str:
    return replies.reply_job_process(job_id=job_id).result


@shared_task(name="messaging.tasks.sweep_reply_jobs", ignore_result=True)
def sweep_reply_jobs() -> int:
    return replies.reply_jobs_sweep()


@shared_task(name="messaging.tasks.purge_deferred_statuses", ignore_result=True)
def purge_deferred_statuses() -> int:
    return retention.purge(tables=[DEFERRED_TABLE]).total


@shared_task(name="messaging.tasks.drain_provider_recovery", ignore_result=True)
def drain_provider_recovery() -> int:
    return replies.reply_jobs_drain()


@shared_task(name="messaging.tasks.flag_reply_sla", ignore_result=True)
def flag_reply_sla() -> int:
    return alerts.staff_alerts_run()
