"""The reply pipeline: claim a reply job, generate the answer once, send it exactly once.

A job is claimed with one conditional ``UPDATE`` of its row (due and pending, or in progress with
an expired lease; the broker-down poll: ``SELECT ... FOR UPDATE SKIP LOCKED``), which sets a new
lease and a fresh **fencing token** (``lease_token``). Every
write after the claim is a conditional ``UPDATE ... WHERE pk = ... AND lease_token = ...`` whose
row count is checked: a worker whose lease passed to another (it stalled past the lease, and the
sweeper re-published the job) stops at its next write, and above all before sending. So a task
that runs twice (``acks_late``, the sweeper, a redelivered broker message) acts at most once.

The reply text is stored before sending, and ``send_started_at`` is committed (with the fence
check and a renewed lease, in one UPDATE) right before a send leaves; every Green API call ends
within ``GREEN_API_DEADLINE``, shorter than the lease, so a send always ends while its lease holds.
Only a failure that proves the message was not processed (429, 503, a connect failure, our
breaker rejecting; ``reliability.retry.classify_failure``) clears ``send_started_at``; after any
other failure (500, 502, 504, a reset or timeout after sending, an error of our own, even while
confirming) the next attempt first asks Green API's journal whether the message went out, and
adopts only an ``idMessage`` no other outbound row owns, so a guest never receives the same
reply twice and never misses one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, F, Q, QuerySet
from django.utils import timezone

from messaging import handoff_rules, language, opt_out_rules, selectors
from messaging.bot_texts import Overrides, TextKey, text_for
from messaging.clients import deepseek, green_api
from messaging.health import SWEEPER_HEARTBEAT
from messaging.models import Conversation, DeliveryAttempt, Guest, Hotel, Message, ReplyJob
from messaging.notifications import TEXT_TYPES
from messaging.prompts import SWE001_MARKER, HotelFacts, Turn, chat_messages, faq_answers
from messaging.selectors import burst_messages, conversation_history, hotel_text_overrides
from messaging.services import bursts, handoff, opt_out, statements, statuses
from reliability import dead_letters, degradation, masking, retry
from reliability import services as reliability_services
from reliability.breaker import State, registry
from reliability.crypto import FieldEncryptionError
from reliability.fields import plaintexts
from reliability.masking import storable_text
from reliability.metrics import (
    BEAT_LAST_RUN,
    BROKER_FALLBACK_JOBS,
    FALLBACK_USAGE,
    FIRST_HUMAN_REPLY,
    REPLIES,
    REPLY_LATENCY,
)
from reliability.models import DeadLetter
from reliability.retry import RetryConfig, retry_after_cap, retry_delay

logger = logging.getLogger(__name__)

#: Outcome of a job parked until Green API's breaker admits calls (the status's DB value).
PENDING_PROVIDER_RECOVERY = "pending_provider_recovery"
#: Seconds of clock skew allowed between us and Green API's journal timestamps.
RECONCILE_SLACK = 5


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    job_id: int
    #: "skipped" | "done" | "retry" | "dead" | "pending_provider_recovery" | "lease_lost" | "waiting"
    #: | "superseded"
    result: str
    detail: str = ""


# --- enqueueing -----------------------------------------------------------------------------------
def reply_job_publish(
    *,
    job_id: int,
    countdown: float = 0.0,
    request_path: bool = False,
    swept: bool = False,
    recorded_task_id: str = "",
) -> bool:
    """Publish the task; a broker outage is logged, not raised: the sweeper re-enqueues from the DB.

    ``request_path=True`` (web requests) publishes once, without retries, on a connection whose
    sockets time out after ``CELERY_REQUEST_PUBLISH_TIMEOUT``: a hung broker never holds a webhook.
    ``swept=True`` (the sweeper) counts the re-publish, so the next one waits longer.
    ``recorded_task_id``: the publish was recorded with the job's INSERT (``reply_job_create``) under
    this task id: no UPDATE after a successful publish; a failed one clears the record again.
    """
    from messaging.tasks import process_reply_job
    from reliability import broker, broker_fallback

    if broker_fallback.active():
        # A worker whose fallback poller saw the broker down takes the job from the database
        # itself: no publish attempt (and its retries and timeouts) while the broker is away.
        _unmark_published(job_id, recorded_task_id)
        return False
    task_id = recorded_task_id or None
    try:
        with broker.guarded():  # the redis breaker: skip fast while open; failures mark it down
            if request_path:
                with broker.request_path_connection() as connection:
                    options = broker.request_path_publish_options(connection)
                    result = process_reply_job.apply_async(
                        args=(job_id,), countdown=countdown, task_id=task_id, **options
                    )
            else:
                result = process_reply_job.apply_async(args=(job_id,), countdown=countdown, task_id=task_id)
    except broker.BrokerUnavailable as e:
        logger.info("reply job %s not published, broker down (the database is polled): %s", job_id, e)
        _unmark_published(job_id, recorded_task_id)
        return False
    except Exception as e:  # kombu raises many types (OperationalError, socket errors, ...)
        logger.warning("could not publish reply job %s (the sweeper will retry): %s", job_id, e)
        _unmark_published(job_id, recorded_task_id)
        return False
    if not recorded_task_id:
        _mark_published(job_id, str(result.id or ""), swept=swept)
    return True


def _mark_published(job_id: int, task_id: str, *, swept: bool) -> None:
    """Remember the publish, so the sweeper re-publishes a lost task, never a still-queued one."""
    try:
        ReplyJob.objects.filter(pk=job_id).update(
            published_at=timezone.now(),
            published_task_id=task_id[:64],
            republish_count=F("republish_count") + 1 if swept else 0,
        )
    except DatabaseError as e:  # the task is queued; at worst the sweeper publishes it once more
        logger.warning("reply job %s: could not record its publish: %s", job_id, e)


def _unmark_published(job_id: int, task_id: str) -> None:
    """A publish recorded in advance (``reply_job_create``) failed: the job was never published
    (the sweeper's rule for that case applies). Only that record is cleared, never a later one."""
    if not task_id:
        return
    try:
        ReplyJob.objects.filter(pk=job_id, published_task_id=task_id).update(
            published_at=None, published_task_id=""
        )
    except DatabaseError as e:  # the sweeper re-publishes it as a stale publish instead
        logger.warning("reply job %s: could not clear its failed publish: %s", job_id, e)


def reply_job_create(*, inbound: Message, now: datetime) -> ReplyJob:
    """The reply job of an inbound message being stored (inside the caller's transaction); its task
    is published once that transaction commits, on the request path (no retries, short timeouts),
    to run when the job is due. The guest's previous answer job still waiting out its burst window
    is merged into it (``bursts``)."""
    job = reply_job_unsaved(now=now)
    job.inbound = inbound
    job.save(force_insert=True)
    bursts.burst_merge(conversation=inbound.conversation, job=job, w=bursts.window(now))
    reply_job_publish_on_commit(job)
    return job


def reply_job_unsaved(*, now: datetime) -> ReplyJob:
    """A new answer job, due once the guest's burst window has passed (``REPLY_BURST_QUIET_SECONDS``
    after ``now``; at once with bursts off), with its publish recorded up front.

    The publish is recorded in the INSERT itself (``published_at``, and a task id chosen here and
    given to Celery), so a webhook costs no UPDATE after it; a failed publish clears the record. A
    process that dies between the commit and the publish leaves the record: the beat process's
    watch re-publishes a job no worker claimed REPLY_UNSEEN_AFTER after it was due and published
    (``reply_jobs_republish_unseen``), as it does a job never published; the sweeper's
    REPLY_STALE_AFTER rule comes after that.
    """
    return ReplyJob(
        next_attempt_at=bursts.window(now).due,
        burst_started_at=now,
        published_at=now,
        published_task_id=str(uuid.uuid4()),
    )


#: Seconds a task is published after its job's due time, so the worker's claim (``next_attempt_at
#: <= now``) never finds it a moment early.
DUE_MARGIN = 0.05


def countdown_until(due: datetime) -> float:
    """The countdown of a task for a job due at ``due`` (0 when due already)."""
    left = (due - timezone.now()).total_seconds()
    return left + DUE_MARGIN if left > 0 else 0.0


def reply_job_publish_on_commit(job: ReplyJob) -> None:
    """Publish a job made by ``reply_job_unsaved`` once the transaction that inserted it commits
    (at once if it committed already), on the process's hand-off thread: the response need not
    wait. The task runs when the job is due (``next_attempt_at``: the end of the burst window)."""
    from reliability import broker

    def publish() -> bool:
        return reply_job_publish(
            job_id=job.pk,
            countdown=countdown_until(job.next_attempt_at),
            request_path=True,
            recorded_task_id=job.published_task_id,
        )

    transaction.on_commit(partial(broker.hand_off, publish))


def reply_job_enqueue_on_commit(*, job_id: int, countdown: float = 0.0, request_path: bool = False) -> None:
    transaction.on_commit(
        partial(reply_job_publish, job_id=job_id, countdown=countdown, request_path=request_path)
    )


def _publish_is_stale(now: datetime) -> Q:
    """The job's last publish is older than REPLY_STALE_AFTER x 2^n (n = re-publishes in a row, capped
    at REPLY_REPUBLISH_MAX_SPACING), or it was never published (broker down at commit)."""
    stale, cap = settings.REPLY_STALE_AFTER, settings.REPLY_REPUBLISH_MAX_SPACING
    due = Q(published_at__isnull=True)
    for n in range(32):
        spacing = min(stale * 2**n, cap)
        if spacing >= cap or n == 31:
            return due | Q(republish_count__gte=n, published_at__lte=now - timedelta(seconds=spacing))
        due |= Q(republish_count=n, published_at__lte=now - timedelta(seconds=spacing))
    return due  # pragma: no cover


def reply_jobs_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Re-publish jobs whose task was lost: due for longer than REPLY_STALE_AFTER (or lease expired)
    AND last published long enough ago that the task cannot merely be waiting in a slow queue.

    Runs every REPLY_SWEEP_INTERVAL from beat: it stamps ``hotelbot_beat_last_run_timestamp_seconds``
    first (the beat heartbeat; a failing sweep is a different alert than a stopped beat)."""
    BEAT_LAST_RUN.set_to_current_time()
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.REPLY_STALE_AFTER)
    lost = Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=stale) | Q(
        status=ReplyJob.Status.IN_PROGRESS, lease_expires_at__lt=now
    )
    ids = list(
        ReplyJob.objects.filter(lost & _publish_is_stale(now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    published = sum(reply_job_publish(job_id=job_id, swept=True) for job_id in ids)
    reliability_services.heartbeat_record(name=SWEEPER_HEARTBEAT)  # the beat heartbeat health check
    return published


@functools.cache
def _unseen_sql() -> str:
    """Jobs pending, never claimed (``attempts`` 0), never re-published, due and published (or
    their publish failed) at least REPLY_UNSEEN_AFTER ago, and young enough not to be the sweeper's
    yet: a range of the (status, next_attempt_at) index a few seconds wide. Written out once per
    process: it runs every few seconds while idle, and the ORM's compile was 3/4 of its CPU."""
    col = partial(statements.column, ReplyJob)
    table = connection.ops.quote_name(ReplyJob._meta.db_table)
    due, published = col("next_attempt_at"), col("published_at")
    return (
        f"SELECT {col('id')} FROM {table} WHERE {col('status')} = %s AND {due} > %s AND {due} <= %s "  # noqa: S608 - model identifiers, values are parameters
        f"AND {col('attempts')} = 0 AND {col('republish_count')} = 0 "
        f"AND ({published} IS NULL OR {published} <= %s) ORDER BY {due} LIMIT %s"
    )


def reply_jobs_republish_unseen(*, now: datetime | None = None, limit: int = 100) -> int:
    """Re-publish, once, a job that no worker has claimed REPLY_UNSEEN_AFTER after its publish: the
    publish died with its web process (queued on the hand-off thread), failed, or the broker lost
    the task. Run every REPLY_UNSEEN_CHECK_INTERVAL by the beat process's watch thread
    (``reliability.watchers``), so such a guest waits seconds, not the sweeper's REPLY_STALE_AFTER.

    At most once per job (the publish counts as a sweeper re-publish: ``republish_count`` 1), then
    the sweeper's backoff applies: a job merely waiting in a slow queue costs one extra task, which
    finds it claimed or done and skips it. While this process saw the broker fail, one job per run
    (a probe) instead of a batch of failing publishes."""
    from reliability import broker

    now = now or timezone.now()
    seen_by = connection.ops.adapt_datetimefield_value(now - timedelta(seconds=settings.REPLY_UNSEEN_AFTER))
    sweepers = now - timedelta(seconds=settings.REPLY_STALE_AFTER + settings.REPLY_SWEEP_INTERVAL)
    batch = 1 if broker.is_down() else limit
    params = [
        ReplyJob.Status.PENDING.value,
        connection.ops.adapt_datetimefield_value(sweepers),
        seen_by,
        seen_by,
        batch,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_unseen_sql(), params)
        ids = [row[0] for row in cursor.fetchall()]
    return sum(reply_job_publish(job_id=job_id, request_path=True, swept=True) for job_id in ids)


def reply_jobs_requeue(*, job_ids: list[int]) -> int:
    """Staff action and dead-letter redrive: make pending or dead jobs due now, through the same
    pipeline (claim, fencing, reconcile). Attempts restart at 0; a dead job's outbound goes back to
    pending. ``send_started_at`` is kept: an earlier send whose outcome is unknown is reconciled
    with Green API's journal before anything is sent again."""
    now = timezone.now()
    requeued = 0
    for job_id in job_ids:
        with transaction.atomic():
            count = ReplyJob.objects.filter(
                pk=job_id, status__in=[ReplyJob.Status.PENDING, ReplyJob.Status.DEAD]
            ).update(
                status=ReplyJob.Status.PENDING,
                next_attempt_at=now,
                attempts=0,
                completed_at=None,
                lease_expires_at=None,
                updated_at=now,
            )
            if count:
                Message.objects.filter(sent_by_job__pk=job_id, status=Message.Status.FAILED).update(
                    status=Message.Status.PENDING, failed_at=None, status_detail=""
                )
                _dead_reply_wait_end(job_id, now)
                reply_job_enqueue_on_commit(job_id=job_id)
                requeued += 1
    return requeued


def _dead_reply_wait_end(job_id: int, now: datetime) -> None:
    """A dead bot reply made its conversation wait for staff (``_bury``); requeueing it is the bot
    trying again, so the conversation is the bot's again (unless staff took it meanwhile)."""
    Conversation.objects.filter(
        owner=Conversation.Owner.WAITING,
        owner_reason=Conversation.OwnerReason.DEAD_REPLY,
        messages__reply_jobs__pk=job_id,
        messages__reply_jobs__kind__in=handoff.BOT_KINDS,
    ).update(owner=Conversation.Owner.BOT, owner_reason=Conversation.OwnerReason.HANDED_BACK, owner_since=now)


# --- processing -----------------------------------------------------------------------------------
class LeaseLost(Exception):
    """A conditional write found another claim's token (or the job no longer in progress)."""


def _claimable(now: datetime) -> Q:
    return Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=ReplyJob.Status.IN_PROGRESS, lease_expires_at__lt=now
    )


