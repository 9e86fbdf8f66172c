"""A guest message stored in one statement on PostgreSQL: the webhook's hot path.

The ORM path (``intake.inbound_message_record``) takes eight round trips for one guest message
(the hotel and redelivery lookup, BEGIN, the guest upsert, the conversation lookup and its
update or insert, the message, the reply job, COMMIT), each compiled by the ORM: two thirds of
the webhook's time. Here the same writes are one data-modifying CTE, run in autocommit: one
round trip, one implicit transaction (all of it or nothing), one durable commit. SQLite has no
data-modifying CTEs; the embedded default keeps the ORM path (the tests run both and compare).

The statement is generated once per process from the models (every concrete column, quoted by
the backend), and each row's values are prepared as the ORM's INSERT prepares them (field
defaults, ``auto_now_add``, ``get_db_prep_save``): a field added to a model is written here too
without anyone touching this file. Only the foreign keys, which point at rows the statement
itself inserts, are SQL expressions.

The rows it writes are the ORM path's: the guest upserted (an empty sender name keeps the name
we have), the conversation of the last CONVERSATION_IDLE_HOURS touched or a new one started, the
inbound message, its reply job (already marked published under the task id given here, due at the
end of the guest's burst window), and the guest's previous answer job closed as merged into it
while it still waits out its window (``bursts``: the same conditions, one conditional UPDATE that
re-checks the row, so a worker's claim is never overtaken; the new job's id is drawn from its
sequence first, for the merged row to point at it). A
redelivery (the hotel has the idMessage already) or an unknown instance writes nothing. A
concurrent delivery of the same idMessage makes the statement fail on the unique constraint
(IntegrityError), with nothing of it left, as the ORM path's transaction does. The message's
hotel is the conversation's (the row the statement touches or inserts), and the redelivery check
is the hotel's: the same idMessage at another hotel is another message.

Per guest, one at a time: a statement, CTEs included, reads from one snapshot taken when it
starts, so two concurrent statements for a new guest (or the first after the idle window) would
each see "no conversation" and start one each; the guest upsert waiting on the other's row does
not refresh that snapshot. So the CTE is preceded, in the same ``execute``, by
``pg_advisory_xact_lock`` on a key of (instance, chatId). Django's psycopg backend binds
parameters client-side (do not set ``server_side_binding``: a prepared statement holds one
command), so both go in one round trip as one simple query, which PostgreSQL runs as one implicit
transaction (autocommit) with a snapshot per statement (READ COMMITTED): the CTE starts after the
lock is granted, i.e. after the guest's previous message committed, and sees its conversation.
The lock is released when that transaction ends (or the caller's, inside one); a failure of the
CTE rolls back both. Two guests whose keys collide (a 32-bit hash) only wait for each other.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection
from django.db.models import Field, Model

from messaging.models import Conversation, Guest, Hotel, Message, ReplyJob
from messaging.services import bursts
from messaging.services.statements import column

#: First key of the per-guest advisory lock (the second is a hash of instance and chatId): the
#: two-key form keeps these locks apart from any single-key advisory lock on the same database.
GUEST_LOCK_CLASS = 0x48420001


def guest_lock_key(*, id_instance: str, chat_id: str) -> int:
    """The second key of a guest's advisory lock: a stable signed 32-bit hash (every process,
    every Python) of the hotel's instance and the guest's chat."""
    crc = zlib.crc32(f"{id_instance}:{chat_id}".encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@dataclass(frozen=True, slots=True)
class Written:
    hotel_id: int | None  # None: no hotel has this instance (nothing written)
    stored_as: int | None  # the inbound row of an earlier delivery (nothing written)
    message_id: int | None
    job_id: int | None
    job_due: datetime | None = None  # the new job's next_attempt_at (the end of the burst window)
    merged_id: int | None = None  # the guest's previous answer job, merged into this one (bursts)


def available() -> bool:
    """PostgreSQL with client-side binding (Django's default): the lock and the statement go in
    one ``execute``, which server-side binding (a prepared statement: one command) refuses. With
    ``server_side_binding`` on, guest messages take the ORM path, which is serialised per guest too."""
    return connection.vendor == "postgresql" and not connection.settings_dict["OPTIONS"].get(
        "server_side_binding"
    )


@dataclass(frozen=True, slots=True)
class _Insert:
    """``INSERT INTO table (every column) SELECT values`` of one model: the columns given as SQL
    expressions, every other one a parameter prepared from an unsaved instance."""

    table: str
    columns: str
    values: str
    param_fields: tuple[Field[Any, Any], ...]
    pk: str

    @classmethod
    def of(cls, model: type[Model], expressions: dict[str, str]) -> _Insert:
        """The primary key is written only when ``expressions`` gives it (else the database's)."""
        qn = connection.ops.quote_name
        fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.attname in expressions]
        return cls(
            table=qn(model._meta.db_table),
            columns=", ".join(qn(f.column) for f in fields),
            values=", ".join(expressions.get(f.attname, "%s") for f in fields),
            param_fields=tuple(f for f in fields if f.attname not in expressions),
            pk=qn(model._meta.pk.column),
        )

    def params(self, obj: Model) -> list[Any]:
        return [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in self.param_fields]


@functools.cache
def _statement(update_name: bool) -> tuple[str, _Insert, _Insert, _Insert, _Insert]:
    qn, col = connection.ops.quote_name, column

    guest = _Insert.of(Guest, {"hotel_id": "hotel.id"})
    conversation = _Insert.of(Conversation, {"hotel_id": "guest.hotel_id", "guest_id": "guest.id"})
    message = _Insert.of(Message, {"conversation_id": "conversation.id", "hotel_id": "conversation.hotel_id"})
    job = _Insert.of(
        ReplyJob,
        {
            "id": "newid.id",
            "inbound_id": "message.id",
            # Due when the guest has been quiet long enough, or the burst's cap is reached.
            "next_attempt_at": "COALESCE(LEAST(burst.due, (SELECT started FROM merged) + burst.cap), "
            "burst.due)",
            "burst_started_at": "COALESCE((SELECT started FROM merged), burst.now)",
        },
    )
    j = partial(col, ReplyJob)
    merged_cols = ", ".join(
        f"{j(name)} = %s" for name in ("status", "completed_at", "lease_expires_at", "updated_at")
    )
    updated = [col(Guest, "last_seen_at")] + ([col(Guest, "display_name")] if update_name else [])
    last_message_at = col(Conversation, "last_message_at")
    # Identifiers only, from the models and quoted by the backend; every value is a parameter.
    sql = f"""
SELECT pg_advisory_xact_lock(%s, %s);
WITH hotel AS (
    SELECT {qn(Hotel._meta.pk.column)} AS id FROM {qn(Hotel._meta.db_table)}
    WHERE {col(Hotel, "green_api_instance_id")} = %s
), stored AS (
    SELECT {message.pk} AS id FROM {message.table}
    WHERE {col(Message, "hotel")} IN (SELECT id FROM hotel)
    AND {col(Message, "direction")} = %s AND {col(Message, "provider_message_id")} = %s
), guest AS (
    INSERT INTO {guest.table} ({guest.columns})
    SELECT {guest.values} FROM hotel WHERE NOT EXISTS (SELECT FROM stored)
    ON CONFLICT ({col(Guest, "hotel")}, {col(Guest, "chat_id")})
    DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in updated)}
    RETURNING {guest.pk} AS id, {col(Guest, "hotel")} AS hotel_id
), recent AS (
    SELECT c.{conversation.pk} AS id FROM {conversation.table} c
    JOIN guest ON c.{col(Conversation, "guest")} = guest.id
    WHERE c.{last_message_at} >= %s ORDER BY c.{last_message_at} DESC LIMIT 1
), touched AS (
    UPDATE {conversation.table} SET {last_message_at} = %s
    WHERE {conversation.pk} IN (SELECT id FROM recent)
    RETURNING {conversation.pk} AS id, {col(Conversation, "hotel")} AS hotel_id
), started AS (
    INSERT INTO {conversation.table} ({conversation.columns})
    SELECT {conversation.values} FROM guest WHERE NOT EXISTS (SELECT FROM recent)
    RETURNING {conversation.pk} AS id, {col(Conversation, "hotel")} AS hotel_id
), message AS (
    INSERT INTO {message.table} ({message.columns})
    SELECT {message.values} FROM (SELECT * FROM touched UNION ALL SELECT * FROM started) conversation
    RETURNING {message.pk} AS id
), burst AS (
    SELECT %s::timestamptz AS now, %s::timestamptz AS due, %s::interval AS cap, %s::boolean AS enabled
), newid AS (
    SELECT nextval(pg_get_serial_sequence(%s, %s)) AS id FROM message
), earlier AS (
    SELECT j.{job.pk} AS id FROM {job.table} j JOIN {message.table} m ON m.{message.pk} = j.{j("inbound")}
    WHERE m.{col(Message, "conversation")} IN (SELECT id FROM touched)
    AND m.{col(Message, "created_at")} >= (SELECT now - cap FROM burst)
    AND j.{j("kind")} = %s ORDER BY j.{job.pk} DESC LIMIT 1
), merged AS (
    UPDATE {job.table} SET {merged_cols}, {j("merged_into")} = (SELECT id FROM newid)
    WHERE {job.pk} IN (SELECT id FROM earlier) AND (SELECT enabled FROM burst) AND EXISTS (SELECT FROM newid)
    AND {j("kind")} = %s AND {j("status")} = %s AND {j("reply_text")} = ''
    AND {j("send_started_at")} IS NULL AND {j("manual_at")} IS NULL AND {j("manual_text")} = ''
    AND {j("next_attempt_at")} > (SELECT now FROM burst)
    AND {j("burst_started_at")} > (SELECT now - cap FROM burst)
    RETURNING {job.pk} AS id, {j("burst_started_at")} AS started
), regrouped AS (
    UPDATE {job.table}
    SET {j("merged_into")} = (SELECT id FROM newid), {j("updated_at")} = (SELECT now FROM burst)
    WHERE {j("merged_into")} IN (SELECT id FROM merged)
), job AS (
    INSERT INTO {job.table} ({job.columns}) SELECT {job.values} FROM message, newid, burst
    RETURNING {job.pk} AS id, {j("next_attempt_at")} AS due
)
SELECT (SELECT id FROM hotel), (SELECT id FROM stored), (SELECT id FROM message), (SELECT id FROM job),
    (SELECT due FROM job), (SELECT id FROM merged)
"""  # noqa: S608
    return sql, guest, conversation, message, job


def inbound_message_insert(
    *,
    id_instance: str,
    guest: Guest,
    message: Message,
    job: ReplyJob,
    idle_since: datetime,
    now: datetime,
) -> Written:
    """Take the guest's lock, then run the statement for unsaved ``guest``, ``message`` and ``job``
    (their foreign keys unset: the statement supplies them), in one round trip, in autocommit, or
    in the caller's transaction if there is one."""
    sql, guest_insert, conversation_insert, message_insert, job_insert = _statement(bool(guest.display_name))
    conversation = Conversation(last_message_at=now)
    w = bursts.window(now)
    params = [
        GUEST_LOCK_CLASS,
        guest_lock_key(id_instance=id_instance, chat_id=guest.chat_id),
        id_instance,
        Message.Direction.INBOUND.value,
        message.provider_message_id,
        *guest_insert.params(guest),
        idle_since,
        now,
        *conversation_insert.params(conversation),
        *message_insert.params(message),
        w.now,
        w.due,
        w.cap,
        w.enabled,
        ReplyJob._meta.db_table,
        ReplyJob._meta.pk.column,
        ReplyJob.Kind.ANSWER.value,  # earlier: the guest's latest answer job
        *bursts.closed_fields(w).values(),  # merged: closed with these ...
        ReplyJob.Kind.ANSWER.value,  # ... if still waiting out its window
        ReplyJob.Status.PENDING.value,
        *job_insert.params(job),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.nextset()  # past the lock's result to the statement's
        row = cursor.fetchone()
    assert row is not None
    return Written(*row)
