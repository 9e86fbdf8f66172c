"""Races of one guest's messages (issue 16 item 4), as scenarios that return plain figures.

``tests/messaging/services/test_intake_guest_order.py`` runs them in process on PostgreSQL, and on SQLite in a
child process (``python -m tests.messaging.services.guest_races SCENARIO PATH``) on a fresh file database
in WAL mode, the embedded deployment's: the test run's in-memory SQLite database is shared-cache,
where a second writer fails at once ("database table is locked") instead of waiting as it does on
a file, so concurrency on it would test the harness, not the code.

Each message is delivered by its own thread on its own database connection, released together by
a barrier, through the webhook's one call (``intake.notification_ingest``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import nullcontext
from datetime import timedelta
from typing import Any
from unittest import mock

#: Race sizes: 2 to 8 concurrent messages of one new guest.
SIZES = range(2, 9)
#: The issue's acceptance figure: 20 races of two messages of a new guest.
PAIRS = 20
#: Races of two for guests whose conversation has gone idle (the first messages after the window).
IDLE_PAIRS = 10


def _path(orm: bool) -> Any:
    """The ORM intake path forced (also on PostgreSQL), or each database's own."""
    from messaging.services import inbound_sql

    return mock.patch.object(inbound_sql, "available", return_value=False) if orm else nullcontext()


def race(*, chat_id: str, n: int, tag: str) -> list[str]:
    """Deliver ``n`` messages of one guest at once; the intake's answers, in the threads' order."""
    from django.db import connection

    from messaging.notifications import RawBody, parse_webhook_body
    from messaging.services import intake
    from tests.messaging import payloads

    barrier = threading.Barrier(n)
    actions: list[str] = [""] * n
    errors: list[str] = []

    def deliver(k: int) -> None:
        try:
            # A question the hotel's facts answer (one they cannot would hand the guest to staff).
            body = payloads.incoming_text(
                id_message=f"{tag}-{k}", text=f"{tag} question {k}: is there parking?", chat_id=chat_id
            )
            notification = parse_webhook_body(RawBody(json.dumps(body).encode(), 0))
            barrier.wait(timeout=10)
            actions[k] = intake.notification_ingest(notification=notification).action
        except BaseException as e:  # reported in the result
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise AssertionError(f"deliveries failed: {errors}")
    return actions


def races(*, orm: bool) -> dict[str, Any]:
    """Races of 2..8 messages of a new guest, then ``PAIRS`` races of two for new guests and
    ``IDLE_PAIRS`` for guests past the idle window. Per race: the answers and the number of
    conversations the race left its guest with (a new one each: exactly 1)."""
    from django.conf import settings
    from django.utils import timezone

    from messaging.models import Conversation, Message
    from tests.factories import ConversationFactory, GuestFactory, HotelFactory

    hotel = HotelFactory.create()
    idle = timezone.now() - timedelta(hours=settings.CONVERSATION_IDLE_HOURS, minutes=5)
    result: dict[str, Any] = {"sizes": {}, "pairs": [], "idle_pairs": []}

    def conversations(chat_id: str) -> int:
        return Conversation.objects.filter(guest__chat_id=chat_id, last_message_at__gt=idle).count()

    def messages(chat_id: str) -> int:
        return Message.objects.filter(conversation__guest__chat_id=chat_id, direction="in").count()

    with _path(orm):
        for n in SIZES:
            chat = f"7900555{n:04d}@c.us"
            actions = race(chat_id=chat, n=n, tag=f"N{n}")
            result["sizes"][str(n)] = [actions, conversations(chat), messages(chat)]
        for i in range(PAIRS):
            chat = f"7900666{i:04d}@c.us"
            result["pairs"].append([race(chat_id=chat, n=2, tag=f"P{i}"), conversations(chat)])
        for i in range(IDLE_PAIRS):
            guest = GuestFactory.create(hotel=hotel, chat_id=f"7900777{i:04d}@c.us")
            ConversationFactory.create(guest=guest, last_message_at=idle)
            result["idle_pairs"].append(
                [race(chat_id=guest.chat_id, n=2, tag=f"I{i}"), conversations(guest.chat_id)]
            )
    return result


def due(job_id: int) -> None:
    from django.utils import timezone

    from messaging.models import ReplyJob

    ReplyJob.objects.filter(pk=job_id).update(next_attempt_at=timezone.now())


def answers(*, orm: bool, deepseek: Any, green: Any, n: int = 5) -> dict[str, Any]:
    """``n`` messages of a new guest raced in, their jobs then processed latest first (the worst
    order a pool of workers can pick), then each in turn. Returns, per job in the order stored:
    the outcome of its first run, whether its AI request carried every earlier question; the ids
    the fake Green API accepted, in order, and the jobs' outbound ids in the order stored."""
    from messaging.models import Conversation, ReplyJob
    from messaging.services import replies
    from tests.factories import HotelFactory
    from tests.messaging import payloads

    HotelFactory.create()
    with _path(orm):
        actions = race(chat_id=payloads.CHAT, n=n, tag="ORD")
    jobs = list(ReplyJob.objects.order_by("pk").select_related("inbound"))
    questions = [j.inbound.text for j in jobs]
    first_runs: list[str] = [""] * len(jobs)
    knew_earlier: list[bool] = [False] * len(jobs)
    for k in reversed(range(len(jobs))):
        due(jobs[k].pk)
        first_runs[k] = replies.reply_job_process(job_id=jobs[k].pk).result
        request = deepseek.journal(path_regex="chat/completions")[-1]["body"]
        asked = " ".join(str(m.get("content", "")) for m in request["messages"])
        knew_earlier[k] = all(q in asked for q in questions[: k + 1])
    later_runs = []
    for job in jobs[1:]:
        due(job.pk)
        later_runs.append(replies.reply_job_process(job_id=job.pk).result)
    return {
        "actions": actions,
        "conversations": Conversation.objects.count(),
        "first_runs": first_runs,
        "later_runs": later_runs,
        "knew_earlier": knew_earlier,
        "sent": [m["idMessage"] for m in green.sent_messages()],
        "stored_order": list(
            ReplyJob.objects.filter(pk__in=[j.pk for j in jobs])
            .order_by("pk")
            .values_list("outbound__provider_message_id", flat=True)
        ),
    }


def _child(scenario: str, orm: bool) -> dict[str, Any]:
    """On a fresh file database (``HOTELBOT_VAR_DIR``), with the fakes running."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from fakes.deepseek import FakeDeepSeek
    from fakes.green_api import FakeGreenApi

    call_command("migrate", verbosity=0)
    if scenario == "races":
        return races(orm=orm)
    with (
        FakeGreenApi(status_delays=(0.05, 0.1, 0.15), rate_limits=False) as green,
        FakeDeepSeek() as deepseek,
    ):
        settings.GREEN_API_URL = green.url
        settings.DEEPSEEK_URL = deepseek.url
        settings.DEEPSEEK_API_KEY = "sk-test"
        return answers(orm=orm, deepseek=deepseek, green=green)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")
    print(json.dumps(_child(sys.argv[1], sys.argv[2] == "orm")))
