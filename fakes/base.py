"""Shared machinery of the fake provider servers.

Pure standard library (no Django), so the fakes run and are testable anywhere:

* :class:`FakeServer` - a ``ThreadingHTTPServer`` on loopback with start/stop/context manager,
  a request journal, a fault engine and the common control API under ``/__fake__/``.
* :class:`FakeRequest` / :class:`FakeResponse` - what a provider subclass sees and returns.

Subclasses implement :meth:`FakeServer.classify`, :meth:`FakeServer.handle` and optionally
:meth:`FakeServer.admit` / :meth:`FakeServer.release` (admission control, e.g. concurrency limits),
:meth:`FakeServer.control` (provider control endpoints), :meth:`FakeServer.default_error` (realistic
error bodies) and :meth:`FakeServer._reset_provider` (provider state).

Fault rules (see ``docs/providers.md`` §3.6) are evaluated in order; the first rule that
applies decides what happens to the request. Control paths are never subject to faults.
Besides the documented modes: ``after_process`` also applies to status faults (``error``,
``overloaded``, ...: the provider acted, then a gateway answered 5xx), and ``trickle`` processes the
request, then sends the answer one byte every ``chunk_delay_ms`` (defeats read timeouts).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import re
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json import JSONDecodeError
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/__fake__"

#: Fault modes every fake understands.
GENERIC_MODES: frozenset[str] = frozenset(
    {
        "error",
        "latency",
        "hang",
        "reset",
        "close_early",
        "rate_limit",
        "overloaded",
        "outage",
        "flaky",
        "trickle",
    }
)
#: Sub-modes ``flaky`` chooses from unless the rule lists ``flaky_modes``.
DEFAULT_FLAKY_MODES: tuple[str, ...] = ("error", "reset", "latency")
#: Rule fields every fake understands.
GENERIC_RULE_FIELDS: frozenset[str] = frozenset(
    {
        "id",
        "name",
        "match",
        "mode",
        "probability",
        "count",
        "after",
        "window",
        "latency_ms",
        "jitter_ms",
        "status",
        "body",
        "headers",
        "retry_after",
        "after_process",
        "flaky_modes",
        "clean",
        "chunk_delay_ms",
    }
)
MATCH_FIELDS: frozenset[str] = frozenset({"path_regex", "method_name", "model", "http_method"})
DEFAULT_LATENCY_MS = 1000.0
JOURNAL_LIMIT = 10_000
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class ControlError(Exception):
    """A bad control-API call (or a bad argument to the matching Python method)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


_NO_JSON = object()


@dataclass
class FakeRequest:
    """One request as a provider handler sees it. Header names are lower-cased."""

    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    _json: Any = field(default=_NO_JSON, repr=False)
    _json_error: JSONDecodeError | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.body:
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except UnicodeDecodeError:
                self._json_error = JSONDecodeError("body is not UTF-8", "", 0)
            except JSONDecodeError as exc:
                self._json_error = exc

    @property
    def has_json(self) -> bool:
        return self._json is not _NO_JSON

    @property
    def json(self) -> Any:
        """The parsed JSON body, or ``None`` when there is none (check :attr:`has_json`)."""
        return None if self._json is _NO_JSON else self._json

    @property
    def json_error(self) -> JSONDecodeError | None:
        return self._json_error

    def query_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def body_for_journal(self) -> Any:
        if self.has_json:
            return self._json
        if not self.body:
            return None
        return self.body.decode("utf-8", errors="replace")

    def control_json(self) -> dict[str, Any]:
        """Body of a control call: a JSON object, or an empty dict for an empty body."""
        if not self.body.strip():
            return {}
        if not self.has_json:
            detail = self._json_error.msg if self._json_error else "not JSON"
            raise ControlError(f"request body is not valid JSON: {detail}")
        if not isinstance(self._json, dict):
            raise ControlError("request body must be a JSON object")
        return self._json