#: The relations the pipeline reads with a claimed job (``select_related``).
_CLAIM_RELATED = ("inbound__conversation__guest", "inbound__conversation__hotel", "outbound")


def _claimed_job(job_id: int, token: str) -> QuerySet[ReplyJob]:
    """The job claimed under ``token``, with its relations: compiled once per process
    (``statements.prepared_read``; a five-table join took ~1 ms of CPU to compile each time)."""
    return ReplyJob.objects.select_related(*_CLAIM_RELATED).filter(pk=job_id, lease_token=token)[:1]


def _claim(job_id: int | None, now: datetime) -> ReplyJob | None:
    """Claim job ``job_id`` (a broker task), or with ``None`` the most overdue claimable job (the
    database poll while the broker is down: ``FOR UPDATE SKIP LOCKED``, so pollers in several
    processes take different rows and never wait on each other; SQLite's IMMEDIATE transaction
    is exclusive anyway). Either way: one row lock (a task's claim: the UPDATE's), a new lease and
    a fresh fencing token."""
    lease = now + timedelta(seconds=settings.REPLY_JOB_LEASE)
    if job_id is not None:
        # A task's job: one conditional UPDATE in autocommit is the claim (a concurrent claim waits
        # for the row and, the row changed, finds it no longer claimable), then the job with the
        # relations the pipeline needs, by this claim's token: two statements, no transaction.
        token = uuid.uuid4().hex
        claimed = statements.prepared_update(_claim_update, job_id, now, lease, token, timezone.now())
        if not claimed:
            return None
        jobs = statements.prepared_read(_claimed_job, job_id, token)
        return jobs[0] if jobs else None
    # Lock only the job row (``of``): PostgreSQL cannot lock the nullable side of the outbound
    # join, and this way the relations the pipeline needs come with the same query.
    with transaction.atomic():
        query = ReplyJob.objects.select_for_update(of=("self",), skip_locked=True).select_related(
            *_CLAIM_RELATED
        )
        job = query.filter(_claimable(now)).order_by("next_attempt_at", "pk").first()
        if job is None:
            return None
        job.status = ReplyJob.Status.IN_PROGRESS
        job.lease_expires_at = lease
        job.lease_token = uuid.uuid4().hex
        job.attempts += 1
        job.save(update_fields=["status", "lease_expires_at", "lease_token", "attempts", "updated_at"])
    return job


