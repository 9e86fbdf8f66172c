"""What the per-guest lock costs the webhook (issue 16 item 4), in process on PostgreSQL.

PostgreSQL's guest-message statement is preceded, in the same ``execute``, by a transaction-scoped
advisory lock per guest (``messaging/services/inbound_sql.py``). This measures, on a throwaway
database of the PostgreSQL server of ``DATABASE_URL`` (default ``postgres@127.0.0.1:5432``):

* ``webhook``: the whole guest-message webhook through Django's test client (authentication, body,
  parse, the statement, the publish hand-off), with the lock (``lock``) and with the statement as
  it was before (``nolock``: one statement, no lock), against a bare request (``/health/live/``),
  interleaved request by request so drift in the machine's load hits every variant alike;
* ``statement``: the intake statement alone, with and without the lock, interleaved call by call.

Not a pass/fail target (``make load`` holds the webhook-vs-bare target over gunicorn): the figures
say how much of that target's headroom the lock uses. Run: ``python -m bench.guest_lock_bench``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.scratch_db import postgres_url

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 1500  # per variant
WARMUP = 30
PAUSE = 0.003  # seconds between calls, unmeasured (else a call pays for its predecessor's publish)
GUESTS = 50  # chats cycled through (every guest has a recent conversation after the first round)
TOKEN = "bench-hotel-webhook-token"  # noqa: S105 - a throwaway database's credential
INSTANCE = "1101000001"


def _figures(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "mean": round(statistics.fmean(v), 3),
        "p50": round(v[len(v) // 2], 3),
        "p90": round(v[int(len(v) * 0.9)], 3),
        "p99": round(v[int(len(v) * 0.99)], 3),
    }


def _child() -> None:  # pragma: no cover - run in a subprocess
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from messaging.models import Conversation, Guest, Hotel, Message
    from messaging.services import inbound_sql, intake, replies
    from messaging.services.webhook_auth import webhook_token_digest

    call_command("migrate", verbosity=0)
    Hotel.objects.create(
        name="Bench Inn",
        green_api_instance_id=INSTANCE,
        green_api_token="bench",  # noqa: S106
        webhook_token_hash=webhook_token_digest(TOKEN),
    )
    with_lock = inbound_sql.inbound_message_insert

    def without_lock(**kw: Any) -> inbound_sql.Written:
        """The statement as it was before the lock: one statement, one result."""
        sql, params = inbound_sql.statement_and_params(**kw)
        lock, _, statement = sql.partition(";")
        assert lock.startswith("SELECT pg_advisory_xact_lock("), lock
        with connection.cursor() as cursor:
            cursor.execute(statement, params[1:])  # the lock's key is the first parameter
            row = cursor.fetchone()
        assert row is not None
        return inbound_sql.Written(*row)

    inserts: dict[str, Callable[..., inbound_sql.Written]] = {"lock": with_lock, "nolock": without_lock}
    client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    counter = iter(range(10**9))

    def webhook(variant: str) -> None:
        inbound_sql.inbound_message_insert = inserts[variant]
        i = next(counter)
        body = {
            "typeWebhook": "incomingMessageReceived",
            "instanceData": {
                "idInstance": int(INSTANCE),
                "wid": "11001234567@c.us",
                "typeInstance": "whatsapp",
            },
            "timestamp": int(time.time()),
            "idMessage": f"WH{i:08d}",
            "senderData": {"chatId": f"7900{i % GUESTS:07d}@c.us", "senderName": "Bench"},
            "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "Wifi?"}},
        }
        response = client.post(
            f"/webhooks/green-api/{INSTANCE}/", data=json.dumps(body), content_type="application/json"
        )
        if response.status_code != 200 or response.json() != {"status": "stored"}:
            raise RuntimeError(f"webhook answered {response.status_code}: {response.content[:200]!r}")

    def bare(_: str) -> None:
        if client.get("/health/live/").status_code != 200:
            raise RuntimeError("the bare request failed")

    def statement(variant: str) -> None:
        i, now = next(counter), timezone.now()
        written = inserts[variant](
            id_instance=INSTANCE,
            guest=Guest(chat_id=f"7911{i % GUESTS:07d}@c.us", display_name="Bench", last_seen_at=now),
            message=Message(
                direction="in",
                text="Wifi?",
                message_type="textMessage",
                provider_message_id=f"ST{i:08d}",
                status="received",
                provider_timestamp=now,
            ),
            job=replies.reply_job_unsaved(now=now),
            idle_since=intake._idle_since(now),
            now=now,
        )
        assert written.message_id is not None

    runs: dict[str, tuple[Callable[[str], None], str]] = {
        "webhook_bare": (bare, ""),
        "webhook_lock": (webhook, "lock"),
        "webhook_nolock": (webhook, "nolock"),
        "statement_lock": (statement, "lock"),
        "statement_nolock": (statement, "nolock"),
    }
    durations: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for i in range(WARMUP + REQUESTS):
        for name in names if i % 2 else reversed(names):
            fn, variant = runs[name]
            started = time.perf_counter()
            fn(variant)
            if i >= WARMUP:
                durations[name].append((time.perf_counter() - started) * 1000)
            time.sleep(PAUSE)  # the webhook's publish hand-off thread finishes outside the next call
    conversations = Conversation.objects.count()
    print(
        json.dumps(
            {"durations_ms": durations, "guests": Guest.objects.count(), "conversations": conversations}
        )
    )


def measure() -> dict[str, Any]:
    parts = urlsplit(postgres_url())
    name = f"hotelbot_bench_lock_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
        env.update(
            {
                "DATABASE_URL": urlunsplit(parts._replace(path=f"/{name}")),
                "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
                "DJANGO_DEBUG": "1",
                "LOG_LEVEL": "ERROR",
                "BREAKER_EVENT_WRITER": "0",
                "WEBHOOK_RATE_LIMIT": "off",
            }
        )
        out = subprocess.run(
            [sys.executable, "-m", "bench.guest_lock_bench", "--child"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"guest lock bench failed: {out.stderr[-3000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures: dict[str, Any] = {name: _figures(values) for name, values in data["durations_ms"].items()}
    bare_p50 = figures["webhook_bare"]["p50"]
    for variant in ("lock", "nolock"):
        figures[f"webhook_{variant}_p50_vs_bare"] = round(figures[f"webhook_{variant}"]["p50"] / bare_p50, 2)
    figures["conversations_per_guest"] = data["conversations"] / data["guests"]
    return figures


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        print(json.dumps(measure(), indent=1))
