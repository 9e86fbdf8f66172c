"""Fill a migrated database with a year of many hotels, set-based (``INSERT … SELECT generate_series``).

The rows follow the models (every NOT NULL column, the unique constraints) and look like traffic:
guests spread over the hotels, a conversation per guest whose ten-odd messages arrive within
minutes, every guest message answered by one reply job (mostly done; some dead, some closed because
staff answered, the newest still pending), two delivery attempts per job, a dead letter per dead
reply plus quarantined notifications (most resolved or discarded, the recent ones open), the audit
log, hourly reliability reports, breaker and degradation events. Timestamps run over ``days`` up to
now, ids grow with time. One hotel in a hundred keeps its guests' data 90 days and one 365 (their own
retention setting), the others the default.

The big tables are loaded without their secondary indexes and foreign keys, which are rebuilt
afterwards from their own definitions (``pg_get_indexdef`` / ``pg_get_constraintdef``): a bulk load
and one sort per index instead of a million index insertions and FK lookups. Sequences are moved
past the ids used and everything is ANALYZEd.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: Tables the fill writes, children last (their indexes and foreign keys are rebuilt after the load).
TABLES = (
    "messaging_hotel",
    "messaging_guest",
    "messaging_conversation",
    "messaging_message",
    "messaging_replyjob",
    "messaging_deliveryattempt",
    "messaging_deferredstatus",
    "reliability_deadletter",
    "reliability_auditentry",
    "reliability_reliabilityreport",
    "reliability_breakerevent",
    "reliability_degradationevent",
)

QUESTIONS = (
    "What time is breakfast served?",
    "Is there free wifi in the rooms? What is the password",
    "Can I get a late checkout tomorrow",
    "Where can I park my car",
    "Do you have an airport shuttle",
    "How do I get to the old town from the hotel",
    "Can you recommend a restaurant nearby",
    "Is the swimming pool open today",
    "I need extra towels in room please",
    "What time is check-in",
    "Can I leave my luggage after checkout",
    "Is there a gym",
    "Could you call me a taxi for 8 am",
    "The air conditioning does not work",
    "Do you allow pets",
    "Hola, a qué hora es el desayuno",
    "Guten Tag, gibt es einen Parkplatz",
    "Bonjour, le petit déjeuner est à quelle heure",
    "Здравствуйте, во сколько завтрак",
    "Can I order room service now",
)
ANSWERS = (
    "Breakfast is served from 7:00 to 10:30 in the lobby restaurant.",
    "Yes, free wifi everywhere: network HotelGuest, password on your key card.",
    "Late checkout until 13:00 is possible on request, please ask at reception.",
    "Our garage is on the left of the entrance; parking is free for guests.",
    "The airport shuttle leaves every hour from 6:00; reception books it.",
    "The old town is a 10 minute walk; turn right at the main entrance.",
    "We recommend the trattoria across the street and the fish place by the harbour.",
    "The pool is open from 8:00 to 21:00.",
    "Of course, housekeeping will bring fresh towels shortly.",
    "Check-in is from 15:00.",
)
ACTIONS = (
    "dead_letter.retry",
    "dead_letter.discard",
    "dead_letter.park",
    "breaker.force_open",
    "breaker.reset",
    "conversation.take",
    "conversation.hand_back",
    "conversation.staff_reply",
    "reply_job.answer_manually",
    "hotel.webhook_token_rotate",
)


@dataclass(frozen=True, slots=True)
class Shape:
    """How much to write: hotels, guests (one conversation each), guest messages (each with an
    outbound reply, one reply job and two delivery attempts), dead letters, audit rows, over ``days``."""

    hotels: int
    guests: int
    messages: int
    dead_letters: int
    audit: int
    days: int

    @classmethod
    def large(cls, scale: float) -> Shape:
        """A year of 1,000 hotels at ``scale`` 1.0: 100k guests, 1M guest messages (2M messages),
        1M reply jobs, 2M delivery attempts, 100k dead letters, 200k audit rows."""

        def n(value: int) -> int:
            return max(1, round(value * scale))

        return cls(
            hotels=n(1000),
            guests=n(100_000),
            messages=n(1_000_000),
            dead_letters=n(100_000),
            audit=n(200_000),
            days=365,
        )

    @classmethod
    def small(cls) -> Shape:
        """One hotel, a few hundred rows over a month: enough to fill the first page of each list,
        so both databases render as many rows and the ratio shows what the data's size costs."""
        return cls(hotels=1, guests=120, messages=400, dead_letters=120, audit=150, days=30)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --- the statements ------------------------------------------------------------------------------
