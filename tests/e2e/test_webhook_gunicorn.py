"""The webhook under a real gunicorn (deploy/gunicorn.conf.py), as Green API meets it (issue 16).

* The sender always sees the answer (item 10): a body over WEBHOOK_MAX_BODY_BYTES is answered 200
  ``quarantined``, and gunicorn closes the connection after answering. A client that writes its
  whole body before reading (as most HTTP clients do) must still read that 200: the view drains
  the body (``notifications.read_body``); with the drain off, the same client meets a reset.
* No publish waits for the sweeper (item 11): a worker that leaves gracefully — SIGTERM, or a
  ``max_requests`` restart — first publishes what its hand-off thread still holds (the
  ``worker_exit`` hook). The broker sits behind a proxy that delays every command, so publishes
  are still queued when the worker is told to go.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from drill.stack import BIN, ROOT, Stack, base_env, drop_database, make_stack, wait_http
from tests.e2e.seeded import SEEDED

pytestmark = pytest.mark.e2e

LIMIT = 100_000  # WEBHOOK_MAX_BODY_BYTES of these servers
BODY_SIZE = 4 * 1024 * 1024  # far more than both ends' socket buffers hold
TOKEN = secrets.token_urlsafe(24)
PATH = "/webhooks/green-api/"
WORKERS = [("-k", "sync"), ("-k", "gthread", "--threads", "4")]  # deploy/gunicorn.conf.py: gthread
SLOW = {"CELERY_REQUEST_PUBLISH_TIMEOUT": "3"}  # above the slow proxy's delay per command
OWN_BROKER_DB = 15  # the Redis database these tests empty (see _own_broker_url)


@contextlib.contextmanager
def _stack(tmp: Path, **extra: str) -> Iterator[tuple[Stack, str]]:
    """A migrated database with the demo hotel and the environment of its web servers; yields the
    stack and the demo hotel's Green API instance id. No worker, no beat: tasks stay queued."""
    settings = {
        "GREEN_API_WEBHOOK_TOKEN": TOKEN,  # the single-hotel opt-in: the legacy URL takes this token
        "WEBHOOK_MAX_BODY_BYTES": str(LIMIT),
        "DJANGO_DEBUG": "1",
        **extra,
    }
    env, web_url = base_env(tmp)
    env.update(settings)
    base_db_url = os.environ.get("DATABASE_URL", "")
    stack = make_stack(tmp, env, web_url)
    db_name = ""
    try:
        db_name = SEEDED.prepare(stack, base_db_url)
        instance = re.search(r"Green API instance (\d+)", SEEDED.seed_output)
        assert instance is not None, SEEDED.seed_output
        yield stack, instance.group(1)
    finally:
        stack.stop_all()
        if db_name:
            drop_database(base_db_url, db_name)


