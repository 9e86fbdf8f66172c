"""The only module that speaks Green API's HTTP API (sending side).

Errors are ours, chosen by ``reliability.retry.classify_failure`` (the one classification):
:class:`GreenApiTransientError` (surely not processed -- 429, 503, a connect failure -- so a send
may be repeated; ``retry_after`` when the provider said so, capped at ``RETRY_AFTER_CAP``),
:class:`GreenApiOutcomeUnknown` (500, 502, 504, 408, 499, a reset, timeout or deadline after the
request left: the request may have been processed, reconcile before any resend),
:class:`GreenApiCircuitOpen` (our breaker rejected it, nothing left), :class:`GreenApiPermanentError`
(retrying will not help).

The instance token is part of every URL; it is masked (:func:`mask_token`) in every text this
module or its HTTP session produces: log lines, exception messages, and so DB fields and admin.
Every call runs under the overall ``GREEN_API_DEADLINE`` (shorter than a reply job's lease).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from hotelbot.exceptions import ProviderError
from reliability import masking, ratelimit
from reliability.breaker import CircuitOpenError
from reliability.http import HttpResponse, ResilientSession, TransportError
from reliability.retry import FailureKind, RetryConfig, classify_failure, retry_after_cap, retry_after_seconds

DEPENDENCY = "green_api"
#: Journal reads (reconciliation) have their own breaker: their 429s and errors never open the
#: breaker that guards sends (a 1 request/s endpoint must not park every reply).
JOURNAL_DEPENDENCY = "green_api_journal"
#: Methods we pace client-side, per instance, with the setting holding their rate (calls/s).
_PACED: dict[str, str] = {
    "sendMessage": "GREEN_API_RATE_SEND_MESSAGE",
    "lastOutgoingMessages": "GREEN_API_RATE_LAST_OUTGOING",
    "getStateInstance": "GREEN_API_RATE_STATE_INSTANCE",
    "getSettings": "GREEN_API_RATE_SETTINGS",
    "setSettings": "GREEN_API_RATE_SETTINGS",
}
# A 400 that means "refused for now" (the instance is booting): not processed, retry in a few seconds.
_STARTING = "instance in starting process"
# ``/waInstance{id}/{method}/{token}``: the path segment after the method is the secret.
_TOKEN_IN_URL = re.compile(r"(/waInstance\d+/[^/?#\s]+/)[^/?#\s\"'<>]+")
_MASK = masking.MASK


def mask_token(text: str) -> str:
    """``text`` with the instance token of every Green API URL in it replaced by ``***``."""
    return _TOKEN_IN_URL.sub(rf"\g<1>{_MASK}", text)


class GreenApiError(ProviderError):
    code = "green_api_error"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class GreenApiTransientError(GreenApiError):
    code = "green_api_unavailable"


class GreenApiOutcomeUnknown(GreenApiTransientError):
    """The request left; no answer came back. It may or may not have been sent."""

    code = "green_api_outcome_unknown"


class GreenApiCircuitOpen(GreenApiTransientError):
    """Our breaker for Green API is open: nothing was sent; try again after ``retry_after``."""

    code = "green_api_circuit_open"


class GreenApiRateLimited(GreenApiCircuitOpen):
    """Our own pacing had no free slot for this method soon enough: nothing was sent; try again
    after ``retry_after`` (handled like an open breaker: the job waits, it is not an attempt)."""

    code = "green_api_rate_limited"


class GreenApiPermanentError(GreenApiError):
    code = "green_api_rejected"


@dataclass(frozen=True, slots=True)
class SentMessage:
    id_message: str


@dataclass(frozen=True, slots=True)
class OutgoingJournalEntry:
    id_message: str
    chat_id: str
    text: str
    timestamp: datetime


_ERRORS: dict[FailureKind, type[GreenApiError]] = {
    FailureKind.NOT_PROCESSED: GreenApiTransientError,
    FailureKind.OUTCOME_UNKNOWN: GreenApiOutcomeUnknown,
    FailureKind.PERMANENT: GreenApiPermanentError,
}


def _error_for(resp: HttpResponse, method: str, mask: Callable[[str], str]) -> GreenApiError:
    detail = resp.text[:300]
    message = mask(f"Green API {method} answered {resp.status}: {detail}")
    kind = FailureKind.NOT_PROCESSED if _STARTING in detail else classify_failure(resp.status)
    retry_after = retry_after_seconds(resp, cap=retry_after_cap()) if kind.transient else None
    return _ERRORS[kind](message, status=resp.status, retry_after=retry_after)


class GreenApiClient:
    def __init__(
        self,
        *,
        base_url: str,
        id_instance: str,
        api_token: str,
        session: ResilientSession | None = None,
    ) -> None:
        if not re.fullmatch(r"\d+", id_instance):
            raise ValueError(f"Green API idInstance must be digits, got {id_instance!r}")
        self._prefix = f"{base_url.rstrip('/')}/waInstance{id_instance}"
        self._id_instance = id_instance
        self._token = api_token
        self._http = session or default_session()
        self._journal_http = session or journal_session()

    def _url(self, method: str) -> str:
        return f"{self._prefix}/{method}/{self._token}"

    def _mask(self, text: str) -> str:
        """Mask the token in URLs and, should a body or error echo it bare, anywhere."""
        return masking.redact(mask_token(text), (self._token,))

    def _pace(self, method: str) -> None:
        """Wait for this instance's next slot of ``method`` (bounded), or refuse without sending."""
        rate_setting = _PACED.get(method)
        if rate_setting is None:
            return
        grant = ratelimit.acquire(
            f"{DEPENDENCY}:{self._id_instance}:{method}",
            rate=getattr(settings, rate_setting),
            max_wait=settings.GREEN_API_RATE_MAX_WAIT,
        )
        if not grant.granted:
            raise GreenApiRateLimited(
                f"Green API {method}: paced, next slot in {grant.wait:.1f}s", retry_after=grant.wait
            )

    def _call(
        self, http_method: str, method: str, *, session: ResilientSession | None = None, **kwargs: Any
    ) -> Any:
        self._pace(method)
        try:
            resp = (session or self._http).request(http_method, self._url(method), **kwargs)
        except CircuitOpenError as e:
            cap = retry_after_cap()
            raise GreenApiCircuitOpen(f"Green API {method}: {e}", retry_after=min(e.retry_after, cap)) from e
        except TransportError as e:
            kind = classify_failure(e)
            raise _ERRORS[kind](self._mask(f"Green API {method}: {e.message}")) from e
        if resp.status != 200:
            raise _error_for(resp, method, self._mask)
        try:
            return resp.json()
        except ValueError as e:
            # It was processed (200) but we cannot read the idMessage: unknown, not "not sent".
            raise GreenApiOutcomeUnknown(f"Green API {method} returned invalid JSON", status=200) from e

    def send_message(self, *, chat_id: str, text: str) -> SentMessage:
        # Not idempotent, and retried by the reply job (with reconciliation): no in-call retry.
        data = self._call(
            "POST",
            "sendMessage",
            json={"chatId": chat_id, "message": text, "linkPreview": False},
            idempotent=False,
            retry=False,
        )
        id_message = data.get("idMessage") if isinstance(data, dict) else None
        if not isinstance(id_message, str) or not id_message:
            raise GreenApiOutcomeUnknown("Green API sendMessage answered 200 without idMessage")
        return SentMessage(id_message=id_message)

    def get_state_instance(self, *, deadline: float | None = None) -> str:
        """The instance's ``stateInstance`` (``authorized``, ``notAuthorized``, ``blocked``, ...);
        paced per instance (Green API allows 1 call/s) and retried briefly in the call, all within
        ``deadline`` seconds (default ``GREEN_API_DEADLINE``). A health probe: it bypasses the
        breaker (it must neither reset the failure count of the sends the breaker guards nor be
        hidden by it)."""
        data = self._call("GET", "getStateInstance", breaker=False, deadline=deadline)
        return str(data.get("stateInstance", "")) if isinstance(data, dict) else ""

    def get_settings(self) -> dict[str, Any]:
        """The instance's settings (docs/providers.md §1.4: ``webhookUrl``, ``webhookUrlToken``, the
        ``"yes"``/``"no"`` notification flags, ...). Paced (1 call/s per instance), outside the send
        breaker (an onboarding call must not open or reset it). The answer holds the webhook token:
        callers never log it."""
        data = self._call("GET", "getSettings", breaker=False)
        if not isinstance(data, dict):
            raise GreenApiPermanentError(
                "Green API getSettings answered something else than an object", status=200
            )
        return data

    def set_settings(self, **fields: str | int) -> None:
        """``setSettings`` with at least one field (Green API reboots the instance and applies them
        within minutes). Not retried in the call: the caller reads them back with :meth:`get_settings`."""
        if not fields:
            raise ValueError("setSettings needs at least one field")
        data = self._call("POST", "setSettings", json=fields, breaker=False, retry=False)
        if not isinstance(data, dict) or data.get("saveSettings") is not True:
            raise GreenApiPermanentError(
                self._mask(f"Green API setSettings did not save the settings: {str(data)[:200]}"), status=200
            )

    def last_outgoing_messages(self, *, minutes: int = 30) -> list[OutgoingJournalEntry]:
        # One retry layer: the reply job's. The journal session retries nothing and has its own breaker.
        data = self._call(
            "GET",
            "lastOutgoingMessages",
            session=self._journal_http,
            params={"minutes": minutes},
            retry=False,
        )
        entries: list[OutgoingJournalEntry] = []
        for item in data if isinstance(data, list) else []:
            if not isinstance(item, dict) or not item.get("idMessage"):
                continue
            entries.append(
                OutgoingJournalEntry(
                    id_message=str(item["idMessage"]),
                    chat_id=str(item.get("chatId", "")),
                    text=str(item.get("textMessage", "")),
                    timestamp=datetime.fromtimestamp(int(item.get("timestamp", 0)), tz=UTC),
                )
            )
        return entries


def _session(dependency: str, retry: RetryConfig | None = None) -> ResilientSession:
    return ResilientSession(
        dependency,
        connect_timeout=settings.GREEN_API_CONNECT_TIMEOUT,
        read_timeout=settings.GREEN_API_READ_TIMEOUT,
        deadline=settings.GREEN_API_DEADLINE,
        redact=mask_token,
        retry=retry,
    )


@functools.cache
def default_session() -> ResilientSession:
    """One pooled session per process for Green API (``cache_clear()`` to rebuild it)."""
    # Reads only (getStateInstance); sends and journal reads retry at job level.
    return _session(
        DEPENDENCY, RetryConfig(max_attempts=3, base_delay=0.5, max_delay=4.0, retry_after_cap=10.0)
    )


@functools.cache
def journal_session() -> ResilientSession:
    """Journal reads: breaker ``green_api_journal``, no in-call retry (the reply job retries)."""
    return _session(JOURNAL_DEPENDENCY)


def client_for(*, id_instance: str, api_token: str) -> GreenApiClient:
    return GreenApiClient(base_url=settings.GREEN_API_URL, id_instance=id_instance, api_token=api_token)