# Parameters: %(H)s hotels, %(G)s guests, %(M)s guest messages, %(D)s dead letters, %(A)s audit rows,
# %(t0)s start of the period, %(step)s seconds between guest messages, %(token)s a hotel's Green API
# token as stored (ciphertext), %(actor)s the superuser's id.
# Guest message i (1..M) is message 2i-1, its reply message 2i, reply job i, attempts 2i-1 and 2i;
# it belongs to conversation ((i-1)*G)/M + 1 (blocks of consecutive messages), guest = conversation,
# hotel of guest g = (g-1) % H + 1.
AT = "(%(t0)s::timestamptz + make_interval(secs => i * %(step)s))"
CONV = "(((i - 1)::bigint * %(G)s) / %(M)s + 1)"
HOTEL_OF_CONV = f"(({CONV} - 1) % %(H)s + 1)"
R = "((i::bigint * 7919) % 1000)"  # a pseudo-random 0..999 per guest message
TAIL = "(i > %(M)s - greatest(1, %(M)s / 2000))"  # the newest messages: replies still on their way
JOB_STATUS = (
    f"CASE WHEN {TAIL} THEN (ARRAY['pending', 'in_progress', 'pending_provider_recovery'])[i % 3 + 1]"
    f" WHEN {R} < 45 THEN 'dead' WHEN {R} < 50 THEN 'superseded' ELSE 'done' END"
)


def _pick(values: tuple[str, ...], index: str) -> str:
    array = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"(ARRAY[{array}])[({index}) % {len(values)} + 1]"


