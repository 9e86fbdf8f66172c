"""The only module that POSTs to a hotel's own systems (``Hotel.staff_webhook_url``, docs/handoff.md).

One JSON POST per event, through ``reliability.http`` (timeouts and an overall deadline of
``STAFF_WEBHOOK_TIMEOUT``, the dependency's metrics). No breaker (one hotel's broken endpoint must
not stop another's events) and no in-call retry: the outbox (``StaffEvent``) is the one retry layer,
run by the staff alerts' beat task. With a secret, the body is signed:
``X-Hotelbot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the timestamp in
``X-Hotelbot-Timestamp`` (Unix seconds), so a receiver can refuse replays.

The URL is chosen by whoever edits the hotel, not by the operator: against SSRF it must be https
and reach public addresses only (:func:`url_check`, at save in the hotel's admin form and again
before each POST, and the connection's own address: ``reliability.egress``), unless
``STAFF_WEBHOOK_ALLOW_PRIVATE`` (DEBUG: also plain http) says otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings

from hotelbot.exceptions import ProviderError
from reliability import egress
from reliability.http import DeadlineExceeded, ResilientSession, TransportError
from reliability.retry import retry_after_seconds

DEPENDENCY = "staff_webhook"
SIGNATURE_HEADER = "X-Hotelbot-Signature"
TIMESTAMP_HEADER = "X-Hotelbot-Timestamp"


class StaffWebhookError(ProviderError):
    code = "staff_webhook_error"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value of ``body`` sent at ``timestamp`` (what a receiver recomputes)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def url_check(url: str) -> None:
    """Raise ``egress.UnsafeUrl`` for a staff webhook URL the deployment refuses (the one policy of
    the admin form and of each POST)."""
    egress.url_check(
        url,
        allow_http=settings.STAFF_WEBHOOK_ALLOW_HTTP,
        allow_private=settings.STAFF_WEBHOOK_ALLOW_PRIVATE,
    )


@functools.cache
def default_session(*, public_only: bool = True) -> ResilientSession:
    """One pooled session per process and policy (``cache_clear()`` to rebuild it)."""
    timeout = settings.STAFF_WEBHOOK_TIMEOUT
    return ResilientSession(
        DEPENDENCY,
        connect_timeout=timeout,
        read_timeout=timeout,
        deadline=timeout,
        use_breaker=False,
        public_only=public_only,
    )


def post_event(*, url: str, event: dict[str, Any], secret: str = "") -> int:
    """POST ``event`` as JSON to ``url``; returns the 2xx status. Raises :class:`StaffWebhookError`
    for anything else (a non-2xx answer, a timeout, a refused connection)."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "hotelbot-staff-webhook"}
    if secret:
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        url_check(url)  # DNS may have changed since the URL was saved
    except egress.UnsafeUrl as e:
        raise StaffWebhookError(f"refused: {e.message}") from e
    session = default_session(public_only=not settings.STAFF_WEBHOOK_ALLOW_PRIVATE)
    try:
        resp = session.request("POST", url, data=body, headers=headers, retry=False, idempotent=False)
    except DeadlineExceeded as e:
        raise StaffWebhookError(f"no answer within {settings.STAFF_WEBHOOK_TIMEOUT:g}s") from e
    except TransportError as e:
        raise StaffWebhookError(e.message) from e
    if not 200 <= resp.status < 300:
        raise StaffWebhookError(
            f"answered {resp.status}: {resp.text[:200]}",
            status=resp.status,
            retry_after=retry_after_seconds(resp),
        )
    return resp.status
