"""A ``requests`` session per named dependency: connect/read timeouts plus an overall deadline.

This is the one seam through which every external HTTP call flows (``messaging/clients/*``).
Breakers, retry policies and metrics hook in here, so clients never learn about them.

Transport failures are re-raised as :class:`TransportError`, which says whether the request may
have reached the server (``request_sent``): a connect failure means it surely did not, a read
timeout or a reset after sending means the outcome is unknown and a non-idempotent call must be
reconciled, not blindly repeated.
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from hotelbot.exceptions import HotelbotError

logger = logging.getLogger(__name__)

_CHUNK = 16 * 1024


class TransportError(HotelbotError):
    """The HTTP exchange with a dependency failed before a full response was read."""

    code = "transport_error"

    def __init__(self, dependency: str, message: str, *, request_sent: bool) -> None:
        super().__init__(f"{dependency}: {message}")
        self.dependency = dependency
        self.request_sent = request_sent


class DeadlineExceeded(TransportError):
    """The overall deadline passed (e.g. a server trickling keep-alive bytes)."""

    code = "deadline_exceeded"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float
    url: str = field(default="")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _request_was_sent(exc: requests.RequestException) -> bool:
    """False only when the connection was never established, so the server cannot have seen it."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason: Any = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        return not isinstance(inner, NewConnectionError | ConnectTimeoutError)
    return True


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
    ) -> None:
        self.dependency = dependency
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
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
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> HttpResponse:
        """Send one request; the whole exchange (connect, headers, body) ends within ``deadline`` s."""
        budget = deadline if deadline is not None else self.deadline
        started = time.monotonic()
        ends = started + budget if budget is not None else None
        read_timeout = (
            self.read_timeout if ends is None else min(self.read_timeout, budget or self.read_timeout)
        )
        try:
            resp = self._session.request(
                method,
                url,
                json=json,
                params=params,
                headers=headers,
                timeout=(self.connect_timeout, read_timeout),
                stream=ends is not None,
            )
            body = resp.content if ends is None else self._read_within(resp, ends)
        except TransportError:
            raise
        except requests.RequestException as e:
            sent = _request_was_sent(e)
            logger.info("%s %s %s failed (sent=%s): %s", self.dependency, method, url, sent, e)
            raise TransportError(self.dependency, f"{type(e).__name__}: {e}", request_sent=sent) from e
        return HttpResponse(
            status=resp.status_code,
            headers=resp.headers,
            body=body,
            elapsed=time.monotonic() - started,
            url=url,
        )

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
            raise TransportError(self.dependency, f"{type(e).__name__}: {e}", request_sent=True) from e
        finally:
            resp.close()
        return b"".join(chunks)
