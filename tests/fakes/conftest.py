"""Fixtures for the fake-provider tests: fresh fakes on free ports, the official SDKs, a webhook receiver.

These tests need no Django database; the fakes are plain standard-library servers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from openai import OpenAI
from whatsapp_api_client_python import API

from fakes import FakeDeepSeek, FakeGreenApi

HOTEL_PROMPT = """You are the WhatsApp concierge of Seaside Inn. Answer briefly.

Hotel facts:
- Hotel: Seaside Inn
- Check-in: from 15:00
- Check-out: until 11:00
- Wi-Fi: network "Seaside-Guest", password "sunny2026"
- Breakfast: 07:00-10:30 in the garden room
- Address: 1 Beach Road, Porto
- Parking: free on-site parking, 20 spaces
- Staff contact: reception, dial 9 or +351 900 000 000
"""


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def call(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One plain HTTP request (new connection) with http.client; ``body`` is sent as JSON."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    all_headers = dict(headers or {})
    payload = raw
    if body is not None:
        payload = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


@pytest.fixture
def green() -> Iterator[FakeGreenApi]:
    """A fake Green API in polling mode, fast long-polls, no rate limiter."""
    with FakeGreenApi(poll_scale=0.05, rate_limits=False, status_delays=(0.05, 0.1, 0.15)) as fake:
        yield fake


@pytest.fixture
def green_sdk(green: FakeGreenApi) -> API.GreenAPI:
    """The official Green API SDK, unmodified, pointed at the fake."""
    return API.GreenAPI(
        green.id_instance, green.api_token, host=green.url, media=green.url, host_timeout=5, raise_errors=True
    )


@pytest.fixture
def deepseek() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek() as fake:
        yield fake


@pytest.fixture
def openai_client(deepseek: FakeDeepSeek) -> OpenAI:
    """The official openai SDK, unmodified, pointed at the fake DeepSeek."""
    return OpenAI(api_key="sk-test", base_url=deepseek.url, max_retries=0, timeout=5)


@dataclass
class Delivery:
    time: float
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """A tiny stdlib webhook receiver; answers with queued status codes (then ``default_status``)."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    delay: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, type_webhook: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            items = [d.body for d in self.deliveries]
        return [b for b in items if type_webhook is None or b.get("typeWebhook") == type_webhook]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            rec = state["rec"]
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with rec.lock:
                rec.in_flight += 1
                rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
                rec.deliveries.append(
                    Delivery(
                        time.monotonic(), self.path, dict(self.headers.items()), json.loads(raw or b"null")
                    )
                )
                status = rec.statuses.pop(0) if rec.statuses else rec.default_status
            if rec.delay:
                time.sleep(rec.delay)
            with rec.lock:
                rec.in_flight -= 1
            body = b'{"ok": true}'
            with contextlib.suppress(OSError):  # the fake may have given up on a slow answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["rec"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/webhooks/green-api/")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state["rec"]
    finally:
        server.shutdown()
        server.server_close()