def _start_gunicorn(stack: Stack, name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """gunicorn with the deployment's config (its hooks) and one worker; returns its base URL."""
    port = urlsplit(stack.web_url).port
    saved = dict(stack.env)
    stack.env.update(env or {})
    try:
        proc = stack.start(
            name,
            [
                str(BIN / "gunicorn"),
                "hotelbot.wsgi",
                "--config",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                *args,
            ],
        )
    finally:
        stack.env.clear()
        stack.env.update(saved)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health/live/", proc=proc)
    return url


def _write_all_then_read(url: str, body: bytes) -> bytes:
    """POST the way a simple client does: the whole request written first, then the answer read.
    A small send buffer makes the client wait on the server's reading, as with any large body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _oversize_body() -> bytes:
    prefix = b'{"typeWebhook": "incomingMessageReceived", "padding": "'
    return prefix + b"x" * (BODY_SIZE - len(prefix) - 2) + b'"}'


@pytest.mark.parametrize(
    "worker", [("-k", "sync"), ("-k", "gthread", "--threads", "4")], ids=["sync", "gthread"]
)
def test_a_client_that_writes_an_oversize_body_before_reading_reads_the_200(tmp_path, worker):
    with _stack(tmp_path) as (stack, _instance):
        url = _start_gunicorn(stack, "web", *worker)

        answer = _write_all_then_read(url, _oversize_body())

        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 200"), answer[:300]
        assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {"status": "quarantined"}
        letter = stack.shell(
            "from reliability.models import DeadLetter as D; d = D.objects.get(); "
            "print(d.reason_code, d.raw_size, d.raw_truncated)"
        )
        assert letter.split() == ["too_large", str(BODY_SIZE), "True"]


def test_without_the_drain_the_same_client_meets_a_reset(tmp_path):
    """The control: what the drain fixes (gunicorn's sync worker closes with the body unread)."""
    with _stack(tmp_path, WEBHOOK_DRAIN_MAX_BYTES="0") as (stack, _instance):
        url = _start_gunicorn(stack, "web", "-k", "sync")
        try:
            answer = _write_all_then_read(url, _oversize_body())
        except (BrokenPipeError, ConnectionResetError):
            return
        pytest.fail(f"the client read an answer: {answer[:200]!r}")


# --- graceful exit flushes the hand-off thread --------------------------------------------------
class _SlowProxy:
    """A TCP proxy to Redis that holds every client-to-server chunk for ``delay`` seconds: each
    broker command takes that long, so a web worker's hand-off thread still holds its publishes
    when the worker is told to go."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, self.delay), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, 0.0), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if delay:
                    time.sleep(delay)
                sink.sendall(chunk)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


def _own_broker_url() -> str:
    """A Redis database of our own on the services run's broker server (these tests empty it; the
    unit tests publish to CELERY_BROKER_URL's database, the session stack to 14)."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        pytest.skip("needs the Redis broker of the services run (the embedded broker is a folder)")
    return urlunsplit(urlsplit(url)._replace(path=f"/{OWN_BROKER_DB}"))


@pytest.fixture
def slow_broker() -> Iterator[tuple[str, redis.Redis]]:
    """(the broker URL through a slow proxy, a direct client of the same Redis database)."""
    url = _own_broker_url()
    parts = urlsplit(url)
    direct = redis.Redis.from_url(url, socket_timeout=5)
    direct.flushdb()
    proxy = _SlowProxy((parts.hostname or "127.0.0.1", parts.port or 6379), delay=0.1)
    try:
        yield urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}")), direct
    finally:
        proxy.close()
        direct.flushdb()


def _guest_message(instance: str, n: int) -> dict[str, object]:
    return {
        "typeWebhook": "incomingMessageReceived",
        "instanceData": {"idInstance": int(instance), "wid": "79000000000@c.us", "typeInstance": "whatsapp"},
        "timestamp": int(time.time()),
        "idMessage": f"EXIT-{n}-{secrets.token_hex(4)}",
        "senderData": {"chatId": f"7900000{n:04d}@c.us", "senderName": "Ana"},
        "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": f"question {n}"}},
    }


