"""reliability/http.py against a local server: deadline over trickling bodies, sent/not-sent errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1)
    resp = session.request("GET", f"{server}/ok")
    assert (resp.status, resp.json()) == (200, {"ok": True})


def test_deadline_cuts_a_trickling_body_that_read_timeouts_cannot(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1, deadline=0.5)
    # Without the deadline the 5 s trickle would end in an incomplete read, not DeadlineExceeded.
    with pytest.raises(DeadlineExceeded) as info:
        session.request("GET", f"{server}/trickle")
    assert info.value.request_sent


def test_read_timeout_means_outcome_unknown(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=0.3)
    with pytest.raises(TransportError) as info:
        session.request("GET", f"{server}/hang")
    assert info.value.request_sent
    assert info.value.dependency == "dep"


def test_reset_after_sending_means_outcome_unknown(server):
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1)
    with pytest.raises(TransportError) as info:
        session.request("GET", f"{server}/reset")
    assert info.value.request_sent


def test_connection_refused_means_not_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    session = ResilientSession("dep", connect_timeout=1, read_timeout=1)
    with pytest.raises(TransportError) as info:
        session.request("GET", f"http://127.0.0.1:{port}/")
    assert not info.value.request_sent
