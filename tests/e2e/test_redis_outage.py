"""Fault drill (issue 9, "done when"): Redis — cache, Celery broker and breaker store at once — is
killed for a while under a steady trickle of guest messages, on PostgreSQL, gunicorn (2 workers),
one Celery worker (2 processes), beat and the fakes.

Guests keep getting replies while it is down (the workers take due jobs straight from the
database), pacing keeps limiting (its slots fall back to the database), the ``redis`` breaker's
state lives in the database store meanwhile, and after Redis returns (empty: no persistence) no
reply is sent twice: the fake Green API accepted exactly one sendMessage per guest message.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from drill.stack import ThrowawayPostgres, ThrowawayRedis
from tests.e2e.conftest import Stack, launch_stack

# Its own redis-server and (embedded run) PostgreSQL: the same test in both runs, so it runs once.
pytestmark = [pytest.mark.e2e, pytest.mark.own_servers]

#: 30 s in `make test`; the issue's 5-minute outage: E2E_REDIS_OUTAGE_SECONDS=300 (docs/drills.md).
OUTAGE_SECONDS = float(os.environ.get("E2E_REDIS_OUTAGE_SECONDS", "30"))
TRICKLE_EVERY = 1.5
#: Normal latency here is 1-3 s; the database poll adds REPLY_DB_POLL_INTERVAL (0.5 s). Generous
#: for a busy 2-core machine, and still far below the sweeper's minutes-long re-publish spacing.
REPLY_BOUND_SECONDS = 25.0


@pytest.fixture
def redis_stack(tmp_path: Path) -> Iterator[tuple[Stack, ThrowawayRedis]]:
    server = ThrowawayRedis(tmp_path / "redis-dir")
    (tmp_path / "redis-dir").mkdir()
    server.start()
    pg: ThrowawayPostgres | None = None
    database_url = None
    if not os.environ.get("DATABASE_URL"):  # the embedded run: PostgreSQL from a throwaway server
        pg = ThrowawayPostgres()
        pg.start()
        pg.create_database()
        database_url = pg.url
    base = f"redis://127.0.0.1:{server.port}"
    env = {
        "REDIS_URL": f"{base}/0",
        "BREAKER_REDIS_URL": f"{base}/0",
        "RATE_LIMIT_REDIS_URL": f"{base}/0",
        "CELERY_BROKER_URL": f"{base}/1",
        "CELERY_BROKER_SOCKET_TIMEOUT": "1",
        "CELERY_BROKER_CONNECTION_TIMEOUT": "1",
        "REPLY_DB_POLL_INTERVAL": "0.5",
        "BROKER_PROBE_INTERVAL": "1",
        "GREEN_API_RATE_SEND_MESSAGE": "5",  # pacing that a trickle actually meets
    }
    try:
        with launch_stack(tmp_path / "stack", extra_env=env, database_url=database_url) as stack:
            yield stack, server
    finally:
        server.kill()
        if pg is not None:
            pg.remove()


class Trickle:
    """One guest message every TRICKLE_EVERY seconds, each from its own chat; remembers when each
    was injected and when its first accepted reply showed up at the fake Green API."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.injected: dict[str, float] = {}
        self.phase: dict[str, str] = {}
        self.first_reply: dict[str, float] = {}
        self.current_phase = "before"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._inject, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        self.errors: list[str] = []

    def __enter__(self) -> Trickle:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _inject(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            chat = f"7900777{n:04d}@c.us"
            try:
                self.stack.fake(
                    "green",
                    "POST",
                    "inbound",
                    json={"chatId": chat, "text": "What time is check-out?", "senderName": f"G{n}"},
                )
                self.injected[chat] = time.monotonic()
                self.phase[chat] = self.current_phase
            except requests.RequestException as e:  # the fake is not what is under test
                self.errors.append(str(e))
            self._stop.wait(TRICKLE_EVERY)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(0.25)

    def poll(self) -> None:
        with contextlib.suppress(requests.RequestException):
            for chat in accepted_sends(self.stack):
                self.first_reply.setdefault(chat, time.monotonic())


def accepted_sends(stack: Stack) -> dict[str, int]:
    """sendMessage calls the fake Green API answered 200, per chat."""
    entries = stack.fake("green", "GET", "requests", params={"method_name": "sendMessage"})
    counts: dict[str, int] = {}
    for e in entries:
        body = e.get("body")
        chat = str(body.get("chatId", "")) if isinstance(body, dict) else ""
        if e.get("status") == 200 and chat.startswith("7900777"):
            counts[chat] = counts.get(chat, 0) + 1
    return counts


def metric_total(stack: Stack, name: str, **labels: str) -> float:
    text = requests.get(f"{stack.web_url}/metrics", timeout=20).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(re.search(rf'{k}="{re.escape(v)}"', line) for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def shell_json(stack: Stack, code: str) -> Any:
    import json

    return json.loads(stack.shell(code).splitlines()[-1])


def test_replies_keep_flowing_while_redis_is_down_and_none_is_sent_twice(redis_stack):
    stack, server = redis_stack
    with Trickle(stack) as trickle:
        time.sleep(8)  # the normal path first: broker up
        trickle.current_phase = "outage"
        server.kill()
        killed_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS / 2)
        # Mid-outage: the redis breaker's state lives in the database store and a fresh process
        # sees it there (shared state without Redis).
        state = shell_json(
            stack,
            "import json; from reliability.models import BreakerState as B; "
            "print(json.dumps(list(B.objects.filter(name='redis').values_list('state', flat=True))))",
        )
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed_at)))
        paced_on_database = metric_total(
            stack, "hotelbot_rate_limit_total", dependency="green_api", outcome="granted", store="database"
        )
        fallback_jobs = metric_total(stack, "hotelbot_broker_fallback_jobs_total", result="done")
        trickle.current_phase = "after"
        server.start()  # empty, like a Redis without persistence restarted
        time.sleep(15)
    # Every message injected gets its reply (those after the restart through the broker again).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and set(trickle.injected) - set(trickle.first_reply):
        trickle.poll()
        time.sleep(0.5)
    time.sleep(5)  # room for a duplicate to show up (a re-published task, a redelivery)
    sends = accepted_sends(stack)
    missing = sorted(set(trickle.injected) - set(sends))
    assert not missing, f"no reply for {missing}\n{stack.log_tail()}"
    outage = [c for c, p in trickle.phase.items() if p == "outage"]
    assert len(outage) >= OUTAGE_SECONDS / TRICKLE_EVERY / 2, trickle.errors
    # Exactly one accepted send per guest message: nothing twice after Redis returned.
    assert {c: n for c, n in sends.items() if n != 1} == {}
    assert set(sends) == set(trickle.injected)
    # Guests answered during the outage within the normal latency plus the polling interval.
    slow = {
        c: round(trickle.first_reply[c] - trickle.injected[c], 1)
        for c in outage
        if trickle.first_reply[c] - trickle.injected[c] > REPLY_BOUND_SECONDS
    }
    assert slow == {}, f"replies slower than {REPLY_BOUND_SECONDS}s during the outage: {slow}"
    assert fallback_jobs >= len(outage) / 2, "the outage's replies went through the database poll"
    # Pacing kept limiting: its slots came from the database while Redis was down.
    assert paced_on_database > 0
    assert state in (["open"], ["half_open"]), state  # not closed: the outage is remembered
    # Workers survived the kill (no "Unrecoverable error") and the broker path is used again.
    assert stack.procs["worker"].poll() is None, stack.log_tail()
    worker_log = (stack.logs / "worker.log").read_text(errors="replace")
    assert "Unrecoverable error" not in worker_log
    assert "broker reachable again" in worker_log
