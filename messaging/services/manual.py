"""Answer by hand: a staff member writes the reply a guest is still waiting for.

The staff text goes out through the reply pipeline itself (claim, fencing, reconciliation,
breaker parking, retries, the dead letter if it fails for good), not by a side channel, so it
reaches the guest exactly once and resolves the job's dead letter when Green API accepts it.

What happens to an earlier reply whose send is still in doubt (``send_started_at`` set: a 500,
a reset or a timeout after the request left) is decided by the pipeline's first step on the next
claim (``replies._switch_to_manual_answer``): it looks the earlier send up once (the outbound row,
then Green API's journal); found, it is recorded as delivered; not found, it is recorded as failed
with its outcome unknown. Either way the earlier text is never sent again and the staff answer is
sent as a new outbound message: the guest gets the staff answer once and, at worst, also the
earlier (different) automatic reply, never the same text twice.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from messaging.models import ReplyJob
from messaging.selectors import hotels_visible_to
from messaging.services import replies
from messaging.services.handoff import MAX_TEXT as MAX_TEXT  # re-exported: the forms cap answers with it
from messaging.services.handoff import staff_text_clean
from reliability.audit import audit_record


def reply_answer_manually(
    *, job_id: int, text: str, actor: Any, via: str, allow_after_delivery: bool = False
) -> ReplyJob:
    """Queue ``text`` as the answer to the guest of reply job ``job_id``; returns the job.

    Refused (ValidationFailed) on an empty or too long text, on a job whose reply was already
    delivered (unless ``allow_after_delivery``: a follow-up from staff) and while an earlier manual
    answer is still on its way. A job of a hotel ``actor`` does not staff is NotFound (404, so ids
    cannot be probed); ``actor=None`` is the system. Audited as ``reply.answer_manually``.
    """
    text = staff_text_clean(text, what="answer")
    with transaction.atomic():
        jobs = ReplyJob.objects.select_for_update(of=("self",)).select_related(
            "inbound__conversation__hotel", "outbound"
        )
        if actor is not None:
            jobs = jobs.filter(inbound__conversation__hotel__in=hotels_visible_to(user=actor))
        job = jobs.filter(pk=job_id).first()
        if job is None:
            raise NotFound(f"No reply job {job_id}.")
        if job.status == ReplyJob.Status.DONE and not allow_after_delivery:
            raise ValidationFailed(
                "This guest's reply was already delivered; confirm to send your answer as a follow-up.",
                details={"allow_after_delivery": "Required for a delivered reply."},
            )
        if job.manual_at is not None and not job.manual_text and job.status not in _SETTLED:
            raise ValidationFailed(
                "A manual answer to this guest is being sent already; wait until it is delivered or fails."
            )
        previous = job.status
        now = timezone.now()
        ReplyJob.objects.filter(pk=job.pk).update(
            manual_text=text,
            manual_at=now,
            status=ReplyJob.Status.PENDING,
            next_attempt_at=now,
            attempts=0,
            completed_at=None,
            lease_expires_at=None,
            # A worker still holding a claim loses it: its next fenced write fails, before any send.
            lease_token="",
            updated_at=now,
        )
        audit_record(
            actor=actor,
            via=via,
            action="reply.answer_manually",
            target=job,
            tenant=str(job.inbound.conversation.hotel_id),
            details={
                "previous_status": previous,
                "earlier_send_in_doubt": job.send_started_at is not None,
                "text": text[:500],
            },
        )
        replies.reply_job_enqueue_on_commit(job_id=job.pk)
    job.refresh_from_db()
    return job


_SETTLED = (ReplyJob.Status.DONE, ReplyJob.Status.DEAD, ReplyJob.Status.SUPERSEDED)
