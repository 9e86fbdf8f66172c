"""The reply pipeline: claim a reply job, generate the answer once, send it exactly once.

A job is claimed with one conditional UPDATE (a lease), so a task that runs twice (``acks_late``,
the sweeper, a redelivered broker message) does nothing the second time. The reply text is stored
before sending, and ``send_started_at`` is committed before a send leaves: if the outcome is then
unknown (timeout after the request left, worker killed), the next attempt asks Green API's journal
whether the message went out before sending again, so a guest never receives the same reply twice.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from messaging.clients import deepseek, green_api
from messaging.models import Hotel, Message, ReplyJob
from messaging.notifications import TEXT_TYPES
from messaging.prompts import SWE001_MARKER, HotelFacts, Turn, canned_reply, chat_messages
from messaging.selectors import conversation_history
from messaging.services import statuses
from reliability.breaker import State, registry
from reliability.metrics import REPLIES

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    job_id: int
    result: str  # "skipped" | "done" | "retry" | "dead"
    detail: str = ""


# --- enqueueing -----------------------------------------------------------------------------------
def reply_job_publish(*, job_id: int, countdown: float = 0.0) -> bool:
    """Publish the task; a broker outage is logged, not raised: the sweeper re-enqueues from the DB."""
    from messaging.tasks import process_reply_job

    try:
        process_reply_job.apply_async(args=(job_id,), countdown=countdown)
    except Exception as e:  # kombu raises many types (OperationalError, socket errors, ...)
        logger.warning("could not publish reply job %s (the sweeper will retry): %s", job_id, e)
        return False
    return True


def reply_job_enqueue_on_commit(*, job_id: int, countdown: float = 0.0) -> None:
    transaction.on_commit(partial(reply_job_publish, job_id=job_id, countdown=countdown))


def reply_jobs_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Re-enqueue jobs whose task was lost: due for longer than REPLY_STALE_AFTER, or lease expired."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.REPLY_STALE_AFTER)
    due = Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=stale) | Q(
        status=ReplyJob.Status.IN_PROGRESS, lease_expires_at__lt=now
    )
    ids = list(ReplyJob.objects.filter(due).order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    if not ids:
        return 0
    # Pushing next_attempt_at to now means a job is re-swept only after another stale period.
    ReplyJob.objects.filter(pk__in=ids, status=ReplyJob.Status.PENDING).update(next_attempt_at=now)
    return sum(reply_job_publish(job_id=job_id) for job_id in ids)


def reply_jobs_requeue(*, job_ids: list[int]) -> int:
    """Staff action: make pending or dead jobs due now (a dead job's outbound is reset to pending)."""
    now = timezone.now()
    requeued = 0
    for job_id in job_ids:
        with transaction.atomic():
            count = ReplyJob.objects.filter(
                pk=job_id, status__in=[ReplyJob.Status.PENDING, ReplyJob.Status.DEAD]
            ).update(status=ReplyJob.Status.PENDING, next_attempt_at=now, attempts=0, completed_at=None)
            if count:
                Message.objects.filter(sent_by_job__pk=job_id, status=Message.Status.FAILED).update(
                    status=Message.Status.PENDING, failed_at=None, status_detail=""
                )
                reply_job_enqueue_on_commit(job_id=job_id)
                requeued += 1
    return requeued


# --- processing -----------------------------------------------------------------------------------
def _claim(job_id: int, now: datetime) -> ReplyJob | None:
    lease = now + timedelta(seconds=settings.REPLY_JOB_LEASE)
    claimable = Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=ReplyJob.Status.IN_PROGRESS, lease_expires_at__lt=now
    )
    # Lock only the job row (``of``): PostgreSQL cannot lock the nullable side of the outbound
    # join, and this way the relations the pipeline needs come with the same query.
    with transaction.atomic():
        job = (
            ReplyJob.objects.select_for_update(of=("self",))
            .select_related("inbound__conversation__guest", "inbound__conversation__hotel", "outbound")
            .filter(claimable, pk=job_id)
            .first()
        )
        if job is None:
            return None
        job.status = ReplyJob.Status.IN_PROGRESS
        job.lease_expires_at = lease
        job.attempts += 1
        job.save(update_fields=["status", "lease_expires_at", "attempts", "updated_at"])
    return job


def reply_job_process(*, job_id: int) -> ProcessOutcome:
    job = _claim(job_id, timezone.now())
    if job is None:
        return ProcessOutcome(job_id, "skipped", "not claimable (done, dead, not due, or claimed elsewhere)")
    try:
        return _advance(job)
    except Exception as e:
        logger.exception("reply job %s failed unexpectedly", job_id)
        _schedule_retry(job, f"unexpected error: {type(e).__name__}: {e}")
        raise


def _facts(hotel: Hotel) -> HotelFacts:
    return HotelFacts(
        name=hotel.name,
        check_in=hotel.check_in,
        check_out=hotel.check_out,
        wifi=hotel.wifi,
        breakfast=hotel.breakfast,
        address=hotel.address,
        parking=hotel.parking,
        staff_contact=hotel.staff_contact,
        extra=hotel.extra_facts,
    )


