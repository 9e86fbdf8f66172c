"""RabbitMQ as the Celery broker (issue 9): production can keep the broker off Redis, so a Redis
outage never stops the broker path. A worker on the machine's RabbitMQ answers a guest end to end.

The test uses the shared server's default vhost with a queue of its own
(``CELERY_TASK_DEFAULT_QUEUE``), deleted afterwards; it fails, never skips, when RabbitMQ is not
reachable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tests.e2e.conftest import Stack, launch_stack

# Its broker is RabbitMQ (a queue of its own) in both runs: it runs once, beside the stacks.
pytestmark = [pytest.mark.e2e, pytest.mark.own_servers]

AMQP_URL = os.environ.get("RABBITMQ_TEST_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def rabbit_stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as e:
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL} ({type(e).__name__}: {e})", pytrace=False)
    queue = f"hotelbot-e2e-{uuid.uuid4().hex[:8]}"
    env = {"CELERY_BROKER_URL": AMQP_URL, "CELERY_TASK_DEFAULT_QUEUE": queue}
    try:
        with launch_stack(tmp_path / "stack", extra_env=env) as stack:
            yield stack
    finally:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            channel: Any = conn.default_channel
            channel.queue_delete(queue)


def test_a_worker_on_rabbitmq_gets_a_reply_through(rabbit_stack):
    stack = rabbit_stack
    chat = "79005559001@c.us"
    result = stack.manage(
        "simulate_guest", "What time is check-out?", "--chat-id", chat, "--timeout", "60", timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr + stack.log_tail()
    assert "Check-out at Seaside Inn is until 11:00." in result.stdout
    sends = [
        e
        for e in stack.fake("green", "GET", "requests", params={"method_name": "sendMessage"})
        if isinstance(e.get("body"), dict) and e["body"].get("chatId") == chat and e.get("status") == 200
    ]
    assert len(sends) == 1
    worker_log = (stack.logs / "worker.log").read_text(errors="replace")
    assert "Connected to amqp://guest:**@127.0.0.1:5672//" in worker_log
    # The reply went through the broker (the database poll only runs while the broker is down).
    assert "broker unreachable" not in worker_log
