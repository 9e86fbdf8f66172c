"""One answer for a burst: a guest's messages written within a quiet window get one reply.

A guest who writes "hi" / "do you have parking" / "and breakfast?" in two seconds gets one answer
that reads the three together (one DeepSeek call, one send), not three. The rule (docs/handoff.md):

* A new answer job is due ``REPLY_BURST_QUIET_SECONDS`` after its message (the claim takes only
  due jobs), and at the latest ``REPLY_BURST_MAX_SECONDS`` after the burst's first message
  (``ReplyJob.burst_started_at``).
* When the guest's next message is stored while the answer job of their previous message is still
  waiting out that window (pending and not yet due, nothing generated, no send started, not
  answered by hand), that job is closed as ``merged`` (``merged_into``: the new message's job) in
  the intake's own transaction, and the new job inherits the burst's start: it is due at
  ``min(now + quiet, burst start + cap)``. Jobs merged into the closed one move to the new one, so
  ``merged_into`` always names the job that answers.
* A job already claimed (generating or sending) is never merged into: the closing UPDATE is
  conditional on the job's row (status pending, no reply text, not due yet), so a claim committed
  first wins and the new message starts a burst of its own; a merge committed first leaves the
  claim nothing to take (the job is no longer pending).

``REPLY_BURST_QUIET_SECONDS=0`` turns bursts off: every job is due at once and nothing merges.
The PostgreSQL one-statement intake writes the same rows in SQL (``inbound_sql``); this module is
the ORM path's (SQLite, server-side binding) and the one definition of the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from messaging.models import Conversation, ReplyJob
from reliability.metrics import REPLY_BURSTS_MERGED


@dataclass(frozen=True, slots=True)
class Window:
    """The burst window as of ``now``: ``due`` is a new burst's answer time, ``cap`` the longest a
    burst may wait after its first message, ``open_since`` the earliest first message of a burst
    still open (``now - cap``); ``enabled`` False when bursts are off (quiet 0)."""

    now: datetime
    due: datetime
    cap: timedelta
    open_since: datetime
    enabled: bool


def window(now: datetime) -> Window:
    quiet = max(0.0, settings.REPLY_BURST_QUIET_SECONDS)
    cap = timedelta(seconds=max(quiet, settings.REPLY_BURST_MAX_SECONDS))
    return Window(
        now=now, due=now + timedelta(seconds=quiet), cap=cap, open_since=now - cap, enabled=quiet > 0
    )


def mergeable_q(w: Window) -> Q:
    """An answer job that may still be merged into the guest's next message's job: waiting out its
    quiet window (pending, not due yet), nothing generated or sent, not answered by hand, its burst
    younger than the cap. The same conditions as the one-statement intake's (``inbound_sql``)."""
    return Q(
        kind=ReplyJob.Kind.ANSWER,
        status=ReplyJob.Status.PENDING,
        reply_text="",
        send_started_at__isnull=True,
        manual_at__isnull=True,
        manual_text="",
        next_attempt_at__gt=w.now,
        burst_started_at__gt=w.open_since,
    )


def closed_fields(w: Window) -> dict[str, object]:
    """The fields a merged job is closed with (besides ``merged_into``)."""
    return {
        "status": ReplyJob.Status.MERGED.value,
        "completed_at": w.now,
        "lease_expires_at": None,
        "updated_at": w.now,
    }


def burst_merge(*, conversation: Conversation, job: ReplyJob, w: Window) -> int | None:
    """Inside the intake's transaction, after the new message's job ``job`` was inserted: close the
    guest's previous answer job as merged into ``job`` if it is still waiting out its window, and
    make ``job`` due with the burst (``job`` is updated in place). Returns the merged job's id.

    Only the latest earlier answer job of the conversation is looked at (a burst never spans
    conversations: the cap is seconds, the idle window hours); the conditional UPDATE takes its row
    lock and re-checks the conditions, so a concurrent claim is never overtaken."""
    if not w.enabled:
        return None
    earlier = (
        ReplyJob.objects.filter(
            inbound__conversation=conversation,
            inbound__created_at__gte=w.open_since,
            kind=ReplyJob.Kind.ANSWER,
            pk__lt=job.pk,
        )
        .order_by("-pk")
        .values_list("pk", "burst_started_at")
        .first()
    )
    if earlier is None:
        return None
    earlier_id, started = earlier
    if started is None:  # a job from before bursts
        return None
    closed = ReplyJob.objects.filter(mergeable_q(w), pk=earlier_id).update(
        merged_into=job, **closed_fields(w)
    )
    if not closed:
        return None
    ReplyJob.objects.filter(merged_into_id=earlier_id).update(merged_into=job, updated_at=w.now)
    job.burst_started_at = started
    job.next_attempt_at = min(w.due, started + w.cap)
    ReplyJob.objects.filter(pk=job.pk).update(
        burst_started_at=job.burst_started_at, next_attempt_at=job.next_attempt_at
    )
    merged_on_commit()
    return int(earlier_id)


def merged_on_commit() -> None:
    """Count a merge once its transaction commits (``hotelbot_reply_bursts_merged_total``)."""
    transaction.on_commit(partial(REPLY_BURSTS_MERGED.inc))