def _claim_update(job_id: int, now: datetime, lease: datetime, token: str, updated: datetime) -> Any:
    """The claim of a task's job (claimable at ``now``: ``_claimable``) as one conditional UPDATE,
    compiled once per process (``statements.prepared_update``)."""
    fields = {
        "status": ReplyJob.Status.IN_PROGRESS,
        "lease_expires_at": lease,
        "lease_token": token,
        "attempts": F("attempts") + 1,
        "updated_at": updated,
    }
    return ReplyJob.objects.filter(_claimable(now), pk=job_id), fields


def _fenced(job: ReplyJob, **fields: Any) -> None:
    """Write ``fields`` only while this worker's claim holds: one conditional UPDATE on the job row
    (its pk, this claim's ``lease_token``, still in progress; the send fence adds the owner rule:
    ``_send_fence``), a statement written once per set of fields. Raises :class:`LeaseLost` when
    no row matched; nothing is written then. On success the fields are mirrored onto ``job``."""
    fields["updated_at"] = timezone.now()
    claim = {"lease_token": job.lease_token, "status": ReplyJob.Status.IN_PROGRESS.value}
    if statements.update_row(ReplyJob, job.pk, fields, where=claim) != 1:
        raise LeaseLost(f"reply job {job.pk}: lease {job.lease_token} is no longer held")
    for name, value in fields.items():
        setattr(job, name, value)


def _attempt(
    job: ReplyJob,
    step: str,
    started_at: datetime,
    t0: float,
    outcome: str,
    *,
    http_status: int | None = None,
    error: str = "",
    later: bool = False,
) -> None:
    """One row per step tried (generate, send, reconcile): INSERTed outside the fencing (it
    records what happened, whoever holds the lease now) and never between the fenced write of
    ``send_started_at`` and the send. ``later``: kept in memory and INSERTed with the job's next
    row (a successful generate step goes in one INSERT with its send step) or when the processing
    of the claim ends, whatever its outcome (``_process_claimed``); a worker that dies in between
    loses that row, never a job's state."""
    hotel = job.inbound.conversation.hotel
    _attempts_pending(job).append(
        DeliveryAttempt(
            job_id=job.pk,
            attempt=job.attempts,
            step=step,
            started_at=started_at,
            duration_ms=max(0, round((time.monotonic() - t0) * 1000)),
            outcome=outcome,
            http_status=http_status if http_status is not None and 100 <= http_status <= 599 else None,
            error=storable_text(green_api.mask_token(error), secrets=plaintexts(hotel))[:2000],
        )
    )
    if not later:
        _attempts_flush(job)


_PENDING_ATTEMPTS = "_pending_attempts"


def _attempts_pending(job: ReplyJob) -> list[DeliveryAttempt]:
    pending: list[DeliveryAttempt] | None = getattr(job, _PENDING_ATTEMPTS, None)
    if pending is None:
        pending = []
        setattr(job, _PENDING_ATTEMPTS, pending)
    return pending


def _attempts_flush(job: ReplyJob) -> None:
    """INSERT the job's attempt rows kept in memory (``_attempt(later=True)``), in one statement."""
    pending = _attempts_pending(job)
    if pending:
        rows = pending[:]
        pending.clear()
        statements.insert_rows(rows)  # autocommit: no BEGIN/COMMIT around one INSERT


def reply_job_process(*, job_id: int) -> ProcessOutcome:
    job = _claim(job_id, timezone.now())
    if job is None:
        return ProcessOutcome(job_id, "skipped", "not claimable (done, dead, not due, or claimed elsewhere)")
    return _process_claimed(job)


def reply_jobs_poll(*, limit: int) -> int:
    """The broker is down: take up to ``limit`` due jobs straight from the database, most overdue
    first, each claimed like a task would claim it (so a task delivered later for the same job
    finds it done or leased, and skips it). Returns how many were taken."""
    taken = 0
    while taken < limit:
        job = _claim(None, timezone.now())
        if job is None:
            break
        taken += 1
        try:
            outcome = _process_claimed(job)
        except Exception:  # logged and rescheduled by _process_claimed; the next job goes on
            BROKER_FALLBACK_JOBS.labels("error").inc()
            continue
        BROKER_FALLBACK_JOBS.labels(outcome.result).inc()
    return taken


def _process_claimed(job: ReplyJob) -> ProcessOutcome:
    job_id = job.pk
    try:
        return _advance(job)
    except LeaseLost as e:
        logger.warning("reply job %s: lease lost, stopping: %s", job_id, e)
        return ProcessOutcome(job_id, "lease_lost", str(e))
    except Exception as e:
        logger.exception("reply job %s failed unexpectedly", job_id)
        # Never clears send_started_at: whether a send left is unknown here, so reconcile first.
        with contextlib.suppress(LeaseLost):
            _schedule_retry(job, green_api.mask_token(f"unexpected error: {type(e).__name__}: {e}"), error=e)
        raise
    finally:
        try:
            _attempts_flush(job)
        except DatabaseError as e:  # the database failed the job's own writes too; not this error's place
            logger.warning("reply job %s: could not record its attempts: %s", job_id, e)


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


@dataclass(frozen=True, slots=True)
class _Generated:
    text: str
    degraded_reason: str = ""  # empty unless a canned answer replaced the AI
    ai_status: int | None = None  # the AI's HTTP status when it answered with an error
    handoff: str = ""  # a Conversation.OwnerReason: the guest needs a person instead
    note: str = ""  # what the generate step records (the AI's own handoff reason)


class _Texts:
    """The bot's own texts for one job: the guest's language, and the hotel's overrides read once,
    when the first text is needed (``bot_texts.text_resolve`` chooses)."""

    def __init__(self, hotel_id: int, language: str) -> None:
        self.hotel_id, self.language = hotel_id, language
        self._overrides: Overrides | None = None

    @property
    def overrides(self) -> Overrides:
        if self._overrides is None:
            self._overrides = hotel_text_overrides(hotel_id=self.hotel_id, language=self.language)
        return self._overrides

    def text(self, key: str, **values: str) -> str:
        return text_for(key, self.language, self.overrides, **values)


