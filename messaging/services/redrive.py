"""The dead-letter handler of the reply kinds (``reply_generation``, ``reply_send``), registered in
``MessagingConfig.ready``: redrive a dead reply through its own pipeline, alert staff, link admin."""

from __future__ import annotations

from typing import Any

from messaging.models import ReplyJob
from messaging.services import alerts, replies
from reliability.dead_letters import RedriveResult
from reliability.models import DeadLetter


class ReplyDeadLetters:
    """``reliability.dead_letters.Handler`` for both reply kinds (subject: the reply job)."""

    def redrive(self, letter: DeadLetter, *, actor: Any = None) -> RedriveResult:
        """DONE → resolved (already delivered). DEAD → requeued through the same pipeline: attempts
        reset, due now, ``send_started_at`` kept so an earlier send in doubt is reconciled before
        any resend; the letter resolves when the job reaches DONE. Pending, in progress or parked →
        handed back untouched (the pipeline already has it)."""
        job = None
        if letter.subject_id is not None:
            job = ReplyJob.objects.filter(pk=letter.subject_id).only("pk", "status").first()
        if job is None:
            return RedriveResult(
                detail=f"Reply job {letter.subject_id} no longer exists; discard the letter."
            )
        if job.status == ReplyJob.Status.DONE:
            return RedriveResult(resolved=True, detail="already delivered")
        if job.status == ReplyJob.Status.DEAD:
            if replies.reply_jobs_requeue(job_ids=[job.pk]):
                return RedriveResult(handed_back=True, detail="requeued")
            job.refresh_from_db(fields=["status"])  # it moved meanwhile: report what it is now
            if job.status == ReplyJob.Status.DONE:
                return RedriveResult(resolved=True, detail="already delivered")
        return RedriveResult(handed_back=True, detail=f"the reply job is {job.get_status_display()} already")

    def alert(self, letter: DeadLetter) -> None:
        alerts.dead_reply_alert_send(letter=letter)

    def links(self, letter: DeadLetter) -> list[tuple[str, str]]:
        """(label, admin URL) pairs the dead-letter admin shows, "Answer by hand" among them."""
        inbound_id = (letter.payload or {}).get("inbound_message_id")
        if letter.subject_id is None:
            return []
        if not isinstance(inbound_id, int):
            inbound_id = (
                ReplyJob.objects.filter(pk=letter.subject_id).values_list("inbound_id", flat=True).first()
            )
            if inbound_id is None:
                return []
        return alerts.reply_job_links(letter.subject_id, inbound_id)
