"""reliability/http.py against a local server: deadline over trickling bodies, sent/not-sent errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reliability import egress
from reliability.http import DeadlineExceeded, ResilientSession, TransportError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if self.path == "/ok":
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/trickle":  # DeepSeek-style keep-alive: a newline every 0.1 s for 5 s
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(50):
                try:
                    self.wfile.write(b"\n")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        elif self.path == "/hang":
            time.sleep(3)
        elif self.path == "/reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_plain_request_returns_body_and_status(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, use_breaker=False)
    resp = session.request("GET", f"{server}/ok")
    assert (resp.status, resp.json()) == (200, {"ok": True})


def test_deadline_cuts_a_trickling_body_that_read_timeouts_cannot(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, deadline=0.5, use_breaker=False)
    # Without the deadline the 5 s trickle would end in an incomplete read, not DeadlineExceeded.
    with pytest.raises(DeadlineExceeded) as info:
        session.request("GET", f"{server}/trickle")
    assert info.value.request_sent


def test_read_timeout_means_outcome_unknown(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=0.3, use_breaker=False)
    with pytest.raises(TransportError) as info:
        session.request("GET", f"{server}/hang")
    assert info.value.request_sent
    assert info.value.dependency == "dep"


def test_reset_after_sending_means_outcome_unknown(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, use_breaker=False)
    with pytest.raises(TransportError) as info:
        session.request("GET", f"{server}/reset")
    assert info.value.request_sent


def test_connection_refused_means_not_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, use_breaker=False)
    with pytest.raises(TransportError) as info:
        session.request("GET", f"http://127.0.0.1:{port}/")
    assert not info.value.request_sent


@pytest.mark.django_db
def test_breaker_counts_failures_and_then_rejects_without_io(server):
    from reliability.breaker import CircuitOpenError, State, registry
    from reliability.models import BreakerConfig

    BreakerConfig.objects.create(name="dep", failure_threshold=2, recovery_timeout=60)
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1)
    for _ in range(2):
        with pytest.raises(TransportError):
            session.request("GET", f"{server}/reset")
    assert registry.breaker("dep").state == State.OPEN
    with pytest.raises(CircuitOpenError) as info:
        session.request("GET", f"{server}/ok")
    assert info.value.retry_after > 0


@pytest.mark.django_db
def test_retry_layer_retries_transient_responses_within_the_session(server):
    from reliability.retry import RetryConfig

    calls = {"n": 0}
    session = ResilientSession(
        "dep2",
        connect_timeout=1,
        read_timeout=1,
        retry=RetryConfig(max_attempts=3, base_delay=0.01),
        use_breaker=False,
    )
    original = session._attempt

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransportError("dep2", "refused", request_sent=False)
        return original(*args)

    session._attempt = flaky  # type: ignore[method-assign]
    assert session.request("GET", f"{server}/ok").status == 200
    assert calls["n"] == 2
    calls["n"] = 0

    def reset_after_sending(*args):
        calls["n"] += 1
        raise TransportError("dep2", "reset", request_sent=True)

    session._attempt = reset_after_sending  # type: ignore[method-assign]
    with pytest.raises(TransportError):  # not idempotent and maybe sent: no retry
        session.request("POST", f"{server}/ok", idempotent=False)
    assert calls["n"] == 1


def test_environment_proxies_are_read_once_and_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, use_breaker=False)
    assert session._proxies_for("http://api.green-api.com/x")["http"] == "http://proxy.internal:3128"
    assert session._proxies_for("http://127.0.0.1:8701/x") == {}
    monkeypatch.delenv("HTTP_PROXY")  # read at construction, like the rest of the settings
    assert session._proxies_for("http://api.green-api.com/y")["http"] == "http://proxy.internal:3128"


def test_no_proxy_environment_means_direct_calls(server, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, use_breaker=False)
    assert session._env_proxies == {}
    assert session.request("GET", f"{server}/ok").status == 200


# --- public_only (reliability/egress.py): the connection's own address ------------------------------
def _public_only() -> ResilientSession:
    return ResilientSession(
        "egress_test", connect_timeout=2, read_timeout=2, deadline=3, use_breaker=False, public_only=True
    )


def test_public_only_refuses_a_private_peer_whatever_dns_said(server):
    """DNS rebinding: a name that passed the URL check as public connects to 127.0.0.1: refused
    right after connecting, before a byte is sent."""
    url = server.replace("127.0.0.1", "localhost") + "/ok"
    with pytest.raises(TransportError) as raised:
        _public_only().request("GET", url, retry=False)
    assert "not a public address" in raised.value.message
    assert raised.value.request_sent is False


def test_public_only_lets_a_public_peer_through(server, monkeypatch):
    monkeypatch.setattr(egress, "address_is_public", lambda address: True)  # loopback plays the internet
    assert _public_only().request("GET", f"{server}/ok", retry=False).status == 200