def _generate(job: ReplyJob, burst: list[Message], texts: _Texts) -> _Generated:
    """The reply to the guest's messages ``burst`` (the job's own, or a burst's, oldest first: the
    AI reads them together), or why a person must answer instead (a message the bot cannot read,
    the AI's marker, no FAQ answer while the AI is unavailable: docs/handoff.md)."""
    inbound = job.inbound
    conversation = inbound.conversation
    facts = _facts(conversation.hotel)
    Reason = Conversation.OwnerReason
    # An undelivered-message marker: ask the guest to resend it (the burst's other messages are
    # answered after that sentence).
    resend = [m for m in burst if SWE001_MARKER in m.text]
    readable = [m for m in burst if SWE001_MARKER not in m.text]
    if not readable:
        return _Generated(texts.text(TextKey.RESEND))
    unreadable = next((m for m in readable if m.message_type not in TEXT_TYPES or not m.text.strip()), None)
    if unreadable is not None:
        what = unreadable.message_type
        return _Generated("", handoff=Reason.UNREADABLE_MESSAGE, note=f"cannot read {what}")
    questions = [m.text for m in readable]
    generated = _generate_answer(job, conversation, facts, questions, texts, before=burst[0])
    if resend and generated.text:
        generated = replace(generated, text=f"{texts.text(TextKey.RESEND)} {generated.text}")
    return generated


def _generate_answer(
    job: ReplyJob,
    conversation: Conversation,
    facts: HotelFacts,
    questions: list[str],
    texts: _Texts,
    *,
    before: Message,
) -> _Generated:
    """The AI's answer to the guest's ``questions`` (one user message, a line each; the conversation's
    messages before ``before`` as context), or the FAQ's while the AI is unavailable, or staff."""
    Reason = Conversation.OwnerReason
    if not degradation.is_enabled("ai_replies") or degradation.under_maintenance(deepseek.DEPENDENCY):
        # Degradation switch or staff maintenance: the FAQ answer, without asking the AI.
        why = (
            "ai_replies switched off" if not degradation.is_enabled("ai_replies") else "deepseek maintenance"
        )
        logger.info("reply job %s: %s, answering from FAQ", job.pk, why)
        return _faq_or_staff(facts, questions, f"degraded: {why}", None, texts)
    history = [
        Turn(inbound=m.direction == Message.Direction.INBOUND, text=m.text)
        for m in conversation_history(
            conversation=conversation, before=before, limit=settings.REPLY_CONTEXT_TURNS
        )
    ]
    try:
        completion = deepseek.default_client().chat(
            messages=chat_messages(facts, history, "\n".join(questions), language=texts.language),
            max_tokens=settings.DEEPSEEK_MAX_TOKENS,
            user_id=f"guest_{conversation.guest_id}",
        )
    except deepseek.DeepSeekError as e:
        logger.warning(
            "reply job %s: AI unavailable, answering from FAQ: %s",
            job.pk,
            e,
            extra={"dependency": deepseek.DEPENDENCY, "fallback": "canned_reply"},
        )
        FALLBACK_USAGE.labels(deepseek.DEPENDENCY, "canned_reply").inc()
        return _faq_or_staff(facts, questions, str(e)[:200], e.status, texts)
    asked, text = handoff_rules.ai_marker_split(completion.text)
    if asked is not None or not text:
        return _Generated("", handoff=Reason.AI_SIGNAL, note=f"the AI asked for a person: {asked or '-'}")
    return _Generated(text)


def _faq_or_staff(
    facts: HotelFacts, questions: list[str], why: str, ai_status: int | None, texts: _Texts
) -> _Generated:
    """Without the AI: the FAQ answer in the guest's language, or staff (never "our concierge will
    get back to you" while nobody is told)."""
    answer = faq_answers(facts, questions, language=texts.language, overrides=texts.overrides)
    if answer is None:
        return _Generated(
            "", why, ai_status, handoff=Conversation.OwnerReason.FALLBACK, note=f"no FAQ answer; {why}"
        )
    return _Generated(answer, why, ai_status)


def _bot_may_answer(job: ReplyJob) -> bool:
    """Whether the bot's owner rules apply to this job: the bot's own jobs, not staff's (a ``staff``
    job, or a job answered by hand)."""
    return job.kind in handoff.BOT_KINDS and job.manual_at is None


def _owner_rule(job: ReplyJob) -> str | None:
    """Which owner rule the send fence applies (``_owner_q``), or None (staff messages)."""
    if job.kind == ReplyJob.Kind.OPT_OUT and job.manual_at is None:
        return "opt_out"
    if not _bot_may_answer(job):
        return None
    return "handoff" if job.kind == ReplyJob.Kind.HANDOFF else "bot"


def _owner_q(rule: str, subject_id: int, now: datetime, stop_id: int = 0) -> Q:
    """What the send fence requires besides the claim: for the bot's answers and notices
    (``rule`` "bot", "handoff"), conversation ``subject_id``'s owner and a guest who has not
    opted out; for an opt-out confirmation ("opt_out"), guest ``subject_id`` still opted out by
    its STOP, message ``stop_id`` (docs/handoff.md)."""
    if rule == "opt_out":
        stop = Guest.objects.filter(pk=subject_id, opted_out_at__isnull=False, opt_out_message_id=stop_id)
        return Q(Exists(stop))
    owners = handoff.bot_answers_q(now)
    if rule == "handoff":
        owners |= Q(owner=Conversation.Owner.WAITING)
    conversation = Conversation.objects.filter(owners, pk=subject_id, guest__opted_out_at__isnull=True)
    return Q(Exists(conversation))


@functools.cache
def _send_fence_query(rule: str) -> Callable[..., tuple[QuerySet[ReplyJob], dict[str, Any]]]:
    """The send fence of rule ``rule`` (``_owner_q``) as an UPDATE compiled once per process
    (``statements.prepared_update``): the ORM compiled its owner ``EXISTS`` anew for every send."""

    def fence(job_id: int, token: str, subject_id: int, now: datetime, lease: datetime, *stop: int) -> Any:
        claim = Q(pk=job_id, lease_token=token, status=ReplyJob.Status.IN_PROGRESS)
        owner = _owner_q(rule, subject_id, now, *stop)
        fields = {"send_started_at": now, "lease_expires_at": lease, "updated_at": now}
        return ReplyJob.objects.filter(claim).filter(owner), fields

    return fence


def _send_fence(job: ReplyJob, now: datetime) -> bool:
    """The fence check, ``send_started_at`` and a renewed lease in one UPDATE, with the owner rule
    (``_owner_q``) when the job has one: raises :class:`LeaseLost` when no row matched (the
    claim is gone, or the owner rule refused: returns whether it had one, so the caller can tell)."""
    rule = _owner_rule(job)
    lease = now + timedelta(seconds=settings.REPLY_JOB_LEASE)
    if rule is None:
        _fenced(job, send_started_at=now, lease_expires_at=lease)
        return False
    if rule == "opt_out":
        args: tuple[int, ...] = (job.inbound.conversation.guest_id, job.inbound_id)
    else:
        args = (job.inbound.conversation_id,)
    fence = _send_fence_query(rule)
    if statements.prepared_update(fence, job.pk, job.lease_token, args[0], now, lease, *args[1:]) != 1:
        raise LeaseLost(f"reply job {job.pk}: lease {job.lease_token} is no longer held")
    job.send_started_at, job.lease_expires_at, job.updated_at = now, lease, now
    return True


def _supersede(job: ReplyJob, detail: str) -> ProcessOutcome:
    """Close the job unsent: staff answer this guest. Never a dead letter; its pending outbound
    message (if any) is marked failed, so no page shows it as sent."""
    now = timezone.now()
    with transaction.atomic():
        _fenced(
            job,
            status=ReplyJob.Status.SUPERSEDED,
            lease_expires_at=None,
            completed_at=now,
            last_error=detail[:2000],
        )
        if job.outbound is not None:
            Message.objects.filter(pk=job.outbound.pk, status=Message.Status.PENDING).update(
                status=Message.Status.FAILED, failed_at=now, status_detail=handoff.NOT_SENT_DETAIL
            )
    logger.info("reply job %s superseded: %s", job.pk, detail)
    return ProcessOutcome(job.pk, "superseded", detail)


