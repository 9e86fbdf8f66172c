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
from django.db.models import NOT_PROVIDED, Field, Model
from django.utils import timezone

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


def _literal(value: Any) -> str | None:
    """The SQL literal of a prepared value that is the same for every message of a kind (NULL,
    true, false, 0, the empty string), or None: a parameter. Written into the statement, such
    values keep it under psycopg's cache of parsed statements (at most 50 parameters and 4 KB:
    above either, the statement's placeholders are parsed anew on every webhook, ~1.3 ms); the
    statement is built once per combination of them (``_statement``'s cache). Client-side binding
    sends these very literals anyway."""
    if value is None:
        return "NULL"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int and value == 0:
        return "0"
    if type(value) is str and value == "":
        return "''"
    return None


def _quoted(value: str) -> str:
    """A constant of ours (an enum value, a table name) as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class _Insert:
    """``INSERT INTO table (columns) SELECT values`` of one model: the columns given as SQL
    expressions, every other one a value prepared from an unsaved instance, written as a literal
    when ``_literal`` has one for it, else a parameter. A column whose value is NULL and that has
    no database default is left out (the database writes NULL), to keep the statement short."""

    table: str
    fields: tuple[Field[Any, Any], ...]
    expressions: tuple[tuple[str, str], ...]
    pk: str

    @classmethod
    def of(cls, model: type[Model], expressions: dict[str, str]) -> _Insert:
        """The primary key is written only when ``expressions`` gives it (else the database's)."""
        qn = connection.ops.quote_name
        fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.attname in expressions]
        return cls(
            table=qn(model._meta.db_table),
            fields=tuple(fields),
            expressions=tuple(expressions.items()),
            pk=qn(model._meta.pk.column),
        )

    def prepared(self, obj: Model) -> tuple[Any, ...]:
        """Every value the instance gives (the columns not written as expressions), prepared."""
        given = dict(self.expressions)
        return tuple(
            f.get_db_prep_save(f.pre_save(obj, True), connection)
            for f in self.fields
            if f.attname not in given
        )

    def clause(self, literals: tuple[str | None, ...]) -> tuple[str, str]:
        """The column list and the SELECT list: expressions, literals (``literals``, aligned with
        ``prepared``; None: a parameter, %s)."""
        given, given_literals = dict(self.expressions), iter(literals)
        columns, values = [], []
        for f in self.fields:
            value = given[f.attname] if f.attname in given else (next(given_literals) or "%s")
            if value == "NULL" and f.db_default is NOT_PROVIDED:
                continue
            columns.append(connection.ops.quote_name(f.column))
            values.append(value)
        return ", ".join(columns), ", ".join(values)


def _shape(values: tuple[Any, ...]) -> tuple[str | None, ...]:
    return tuple(_literal(v) for v in values)


def _params(values: tuple[Any, ...]) -> list[Any]:
    return [v for v in values if _literal(v) is None]


_GUEST = functools.cache(lambda: _Insert.of(Guest, {"hotel_id": "hotel.id"}))
_CONVERSATION = functools.cache(
    lambda: _Insert.of(Conversation, {"hotel_id": "guest.hotel_id", "guest_id": "guest.id"})
)
_MESSAGE = functools.cache(
    lambda: _Insert.of(Message, {"conversation_id": "conversation.id", "hotel_id": "conversation.hotel_id"})
)


