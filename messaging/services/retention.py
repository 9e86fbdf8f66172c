"""Retention of messaging's own records, called by reliability's purge through the hook messaging
registers at start-up (``reliability.maintenance.register_purge``)."""

from __future__ import annotations

from datetime import datetime

from messaging.models import DeliveryAttempt, ReplyJob
from reliability.maintenance import Progress, delete_in_batches

FINISHED = (ReplyJob.Status.DONE, ReplyJob.Status.DEAD)


def delivery_attempts_purge(
    *, before: datetime, dry_run: bool, batch_size: int, progress: Progress | None
) -> int:
    """Delete the delivery attempts older than ``before`` of reply jobs that are finished (done or
    dead): a job still on its way keeps its whole history, for staff and for the dead letter it may
    become. Returns the rows deleted (counted on a dry run)."""
    old = DeliveryAttempt.objects.filter(started_at__lt=before, job__status__in=FINISHED)
    return delete_in_batches(
        old, table="messaging.deliveryattempt", dry_run=dry_run, batch_size=batch_size, progress=progress
    )