STATEMENTS: tuple[tuple[str, str], ...] = (
    (
        "hotels",
        """
INSERT INTO messaging_hotel (id, name, green_api_instance_id, green_api_token, green_api_state,
  green_api_state_changed_at, green_api_state_checked_at, webhook_token_hash, webhook_token_issued_at,
  webhook_token_previous_hash, webhook_token_previous_expires_at, check_in, check_out, wifi, breakfast,
  address, parking, staff_contact, extra_facts, staff_hold_minutes, staff_email, guest_data_retention_days,
  timezone, handoff_target_minutes, staff_webhook_url, staff_webhook_secret, created_at, updated_at)
SELECT h, 'Hotel ' || lpad(h::text, 4, '0'), (7100000000 + h)::text, %(token)s,
  CASE WHEN h % 50 = 0 THEN 'notAuthorized' ELSE 'authorized' END,
  now() - make_interval(mins => h % 600), now() - make_interval(mins => h % 60),
  encode(sha256(('webhook-token-' || h)::bytea), 'hex'), %(t0)s::timestamptz, '', NULL,
  'from 15:00', 'until 11:00', 'HotelGuest / on your key card', '7:00-10:30', h || ' Harbour Street',
  'garage, free', 'reception 9', '', 120, 'staff' || h || '@hotel.example',
  CASE WHEN h % 100 = 0 THEN 90 WHEN h % 100 = 50 THEN 365 END, 'UTC', 15, '', '',
  %(t0)s::timestamptz, %(t0)s::timestamptz
FROM generate_series(1, %(H)s) h""",
    ),
    (
        "guests",
        """
INSERT INTO messaging_guest (id, hotel_id, chat_id, display_name, created_at, last_seen_at)
SELECT g, (g - 1) % %(H)s + 1, '7900' || lpad(g::text, 7, '0') || '@c.us',
  CASE WHEN g % 5 = 0 THEN '' ELSE 'Guest ' || g END,
  %(t0)s::timestamptz + make_interval(secs => (g - 1)::float8 * %(M)s / %(G)s * %(step)s),
  %(t0)s::timestamptz + make_interval(secs => g::float8 * %(M)s / %(G)s * %(step)s)
FROM generate_series(1, %(G)s) g""",
    ),
    (
        "conversations",
        """
INSERT INTO messaging_conversation (id, hotel_id, guest_id, started_at, last_message_at, owner,
  owner_reason, owner_since, owner_user_id, owner_until)
SELECT c, (c - 1) % %(H)s + 1, c,
  %(t0)s::timestamptz + make_interval(secs => (c - 1)::float8 * %(M)s / %(G)s * %(step)s),
  %(t0)s::timestamptz + make_interval(secs => c::float8 * %(M)s / %(G)s * %(step)s + 5),
  CASE WHEN c % 97 = 0 THEN 'waiting' WHEN c % 89 = 0 THEN 'staff' ELSE 'bot' END,
  CASE WHEN c % 97 = 0 THEN 'guest_asked' WHEN c % 89 = 0 THEN 'staff_took' ELSE '' END,
  CASE WHEN c % 97 = 0 OR c % 89 = 0
    THEN %(t0)s::timestamptz + make_interval(secs => c::float8 * %(M)s / %(G)s * %(step)s) END,
  NULL, NULL
FROM generate_series(1, %(G)s) c""",
    ),
    (
        "guest messages",
        f"""
INSERT INTO messaging_message (id, conversation_id, hotel_id, direction, text, message_type,
  provider_message_id, status, status_detail, provider_timestamp, created_at, accepted_at, sent_at,
  delivered_at, read_at, failed_at)
SELECT 2 * i - 1, {CONV}, {HOTEL_OF_CONV}, 'in',
  CASE WHEN i % 100 = 0 THEN '' ELSE {_pick(QUESTIONS, "i")} END,
  CASE WHEN i % 100 = 0 THEN 'imageMessage' ELSE 'textMessage' END,
  upper(substr(md5('in' || i), 1, 20)), 'received', '', {AT}, {AT}, NULL, NULL, NULL, NULL, NULL
FROM generate_series(1, %(M)s) i""",
    ),
    (
        "replies",
        f"""
INSERT INTO messaging_message (id, conversation_id, hotel_id, direction, text, message_type,
  provider_message_id, status, status_detail, provider_timestamp, created_at, accepted_at, sent_at,
  delivered_at, read_at, failed_at)
SELECT 2 * i, {CONV}, {HOTEL_OF_CONV}, 'out', {_pick(ANSWERS, "i")}, 'textMessage',
  CASE WHEN s = 'done' THEN upper(substr(md5('out' || i), 1, 20)) END,
  CASE WHEN s = 'done' THEN (ARRAY['read', 'read', 'read', 'delivered', 'delivered', 'sent'])[i % 6 + 1]
    WHEN s IN ('dead', 'superseded') THEN 'failed' ELSE 'pending' END,
  CASE WHEN s = 'dead' THEN 'not sent: attempts exhausted'
    WHEN s = 'superseded' THEN 'not sent: staff took over' ELSE '' END,
  CASE WHEN s = 'done' THEN {AT} + interval '4 s' END,
  {AT} + interval '2 s',
  CASE WHEN s = 'done' THEN {AT} + interval '3 s' END,
  CASE WHEN s = 'done' THEN {AT} + interval '4 s' END,
  CASE WHEN s = 'done' AND i % 6 < 5 THEN {AT} + interval '6 s' END,
  CASE WHEN s = 'done' AND i % 6 < 3 THEN {AT} + interval '60 s' END,
  CASE WHEN s IN ('dead', 'superseded') THEN {AT} + interval '30 s' END
FROM (SELECT i, {JOB_STATUS} AS s FROM generate_series(1, %(M)s) i) x""",
    ),
    (
        "reply jobs",
        f"""
INSERT INTO messaging_replyjob (id, inbound_id, kind, request_key, outbound_id, status, attempts,
  next_attempt_at, lease_expires_at, lease_token, reply_text, degraded, degraded_reason, send_started_at,
  last_error, published_at, published_task_id, republish_count, manual_text, manual_at, sla_alerted_at,
  created_at, updated_at, completed_at)
SELECT i, 2 * i - 1, 'answer', NULL, CASE WHEN s IN ('pending', 'in_progress') THEN NULL ELSE 2 * i END,
  s, CASE WHEN s = 'dead' THEN 5 WHEN s = 'pending' THEN 0 ELSE 1 END,
  {AT}, CASE WHEN s = 'in_progress' THEN now() + interval '60 s' END,
  CASE WHEN s = 'in_progress' THEN md5('lease' || i) ELSE '' END,
  {_pick(ANSWERS, "i")}, i % 100 < 3, CASE WHEN i % 100 < 3 THEN 'deepseek breaker open' ELSE '' END,
  NULL,
  CASE WHEN s = 'dead' THEN 'GreenApiTransientError: HTTP 502 from sendMessage' ELSE '' END,
  {AT}, md5('task' || i), 0, '', NULL, NULL,
  {AT}, {AT} + interval '5 s',
  CASE WHEN s IN ('done', 'dead', 'superseded') THEN {AT} + interval '5 s' END
FROM (SELECT i, {JOB_STATUS} AS s FROM generate_series(1, %(M)s) i) x""",
    ),
    (
        "delivery attempts",
        f"""
INSERT INTO messaging_deliveryattempt (id, job_id, attempt, step, started_at, duration_ms, outcome,
  http_status, error)
SELECT 2 * i - 1 + k, i, 1, CASE WHEN k = 0 THEN 'generate' ELSE 'send' END,
  {AT} + make_interval(secs => 0.2 + k * 2), CASE WHEN k = 0 THEN 900 + i % 700 ELSE 120 + i % 200 END,
  CASE WHEN k = 0 AND i % 100 < 3 THEN 'degraded' WHEN k = 1 AND s = 'dead' THEN 'not_sent'
    WHEN k = 1 AND s = 'superseded' THEN 'lease_lost' ELSE 'ok' END,
  CASE WHEN k = 1 AND s = 'dead' THEN 502 ELSE 200 END,
  CASE WHEN k = 1 AND s = 'dead' THEN 'HTTP 502 from sendMessage' ELSE '' END
FROM (SELECT i, {JOB_STATUS} AS s FROM generate_series(1, %(M)s) i) x CROSS JOIN generate_series(0, 1) k""",
    ),
    (
        "deferred statuses",
        """
INSERT INTO messaging_deferredstatus (hotel_id, id_message, status, description, provider_timestamp,
  received_at)
SELECT n % %(H)s + 1, upper(substr(md5('deferred' || n), 1, 20)), 'delivered', '',
  now() - make_interval(mins => n), now() - make_interval(mins => n)
FROM generate_series(least(%(M)s / 1000 + 1, 500), 1, -1) n""",
    ),
    (
        "dead letters of dead replies",
        """
INSERT INTO reliability_deadletter (kind, subject, subject_type, subject_id, tenant, dependency,
  category, reason_code, reason, error_class, error_message, raw, raw_size, raw_truncated, payload,
  attempts, first_failed_at, last_failed_at, status, redrive_count, next_redrive_at, alerted_at,
  resolved_at, resolved_by_id, resolution, staff_notes, created_at, updated_at)
SELECT 'reply_send', 'reply job ' || j.id, 'messaging.replyjob', j.id, m.hotel_id::text, 'green_api',
  'provider_5xx', 'attempts_exhausted', 'Green API answered 502 five times; the reply was not sent.',
  'GreenApiTransientError', 'HTTP 502 from sendMessage', '', 0, false,
  jsonb_build_object('job', j.id, 'message', j.inbound_id), 5, j.created_at, j.completed_at,
  CASE WHEN j.created_at > now() - interval '3 days' OR j.id % 200 = 0
    THEN (ARRAY['pending', 'retrying', 'manual'])[j.id % 3 + 1]
    WHEN j.id % 7 = 0 THEN 'discarded' ELSE 'resolved' END,
  1, NULL, j.completed_at,
  CASE WHEN j.created_at > now() - interval '3 days' OR j.id % 200 = 0 THEN NULL
    ELSE j.completed_at + interval '1 hour' END,
  NULL, CASE WHEN j.created_at > now() - interval '3 days' OR j.id % 200 = 0 THEN ''
    ELSE 'delivered after redrive' END, '', j.completed_at, j.completed_at
FROM messaging_replyjob j JOIN messaging_message m ON m.id = j.inbound_id
WHERE j.status = 'dead' ORDER BY j.id LIMIT %(D)s""",
    ),
    (
        "quarantined notifications",
        """
INSERT INTO reliability_deadletter (kind, subject, subject_type, subject_id, tenant, dependency,
  category, reason_code, reason, error_class, error_message, raw, raw_size, raw_truncated, payload,
  attempts, first_failed_at, last_failed_at, status, redrive_count, next_redrive_at, alerted_at,
  resolved_at, resolved_by_id, resolution, staff_notes, created_at, updated_at)
SELECT 'webhook_quarantine', (7100000000 + n % %(H)s + 1)::text, '', NULL, (n % %(H)s + 1)::text, '',
  'validation', (ARRAY['not_json', 'wrong_type', 'too_long', 'unknown_value', 'missing'])[n % 5 + 1],
  'The notification could not be parsed; acknowledged (200) and kept for staff.', '', '',
  '{"typeWebhook": "incomingMessageReceived", "idMessage": "' || upper(substr(md5('q' || n), 1, 20)) || '"}',
  80, false, jsonb_build_object('typeWebhook', 'incomingMessageReceived'), 0, t, t,
  CASE WHEN t > now() - interval '3 days' OR n % 200 = 0
    THEN (ARRAY['pending', 'manual'])[n % 2 + 1] WHEN n % 3 = 0 THEN 'discarded' ELSE 'resolved' END,
  0, NULL, NULL,
  CASE WHEN t > now() - interval '3 days' OR n % 200 = 0 THEN NULL ELSE t + interval '1 day' END,
  NULL, '', '', t, t
FROM (SELECT n, %(t0)s::timestamptz + make_interval(secs => n * %(qstep)s) AS t
      FROM generate_series(1, greatest(0, %(D)s - (SELECT count(*) FROM reliability_deadletter))) n) x""",
    ),
    (
        "audit log",
        f"""
INSERT INTO reliability_auditentry (created_at, actor_id, actor_name, via, action, target_type,
  target_id, tenant, reason, details)
SELECT %(t0)s::timestamptz + make_interval(secs => n * %(astep)s),
  CASE WHEN n % 4 = 0 THEN %(actor)s END, CASE WHEN n % 4 = 0 THEN 'bench-admin' ELSE 'system' END,
  (ARRAY['admin', 'api', 'command', 'system'])[n % 4 + 1], {_pick(ACTIONS, "n")}, 'reliability.deadletter',
  (n % 50000 + 1)::text, (n % %(H)s + 1)::text, CASE WHEN n % 3 = 0 THEN 'guest called reception' ELSE '' END,
  jsonb_build_object('count', n % 10)
FROM generate_series(1, %(A)s) n""",
    ),
    (
        "hourly reports",
        """
INSERT INTO reliability_reliabilityreport (period_start, period_end, data, created_at)
SELECT date_trunc('hour', now()) - make_interval(hours => n + 1),
  date_trunc('hour', now()) - make_interval(hours => n),
  jsonb_build_object('replies', jsonb_build_object('by_result', jsonb_build_object('done', 100, 'dead', 4)),
    'dead_letters', jsonb_build_object('created', 5)),
  date_trunc('hour', now()) - make_interval(hours => n) + interval '1 minute'
FROM generate_series(%(days)s * 24 - 1, 0, -1) n""",
    ),
    (
        "breaker events",
        """
INSERT INTO reliability_breakerevent (breaker, from_state, to_state, reason, failure_rate, slow_call_rate,
  source, process, at, open_until, alerted_at)
SELECT (ARRAY['green_api', 'deepseek'])[n % 2 + 1],
  (ARRAY['closed', 'open', 'half_open'])[n % 3 + 1], (ARRAY['open', 'half_open', 'closed'])[n % 3 + 1],
  'failure rate 62 percent over the last 100 calls', 62.0, 0.0, 'redis', 'worker-1:4242',
  now() - make_interval(mins => n * 180), NULL, NULL
FROM generate_series(%(days)s * 8, 1, -1) n""",
    ),
    (
        "degradation events",
        """
INSERT INTO reliability_degradationevent (from_level, to_level, switches_off, cause, actor, at)
SELECT n % 2, (n + 1) % 2, '[]'::jsonb, 'rule: deepseek open', 'system',
  now() - make_interval(hours => n * 12)
FROM generate_series(%(days)s * 2, 1, -1) n""",
    ),
)


