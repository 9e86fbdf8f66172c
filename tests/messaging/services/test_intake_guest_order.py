"""Per-guest order (issue 16 item 4): a guest's messages arriving at once land in one conversation
and are answered in the order they were stored, on both intake paths and both databases.

The races are real (``tests/messaging/services/guest_races.py``: a thread and a connection per message,
released together). On PostgreSQL the one-statement path read "no conversation" from its
snapshot in each of two concurrent statements and started two (10 of 10 trials before the
per-guest lock); the ORM path is raced on PostgreSQL too (forced) and is SQLite's own path, raced
there in a child process on a file database (the embedded deployment's WAL file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from messaging.models import Conversation, ReplyJob
from messaging.notifications import RawBody, parse_webhook_body
from messaging.services import intake, replies
from tests.factories import ConversationFactory, MessageFactory, ReplyJobFactory
from tests.messaging import payloads
from tests.messaging.services import guest_races

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[3]
POSTGRES = connection.vendor == "postgresql"


@pytest.fixture(params=["statement", "orm"])
def scenario_intake_path(request: pytest.FixtureRequest) -> str:
    """Each intake path: PostgreSQL's one statement, and the ORM path (SQLite's; forced on PostgreSQL)."""
    if request.param == "statement" and not POSTGRES:
        pytest.skip("the one-statement path is PostgreSQL's")
    return str(request.param)


def _on_file_sqlite(scenario: str, tmp_path: Path) -> dict[str, Any]:
    """Run a scenario in a child process on a fresh SQLite file database (WAL, busy timeout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update({"HOTELBOT_VAR_DIR": str(tmp_path), "DJANGO_DEBUG": "1", "SQLITE_TEST_NAME": ""})
    # Each message answered on its own, as in the in-process runs (tests/conftest.py): the order of
    # answers is the subject here, bursts have their own tests (test_bursts.py).
    env["REPLY_BURST_QUIET_SECONDS"] = "0"
    out = subprocess.run(
        [sys.executable, "-m", "tests.messaging.services.guest_races", scenario, "orm"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_concurrent_messages_of_a_guest_land_in_one_conversation(
    scenario_intake_path: str, tmp_path: Path
) -> None:
    """2..8 messages of a new guest at once; 20 races of two for new guests; 10 races of two for
    guests whose conversation went idle: every race leaves its guest exactly one (new) conversation
    holding all its messages."""
    result = (
        guest_races.races(orm=scenario_intake_path == "orm")
        if POSTGRES
        else _on_file_sqlite("races", tmp_path)
    )
    for n, (actions, conversations, messages) in result["sizes"].items():
        assert (actions, conversations, messages) == (["stored"] * int(n), 1, int(n)), n
    assert len(result["pairs"]) == guest_races.PAIRS
    assert result["pairs"] == [[["stored", "stored"], 1]] * guest_races.PAIRS
    assert result["idle_pairs"] == [[["stored", "stored"], 1]] * guest_races.IDLE_PAIRS


def test_racing_messages_are_answered_in_the_order_stored(
    scenario_intake_path: str, tmp_path: Path, fake_green: Any, fake_deepseek: Any
) -> None:
    """Five messages raced in, their jobs processed latest first: each answer is generated knowing
    every earlier question (one conversation), only the first leaves at once, the others wait
    ("waiting") and leave in the order the messages were stored (Green API delivers a guest's
    messages in the order written; the intake's serial order per guest stands for it here)."""
    if POSTGRES:
        result = guest_races.answers(
            orm=scenario_intake_path == "orm", deepseek=fake_deepseek, green=fake_green
        )
    else:
        result = _on_file_sqlite("answers", tmp_path)
    n = len(result["actions"])
    assert result["actions"] == ["stored"] * n
    assert result["conversations"] == 1
    assert result["first_runs"] == ["done"] + ["waiting"] * (n - 1)
    assert result["later_runs"] == ["done"] * (n - 1)
    assert result["knew_earlier"] == [True] * n
    assert result["sent"] == result["stored_order"]
    assert len(set(result["sent"])) == n


def test_a_reply_waits_for_an_earlier_reply_in_the_guests_previous_conversation(
    job: ReplyJob, fake_green: Any
) -> None:
    """The order is the guest's, not the conversation's: a message just after the idle window starts
    a new conversation, and its answer still waits for the unsent answer of the previous one."""
    idle = timezone.now() - timedelta(hours=settings.CONVERSATION_IDLE_HOURS, minutes=1)
    Conversation.objects.filter(pk=job.inbound.conversation_id).update(last_message_at=idle)
    ReplyJob.objects.filter(pk=job.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=1)
    )  # a backoff
    body = payloads.incoming_text(id_message="AFTER-IDLE", text="And is breakfast included?")
    later = intake.notification_ingest(notification=parse_webhook_body(RawBody(json.dumps(body).encode(), 0)))
    assert later.action == "stored"
    new_job = ReplyJob.objects.get(inbound_id=later.message_id)
    assert new_job.inbound.conversation_id != job.inbound.conversation_id  # a new conversation

    assert replies.reply_job_process(job_id=new_job.pk).result == "waiting"
    assert fake_green.sent_messages() == []
    guest_races.due(job.pk)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    guest_races.due(new_job.pk)
    assert replies.reply_job_process(job_id=new_job.pk).result == "done"
    sent = [m["textMessage"] for m in fake_green.sent_messages()]
    job.refresh_from_db()
    new_job.refresh_from_db()
    assert sent == [job.reply_text, new_job.reply_text]


def test_another_guests_unsent_reply_holds_nobody(job: ReplyJob, fake_green: Any) -> None:
    """Keyed on the guest: an earlier unsent reply of another guest of the same hotel does not wait."""
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    other = ReplyJobFactory.create(
        inbound=MessageFactory.create(
            conversation=ConversationFactory.create(
                guest__hotel=job.inbound.conversation.hotel, guest__chat_id="79001110077@c.us"
            ),
            text="Is there parking?",
        )
    )
    assert replies.reply_job_process(job_id=other.pk).result == "done"