def _post(url: str, instance: str, n: int) -> None:
    resp = requests.post(
        f"{url}{PATH}",
        json=_guest_message(instance, n),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert resp.json() == {"status": "stored"}, resp.text


def _queued_task_ids(direct: redis.Redis) -> set[str]:
    return {json.loads(raw)["headers"]["id"] for raw in direct.lrange("celery", 0, -1)}


def _recorded_task_ids(stack: Stack) -> set[str]:
    out = stack.shell(
        "from messaging.models import ReplyJob; "
        "ids = ReplyJob.objects.exclude(published_task_id='').values_list('published_task_id', flat=True); "
        "print(' '.join(ids))"
    )
    return set(out.split())


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize(
    "worker", [("-k", "sync"), ("-k", "gthread", "--threads", "4")], ids=["sync", "gthread"]
)
def test_sigterm_publishes_what_the_hand_off_thread_still_holds(tmp_path, slow_broker, worker):
    broker_url, direct = slow_broker
    with _stack(tmp_path, CELERY_BROKER_URL=broker_url, **SLOW) as (
        stack,
        instance,
    ):
        url = _start_gunicorn(stack, "web", *worker)
        for n in range(5):
            _post(url, instance, n)
        assert len(_queued_task_ids(direct)) < 5  # the publishes are still on their way

        proc = stack.procs["web"]
        os.killpg(proc.pid, signal.SIGTERM)  # what systemd, Kubernetes and honcho send
        proc.wait(timeout=30)

        recorded = _recorded_task_ids(stack)
        assert len(recorded) == 5  # every publish succeeded (a failed one clears its record)
        assert _queued_task_ids(direct) == recorded


def test_a_max_requests_restart_publishes_what_the_hand_off_thread_still_holds(tmp_path, slow_broker):
    broker_url, direct = slow_broker
    with _stack(tmp_path, CELERY_BROKER_URL=broker_url, **SLOW) as (
        stack,
        instance,
    ):
        url = _start_gunicorn(stack, "web", "-k", "sync", "--max-requests", "3")
        first_worker = stack.web_worker_pids()
        for n in range(3):
            _post(url, instance, n)  # the third request ends the worker's life
        assert len(_queued_task_ids(direct)) < 3

        assert _wait_for(lambda: stack.web_worker_pids() != first_worker, timeout=15)
        assert _wait_for(lambda: len(_queued_task_ids(direct)) == 3, timeout=5)
        assert _queued_task_ids(direct) == _recorded_task_ids(stack)


# --- a publish lost with its web process: re-published within 5 s, by beat's watch -----------------
def test_a_publish_lost_with_a_killed_web_worker_is_republished_within_5_s_and_answered(tmp_path):
    """The web's broker hangs (its publish waits on the hand-off thread) and the web worker is
    SIGKILLed: the publish is gone. The sweeper runs at the production cadence (30 s stale, every
    15 s), so a republish within 5 s of the job's creation can only be beat's watch."""
    from fakes.hung_tcp import HungTcpServer

    url = _own_broker_url()
    redis.Redis.from_url(url, socket_timeout=5).flushdb()
    production_sweeper = {
        "REPLY_STALE_AFTER": "30",
        "REPLY_SWEEP_INTERVAL": "15",
        "CELERY_BROKER_URL": url,
        # The watch's 5 s count from the job being due; without a burst window it is due when created.
        "REPLY_BURST_QUIET_SECONDS": "0",
    }
    with HungTcpServer() as hung, _stack(tmp_path, **production_sweeper) as (stack, instance):
        stack.start_fakes()
        stack.start_worker()
        stack.start_beat()
        web = _start_gunicorn(
            stack,
            "web",
            "-k",
            "gthread",
            "--threads",
            "4",
            env={"CELERY_BROKER_URL": hung.url, "CELERY_REQUEST_PUBLISH_TIMEOUT": "20"},
        )
        _post(web, instance, 1)
        assert _wait_for(lambda: hung.accepted > 0, timeout=5)  # the publish is on its way ...
        for pid in stack.web_worker_pids():
            os.kill(pid, signal.SIGKILL)  # ... and dies with the worker

        def answered() -> bool:
            return (
                stack.shell("from messaging.models import ReplyJob; print(ReplyJob.objects.get().status)")
                == "done"
            )

        assert _wait_for(answered, timeout=30), stack.log_tail()
        out = stack.shell(
            "from messaging.models import ReplyJob; j = ReplyJob.objects.get(); "
            "print(j.republish_count, (j.published_at - j.created_at).total_seconds())"
        )
        count, seconds = out.split()
        assert int(count) == 1  # re-published once, by the watch (the sweeper's turn comes later)
        assert float(seconds) < 5.0
        assert "watch reply_jobs_unseen acted on 1 item(s)" in (stack.logs / "beat.log").read_text()
