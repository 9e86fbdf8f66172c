"""Celery adapters of the staff console: each calls one service. Idempotent (acks_late)."""

from __future__ import annotations

from celery import shared_task

from console import reports


# The name predates the console (beat's schedule rows and queued messages carry it): kept.
@shared_task(name="reliability.tasks.reliability_report_hourly", ignore_result=True)
def reliability_report_hourly() -> int:
    """Hourly: store the last full hour's reliability report (idempotent per hour)."""
    return reports.report_store_hourly().pk