def _hand_to_staff(
    job: ReplyJob, reason: str, texts: _Texts, degraded_reason: str = ""
) -> ProcessOutcome | None:
    """The guest needs a person: the conversation waits for staff and this job becomes the one
    notice (``handoff``); None, and the pipeline sends it. If the bot no longer answers this guest
    (staff hold it, or a notice went out already), the job is superseded instead."""
    conversation = job.inbound.conversation
    hotel = conversation.hotel
    now = timezone.now()
    text = handoff_rules.notice_text(
        language=texts.language,
        staff_contact=hotel.staff_contact,
        reason=reason,
        overrides=texts.overrides,
        opens_at=selectors.hotel_schedule(hotel.pk).closed_until(now),  # when staff will answer
        now=now,
    )
    with transaction.atomic():  # a lost lease rolls the owner change back too
        if not handoff.conversation_request_staff(
            conversation=conversation, reason=reason, keep_job_id=job.pk
        ):
            return _supersede(job, f"the conversation is {conversation.owner}; no second notice")
        _fenced(
            job,
            kind=ReplyJob.Kind.HANDOFF,
            reply_text=text,
            degraded=bool(degraded_reason),
            degraded_reason=degraded_reason,
        )
    return None


def _advance(job: ReplyJob) -> ProcessOutcome:
    if job.manual_text:
        switched = _switch_to_manual_answer(job)
        if switched is not None:
            return switched
    conversation = job.inbound.conversation  # read with the claim
    unanswered = job.kind == ReplyJob.Kind.ANSWER and _bot_may_answer(job) and job.send_started_at is None
    if unanswered and not job.reply_text:
        stopped = _opt_out_or_in(job)
        if stopped is not None:
            return stopped
    if unanswered and job.kind == ReplyJob.Kind.ANSWER:
        if not conversation.bot_answers(timezone.now()):
            return _supersede(job, f"the conversation is {conversation.owner} ({conversation.owner_reason})")
        if conversation.guest.opted_out_at is not None:  # by a later message (_opt_out_or_in)
            return _supersede(job, opt_out.OPTED_OUT_DETAIL)
    answer: dict[str, Any] = {}  # a generated answer's fields, written with its outbound row
    if not job.reply_text:
        inbound = job.inbound
        started_at, t0 = timezone.now(), time.monotonic()
        burst = burst_messages(job=job) if job.kind == ReplyJob.Kind.ANSWER else [inbound]
        said = "\n".join(m.text for m in burst if m.message_type in TEXT_TYPES)
        wants = handoff_rules.guest_wants_staff(said) if said else None
        texts = _Texts(inbound.hotel_id, _guest_language(job, said, wants.language if wants else None))
        if wants is not None:  # the guest's own words, in any message of the burst: no AI call
            generated = _Generated("", handoff=wants.reason, note=f"the guest wrote of {wants.reason}")
        else:
            generated = _generate(job, burst, texts)
        outcome = (
            DeliveryAttempt.Outcome.DEGRADED if generated.degraded_reason else DeliveryAttempt.Outcome.OK
        )
        note = "; ".join(x for x in (generated.degraded_reason, generated.note) if x)
        _attempt(
            job,
            DeliveryAttempt.Step.GENERATE,
            started_at,
            t0,
            outcome,
            http_status=generated.ai_status,
            error=note,
            later=True,  # INSERTed with the send's row (or when this claim's processing ends)
        )
        if generated.handoff:
            superseded = _hand_to_staff(job, generated.handoff, texts, generated.degraded_reason)
            if superseded is not None:
                return superseded
        else:
            answer = {
                "reply_text": generated.text,
                "degraded": bool(generated.degraded_reason),
                "degraded_reason": generated.degraded_reason,
            }
    # The reply text is stored before sending: with the outbound row, in the same fenced UPDATE.
    if job.outbound is None:
        with transaction.atomic():  # a lost lease rolls the new row back
            outbound = Message(
                conversation=job.inbound.conversation,
                hotel_id=job.inbound.hotel_id,
                direction=Message.Direction.OUTBOUND,
                text=answer.get("reply_text", job.reply_text),
                status=Message.Status.PENDING,
            )
            statements.insert_row(outbound)  # Message.objects.create, its INSERT written once
            _fenced(job, outbound=outbound, **answer)
    elif answer:
        _fenced(job, **answer)
    paused = sending_paused()
    if paused:  # like a forced-open breaker: wait, drained in order when sending resumes
        return _park_pending_provider_recovery(job, 0.0, paused)
    hotel = job.inbound.conversation.hotel
    try:
        api_token = hotel.green_api_token
    except FieldEncryptionError as e:  # a wrong or missing key: never a ciphertext to Green API
        reason = f"the hotel's Green API token cannot be decrypted: {e.message}"
        return _bury(job, reason, error=e, dependency=green_api.DEPENDENCY, reason_code="token_unreadable")
    client = green_api.client_for(id_instance=hotel.green_api_instance_id, api_token=api_token)
    chat_id = job.inbound.conversation.guest.chat_id

    if job.send_started_at is not None:
        reconciled = _reconcile(job, client, chat_id)
        if reconciled is not None:
            return reconciled

    waiting = _earlier_reply_unsent(job)
    if waiting is not None:
        return _wait_for_earlier_reply(job, waiting)

    # The fence check, send_started_at and a renewed lease commit in one UPDATE right before the
    # send: a worker whose lease is gone stops here, and the send (bounded by GREEN_API_DEADLINE,
    # shorter than the lease) ends before anyone else can claim the job. The same UPDATE requires
    # the conversation's owner (the bot for an answer; the bot or waiting for the notice): a
    # takeover committed before it closes the job unsent, one committed after it leaves the send.
    now = timezone.now()
    try:
        _send_fence(job, now)
    except LeaseLost:
        if _owner_rule(job) is None or not _claim_holds(job):
            raise
        return _supersede(
            job,
            "the conversation is no longer the bot's, or the guest opted out (checked right before sending)",
        )
    t0 = time.monotonic()
    send = partial(_attempt, job, DeliveryAttempt.Step.SEND, now, t0)
    try:
        sent = client.send_message(chat_id=chat_id, text=job.reply_text)
    except green_api.GreenApiCircuitOpen as e:  # rejected before any I/O: surely not sent
        send(DeliveryAttempt.Outcome.REJECTED, error=str(e))
        return _park_pending_provider_recovery(job, e.retry_after or 0.0, str(e), not_sent=True)
    except green_api.GreenApiOutcomeUnknown as e:  # 500/502/504, reset or timeout after sending
        send(DeliveryAttempt.Outcome.UNKNOWN, http_status=e.status, error=str(e))
        return _schedule_retry(job, str(e), error=e)  # keep send_started_at: reconcile before resending
    except green_api.GreenApiTransientError as e:  # 429, 503, connect failure: not processed
        send(DeliveryAttempt.Outcome.NOT_SENT, http_status=e.status, error=str(e))
        return _schedule_retry(job, str(e), retry_after=e.retry_after, not_sent=True, error=e)
    except green_api.GreenApiPermanentError as e:  # refused (4xx): not sent
        send(DeliveryAttempt.Outcome.REFUSED, http_status=e.status, error=str(e))
        return _bury(job, str(e), not_sent=True, error=e, dependency=green_api.DEPENDENCY)
    send(DeliveryAttempt.Outcome.OK, http_status=200)
    return _confirm(job, sent.id_message)


def _guest_language(job: ReplyJob, text: str, hint: str | None) -> str:
    """The language to answer the job's guest in, from what they wrote (``text``: the job's message,
    or a burst's) (``messaging.language``); a new detection is kept on the guest (one UPDATE, only
    when it changed)."""
    guest = job.inbound.conversation.guest
    answer_in, store = language.guest_language(text, previous=guest.language, hint=hint)
    if store is not None:
        statements.update_row(Guest, guest.pk, {"language": store})
        guest.language = store
    return answer_in