def _generate(job: ReplyJob) -> tuple[str, str]:
    """The reply text and, when degraded to a canned answer, why."""
    inbound = job.inbound
    conversation = inbound.conversation
    facts = _facts(conversation.hotel)
    if inbound.message_type not in TEXT_TYPES or not inbound.text.strip() or SWE001_MARKER in inbound.text:
        # Media or an undelivered-message marker: the designed answer, not a degradation.
        return canned_reply(facts, inbound.text, type_message=inbound.message_type), ""
    history = [
        Turn(inbound=m.direction == Message.Direction.INBOUND, text=m.text)
        for m in conversation_history(
            conversation=conversation, before=inbound, limit=settings.REPLY_CONTEXT_TURNS
        )
    ]
    try:
        completion = deepseek.default_client().chat(
            messages=chat_messages(facts, history, inbound.text),
            max_tokens=settings.DEEPSEEK_MAX_TOKENS,
            user_id=f"guest_{conversation.guest_id}",
        )
    except deepseek.DeepSeekError as e:
        logger.warning("reply job %s: AI unavailable, answering from FAQ: %s", job.pk, e)
        return canned_reply(facts, inbound.text), str(e)[:200]
    return completion.text, ""


def _advance(job: ReplyJob) -> ProcessOutcome:
    if not job.reply_text:
        job.reply_text, job.degraded_reason = _generate(job)
        job.degraded = bool(job.degraded_reason)
        job.save(update_fields=["reply_text", "degraded", "degraded_reason", "updated_at"])
    if job.outbound is None:
        with transaction.atomic():
            job.outbound = Message.objects.create(
                conversation=job.inbound.conversation,
                direction=Message.Direction.OUTBOUND,
                text=job.reply_text,
                status=Message.Status.PENDING,
            )
            job.save(update_fields=["outbound", "updated_at"])
    hotel = job.inbound.conversation.hotel
    client = green_api.client_for(id_instance=hotel.green_api_instance_id, api_token=hotel.green_api_token)
    chat_id = job.inbound.conversation.guest.chat_id

    if job.send_started_at is not None:
        reconciled = _reconcile(job, client, chat_id)
        if reconciled is not None:
            return reconciled

    job.send_started_at = timezone.now()
    job.save(update_fields=["send_started_at", "updated_at"])
    try:
        sent = client.send_message(chat_id=chat_id, text=job.reply_text)
    except green_api.GreenApiCircuitOpen as e:
        job.send_started_at = None  # rejected before any I/O: surely not sent
        return _wait_for_provider(job, e.retry_after or 0.0)
    except green_api.GreenApiOutcomeUnknown as e:
        return _schedule_retry(job, str(e))  # keep send_started_at: reconcile before resending
    except green_api.GreenApiTransientError as e:
        job.send_started_at = None
        return _schedule_retry(job, str(e), retry_after=e.retry_after)
    except green_api.GreenApiPermanentError as e:
        job.send_started_at = None
        return _bury(job, str(e))
    return _confirm(job, sent.id_message)


