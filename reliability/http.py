"""A ``requests`` session per named dependency: timeouts, overall deadline, breaker, one retry layer.

This is the one seam through which every external HTTP call flows (``messaging/clients/*``).
Each attempt goes through the dependency's circuit breaker (5xx/429/transport errors count as
failures, other 4xx are ignored; an open breaker raises ``CircuitOpenError`` without any I/O).
Retries (``reliability.retry``) wrap the breaker, so every attempt is admitted and recorded; they
are opt-in per session and per call: a caller that retries at task level passes ``retry=False``
so the two layers never multiply. The overall deadline covers every attempt and sleep.

Transport failures are re-raised as :class:`TransportError`, which says whether the request may
have reached the server (``request_sent``): a connect failure means it surely did not, a read
timeout or a reset after sending means the outcome is unknown and a non-idempotent call must be
reconciled, not blindly repeated.

Secrets in URLs (Green API puts the instance token in the path): a session built with ``redact``
passes every URL-bearing text through it before it reaches a log line (ours and urllib3's), an
exception message or :attr:`HttpResponse.url`; the raw ``requests`` exception, whose text holds
the URL, is not chained onto the :class:`TransportError` then.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error

from reliability.breaker import registry
from reliability.egress import PublicOnlyAdapter
from reliability.metrics import HTTP_REQUESTS, HTTP_SECONDS
from reliability.retry import RetryConfig, RetryHandler, is_transient, request_sent
from reliability.transport import DeadlineExceeded, HttpResponse, TransportError

__all__ = ["DeadlineExceeded", "HttpResponse", "ResilientSession", "TransportError"]

logger = logging.getLogger(__name__)

_CHUNK = 16 * 1024
_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "transport", "deadline", "other")


#: The ``redact`` functions of live sessions, applied to urllib3's own log lines (which show paths).
_REDACTORS: weakref.WeakSet[ResilientSession] = weakref.WeakSet()


class _RedactUrls(logging.Filter):
    """Masks secrets in urllib3's connection-pool log lines (``"POST /path/with/token HTTP/1.1"``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sessions = list(_REDACTORS)
        if sessions:
            text = record.getMessage()
            masked = text
            for session in sessions:
                masked = session.redact(masked)
            if masked != text:
                record.msg, record.args = masked, None
        return True


def redact_live_sessions(text: str) -> str:
    """``text`` through the ``redact`` of every live session (a redactor for every log record)."""
    for session in list(_REDACTORS):
        text = session.redact(text)
    return text


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_RedactUrls())


def _no_redaction(text: str) -> str:
    return text


def _transient_response(idempotent: bool, result: object) -> bool:
    return isinstance(result, HttpResponse) and is_transient(result.status, idempotent=idempotent)


