"""A guest who asked us to stop writing (STOP), and its end (docs/handoff.md, "Opt-out").

``Guest.opted_out_at`` set: no bot message goes to the guest. The reply pipeline acts on the
guest's messages in the worker (``replies``), in the order they were written, whatever order the
workers take them in: ``Guest.opt_out_message_id`` is the guest's message that last set or
cleared the opt-out, and an earlier message changes nothing after a later one.

* **STOP** (:func:`guest_opt_out`, in the worker's transaction): the guest's row is locked, the
  opt-out set, and the bot's unsent replies to the guest's earlier messages closed (the takeover
  rule's :func:`handoff.guest_bot_jobs_supersede`); the STOP's own job becomes the one
  confirmation. A STOP after which the guest wrote again changes nothing (their next message
  counts); a STOP while opted out already is not confirmed again.
* **The guest writes again** (:func:`guest_opt_in`): any other message clears it, and is answered.
* **Staff clear it** (:func:`guests_opt_out_clear`, the guest admin's action; the API's
  :func:`conversation_opt_out_clear`): audited.

The send fence (``replies._owner_q``) refuses the bot's answers and notices to an opted-out
guest in the same conditional UPDATE that checks the owner, and a confirmation to a guest no
longer opted out by that STOP. Staff replies still go: a person answering a guest who wrote to
the hotel is not the bot writing to someone who asked it to stop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from hotelbot.exceptions import NotFound
from messaging.models import Guest, Message
from messaging.selectors import hotels_visible_to
from messaging.services import handoff
from reliability.audit import audit_record
from reliability.masking import mask_chat_id
from reliability.metrics import OPT_OUTS

#: The status detail of a bot reply closed because the guest opted out.
OPTED_OUT_DETAIL = "not sent: the guest opted out"


def guest_opt_out(
    *, guest_id: int, message_id: int, job_id: int, now: datetime
) -> Literal["opted_out", "already", "stale"]:
    """The guest's message ``message_id`` (answered by job ``job_id``) is a STOP; inside the
    caller's transaction. ``opted_out``: set now, confirm it; ``already``: opted out before (no
    second confirmation); ``stale``: the guest wrote again after it, or a later message decided
    already (nothing changed)."""
    state = (
        Guest.objects.select_for_update()
        .filter(pk=guest_id)
        .values_list("opted_out_at", "opt_out_message_id")
        .first()
    )
    wrote_again = Message.objects.filter(
        conversation__guest_id=guest_id, direction=Message.Direction.INBOUND, pk__gt=message_id
    ).exists()
    if state is None or state[1] >= message_id or wrote_again:
        return "stale"
    opted_out_at, _ = state
    Guest.objects.filter(pk=guest_id).update(opted_out_at=opted_out_at or now, opt_out_message_id=message_id)
    handoff.guest_bot_jobs_supersede(
        guest_id=guest_id, now=now, keep_job_id=job_id, before_job_id=job_id, detail=OPTED_OUT_DETAIL
    )
    if opted_out_at is not None:
        return "already"
    transaction.on_commit(OPT_OUTS.inc)  # counted once the opt-out is the truth
    return "opted_out"


def guest_opt_in(*, guest_id: int, message_id: int) -> bool:
    """The guest wrote ``message_id`` (not a STOP): an opt-out set by an earlier message ends.
    True when it did. One UPDATE that changes nothing for a guest who never opted out."""
    return bool(
        Guest.objects.filter(
            pk=guest_id, opted_out_at__isnull=False, opt_out_message_id__lt=message_id
        ).update(opted_out_at=None, opt_out_message_id=message_id)
    )


def guests_opt_out_clear(*, guests: QuerySet[Guest], actor: Any, via: str) -> int:
    """Staff let opted-out guests (of ``guests``: the caller's scope) receive the bot's messages
    again; each is audited as ``guest.opt_out_clear``. Returns how many were opted out."""
    cleared = 0
    for guest in guests.filter(opted_out_at__isnull=False).order_by("pk"):
        with transaction.atomic():
            if not Guest.objects.filter(pk=guest.pk, opted_out_at__isnull=False).update(opted_out_at=None):
                continue  # cleared meanwhile (the guest wrote, or another click)
            audit_record(
                actor=actor,
                via=via,
                action="guest.opt_out_clear",
                target=guest,
                tenant=str(guest.hotel_id),
                details={
                    "chat_id": mask_chat_id(guest.chat_id),
                    "opted_out_at": guest.opted_out_at.isoformat() if guest.opted_out_at else None,
                    "cleared_at": timezone.now().isoformat(),
                },
            )
        cleared += 1
    return cleared


def conversation_opt_out_clear(*, conversation_id: int, actor: Any, via: str) -> int:
    """Staff clear the opt-out of the guest of conversation ``conversation_id`` (of a hotel the
    actor staffs; another hotel's is :class:`NotFound`), as :func:`guests_opt_out_clear` does.
    Returns 1 when the guest was opted out, 0 when not (nothing to clear, nothing audited)."""
    guest_ids = Guest.objects.filter(
        conversations__pk=conversation_id, hotel__in=hotels_visible_to(user=actor)
    ).values_list("pk", flat=True)
    guest_id = guest_ids.first()
    if guest_id is None:
        raise NotFound(f"No conversation {conversation_id}.")
    return guests_opt_out_clear(guests=Guest.objects.filter(pk=guest_id), actor=actor, via=via)