@functools.cache
def _job_insert() -> _Insert:
    return _Insert.of(
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


@functools.lru_cache(maxsize=64)
def _statement(
    update_name: bool,
    guest_shape: tuple[str | None, ...],
    conversation_shape: tuple[str | None, ...],
    message_shape: tuple[str | None, ...],
    job_shape: tuple[str | None, ...],
) -> str:
    """The statement for one combination of the rows' literal values (``_literal``): in practice a
    handful per process (a sender name or not, a message timestamp or not)."""
    qn, col = connection.ops.quote_name, column
    guest, conversation, message, job = _GUEST(), _CONVERSATION(), _MESSAGE(), _job_insert()
    guest_columns, guest_values = guest.clause(guest_shape)
    conversation_columns, conversation_values = conversation.clause(conversation_shape)
    message_columns, message_values = message.clause(message_shape)
    job_columns, job_values = job.clause(job_shape)
    j = partial(col, ReplyJob)
    # The merged job's closing values (``bursts.closed_fields``): the burst's now, or constants.
    w = bursts.window(timezone.now())

    def closing(value: Any) -> str:
        return "(SELECT now FROM burst)" if value is w.now else (_literal(value) or _quoted(str(value)))

    merged_cols = ", ".join(
        f"{j(name)} = {closing(value)}" for name, value in bursts.closed_fields(w).items()
    )
    answer, pending = _quoted(ReplyJob.Kind.ANSWER.value), _quoted(ReplyJob.Status.PENDING.value)
    inbound = _quoted(Message.Direction.INBOUND.value)
    sequence_of = f"{_quoted(ReplyJob._meta.db_table)}, {_quoted(ReplyJob._meta.pk.column)}"
    updated = [col(Guest, "last_seen_at")] + ([col(Guest, "display_name")] if update_name else [])
    last_message_at = col(Conversation, "last_message_at")
    # Identifiers from the models, quoted by the backend; constants of ours and _literal's values
    # as literals; every other value is a parameter.
    sql = f"""
SELECT pg_advisory_xact_lock({GUEST_LOCK_CLASS}, %s);
WITH hotel AS (
    SELECT {qn(Hotel._meta.pk.column)} AS id FROM {qn(Hotel._meta.db_table)}
    WHERE {col(Hotel, "green_api_instance_id")} = %s
), stored AS (
    SELECT {message.pk} AS id FROM {message.table}
    WHERE {col(Message, "hotel")} IN (SELECT id FROM hotel)
    AND {col(Message, "direction")} = {inbound} AND {col(Message, "provider_message_id")} = %s
), guest AS (
    INSERT INTO {guest.table} ({guest_columns})
    SELECT {guest_values} FROM hotel WHERE NOT EXISTS (SELECT FROM stored)
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
    INSERT INTO {conversation.table} ({conversation_columns})
    SELECT {conversation_values} FROM guest WHERE NOT EXISTS (SELECT FROM recent)
    RETURNING {conversation.pk} AS id, {col(Conversation, "hotel")} AS hotel_id
), message AS (
    INSERT INTO {message.table} ({message_columns})
    SELECT {message_values} FROM (SELECT * FROM touched UNION ALL SELECT * FROM started) conversation
    RETURNING {message.pk} AS id
), burst AS (
    SELECT %s::timestamptz AS now, %s::timestamptz AS due, %s::interval AS cap, %s::boolean AS enabled
), newid AS (
    SELECT nextval(pg_get_serial_sequence({sequence_of})) AS id FROM message
), earlier AS (
    SELECT j.{job.pk} AS id FROM {job.table} j JOIN {message.table} m ON m.{message.pk} = j.{j("inbound")}
    WHERE m.{col(Message, "conversation")} IN (SELECT id FROM touched)
    AND m.{col(Message, "created_at")} >= (SELECT now - cap FROM burst)
    AND j.{j("kind")} = {answer} ORDER BY j.{job.pk} DESC LIMIT 1
), merged AS (
    UPDATE {job.table} SET {merged_cols}, {j("merged_into")} = (SELECT id FROM newid)
    WHERE {job.pk} IN (SELECT id FROM earlier) AND (SELECT enabled FROM burst) AND EXISTS (SELECT FROM newid)
    AND {j("kind")} = {answer} AND {j("status")} = {pending} AND {j("reply_text")} = ''
    AND {j("send_started_at")} IS NULL AND {j("manual_at")} IS NULL AND {j("manual_text")} = ''
    AND {j("next_attempt_at")} > (SELECT now FROM burst)
    AND {j("burst_started_at")} > (SELECT now - cap FROM burst)
    RETURNING {job.pk} AS id, {j("burst_started_at")} AS started
), regrouped AS (
    UPDATE {job.table}
    SET {j("merged_into")} = (SELECT id FROM newid), {j("updated_at")} = (SELECT now FROM burst)
    WHERE {j("merged_into")} IN (SELECT id FROM merged)
), job AS (
    INSERT INTO {job.table} ({job_columns}) SELECT {job_values} FROM message, newid, burst
    RETURNING {job.pk} AS id, {j("next_attempt_at")} AS due
)
SELECT (SELECT id FROM hotel), (SELECT id FROM stored), (SELECT id FROM message), (SELECT id FROM job),
    (SELECT due FROM job), (SELECT id FROM merged)
"""  # noqa: S608
    # One line per clause, no indentation: the statement's bytes count against psycopg's cache.
    return " ".join(line.strip() for line in sql.strip().splitlines())


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
    sql, params = statement_and_params(
        id_instance=id_instance, guest=guest, message=message, job=job, idle_since=idle_since, now=now
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.nextset()  # past the lock's result to the statement's
        row = cursor.fetchone()
    assert row is not None
    return Written(*row)


def statement_and_params(
    *,
    id_instance: str,
    guest: Guest,
    message: Message,
    job: ReplyJob,
    idle_since: datetime,
    now: datetime,
) -> tuple[str, list[Any]]:
    """The two statements ``inbound_message_insert`` runs (the guest's lock first, its key the
    first parameter) and their parameters."""
    conversation = Conversation(last_message_at=now)
    w = bursts.window(now)
    rows = (
        _GUEST().prepared(guest),
        _CONVERSATION().prepared(conversation),
        _MESSAGE().prepared(message),
        _job_insert().prepared(job),
    )
    guest_row, conversation_row, message_row, job_row = rows
    sql = _statement(bool(guest.display_name), *(_shape(row) for row in rows))
    params = [
        guest_lock_key(id_instance=id_instance, chat_id=guest.chat_id),
        id_instance,
        message.provider_message_id,
        *_params(guest_row),
        idle_since,
        now,
        *_params(conversation_row),
        *_params(message_row),
        w.now,
        w.due,
        w.cap,
        w.enabled,
        *_params(job_row),
    ]
    return sql, params