# --- loading -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Deferred:
    """An index or constraint of a big table, dropped for the load and rebuilt after it."""

    table: str
    name: str
    create: str  # the statement that rebuilds it
    kind: str  # "index", "u" (unique constraint) or "f" (foreign key)

    @property
    def is_constraint(self) -> bool:
        return self.kind != "index"


def _deferred(cursor: Any) -> list[Deferred]:
    """The secondary indexes, unique and foreign-key constraints of :data:`TABLES` (not primary keys,
    not CHECK constraints), with the statements that rebuild them."""
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
        FROM pg_constraint c WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype IN ('u', 'f')
        """,
        [list(TABLES)],
    )
    constraints = [
        Deferred(table, name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}', kind)
        for table, name, definition, kind in cursor.fetchall()
    ]
    owned = {d.name for d in constraints}
    cursor.execute(
        """
        SELECT i.indrelid::regclass::text, x.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
        WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
        """,
        [list(TABLES)],
    )
    indexes = [Deferred(t, n, d, "index") for t, n, d in cursor.fetchall() if n not in owned]
    # Unique constraints before foreign keys (a key may reference a unique column).
    return indexes + sorted(constraints, key=lambda d: d.kind != "u")


def fill(cursor: Any, shape: Shape, *, token: str, actor: int, log: Callable[[str], None] = print) -> None:
    """Write ``shape`` into an empty migrated database through ``cursor`` (PostgreSQL)."""
    cursor.execute("SET synchronous_commit = off")
    cursor.execute("SET maintenance_work_mem = '512MB'")
    span = shape.days * 86400.0
    params = {
        "H": shape.hotels,
        "G": shape.guests,
        "M": shape.messages,
        "D": shape.dead_letters,
        "A": shape.audit,
        "days": shape.days,
        "step": span / shape.messages,
        "qstep": span / max(1, shape.dead_letters),
        "astep": span / max(1, shape.audit),
        "token": token,
        "actor": actor,
    }
    cursor.execute("SELECT now() - make_interval(days => %s)", [shape.days])
    params["t0"] = cursor.fetchone()[0]
    deferred = _deferred(cursor)
    for item in deferred:
        if item.is_constraint:
            cursor.execute(f'ALTER TABLE {item.table} DROP CONSTRAINT "{item.name}"')
    for item in deferred:
        if not item.is_constraint:
            cursor.execute(f'DROP INDEX "{item.name}"')
    log(f"  dropped {len(deferred)} indexes and constraints for the load")
    for label, sql in STATEMENTS:
        started = time.monotonic()
        cursor.execute(sql.replace(" % ", " %% "), params)  # modulo, not a placeholder
        log(f"  {label}: {cursor.rowcount:,} rows in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    for item in deferred:
        cursor.execute(item.create)
    log(f"  rebuilt {len(deferred)} indexes and constraints in {time.monotonic() - started:.1f} s")
    for table in TABLES:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )
    started = time.monotonic()
    cursor.execute("VACUUM (ANALYZE)")  # as autovacuum leaves a database that has run for a while
    log(f"  VACUUM ANALYZE in {time.monotonic() - started:.1f} s")