class ResilientSession:
    """HTTP for one named dependency (``"green_api"``, ``"deepseek"``)."""

    def __init__(
        self,
        dependency: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        deadline: float | None = None,
        pool_maxsize: int = 10,
        headers: Mapping[str, str] | None = None,
        retry: RetryConfig | None = None,
        use_breaker: bool = True,
        redact: Callable[[str], str] | None = None,
        public_only: bool = False,
    ) -> None:
        """``public_only``: connect to public addresses only (``reliability.egress``: a URL chosen
        by someone other than the operator)."""
        self.dependency = dependency
        #: Masks secrets in a URL-bearing text (identity unless given).
        self.redact: Callable[[str], str] = redact or _no_redaction
        if redact is not None:
            _REDACTORS.add(self)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.use_breaker = use_breaker
        self._retry: dict[bool, RetryHandler] = {}
        if retry is not None:
            for idempotent in (True, False):
                config = dataclasses.replace(retry, idempotent=idempotent, deadline=deadline)
                self._retry[idempotent] = RetryHandler(
                    config,
                    dependency=dependency,
                    retry_on_result=functools.partial(_transient_response, idempotent),
                )
        self._requests = {o: HTTP_REQUESTS.labels(dependency, o) for o in _OUTCOMES}
        self._seconds = HTTP_SECONDS.labels(dependency)
        self._session = requests.Session()
        # requests re-reads os.environ (proxies, CA bundle) and ~/.netrc on every call when
        # trust_env is on: ~10% of a loopback call. A service reads its environment once.
        self._session.trust_env = False
        self._session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._env_proxies = urllib.request.getproxies()
        self._proxies: dict[str, dict[str, str]] = {}
        adapter_class = PublicOnlyAdapter if public_only else HTTPAdapter
        adapter = adapter_class(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if headers:
            self._session.headers.update(headers)

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        idempotent: bool = True,
        retry: bool = True,
        breaker: bool = True,
    ) -> HttpResponse:
        """Send a request through the breaker (and the retry policy unless ``retry=False``).

        ``breaker=False`` bypasses the breaker for a probe: a health check measures the provider
        and must not change the breaker it reports on (a probe's success would reset the failure
        count of the calls the breaker guards, and an open breaker would hide the provider's state).

        The whole exchange, every attempt and backoff sleep included, ends within ``deadline``
        seconds (default: the session's). ``idempotent=False`` retries only what surely did not
        reach the server. ``data``: a body already encoded (e.g. signed bytes), instead of ``json``.
        Raises ``CircuitOpenError`` when the breaker rejects the call.
        """
        budget = deadline if deadline is not None else self.deadline
        ends = time.monotonic() + budget if budget is not None else None
        attempt = functools.partial(self._attempt, method, url, json, params, headers, ends, data)
        if self.use_breaker and breaker:
            attempt = functools.partial(registry.breaker(self.dependency).call, attempt)
        handler = self._retry.get(idempotent) if retry else None
        return handler.execute(attempt) if handler is not None else attempt()

    def _attempt(
        self,
        method: str,
        url: str,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        ends: float | None,
        data: bytes | None = None,
    ) -> HttpResponse:
        started = time.monotonic()
        read_timeout = self.read_timeout
        if ends is not None:
            remaining = ends - started
            if remaining <= 0:
                self._requests["deadline"].inc()
                raise DeadlineExceeded(self.dependency, "overall deadline exceeded", request_sent=False)
            read_timeout = min(read_timeout, remaining)
        try:
            resp = self._session.request(
                method,
                url,
                json=json,
                data=data,
                params=params,
                headers=headers,
                timeout=(self.connect_timeout, read_timeout),
                stream=ends is not None,
                proxies=self._proxies_for(url) if self._env_proxies else None,
            )
            body = resp.content if ends is None else self._read_within(resp, ends)
        except DeadlineExceeded:
            self._finish("deadline", started, method, url)
            raise
        except TransportError as e:
            self._finish("transport", started, method, url, error=e)
            raise
        except requests.RequestException as e:
            error = TransportError(
                self.dependency,
                self.redact(f"{type(e).__name__}: {e}"),
                request_sent=request_sent(e),
            )
            self._finish("transport", started, method, url, error=error)
            if self.redact is _no_redaction:
                raise error from e
            raise error from None  # the raw exception's text holds the unmasked URL
        elapsed = self._finish(f"{resp.status_code // 100}xx", started, method, url, status=resp.status_code)
        return HttpResponse(
            status=resp.status_code, headers=resp.headers, body=body, elapsed=elapsed, url=self.redact(url)
        )

    def _proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for this URL's host (NO_PROXY honoured), computed once per host."""
        parts = urllib.parse.urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        proxies = self._proxies.get(key)
        if proxies is None:
            proxies = {} if urllib.request.proxy_bypass(parts.hostname or "") else dict(self._env_proxies)
            self._proxies[key] = proxies
        return proxies

    def _finish(
        self,
        outcome: str,
        started: float,
        method: str,
        url: str,
        *,
        status: int | None = None,
        error: TransportError | None = None,
    ) -> float:
        """Metrics and one structured log line per attempt (DEBUG when fine, INFO otherwise)."""
        elapsed = time.monotonic() - started
        self._requests[outcome if outcome in self._requests else "other"].inc()
        self._seconds.observe(elapsed)
        level = logging.DEBUG if outcome in ("2xx", "4xx") else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "dependency=%s method=%s outcome=%s status=%s elapsed_ms=%.1f sent=%s error=%s",
                self.dependency,
                method,
                outcome,
                status,
                elapsed * 1000,
                None if error is None else error.request_sent,
                "" if error is None else error.message,
                extra={
                    "dependency": self.dependency,
                    "outcome": outcome,
                    "status": status,
                    "elapsed": elapsed,
                },
            )
        return elapsed

    def _read_within(self, resp: requests.Response, ends: float) -> bytes:
        """Read the body with ``read1`` (returns as soon as bytes arrive), checking the deadline.

        ``iter_content`` would block until a whole chunk is buffered, so a server trickling one
        newline every few seconds could hold the call far past the deadline.
        """
        chunks: list[bytes] = []
        try:
            while True:
                chunk = resp.raw.read1(_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
                if time.monotonic() > ends:
                    raise DeadlineExceeded(self.dependency, "overall deadline exceeded", request_sent=True)
        except (Urllib3Error, OSError) as e:
            error = TransportError(
                self.dependency, self.redact(f"{type(e).__name__}: {e}"), request_sent=True
            )
            if self.redact is _no_redaction:
                raise error from e
            raise error from None
        finally:
            resp.close()
        return b"".join(chunks)