def _opt_out_or_in(job: ReplyJob) -> ProcessOutcome | None:
    """The guest's message is a STOP: opt out and make this job the one confirmation (None: the
    pipeline sends it), or close it (opted out already, or the guest wrote again since). Any other
    message ends an opt-out set by an earlier one (``opt_out``), and is answered.

    The STOP locks the guest's row, which the intake of the guest's next message upserts (both
    paths): that message is either stored before (the STOP sees it and changes nothing) or after
    the opt-out commits (its own job then sees the opt-out, and clears it)."""
    inbound = job.inbound
    guest = inbound.conversation.guest
    stop = opt_out_rules.opt_out(inbound.text) if inbound.message_type in TEXT_TYPES else None
    if stop is None:
        # Only a guest opted out when this job was claimed can be opted in: an opt-out by an
        # earlier STOP is committed before this message is stored (the STOP locks the guest row the
        # intake upserts, and a STOP that sees this message changes nothing), so the claim, after
        # that, read it. A guest not opted out costs no UPDATE.
        if guest.opted_out_at is not None and opt_out.guest_opt_in(guest_id=guest.pk, message_id=inbound.pk):
            guest.opted_out_at = None
            logger.info("reply job %s: the guest wrote again; their opt-out ends", job.pk)
        return None
    answer_in = stop.language or _guest_language(job, inbound.text, None)
    with transaction.atomic():  # a lost lease rolls the opt-out back too
        done = opt_out.guest_opt_out(
            guest_id=guest.pk, message_id=inbound.pk, job_id=job.pk, now=timezone.now()
        )
        if done == "opted_out":
            _fenced(
                job,
                kind=ReplyJob.Kind.OPT_OUT,
                reply_text=_Texts(inbound.hotel_id, answer_in).text(TextKey.OPT_OUT),
            )
            guest.opted_out_at = timezone.now()
            return None
    why = "opted out already: confirmed once" if done == "already" else "the guest wrote again since"
    return _supersede(job, f"STOP: {why}")


def _claim_holds(job: ReplyJob) -> bool:
    return ReplyJob.objects.filter(
        pk=job.pk, lease_token=job.lease_token, status=ReplyJob.Status.IN_PROGRESS
    ).exists()


# --- per-guest order -------------------------------------------------------------------------------
#: Seconds a reply waits before looking again when an earlier reply to the same guest is unsent.
ORDER_WAIT = 0.5
_UNSENT = (
    ReplyJob.Status.PENDING,
    ReplyJob.Status.IN_PROGRESS,
    ReplyJob.Status.PENDING_PROVIDER_RECOVERY,
)


def _earlier_reply_unsent(job: ReplyJob) -> tuple[str, datetime] | None:
    """(status, next attempt) of the oldest earlier reply to this guest still on its way, or None.
    Keyed on the guest, not the conversation: the order holds across a conversation boundary too
    (a message just after the idle window starts a new conversation; its answer still waits for the
    previous one's). Jobs are created in the order the guest wrote (Green API delivers in order, and
    the intake stores one guest's messages one at a time), so a lower pk is an earlier message. A
    dead earlier reply holds nobody (staff decide)."""
    earlier = statements.prepared_read(_earlier_unsent_query, job.inbound.conversation.guest_id, job.pk)
    return earlier[0] if earlier else None


def _earlier_unsent_query(guest_id: int, job_id: int) -> QuerySet[Any]:
    return (
        ReplyJob.objects.filter(inbound__conversation__guest_id=guest_id, pk__lt=job_id, status__in=_UNSENT)
        .order_by("pk")
        .values_list("status", "next_attempt_at")[:1]
    )


def _wait_for_earlier_reply(job: ReplyJob, earlier: tuple[str, datetime]) -> ProcessOutcome:
    """Keep this guest's replies in the order they wrote: the answer is ready but an earlier
    reply is not sent yet (two workers, a retry backoff, a slower AI call). Not an attempt.
    Parked behind a parked reply (the drain releases a guest's replies oldest first); otherwise
    back to pending until just after the earlier one's next attempt (``ORDER_WAIT`` at least)."""
    status, earlier_due = earlier
    why = "an earlier reply to this guest is not sent yet"
    if status == ReplyJob.Status.PENDING_PROVIDER_RECOVERY:
        return _park_pending_provider_recovery(job, 0.0, why)
    now = timezone.now()
    wait = ORDER_WAIT
    if status == ReplyJob.Status.PENDING:  # in a retry backoff: look again once it has had its turn
        wait = min(max(ORDER_WAIT, (earlier_due - now).total_seconds() + ORDER_WAIT), retry_after_cap())
    with transaction.atomic():
        _fenced(
            job,
            status=ReplyJob.Status.PENDING,
            attempts=max(0, job.attempts - 1),
            next_attempt_at=now + timedelta(seconds=wait),
            lease_expires_at=None,
        )
        reply_job_enqueue_on_commit(job_id=job.pk, countdown=wait)
    return ProcessOutcome(job.pk, "waiting", f"{why}; looking again in {wait:.1f}s")


def _switch_to_manual_answer(job: ReplyJob) -> ProcessOutcome | None:
    """Staff answered by hand (``messaging.services.manual``): settle the earlier send, then make
    the staff text this job's reply, in a new outbound message, and go on through the pipeline.

    An earlier send still in doubt (``send_started_at``) is looked up once: the outbound row (the
    ``outgoingAPIMessageReceived`` webhook may have told us) or Green API's journal. Found: that
    reply reached the guest and its message is recorded as accepted. Not found, or the journal
    cannot be read now: it is recorded as failed with its outcome unknown, and it is never sent
    again (the job's text is the staff's from now on). So the staff answer goes out exactly once,
    the earlier text at most once; the journal's lag is not waited out: a guest who waited long
    enough for staff to step in should not wait two more minutes for a bookkeeping answer.
    """
    old = job.outbound
    conversation = job.inbound.conversation
    found: str | None = None
    if old is not None and job.send_started_at is not None:
        old.refresh_from_db(fields=["provider_message_id", "status"])
        found = old.provider_message_id or None
        if found is None:
            hotel = conversation.hotel
            client = green_api.client_for(
                id_instance=hotel.green_api_instance_id, api_token=hotel.green_api_token
            )
            started_at, t0 = timezone.now(), time.monotonic()
            step = partial(_attempt, job, DeliveryAttempt.Step.RECONCILE, started_at, t0)
            try:
                found = _journal_find(job, client, conversation.guest.chat_id)
            except green_api.GreenApiCircuitOpen as e:
                step(DeliveryAttempt.Outcome.REJECTED, error=f"before a manual answer: {e}")
            except green_api.GreenApiError as e:
                step(
                    DeliveryAttempt.Outcome.UNKNOWN,
                    http_status=e.status,
                    error=f"before a manual answer: {e}",
                )
            else:
                outcome = DeliveryAttempt.Outcome.OK if found else DeliveryAttempt.Outcome.UNKNOWN
                step(
                    outcome,
                    http_status=200,
                    error="before a manual answer: " + (found or "not in the journal"),
                )
    now = timezone.now()
    with transaction.atomic():  # a lost lease rolls the new row and the old row's update back
        if old is not None and found is not None:
            Message.objects.filter(pk=old.pk).update(provider_message_id=found)
            Message.objects.filter(
                pk=old.pk, status__in=[Message.Status.PENDING, Message.Status.FAILED]
            ).update(status=Message.Status.ACCEPTED, accepted_at=now, failed_at=None, status_detail="")
            transaction.on_commit(
                partial(statuses.deferred_statuses_apply, hotel_id=old.hotel_id, id_message=found),
                robust=True,
            )
        elif old is not None and old.status in (Message.Status.PENDING, Message.Status.FAILED):
            detail = (
                "outcome unknown (not in Green API's journal); replaced by a manual answer"
                if job.send_started_at is not None
                else "not sent; replaced by a manual answer"
            )
            Message.objects.filter(pk=old.pk).update(
                status=Message.Status.FAILED, failed_at=old.failed_at or now, status_detail=detail
            )
        outbound = Message.objects.create(
            conversation=conversation,
            hotel_id=job.inbound.hotel_id,
            direction=Message.Direction.OUTBOUND,
            text=job.manual_text,
            status=Message.Status.PENDING,
        )
        _fenced(
            job,
            reply_text=job.manual_text,
            manual_text="",
            degraded=False,
            degraded_reason="",
            outbound=outbound,
            send_started_at=None,
        )
    return None