def _reconcile(job: ReplyJob, client: green_api.GreenApiClient, chat_id: str) -> ProcessOutcome | None:
    """An earlier send's outcome is unknown: find it in Green API's journal or wait out its lag."""
    assert job.send_started_at is not None
    assert job.outbound is not None
    job.outbound.refresh_from_db(fields=["provider_message_id"])
    if job.outbound.provider_message_id:  # the outgoingAPIMessageReceived webhook already told us
        return _confirm(job, job.outbound.provider_message_id)
    since = job.send_started_at - timedelta(seconds=5)
    minutes = int((timezone.now() - since).total_seconds() // 60) + 2
    try:
        journal = client.last_outgoing_messages(minutes=minutes)
    except green_api.GreenApiCircuitOpen as e:
        return _wait_for_provider(job, e.retry_after or 0.0)
    except green_api.GreenApiError as e:
        return _schedule_retry(job, f"reconcile: {e}")
    for entry in journal:
        if entry.chat_id == chat_id and entry.text == job.reply_text and entry.timestamp >= since:
            logger.info(
                "reply job %s: earlier send found in Green API journal as %s", job.pk, entry.id_message
            )
            return _confirm(job, entry.id_message)
    settle_at = job.send_started_at + timedelta(seconds=settings.REPLY_RECONCILE_GRACE)
    if timezone.now() < settle_at:  # Green API's journal may lag; ask again once it has settled
        wait = (settle_at - timezone.now()).total_seconds()
        return _schedule_retry(job, "send outcome unknown; waiting for Green API's journal", retry_after=wait)
    job.send_started_at = None  # not in the journal after the grace period: it was not sent
    return None


def _confirm(job: ReplyJob, id_message: str) -> ProcessOutcome:
    now = timezone.now()
    assert job.outbound is not None
    with transaction.atomic():
        Message.objects.filter(pk=job.outbound.pk).update(provider_message_id=id_message)
        Message.objects.filter(pk=job.outbound.pk, status=Message.Status.PENDING).update(
            status=Message.Status.ACCEPTED, accepted_at=now
        )
        statuses.deferred_statuses_apply(id_message=id_message)
        job.status = ReplyJob.Status.DONE
        job.send_started_at = None
        job.lease_expires_at = None
        job.completed_at = now
        job.last_error = ""
        job.save(
            update_fields=[
                "status",
                "send_started_at",
                "lease_expires_at",
                "completed_at",
                "last_error",
                "updated_at",
            ]
        )
    return ProcessOutcome(job.pk, "done", id_message)


def _backoff(attempts: int) -> float:
    base = settings.REPLY_RETRY_BASE_DELAY * 2 ** max(0, attempts - 1)
    return min(settings.REPLY_RETRY_MAX_DELAY, base) * random.uniform(0.5, 1.0)  # equal jitter


def _schedule_retry(job: ReplyJob, error: str, *, retry_after: float | None = None) -> ProcessOutcome:
    if job.attempts >= settings.REPLY_MAX_ATTEMPTS:
        return _bury(job, f"gave up after {job.attempts} attempts; last error: {error}")
    delay = max(retry_after or 0.0, _backoff(job.attempts))
    with transaction.atomic():
        job.status = ReplyJob.Status.PENDING
        job.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        job.lease_expires_at = None
        job.last_error = error[:2000]
        job.save(
            update_fields=[
                "status",
                "next_attempt_at",
                "lease_expires_at",
                "last_error",
                "send_started_at",
                "updated_at",
            ]
        )
        reply_job_enqueue_on_commit(job_id=job.pk, countdown=delay)
    return ProcessOutcome(job.pk, "retry", f"in {delay:.1f}s: {error}")


def _bury(job: ReplyJob, reason: str) -> ProcessOutcome:
    now = timezone.now()
    with transaction.atomic():
        job.status = ReplyJob.Status.DEAD
        job.lease_expires_at = None
        job.completed_at = now
        job.last_error = reason[:2000]
        job.save(
            update_fields=[
                "status",
                "lease_expires_at",
                "completed_at",
                "last_error",
                "send_started_at",
                "updated_at",
            ]
        )
        if job.outbound is not None:
            Message.objects.filter(pk=job.outbound.pk).update(
                status=Message.Status.FAILED, failed_at=now, status_detail=reason[:300]
            )
    REPLIES.labels("dead").inc()
    logger.error("reply job %s is dead: %s", job.pk, reason)
    return ProcessOutcome(job.pk, "dead", reason)


# --- provider recovery ----------------------------------------------------------------------------
def _wait_for_provider(job: ReplyJob, retry_after: float) -> ProcessOutcome:
    """Green API's breaker rejected the send: park the job; the drain releases it. Not an attempt."""
    with transaction.atomic():
        job.status = ReplyJob.Status.WAITING_PROVIDER
        job.attempts = max(0, job.attempts - 1)
        job.next_attempt_at = timezone.now() + timedelta(seconds=retry_after)
        job.lease_expires_at = None
        job.last_error = f"Green API circuit open; retry in {retry_after:.0f}s"
        job.save(
            update_fields=[
                "status",
                "attempts",
                "next_attempt_at",
                "lease_expires_at",
                "last_error",
                "send_started_at",
                "updated_at",
            ]
        )
    return ProcessOutcome(job.pk, "waiting", job.last_error)


def reply_jobs_drain(*, limit: int = 500) -> int:
    """Release jobs parked while Green API's breaker was open, oldest first.

    Breaker admitting calls: release up to ``limit`` at ``GREEN_API_SEND_RATE`` per second
    (staggered countdowns). Open or forced open with its wait over, or half-open: release one job,
    the probe (the snapshot ends a timed force-open on time, so parked replies move within one
    drain interval of its end). Still open: release nothing.
    """
    waiting = ReplyJob.objects.filter(status=ReplyJob.Status.WAITING_PROVIDER).order_by(
        "next_attempt_at", "pk"
    )
    snap = registry.breaker(green_api.DEPENDENCY).snapshot()
    if snap.state in (State.CLOSED, State.DISABLED, State.METRICS_ONLY):
        batch = limit
    elif snap.state == State.HALF_OPEN or (
        snap.state in (State.OPEN, State.FORCED_OPEN) and snap.retry_after <= 0
    ):
        batch = 1
    else:
        return 0
    ids = list(waiting.values_list("pk", flat=True)[:batch])
    now = timezone.now()
    rate = max(settings.GREEN_API_SEND_RATE, 0.1)
    released = 0
    for i, job_id in enumerate(ids):
        countdown = i / rate
        updated = ReplyJob.objects.filter(pk=job_id, status=ReplyJob.Status.WAITING_PROVIDER).update(
            status=ReplyJob.Status.PENDING, next_attempt_at=now + timedelta(seconds=countdown)
        )
        if updated:
            released += 1
            reply_job_publish(job_id=job_id, countdown=countdown)
    return released