@dataclass
class FakeResponse:
    """What a handler returns.

    ``parts`` turns the body into timed pieces: ``(delay_seconds_before, bytes)``. With
    ``chunked=False`` the Content-Length is still exact (e.g. keep-alive blank lines before JSON);
    with ``chunked=True`` the pieces are sent with chunked transfer encoding (SSE streams).
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    parts: list[tuple[float, bytes]] | None = None
    chunked: bool = False
    note: str | None = None
    #: Close the connection abruptly after the parts (no chunked terminator): a dropped stream.
    abort: bool = False


def json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None, note: str | None = None
) -> FakeResponse:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return FakeResponse(status, body, all_headers, note=note)


def text_response(
    status: int, text: str, content_type: str = "text/plain; charset=utf-8", note: str | None = None
) -> FakeResponse:
    return FakeResponse(status, text.encode("utf-8"), {"Content-Type": content_type}, note=note)


@dataclass
class _Rule:
    id: int
    spec: dict[str, Any]
    created_at: float
    pattern: re.Pattern[str] | None
    window: tuple[float, float] | None
    matched: int = 0
    applied: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self.spec)
        out["id"] = self.id
        out["created_at"] = self.created_at
        out["matched"] = self.matched
        out["applied"] = self.applied
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _window_point(value: Any, created: float, name: str) -> float:
    if _is_number(value):
        return created + float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError as exc:
            raise ControlError(f"window.{name} must be seconds or an ISO 8601 datetime") from exc
    raise ControlError(f"window.{name} must be seconds or an ISO 8601 datetime")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        self.fake._track(sock, add=True)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        self.fake._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("fake %s: connection error from %s", self.fake.provider, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    # Headers and body go out in separate small writes; with Nagle on, the second waits for the
    # client's delayed ACK and every keep-alive request costs ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.fake._dispatch(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET
    do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake %s: " + format, self.server.fake.provider, *args)


class FakeServer:
    """Base class of the fakes: lifecycle, journal, fault engine and the common control API."""

    #: Short provider name used in logs and ``GET /__fake__/health``.
    provider: ClassVar[str] = "fake"
    #: Fault modes a subclass adds to :data:`GENERIC_MODES`.
    extra_modes: ClassVar[frozenset[str]] = frozenset()
    #: Rule fields a subclass adds to :data:`GENERIC_RULE_FIELDS`.
    extra_rule_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._rules: list[_Rule] = []
        self._next_rule_id = 1
        self._journal: deque[dict[str, Any]] = deque(maxlen=JOURNAL_LIMIT)
        self._next_entry_id = 1
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Bind (port 0 = any free port) and serve in a daemon thread. Returns ``self``."""
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        self._httpd = _HTTPServer((self._host, self._requested_port), self)
        self._on_start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.provider}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Returns promptly even while requests hang or long-poll."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stop_event.set()
        self._on_stop()
        httpd.shutdown()
        httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def _on_start(self) -> None:
        """Hook: start provider background threads."""

    def _on_stop(self) -> None:
        """Hook: stop provider background threads and wake waiters (stop event is already set)."""

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    # ------------------------------------------------------------------ provider hooks
    def classify(self, req: FakeRequest) -> dict[str, Any]:
        """Return the attributes rules match on and the journal shows (``method_name``, ``model``)."""
        return {}

    def admit(self, req: FakeRequest) -> FakeResponse | None:
        """Validate / admit a request before it is processed; a response rejects it."""
        return None

    def release(self, req: FakeRequest) -> None:
        """Called after an admitted request has been answered (or abandoned)."""

    def handle(self, req: FakeRequest, rule: dict[str, Any] | None) -> FakeResponse:
        """Process a provider request. ``rule`` is the applied rule for provider-specific modes."""
        return json_response(404, {"message": "Not Found"})

    def default_error(self, status: int, req: FakeRequest) -> FakeResponse:
        """A realistic error response for ``status`` when a rule gives no body."""
        return json_response(status, {"message": "error"})

    def control(self, req: FakeRequest, sub: str) -> FakeResponse | None:
        """Provider control endpoints below ``/__fake__/``; ``None`` means not found."""
        return None

    def _reset_provider(self) -> None:
        """Clear provider state (called by :meth:`reset`)."""

    def _reset_from_control(self, body: dict[str, Any]) -> None:
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ControlError("seed must be an integer")
        self.reset(seed=seed)

    # ------------------------------------------------------------------ public Python API
    def reset(self, seed: int | None = None) -> None:
        """Clear faults, journal and provider state; reseed the RNG (default: the constructor seed)."""
        with self._lock:
            if seed is not None:
                self._seed = seed
            self._rng = random.Random(self._seed)
            self._rules.clear()
            self._journal.clear()
        self._reset_provider()

    def add_fault(self, rule: dict[str, Any]) -> dict[str, Any]:
        """Add a fault rule (see module docs); returns it with its ``id``. Raises ``ValueError``."""
        try:
            return self._add_rule(rule)
        except ControlError as exc:
            raise ValueError(exc.message) from exc

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def remove_fault(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear_faults(self) -> int:
        with self._lock:
            n = len(self._rules)
            self._rules.clear()
            return n

    def journal(
        self,
        method_name: str | None = None,
        *,
        path_regex: str | None = None,
        model: str | None = None,
        http_method: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of the journal entries (oldest first), optionally filtered.

        ``method_name`` compares case-insensitively, ``path_regex`` is searched in the path.
        """
        pattern = re.compile(path_regex) if path_regex else None
        with self._lock:
            entries = [copy.deepcopy(e) for e in self._journal]
        out = []
        for e in entries:
            if method_name is not None and str(e.get("method_name") or "").lower() != method_name.lower():
                continue
            if model is not None and e.get("model") != model:
                continue
            if http_method is not None and e["method"] != http_method.upper():
                continue
            if pattern is not None and not pattern.search(e["path"]):
                continue
            out.append(e)
        return out

    def clear_journal(self) -> None:
        with self._lock:
            self._journal.clear()

    # ------------------------------------------------------------------ fault rules
    def _add_rule(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ControlError("a fault rule must be a JSON object")
        allowed_fields = GENERIC_RULE_FIELDS | self.extra_rule_fields
        unknown = sorted(set(raw) - allowed_fields)
        if unknown:
            raise ControlError(f"unknown rule field(s): {', '.join(unknown)}")
        modes = GENERIC_MODES | self.extra_modes
        mode = raw.get("mode")
        if mode not in modes:
            raise ControlError(f"mode must be one of: {', '.join(sorted(modes))}")
        spec = {k: copy.deepcopy(v) for k, v in raw.items() if k != "id"}
        match = spec.setdefault("match", {})
        if not isinstance(match, dict):
            raise ControlError("match must be an object")
        bad_match = sorted(set(match) - MATCH_FIELDS)
        if bad_match:
            raise ControlError(f"unknown match field(s): {', '.join(bad_match)}")
        for key in MATCH_FIELDS:
            if key in match and not isinstance(match[key], str):
                raise ControlError(f"match.{key} must be a string")
        pattern = None
        if "path_regex" in match:
            try:
                pattern = re.compile(match["path_regex"])
            except re.error as exc:
                raise ControlError(f"match.path_regex is not a valid regex: {exc}") from exc
        probability = spec.get("probability", 1.0)
        if not _is_number(probability) or not 0 <= probability <= 1:
            raise ControlError("probability must be a number from 0 to 1")
        for key in ("count", "after"):
            value = spec.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ControlError(f"{key} must be a non-negative integer")
        for key in ("latency_ms", "jitter_ms", "keepalive_s", "chunk_delay_ms"):
            value = spec.get(key)
            if value is not None and (not _is_number(value) or value < 0):
                raise ControlError(f"{key} must be a non-negative number")
        status = spec.get("status")
        if status is not None and (
            not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599
        ):
            raise ControlError("status must be an HTTP status code (100-599)")
        headers = spec.get("headers")
        if headers is not None and (
            not isinstance(headers, dict) or not all(isinstance(v, str | int) for v in headers.values())
        ):
            raise ControlError("headers must be an object of strings")
        retry_after = spec.get("retry_after")
        if retry_after is not None and not (_is_number(retry_after) or isinstance(retry_after, str)):
            raise ControlError("retry_after must be seconds or an HTTP date string")
        for key in ("after_process", "clean"):
            if key in spec and not isinstance(spec[key], bool):
                raise ControlError(f"{key} must be a boolean")
        flaky_modes = spec.get("flaky_modes")
        if flaky_modes is not None and (
            not isinstance(flaky_modes, list)
            or not flaky_modes
            or not all(m in modes and m != "flaky" for m in flaky_modes)
        ):
            raise ControlError("flaky_modes must be a non-empty list of modes")
        self._validate_extra_rule(spec)
        created = time.time()
        window = None
        raw_window = spec.get("window")
        if raw_window is not None:
            if not isinstance(raw_window, dict):
                raise ControlError("window must be an object {start, end}")
            start = _window_point(raw_window.get("start", 0), created, "start")
            end = (
                _window_point(raw_window["end"], created, "end")
                if raw_window.get("end") is not None
                else float("inf")
            )
            if end <= start:
                raise ControlError("window.end must be after window.start")
            window = (start, end)
        with self._lock:
            rule = _Rule(self._next_rule_id, spec, created, pattern, window)
            self._next_rule_id += 1
            self._rules.append(rule)
            return rule.as_dict()

    def _validate_extra_rule(self, spec: dict[str, Any]) -> None:
        """Hook: validate provider-specific rule fields (raise :class:`ControlError`)."""

    def _rule_matches(self, rule: _Rule, req: FakeRequest) -> bool:
        match = rule.spec.get("match") or {}
        if rule.pattern is not None and not rule.pattern.search(req.path):
            return False
        if "method_name" in match:
            actual = req.attrs.get("method_name")
            if actual is None or str(actual).lower() != match["method_name"].lower():
                return False
        if "model" in match and req.attrs.get("model") != match["model"]:
            return False
        return not ("http_method" in match and req.method != match["http_method"].upper())

    def _decide(self, req: FakeRequest) -> tuple[dict[str, Any] | None, str | None]:
        """Pick the first applicable rule; returns (rule snapshot, effective mode)."""
        with self._lock:
            now = time.time()
            for rule in self._rules:
                if not self._rule_matches(rule, req):
                    continue
                rule.matched += 1
                spec = rule.spec
                if rule.matched <= int(spec.get("after") or 0):
                    continue
                count = spec.get("count")
                if count is not None and rule.applied >= count:
                    continue
                if rule.window is not None and not rule.window[0] <= now < rule.window[1]:
                    continue
                probability = float(spec.get("probability", 1.0))
                if probability < 1.0 and self._rng.random() >= probability:
                    continue
                rule.applied += 1
                mode = str(spec["mode"])
                if mode == "flaky":
                    mode = self._rng.choice(list(spec.get("flaky_modes") or DEFAULT_FLAKY_MODES))
                snapshot = rule.as_dict()
                delay = 0.0
                latency = spec.get("latency_ms")
                if mode == "latency" and latency is None:
                    latency = DEFAULT_LATENCY_MS
                if latency is not None and mode != "hang":
                    delay = float(latency) + self._rng.uniform(0, float(spec.get("jitter_ms") or 0))
                snapshot["_delay_ms"] = delay
                return snapshot, mode
        return None, None

    # ------------------------------------------------------------------ request pipeline
    def _dispatch(self, h: _Handler) -> None:
        try:
            req = self._read_request(h)
        except ValueError as exc:
            h.close_connection = True
            self._send(h, json_response(400, {"error": str(exc)}), None)
            return
        if req.path == CONTROL_PREFIX or req.path.startswith(CONTROL_PREFIX + "/"):
            self._send(h, self._control_dispatch(req), None)
            return
        try:
            req.attrs = dict(self.classify(req))
        except Exception:
            logger.exception("fake %s: classify failed", self.provider)
            req.attrs = {}
        entry = self._journal_add(req)
        rule, mode = self._decide(req)
        if rule is not None:
            entry["rule"] = {"id": rule["id"], "mode": rule["mode"], "applied_mode": mode}
        try:
            self._execute(h, req, rule, mode, entry)
        except _CLIENT_GONE:
            h.close_connection = True
            self._mark(entry, "client_gone")
        except Exception:
            # A bug in the fake: answer a plain 500 (never a traceback) if nothing was sent yet.
            logger.exception("fake %s: handler failed", self.provider)
            h.close_connection = True
            if entry["status"] is None:
                with contextlib.suppress(Exception):
                    self._send(h, json_response(500, {"message": "Internal Server Error"}), entry)
            else:
                self._abort(h)
            self._mark(entry, "server_error")

    def _read_request(self, h: _Handler) -> FakeRequest:
        split = urlsplit(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            pieces = []
            while True:
                size_line = h.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise ValueError("bad chunked body") from exc
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                pieces.append(h.rfile.read(size))
                h.rfile.readline(65537)
            body = b"".join(pieces)
        elif headers.get("content-length"):
            try:
                length = int(headers["content-length"])
            except ValueError as exc:
                raise ValueError("bad Content-Length") from exc
            if length < 0:
                raise ValueError("bad Content-Length")
            body = h.rfile.read(length)
        return FakeRequest(
            method=h.command.upper(),
            path=split.path,
            raw_path=h.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=body,
            client=f"{h.client_address[0]}:{h.client_address[1]}",
        )

    def _journal_add(self, req: FakeRequest) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "method": req.method,
            "path": req.path,
            "query": {k: v[-1] for k, v in req.query.items()},
            "method_name": req.attrs.get("method_name"),
            "headers": dict(req.headers),
            "body": req.body_for_journal(),
            "time": time.time(),
            "rule": None,
            "status": None,
            "outcome": "pending",
            "duration_ms": None,
            "response_headers": None,
            "note": None,
        }
        if "model" in req.attrs:
            entry["model"] = req.attrs["model"]
        with self._lock:
            entry["id"] = self._next_entry_id
            self._next_entry_id += 1
            self._journal.append(entry)
        return entry

    def _execute(
        self,
        h: _Handler,
        req: FakeRequest,
        rule: dict[str, Any] | None,
        mode: str | None,
        entry: dict[str, Any],
    ) -> None:
        delay = float(rule.get("_delay_ms") or 0) / 1000 if rule is not None else 0.0

        def pause() -> bool:
            """Apply the rule's latency; True when the server stopped meanwhile."""
            return delay > 0 and self._stop_event.wait(delay)

        if mode == "trickle":
            # Process normally, then send the answer one byte per ``chunk_delay_ms`` (default 500):
            # every byte arrives within any read timeout, so only an overall deadline ends it.
            step = float((rule or {}).get("chunk_delay_ms", 500)) / 1000

            def trickle(resp: FakeResponse) -> None:
                body = resp.body if resp.parts is None else b"".join(part for _, part in resp.parts)
                resp.parts = [(step if i else 0.0, body[i : i + 1]) for i in range(len(body))]
                resp.chunked = False
                self._send(h, resp, entry, rule)

            if not self._process(req, None, trickle, pause):
                self._close(h, entry, "stopped")
            return
        if mode is None or mode in ("latency", "close_early") or mode in self.extra_modes:
            # Latency is spent after admission, so it counts against concurrency limits.
            provider_rule = rule if mode in self.extra_modes else None
            truncate = mode == "close_early"
            completed = self._process(
                req,
                provider_rule,
                lambda resp: self._send(h, resp, entry, rule, truncate=truncate),
                pause,
            )
            if not completed:
                self._close(h, entry, "stopped")
            return
        if pause():
            self._close(h, entry, "stopped")
            return
        if mode == "hang":
            entry["outcome"] = "hanging"
            self._hang(h)
            self._close(h, entry, "hang")
            return
        status = rule.get("status") if rule else None
        if mode == "outage" and status is None:
            mode = "reset"
        if mode == "reset":
            assert rule is not None
            if rule.get("after_process"):
                self._process(req, None, lambda resp: None, lambda: False)
            self._mark(entry, "reset")
            self._rst(h)
            return
        assert rule is not None
        if rule.get("after_process"):  # e.g. a gateway 502/504 after the provider acted on it
            self._process(req, None, lambda resp: None, lambda: False)
        default_status = {"rate_limit": 429, "overloaded": 503}.get(str(mode), 500)
        self._send(h, self._fault_response(req, rule, status or default_status), entry, rule)

    def _process(
        self,
        req: FakeRequest,
        rule: dict[str, Any] | None,
        sink: Callable[[FakeResponse], None],
        pause: Callable[[], bool],
    ) -> bool:
        """Admit, wait out the latency, handle and hand the response to ``sink``.

        Returns False when the server stopped during the latency (nothing was sent)."""
        rejection = self.admit(req)
        if rejection is not None:
            if pause():
                return False
            sink(rejection)
            return True
        try:
            if pause():
                return False
            sink(self.handle(req, rule))
            return True
        finally:
            self.release(req)

    def _fault_response(self, req: FakeRequest, rule: dict[str, Any], status: int) -> FakeResponse:
        body = rule.get("body")
        if body is None:
            resp = self.default_error(status, req)
        elif isinstance(body, str):
            resp = text_response(status, body)
        else:
            resp = json_response(status, body)
        resp.note = f"fault:{rule['mode']}"
        return resp

    def _send(
        self,
        h: _Handler,
        resp: FakeResponse,
        entry: dict[str, Any] | None,
        rule: dict[str, Any] | None = None,
        *,
        truncate: bool = False,
    ) -> None:
        headers = dict(resp.headers)
        if rule is not None:
            for k, v in (rule.get("headers") or {}).items():
                headers[str(k)] = str(v)
            if rule.get("retry_after") is not None:
                ra = rule["retry_after"]
                headers["Retry-After"] = str(int(ra)) if _is_number(ra) and ra == int(ra) else str(ra)
            xsr = rule.get("x_should_retry")
            if xsr is not None:
                headers["x-should-retry"] = (
                    ("true" if xsr else "false") if isinstance(xsr, bool) else str(xsr)
                )
        if entry is not None:
            entry["status"] = resp.status
            entry["note"] = resp.note
            entry["response_headers"] = headers
        h.send_response(resp.status)
        for k, v in headers.items():
            h.send_header(k, v)
        if resp.parts is not None and resp.chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            length = len(resp.body) if resp.parts is None else sum(len(p) for _, p in resp.parts)
            h.send_header("Content-Length", str(length))
        if truncate:
            h.send_header("Connection", "close")
        h.end_headers()
        # Record the outcome before the last bytes leave, so a client that reads the journal right
        # after its response sees the final entry.
        outcome = "close_early" if truncate else "aborted" if resp.abort else "response"
        if h.command == "HEAD":
            self._mark(entry, "response")
            return
        if resp.parts is None:
            self._mark(entry, outcome)
            if truncate:
                h.wfile.write(resp.body[: len(resp.body) // 2])
                self._abort(h)
                return
            h.wfile.write(resp.body)
            return
        parts = resp.parts[: max(1, len(resp.parts) // 2)] if truncate else resp.parts
        for i, (delay, data) in enumerate(parts):
            if delay > 0 and self._stop_event.wait(delay):
                self._mark(entry, "stopped")
                self._abort(h)
                return
            if i == len(parts) - 1:
                self._mark(entry, outcome)
            if resp.chunked:
                if data:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                h.wfile.write(data)
        if not parts:
            self._mark(entry, outcome)
        if truncate and resp.chunked and rule is not None and rule.get("clean"):
            h.wfile.write(b"0\r\n\r\n")
            h.close_connection = True
        elif truncate or resp.abort:
            self._abort(h)
        elif resp.chunked:
            h.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _mark(entry: dict[str, Any] | None, outcome: str) -> None:
        if entry is not None:
            entry["outcome"] = outcome
            entry["duration_ms"] = round((time.time() - entry["time"]) * 1000, 1)

    def _close(self, h: _Handler, entry: dict[str, Any], outcome: str) -> None:
        self._mark(entry, outcome)
        self._abort(h)

    @staticmethod
    def _abort(h: _Handler) -> None:
        """Close the connection with a FIN (after whatever was already written)."""
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _rst(h: _Handler) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0, then close)."""
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()

    def _hang(self, h: _Handler) -> None:
        """Never answer: wait until the server stops or the client goes away."""
        sock = h.connection
        while not self._stop_event.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.2)
            except (OSError, ValueError):
                return
            if readable:
                try:
                    data = sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    return
                if not data:
                    return
                self._stop_event.wait(0.2)

    # ------------------------------------------------------------------ control API
    def _control_dispatch(self, req: FakeRequest) -> FakeResponse:
        sub = req.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            resp = self._control_common(req, sub)
            if resp is None:
                resp = self.control(req, sub)
            if resp is None:
                return json_response(404, {"error": f"no control endpoint {req.method} {req.path}"})
            return resp
        except ControlError as exc:
            return json_response(exc.status, {"error": exc.message})
        except Exception as exc:
            logger.exception("fake %s: control endpoint failed", self.provider)
            return json_response(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _control_common(self, req: FakeRequest, sub: str) -> FakeResponse | None:
        m = req.method
        if sub in ("", "health") and m == "GET":
            return json_response(
                200, {"provider": self.provider, "url": self.url, "faults": len(self._rules), "ok": True}
            )
        if sub == "faults":
            if m == "GET":
                return json_response(200, self.faults())
            if m == "POST":
                return json_response(201, self._add_rule(req.control_json()))
            if m == "DELETE":
                return json_response(200, {"deleted": self.clear_faults()})
        if sub.startswith("faults/") and m == "DELETE":
            try:
                rule_id = int(sub.split("/", 1)[1])
            except ValueError as exc:
                raise ControlError("rule id must be an integer") from exc
            if not self.remove_fault(rule_id):
                raise ControlError(f"no rule {rule_id}", status=404)
            return json_response(200, {"deleted": 1})
        if sub == "requests":
            if m == "GET":
                path_regex = req.query_one("path_regex")
                if path_regex:
                    try:
                        re.compile(path_regex)
                    except re.error as exc:
                        raise ControlError(f"path_regex is not a valid regex: {exc}") from exc
                return json_response(
                    200,
                    self.journal(
                        req.query_one("method_name"),
                        path_regex=path_regex,
                        model=req.query_one("model"),
                        http_method=req.query_one("http_method"),
                    ),
                )
            if m == "DELETE":
                self.clear_journal()
                return json_response(200, {"cleared": True})
        if sub == "reset" and m == "POST":
            self._reset_from_control(req.control_json())
            return json_response(200, {"reset": True, "seed": self._seed})
        return None