def _journal_find(job: ReplyJob, client: green_api.GreenApiClient, chat_id: str) -> str | None:
    """The one journal reconciliation: read Green API's journal of outgoing messages back to the
    job's ``send_started_at`` (less :data:`RECONCILE_SLACK`, in whole minutes plus 2) and return the
    ``idMessage`` of this job's earlier send, or None. Raises ``GreenApiError`` (``GreenApiCircuitOpen``
    when the journal's breaker rejects the read)."""
    assert job.send_started_at is not None
    since = job.send_started_at - timedelta(seconds=RECONCILE_SLACK)
    minutes = int((timezone.now() - since).total_seconds() // 60) + 2
    return _adoptable(job, client.last_outgoing_messages(minutes=minutes), chat_id)


def _adoptable(job: ReplyJob, journal: list[green_api.OutgoingJournalEntry], chat_id: str) -> str | None:
    """The journal entry that is this job's earlier send: same chat and text, inside the window,
    not owned by another outbound row; the earliest at or after ``send_started_at`` first (the
    journal has whole seconds), then the earliest in the clock-skew slack before it."""
    assert job.send_started_at is not None
    assert job.outbound is not None
    started = job.send_started_at.replace(microsecond=0)
    since = started - timedelta(seconds=RECONCILE_SLACK)
    candidates = sorted(
        (e for e in journal if e.chat_id == chat_id and e.text == job.reply_text and e.timestamp >= since),
        key=lambda e: (e.timestamp < started, e.timestamp, e.id_message),
    )
    if not candidates:
        return None
    owned = set(
        Message.objects.filter(
            hotel_id=job.outbound.hotel_id,
            direction=Message.Direction.OUTBOUND,
            provider_message_id__in=[e.id_message for e in candidates],
        )
        .exclude(pk=job.outbound.pk)
        .values_list("provider_message_id", flat=True)
    )
    return next((e.id_message for e in candidates if e.id_message not in owned), None)


def _reconcile(job: ReplyJob, client: green_api.GreenApiClient, chat_id: str) -> ProcessOutcome | None:
    """An earlier send's outcome is unknown: find it in Green API's journal or wait out its lag."""
    assert job.send_started_at is not None
    assert job.outbound is not None
    started_at, t0 = timezone.now(), time.monotonic()
    step = partial(_attempt, job, DeliveryAttempt.Step.RECONCILE, started_at, t0)
    job.outbound.refresh_from_db(fields=["provider_message_id"])
    if job.outbound.provider_message_id:  # the outgoingAPIMessageReceived webhook already told us
        step(DeliveryAttempt.Outcome.OK, error="known from Green API's outgoingAPIMessageReceived webhook")
        return _confirm(job, job.outbound.provider_message_id)
    try:
        id_message = _journal_find(job, client, chat_id)
    except green_api.GreenApiCircuitOpen as e:
        step(DeliveryAttempt.Outcome.REJECTED, error=str(e))
        return _park_pending_provider_recovery(job, e.retry_after or 0.0, str(e))  # still unknown: keep it
    except green_api.GreenApiError as e:
        step(DeliveryAttempt.Outcome.UNKNOWN, http_status=e.status, error=str(e))
        return _schedule_retry(job, f"reconcile: {e}", error=e)
    if id_message is not None:
        logger.info("reply job %s: earlier send found in Green API journal as %s", job.pk, id_message)
        step(DeliveryAttempt.Outcome.OK, http_status=200, error=f"found in the journal as {id_message}")
        return _confirm(job, id_message)
    settle_at = job.send_started_at + timedelta(seconds=settings.REPLY_RECONCILE_GRACE)
    if timezone.now() < settle_at:  # Green API's journal may lag; ask again once it has settled
        wait = (settle_at - timezone.now()).total_seconds()
        step(DeliveryAttempt.Outcome.UNKNOWN, http_status=200, error="not in the journal yet")
        return _schedule_retry(job, "send outcome unknown; waiting for Green API's journal", retry_after=wait)
    step(DeliveryAttempt.Outcome.NOT_SENT, http_status=200, error="not in the journal after the grace period")
    return None  # not in the journal after the grace period: it was not sent; the caller resends


def _confirm(job: ReplyJob, id_message: str) -> ProcessOutcome:
    now = timezone.now()
    assert job.outbound is not None
    # Only a job that failed before can have a dead letter (_bury sets last_error; only this
    # confirm clears it): the happy path skips the extra UPDATE.
    had_failed = bool(job.last_error) or job.manual_at is not None
    try:
        with transaction.atomic():
            # The id, accepted if still pending, and whether statuses wait for it: one statement.
            if statuses.outbound_accepted(
                message_id=job.outbound.pk, hotel_id=job.outbound.hotel_id, id_message=id_message, at=now
            ):
                statuses.deferred_statuses_apply(hotel_id=job.outbound.hotel_id, id_message=id_message)
            _fenced(
                job,
                status=ReplyJob.Status.DONE,
                send_started_at=None,
                lease_expires_at=None,
                completed_at=now,
                last_error="",
            )
            if had_failed:
                resolution = (
                    f"answered by hand; delivered as {id_message}"
                    if job.manual_at is not None
                    else f"delivered as {id_message}"
                )
                dead_letters.subject_resolved(subject=job, resolution=resolution)
            # A status whose transaction was open while this one ran could not see the id and was
            # stored deferred after the lookup above: look again once this commit is visible.
            transaction.on_commit(
                partial(
                    statuses.deferred_statuses_apply, hotel_id=job.outbound.hotel_id, id_message=id_message
                ),
                robust=True,
            )
    except LeaseLost:
        # Sent, but the job is another worker's now: leave it the id, so its reconcile is instant.
        with contextlib.suppress(IntegrityError), transaction.atomic():
            Message.objects.filter(pk=job.outbound.pk, provider_message_id__isnull=True).update(
                provider_message_id=id_message
            )
        raise
    if job.kind != ReplyJob.Kind.STAFF:  # the bot's replies: a staff message is not the bot's latency
        REPLIES.labels("degraded" if job.degraded else "done").inc()
        written = job.burst_started_at or job.inbound.created_at  # a burst: its first message
        REPLY_LATENCY.observe(max(0.0, (now - written).total_seconds()))
    if job.kind == ReplyJob.Kind.STAFF or job.manual_at is not None:  # staff wrote it
        waited = handoff.conversation_staff_replied(conversation_id=job.inbound.conversation_id, at=now)
        if waited is not None:
            FIRST_HUMAN_REPLY.observe(waited)
    return ProcessOutcome(job.pk, "done", id_message)


def _job_retry_config() -> RetryConfig:
    """The job-level backoff (exponential, equal jitter), run by ``reliability.retry``."""
    base = settings.REPLY_RETRY_BASE_DELAY
    return RetryConfig(
        max_attempts=max(1, settings.REPLY_MAX_ATTEMPTS),
        base_delay=base,
        max_delay=max(base, settings.REPLY_RETRY_MAX_DELAY),
        jitter="equal",
    )


def _schedule_retry(
    job: ReplyJob,
    reason: str,
    *,
    retry_after: float | None = None,
    not_sent: bool = False,
    error: BaseException | None = None,
) -> ProcessOutcome:
    """Back to pending after the backoff (raised to a capped Retry-After). ``send_started_at`` is
    cleared only with ``not_sent`` (the failure proved nothing left); otherwise it stays, and the
    next attempt reconciles before sending. ``error`` (the exception, with its HTTP status) goes
    to the dead letter if this was the last attempt."""
    if job.attempts >= settings.REPLY_MAX_ATTEMPTS:
        return _bury(
            job,
            f"gave up after {job.attempts} attempts; last error: {reason}",
            not_sent=not_sent,
            error=error,
            dependency=green_api.DEPENDENCY if isinstance(error, green_api.GreenApiError) else "",
            reason_code="attempts_exhausted",
        )
    error_text = reason
    delay = retry_delay(_job_retry_config(), max(1, job.attempts), retry_after=retry_after)
    fields: dict[str, Any] = {
        "status": ReplyJob.Status.PENDING,
        "next_attempt_at": timezone.now() + timedelta(seconds=delay),
        "lease_expires_at": None,
        "last_error": error_text[:2000],
    }
    if not_sent:
        fields["send_started_at"] = None
    with transaction.atomic():
        _fenced(job, **fields)
        reply_job_enqueue_on_commit(job_id=job.pk, countdown=delay)
    return ProcessOutcome(job.pk, "retry", f"in {delay:.1f}s: {error_text}")


#: The dead-letter kinds of a reply: one open letter per job across both.
REPLY_KINDS = (DeadLetter.Kind.REPLY_GENERATION, DeadLetter.Kind.REPLY_SEND)


def _failure(
    job: ReplyJob, reason: str, *, error: BaseException | None, dependency: str, reason_code: str
) -> dead_letters.Failure:
    conversation = job.inbound.conversation
    hotel, guest = conversation.hotel, conversation.guest
    first_failure = (
        DeliveryAttempt.objects.filter(job_id=job.pk)
        .exclude(outcome__in=[DeliveryAttempt.Outcome.OK, DeliveryAttempt.Outcome.DEGRADED])
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return dead_letters.Failure(
        kind=DeadLetter.Kind.REPLY_SEND if job.reply_text else DeadLetter.Kind.REPLY_GENERATION,
        reason_code=reason_code,
        reason=green_api.mask_token(reason),
        subject=f"reply job {job.pk}",
        subject_type="messaging.replyjob",
        subject_id=job.pk,
        tenant=str(hotel.pk),
        dependency=dependency,
        error=error,
        http_status=retry.http_status(error),
        attempts=job.attempts,
        first_failed_at=first_failure,
        payload={
            "job_id": job.pk,
            "inbound_message_id": job.inbound_id,
            "hotel_id": hotel.pk,
            "guest": {
                "display_name": guest.display_name,
                "chat_id": masking.mask_chat_id(guest.chat_id),
            },
        },
        secrets=plaintexts(hotel),
    )


def _bury(
    job: ReplyJob,
    reason: str,
    *,
    not_sent: bool = False,
    error: BaseException | None = None,
    dependency: str = "",
    reason_code: str = "refused",
) -> ProcessOutcome:
    """Dead, with its dead letter in the same transaction (so neither exists without the other).
    An unknown send keeps ``send_started_at``: a redrive reconciles before sending again."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": ReplyJob.Status.DEAD,
        "lease_expires_at": None,
        "completed_at": now,
        "last_error": reason[:2000],
    }
    if not_sent:
        fields["send_started_at"] = None
    with transaction.atomic():
        if _bot_may_answer(job):
            # The guest waits for staff now (no notice can be sent). The conversation row is locked
            # before the job's, in the order every owner change takes them (no deadlock).
            handoff.conversation_request_staff(
                conversation=job.inbound.conversation,
                reason=Conversation.OwnerReason.DEAD_REPLY,
                keep_job_id=job.pk,
            )
        _fenced(job, **fields)
        if job.outbound is not None:
            Message.objects.filter(pk=job.outbound.pk).update(
                status=Message.Status.FAILED, failed_at=now, status_detail=reason[:300]
            )
        dead_letters.record_failure(
            _failure(job, reason, error=error, dependency=dependency, reason_code=reason_code),
            same_kinds=REPLY_KINDS,
        )
    REPLIES.labels("dead").inc()
    logger.error("reply job %s is dead: %s", job.pk, reason)
    return ProcessOutcome(job.pk, "dead", reason)


# --- pending provider recovery (parked replies) ---------------------------------------------------
def _park_pending_provider_recovery(
    job: ReplyJob, retry_after: float, why: str, *, not_sent: bool = False
) -> ProcessOutcome:
    """A breaker (sends or journal) or our pacing refused the call before any I/O: park the job
    as pending provider recovery; the drain (``reply_jobs_drain``) releases it. Not an attempt.
    ``not_sent`` when it was the send that was refused (nothing left); a refused reconcile keeps
    the earlier send's ``send_started_at``."""
    wait = min(max(0.0, retry_after), retry_after_cap())
    fields: dict[str, Any] = {
        "status": ReplyJob.Status.PENDING_PROVIDER_RECOVERY,
        "attempts": max(0, job.attempts - 1),
        "next_attempt_at": timezone.now() + timedelta(seconds=wait),
        "lease_expires_at": None,
        "last_error": f"{why}; retry in {wait:.0f}s"[:2000],
    }
    if not_sent:
        fields["send_started_at"] = None
    _fenced(job, **fields)
    return ProcessOutcome(job.pk, PENDING_PROVIDER_RECOVERY, job.last_error)


def sending_paused() -> str | None:
    """Why sends must wait now (``outbound_sending`` off, Green API maintenance), or None."""
    if not degradation.is_enabled("outbound_sending"):
        return "outbound_sending switched off"
    if degradation.under_maintenance(green_api.DEPENDENCY):
        return "green_api under maintenance"
    return None


_drain_clock = time.monotonic  # the drain's pacing clock (tests step it)


def _round_robin_by_guest(jobs: list[tuple[int, int]]) -> list[int]:
    """(job id, guest id) oldest first -> the release order: each guest's oldest, then each guest's
    second oldest, ... So a guest's replies keep their order and are spread as far apart as the
    waiting guests allow (G guests waiting: G send slots), and one guest's backlog delays nobody."""
    per_guest: dict[int, list[int]] = {}
    for job_id, guest_id in jobs:
        per_guest.setdefault(guest_id, []).append(job_id)
    queues = list(per_guest.values())
    return [queue[r] for r in range(max(map(len, queues), default=0)) for queue in queues if r < len(queue)]


def reply_jobs_drain(*, limit: int = 500) -> int:
    """Release jobs parked while Green API's breaker was open, oldest first, guests in turn.

    Breaker admitting calls: release up to ``limit`` at ``GREEN_API_SEND_RATE`` per second
    (staggered countdowns). Open or forced open with its wait over, or half-open: release one job,
    the probe (the snapshot ends a timed force-open on time, so parked replies move within one
    drain interval of its end). Still open: release nothing. Sending paused by degradation
    (``outbound_sending`` off, Green API maintenance): release nothing, like a forced-open breaker.
    """
    if sending_paused():
        return 0
    # Oldest message first (job ids follow the webhook's arrival order, Green API's per instance),
    # not the order the jobs happened to park in (concurrent workers park a guest's messages in
    # any order: make load's drain sent 6 of 22 guests' replies out of the order they wrote).
    waiting = ReplyJob.objects.filter(status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY).order_by("pk")
    snap = registry.breaker(green_api.DEPENDENCY).snapshot()
    if snap.state in (State.CLOSED, State.DISABLED, State.METRICS_ONLY):
        batch = limit
    elif snap.state == State.HALF_OPEN or (
        snap.state in (State.OPEN, State.FORCED_OPEN) and snap.retry_after <= 0
    ):
        batch = 1
    else:
        return 0
    ids = _round_robin_by_guest(list(waiting.values_list("pk", "inbound__conversation__guest_id")[:batch]))
    now, started = timezone.now(), _drain_clock()
    rate = max(settings.GREEN_API_SEND_RATE, 0.1)
    released = 0
    for i, job_id in enumerate(ids):
        # Job i is due i/rate after the drain started, whatever releasing the jobs before it took
        # (a countdown of i/rate from each publish would add that time to every gap: 100 jobs
        # released in 0.6 s drained at 18/s instead of 20/s).
        due_in = i / rate
        updated = ReplyJob.objects.filter(pk=job_id, status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY).update(
            status=ReplyJob.Status.PENDING, next_attempt_at=now + timedelta(seconds=due_in)
        )
        if updated:
            released += 1
            reply_job_publish(job_id=job_id, countdown=max(0.0, due_in - (_drain_clock() - started)))
    return released
