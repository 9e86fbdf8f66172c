"""Outbound delivery statuses: applied in order and never backwards; early ones wait for their id.

A status can arrive before we know the message's ``idMessage``: the worker died after Green API
accepted the send, and the id is only adopted later by reconciliation, or the job's transaction
recording the id is still open. Such statuses are kept as :class:`DeferredStatus` rows and applied
when the id becomes known, instead of being dropped: by the transaction that records the id, and
after both commits (each side looks again in ``on_commit``), so none is orphaned by the race.

Per hotel: Green API idMessages are unique per instance, not across instances, and one hotel's
instance must not move another hotel's messages. Every lookup here is by (hotel, idMessage), the
hotel being the one whose instance reported the status (the webhook authenticates the token
against it): a status naming an id only another hotel has is deferred for the reporting hotel
(and purged unclaimed), never applied to the other hotel's message. A deferred status is applied
only to its own hotel's message.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from functools import partial

from django.db import connection, transaction
from django.db.models import QuerySet

from messaging.models import DeferredStatus, Message
from messaging.notifications import OutgoingStatus
from messaging.services.statements import column, model_field, own_transaction, prepared_read

logger = logging.getLogger(__name__)

# Outbound statuses only move forward; a late "delivered" never overwrites "read".
_RANK = {
    Message.Status.PENDING: 0,
    Message.Status.ACCEPTED: 1,
    Message.Status.SENT: 2,
    Message.Status.DELIVERED: 3,
    Message.Status.READ: 4,
}
_PROVIDER_STATUS = {
    "sent": Message.Status.SENT,
    "delivered": Message.Status.DELIVERED,
    "read": Message.Status.READ,
}
_TIMESTAMP_FIELD = {
    Message.Status.SENT: "sent_at",
    Message.Status.DELIVERED: "delivered_at",
    Message.Status.READ: "read_at",
    Message.Status.FAILED: "failed_at",
}
DEFERRED_KEEP = timedelta(days=2)  # Green API keeps undelivered notifications for 24 h


def _forward_from(new: Message.Status) -> list[str]:
    """The statuses ``new`` may follow (``_apply``'s rules): a later one, never out of failed, and
    failed never after delivered or read."""
    if new == Message.Status.FAILED:
        return [Message.Status.PENDING, Message.Status.ACCEPTED, Message.Status.SENT]
    return [s for s, rank in _RANK.items() if rank < _RANK[new]]


@functools.cache
def _forward_statement(new: Message.Status) -> tuple[str, tuple[str, ...]]:
    """``UPDATE ... RETURNING id`` moving a known outbound message of one hotel to ``new`` from a
    status it may follow, and the fields it sets (in parameter order), built once per status."""
    names = ("status", _TIMESTAMP_FIELD[new], *(("status_detail",) if new == Message.Status.FAILED else ()))
    allowed = ", ".join(["%s"] * len(_forward_from(new)))
    meta, qn = Message._meta, connection.ops.quote_name
    # Identifiers from the model, quoted by the backend; every value is a parameter.
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{column(Message, n)} = %s' for n in names)} "  # noqa: S608
        f"WHERE {column(Message, 'hotel')} = %s AND {column(Message, 'direction')} = %s "
        f"AND {column(Message, 'provider_message_id')} = %s "
        f"AND {column(Message, 'status')} IN ({allowed}) RETURNING {qn(meta.pk.column)}"
    )
    return sql, names


def _forward_update(hotel_id: int, status: OutgoingStatus) -> int | None:
    """The common case in one statement: the message is known and the status moves it forward.
    One conditional ``UPDATE ... RETURNING`` in autocommit (PostgreSQL re-checks the condition on a
    row another transaction changed meanwhile; SQLite writes one at a time): the pk, or None when
    the message is unknown or the status stale (then ``outbound_status_apply`` decides which)."""
    new = _PROVIDER_STATUS.get(status.status, Message.Status.FAILED)
    sql, names = _forward_statement(new)
    values = {"status": new, _TIMESTAMP_FIELD[new]: status.timestamp}
    if new == Message.Status.FAILED:
        values["status_detail"] = _failure_detail(status.status, status.description)
    params = [model_field(Message, n).get_db_prep_save(values[n], connection) for n in names]
    params += [hotel_id, Message.Direction.OUTBOUND, status.id_message, *_forward_from(new)]
    with own_transaction(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _failure_detail(provider_status: str, description: str) -> str:
    return f"{provider_status}: {description}".strip(": ")[:300]


def outbound_status_apply(*, hotel_id: int, status: OutgoingStatus) -> tuple[str, int | None]:
    """Move hotel ``hotel_id``'s outbound message along sent → delivered → read, or to failed
    (never backwards); ``hotel_id``: the hotel whose instance reported the status.

    Returns the action taken and the message's pk (None when the status was deferred).
    """
    moved = _forward_update(hotel_id, status)
    if moved is not None:
        return "status_updated", moved
    # Unknown (defer it) or stale: decided under the row lock, as every status was before.
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(
                hotel_id=hotel_id, direction=Message.Direction.OUTBOUND, provider_message_id=status.id_message
            )
            .first()
        )
        if message is None:
            DeferredStatus.objects.create(
                hotel_id=hotel_id,
                id_message=status.id_message,
                status=status.status,
                description=status.description[:300],
                provider_timestamp=status.timestamp,
            )
            logger.info("status %s for unknown idMessage %s deferred", status.status, status.id_message)
            # A reply job may be committing this id right now (its transaction was open when we
            # looked, so we could not see it): look again once this row is visible. With the
            # job's own post-commit look (replies._confirm) one of the two always finds both.
            transaction.on_commit(
                partial(deferred_statuses_apply, hotel_id=hotel_id, id_message=status.id_message), robust=True
            )
            return "status_deferred", None
        return _apply(message, status.status, status.description, status.timestamp), message.pk


def _apply(message: Message, provider_status: str, description: str, at: datetime) -> str:
    new = _PROVIDER_STATUS.get(provider_status, Message.Status.FAILED)
    current = Message.Status(message.status)
    if current == Message.Status.FAILED:
        return "status_stale"
    if new == Message.Status.FAILED:
        if current in (Message.Status.DELIVERED, Message.Status.READ):
            return "status_stale"
    elif _RANK.get(new, 0) <= _RANK.get(current, 0):
        return "status_stale"
    message.status = new
    setattr(message, _TIMESTAMP_FIELD[new], at)
    fields = ["status", _TIMESTAMP_FIELD[new]]
    if new == Message.Status.FAILED:
        message.status_detail = _failure_detail(provider_status, description)
        fields.append("status_detail")
    message.save(update_fields=fields)
    return "status_updated"


@functools.cache
def _accepted_statement() -> str:
    """``UPDATE ... RETURNING``: an outbound message's idMessage, accepted if still pending, and
    whether a status for that id waits deferred (the look ``deferred_statuses_apply`` starts with),
    in one statement, built once."""
    meta, qn = Message._meta, connection.ops.quote_name
    col = partial(column, Message)
    status, accepted_at = col("status"), col("accepted_at")
    # Identifiers from the models, quoted by the backend; every value is a parameter.
    return (
        f"UPDATE {qn(meta.db_table)} SET {col('provider_message_id')} = %s, "  # noqa: S608
        f"{status} = CASE WHEN {status} = %s THEN %s ELSE {status} END, "
        f"{accepted_at} = CASE WHEN {status} = %s THEN %s ELSE {accepted_at} END "
        f"WHERE {qn(meta.pk.column)} = %s RETURNING EXISTS (SELECT 1 FROM "
        f"{qn(DeferredStatus._meta.db_table)} WHERE {column(DeferredStatus, 'hotel')} = %s "
        f"AND {column(DeferredStatus, 'id_message')} = %s)"
    )


def outbound_accepted(*, message_id: int, hotel_id: int, id_message: str, at: datetime) -> bool:
    """Green API accepted outbound message ``message_id`` of hotel ``hotel_id`` as ``id_message``:
    record the id, and ``accepted`` at ``at`` unless a status moved it on already. Returns whether
    statuses for that id wait deferred (then ``deferred_statuses_apply``); in the caller's
    transaction, one statement."""
    pending, accepted = Message.Status.PENDING.value, Message.Status.ACCEPTED.value
    at_db = model_field(Message, "accepted_at").get_db_prep_save(at, connection)
    params = [id_message, pending, accepted, pending, at_db, message_id, hotel_id, id_message]
    with connection.cursor() as cursor:
        cursor.execute(_accepted_statement(), params)
        row = cursor.fetchone()
    return bool(row and row[0])


def _deferred_one(hotel_id: int, id_message: str) -> QuerySet[DeferredStatus, tuple[int]]:
    return DeferredStatus.objects.filter(hotel_id=hotel_id, id_message=id_message).values_list("pk")[:1]


def deferred_statuses_apply(*, hotel_id: int, id_message: str) -> int:
    """Apply, oldest first, the statuses hotel ``hotel_id``'s instance reported before its outbound
    message ``id_message`` was known."""
    # Almost always there is none (statuses follow the send by seconds): one indexed read, no lock and,
    # outside a transaction, no BEGIN/COMMIT. A status deferred after this read runs its own look
    # once committed (outbound_status_apply's on_commit), so skipping here never orphans it.
    if not prepared_read(_deferred_one, hotel_id, id_message):  # compiled once per process
        return 0
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(hotel_id=hotel_id, direction=Message.Direction.OUTBOUND, provider_message_id=id_message)
            .first()
        )
        pending = list(
            DeferredStatus.objects.filter(hotel_id=hotel_id, id_message=id_message).order_by(
                "provider_timestamp", "pk"
            )
        )
        if message is None or not pending:
            return 0
        applied = sum(
            _apply(message, d.status, d.description, d.provider_timestamp) == "status_updated"
            for d in pending
        )
        DeferredStatus.objects.filter(pk__in=[d.pk for d in pending]).delete()
    return applied
