"""The one failure vocabulary, and retries for calls to one named dependency.

**What a failure is** (each question answered by one function here, which every caller uses):
the HTTP status it carries (:func:`http_status`), its explicit causes (:func:`cause_chain`), whether
the request reached the server (:func:`request_sent`), whether it is worth another try and whether
the server may have acted on it (:func:`classify_failure` → :class:`FailureKind`;
:func:`is_transient` for a retry decision), and how long the server asked us to wait
(:func:`retry_after_seconds`). The breaker's failure classification, the dead-letter category
(``reliability.dead_letters``) and the provider clients' errors are derived from these.

**How a call is retried**: backoff, Retry-After and a retry budget.

One retry layer per hop (DESIGN.md): these are the short *in-call* retries. Task-level retries
(Celery countdown) are a different layer and must not wrap a call that already retries here.

**tenacity is the engine.** :class:`RetryHandler` builds a ``tenacity.Retrying`` per call whose
strategies are the policy of this module:

* ``retry``  -- :func:`is_transient` (or a custom classifier), then Retry-After above the cap;
* ``wait``   -- :func:`iter_backoff_delays` (exponential backoff + jitter + cap), raised to the server's
  Retry-After when it asks for longer;
* ``stop``   -- max attempts, then the overall deadline (the *coming* sleep must end before it),
  then the per-dependency :class:`RetryBudget` -- in that order, so a budget token is only spent
  on a retry that is really going to happen;
* ``before`` / ``before_sleep`` / ``retry_error_callback`` -- one structured log line per attempt,
  per retry and per give-up, plus ``retry_attempts_total`` (retried, recovered, why it gave up)
  and ``retry_delay_seconds``.

When the handler gives up, whatever the reason (not transient, attempts, deadline, budget,
Retry-After too long), the **original** exception is raised (never ``tenacity.RetryError``), or,
for result-based retries, the last result is returned.

Choices worth knowing:

* ``Retry-After`` (seconds, HTTP-date, or ``retry-after-ms``; parsed only here, by
  :func:`retry_after_seconds`) is a lower bound: the sleep is ``max(jittered backoff,
  Retry-After)``. A value above ``retry_after_cap`` (never above ``settings.RETRY_AFTER_CAP``)
  means the dependency is out for longer than an in-call retry should hold a worker: we **give
  up at once** and raise the original error (which still carries ``retry_after`` for a
  task-level countdown). This is the openai-python 3.x rule ("give up rather than wait"), not
  the 1.x one (fall back to backoff).
* One classification, :func:`classify_failure`, for both clients and the reply job layer:
  ``501`` and ``505`` are 5xx that no retry can fix; every other 5xx, 408, 429 and 499 is
  transient; only 429, 503, a connect failure and a breaker rejection prove a request was not
  processed (everything else transient has an unknown outcome: reconcile a send first).
* The task/job layer waits :func:`retry_delay` (this module's backoff, Retry-After capped).
* Non-idempotent calls (``idempotent=False``) are retried only when the request surely did not
  reach the server: a connect failure (``TransportError.request_sent`` False, connect timeout,
  refused) or a 429/503 (refused before processing). A read timeout after sending is not retried:
  its outcome is unknown and the caller must reconcile.
"""

from __future__ import annotations

import email.utils
import enum
import functools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar, cast

import requests
import tenacity
from tenacity.stop import stop_after_attempt, stop_base
from tenacity.wait import wait_base
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from reliability.metrics import RETRY_ATTEMPTS, RETRY_DELAY
from reliability.transport import CallRejected, TransportError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Jitter = Literal["full", "equal", "none"]
JITTERS: frozenset[str] = frozenset({"full", "equal", "none"})

#: 5xx statuses that mean "this server will never do that", not "try again later".
PERMANENT_5XX: frozenset[int] = frozenset({501, 505})
#: Statuses that say the server refused the request before processing it (safe even for POST).
NOT_PROCESSED_STATUSES: frozenset[int] = frozenset({429, 503})
#: 4xx worth another try although the request may have been processed: 408 (request timeout) and
#: 499 (nginx "client closed request"; Green API prescribes a retry with a delay).
UNKNOWN_OUTCOME_4XX: frozenset[int] = frozenset({408, 499})
#: Default for ``RETRY_AFTER_CAP``: no layer waits longer than this for a server's Retry-After.
DEFAULT_RETRY_AFTER_CAP = 900.0
#: How many explicit causes (``raise X from e``) :func:`cause_chain` follows at most.
CAUSE_CHAIN_LIMIT = 8
_EPSILON = 1e-9

# Give-up reasons, used in logs and as retry_attempts_total's outcome.
NOT_TRANSIENT = "not_transient"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
DEADLINE = "deadline"
BUDGET_EXHAUSTED = "budget_exhausted"
RETRY_AFTER_TOO_LONG = "retry_after_too_long"


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _finite_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How one call is retried. ``max_attempts`` counts the first attempt (3 = 1 try + 2 retries).

    ``deadline`` is the overall budget in seconds from the start of the call: no sleep may end at or
    past it (so no attempt starts after it). The backoff is exponential: ``base_delay`` times
    ``multiplier`` per retry, capped at ``max_delay``.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: Jitter = "full"
    deadline: float | None = None
    retry_after_cap: float = 60.0
    idempotent: bool = True
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (1 = no retries), got {self.max_attempts}")
        base = _finite_number("base_delay", self.base_delay)
        cap = _finite_number("max_delay", self.max_delay)
        if base < 0:
            raise ValueError(f"base_delay must be >= 0, got {base}")
        if cap < base:
            raise ValueError(f"max_delay ({cap}) must be >= base_delay ({base})")
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {sorted(JITTERS)}, got {self.jitter!r}")
        if self.deadline is not None and _finite_number("deadline", self.deadline) <= 0:
            raise ValueError(f"deadline must be > 0 seconds or None, got {self.deadline}")
        if _finite_number("retry_after_cap", self.retry_after_cap) < 0:
            raise ValueError(f"retry_after_cap must be >= 0, got {self.retry_after_cap}")
        if not isinstance(self.idempotent, bool):
            raise ValueError(f"idempotent must be a bool, got {self.idempotent!r}")
        if _finite_number("multiplier", self.multiplier) < 1:
            raise ValueError(f"multiplier must be >= 1 (delays never shrink), got {self.multiplier}")


# --------------------------------------------------------------------------------------------
# Backoff and jitter (pure)
# --------------------------------------------------------------------------------------------


def _raw_delays(config: RetryConfig) -> Iterator[float]:
    """Un-jittered delays before retry 1, 2, ...: exponential, non-decreasing, capped at ``max_delay``."""
    current, cap = config.base_delay, config.max_delay
    while True:
        yield min(cap, current)
        if current < cap:  # stop growing once capped: no float overflow on long runs
            current *= config.multiplier


def iter_backoff_delays(config: RetryConfig, rng: random.Random | None = None) -> Iterator[float]:
    """Endless delays (seconds) before retry 1, 2, ...; every value lies in ``[0, max_delay]``.

    * ``none``: the raw backoff, capped;
    * ``full``: ``uniform(0, d)`` (AWS "full jitter");
    * ``equal``: ``d/2 + uniform(0, d/2)``.
    """
    rnd = rng if rng is not None else random.Random()
    for raw in _raw_delays(config):
        if config.jitter == "full":
            yield min(raw, raw * rnd.random())
        elif config.jitter == "equal":
            half = raw / 2
            yield min(raw, half + half * rnd.random())
        else:
            yield raw


def backoff_delay(config: RetryConfig, retry_number: int, rng: random.Random | None = None) -> float:
    """The delay before retry ``retry_number`` (1-based), as :func:`iter_backoff_delays` yields it."""
    if retry_number < 1:
        raise ValueError(f"retry_number must be >= 1, got {retry_number}")
    delays = iter_backoff_delays(config, rng)
    for _ in range(retry_number - 1):
        next(delays)
    return next(delays)


def retry_delay(
    config: RetryConfig,
    retry_number: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry ``retry_number`` at task/job level: the backoff, raised to the server's
    Retry-After, which is capped at ``RETRY_AFTER_CAP`` (a ``Retry-After: 99999999`` must not park a
    job for years)."""
    delay = backoff_delay(config, retry_number, rng)
    if retry_after is not None and math.isfinite(retry_after):
        delay = max(delay, min(max(0.0, retry_after), retry_after_cap()))
    return delay


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


class FailureKind(enum.Enum):
    """What a failed call tells us about the request, for retrying and for exactly-once sends.

    * ``PERMANENT``: retrying will not help (4xx other than 408/429/499, 501, 505, bad TLS).
    * ``NOT_PROCESSED``: worth another try, and the server surely did not act on the request
      (429, 503, a connect failure before anything was sent, our breaker rejecting the call), so
      even a non-idempotent call (a send) may simply be repeated.
    * ``OUTCOME_UNKNOWN``: worth another try, but the server may have acted on it (500, 502, 504,
      408, 499, a reset or timeout after the request left): a send must be reconciled first.
    """

    PERMANENT = "permanent"
    NOT_PROCESSED = "not_processed"
    OUTCOME_UNKNOWN = "outcome_unknown"

    @property
    def transient(self) -> bool:
        return self is not FailureKind.PERMANENT


_PERMANENT = FailureKind.PERMANENT


def _status_verdict(status: int) -> FailureKind:
    if status in NOT_PROCESSED_STATUSES:
        return FailureKind.NOT_PROCESSED
    if status in UNKNOWN_OUTCOME_4XX or (500 <= status <= 599 and status not in PERMANENT_5XX):
        return FailureKind.OUTCOME_UNKNOWN
    return FailureKind.PERMANENT


def cause_chain(subject: object, limit: int = CAUSE_CHAIN_LIMIT) -> Iterator[Any]:
    """``subject`` and its explicit causes (``raise X from e``), outermost first, cycle-safe and
    at most ``limit`` long. Anything that is not an exception is a chain of itself."""
    seen: set[int] = set()
    current: object = subject
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        current = current.__cause__ if isinstance(current, BaseException) else None


def _status_attr(obj: object, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


# Not ``http_status``: on our own errors (``hotelbot.exceptions``) that is the status *we* answer with.
_OWN_STATUS = ("status", "status_code")
_RESPONSE_STATUS = ("status_code", "status")


def http_status(subject: object, *, follow_causes: bool = True) -> int | None:
    """The HTTP status (100-599) a server answered, as a failure or a response carries it, or None:
    its own ``status`` / ``status_code``, else its ``.response``'s (``requests.HTTPError``), along the
    explicit causes (a provider error raised ``from`` an HTTP error) unless ``follow_causes`` is off.
    A bare ``int`` is a status of itself."""
    if isinstance(subject, int) and not isinstance(subject, bool):
        return subject if 100 <= subject <= 599 else None
    for item in cause_chain(subject, CAUSE_CHAIN_LIMIT if follow_causes else 1):
        status = _status_attr(item, _OWN_STATUS)
        if status is None:
            status = _status_attr(getattr(item, "response", None), _RESPONSE_STATUS)
        if status is not None:
            return status
    return None


def request_sent(exc: BaseException) -> bool:
    """Whether a failed request may have reached the server: False only when it surely did not (a
    connect failure or connect timeout: no connection was ever established; a ``TransportError``
    that says so), True for everything else (a read timeout or reset after sending)."""
    if isinstance(exc, TransportError):
        return exc.request_sent
    if isinstance(exc, NewConnectionError | ConnectTimeoutError | ConnectionRefusedError):
        return False
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason: Any = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        return not isinstance(inner, NewConnectionError | ConnectTimeoutError)
    return True


def _sent(exc: BaseException) -> FailureKind:
    return FailureKind.OUTCOME_UNKNOWN if request_sent(exc) else FailureKind.NOT_PROCESSED


def _transport_verdict(exc: BaseException) -> FailureKind | None:
    """Verdict for a transport-level failure (or a breaker rejection), or None when not one."""
    if isinstance(exc, CallRejected):
        return FailureKind.NOT_PROCESSED  # rejected before any I/O (an open breaker)
    if isinstance(exc, TransportError):
        return _sent(exc)
    if isinstance(exc, requests.RequestException):
        if isinstance(exc, requests.exceptions.SSLError):
            return _PERMANENT  # a bad certificate does not heal in a second
        if isinstance(exc, requests.Timeout | requests.ConnectionError):
            return _sent(exc)
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return FailureKind.OUTCOME_UNKNOWN
        return None  # HTTPError (handled by status), InvalidURL, TooManyRedirects, ...
    if isinstance(exc, NewConnectionError | ConnectTimeoutError | ConnectionRefusedError):
        return FailureKind.NOT_PROCESSED
    if isinstance(exc, TimeoutError | ConnectionError | Urllib3TimeoutError | ProtocolError):
        return FailureKind.OUTCOME_UNKNOWN
    return None


def classify_failure(subject: object) -> FailureKind:
    """The one classification of a failure: permanent, transient and surely not processed, or
    transient with an unknown outcome (see :class:`FailureKind`).

    Understands an HTTP status ``int``; :class:`~reliability.http.TransportError`; a breaker's
    ``CircuitOpenError``; ``requests``, urllib3 and built-in network exceptions; responses
    (``.status`` / ``.status_code``); exceptions carrying ``.status`` / ``.status_code`` or a
    ``.response``; and, when none of those decide, the explicit cause
    (``raise ProviderError(...) from transport_error``). Anything else is permanent.
    """
    if isinstance(subject, bool) or subject is None:
        return _PERMANENT
    if isinstance(subject, int):
        return _status_verdict(subject)
    if isinstance(subject, BaseException):
        for exc in cause_chain(subject):
            status = http_status(exc, follow_causes=False)
            if status is not None:
                return _status_verdict(status)
            verdict = _transport_verdict(exc)
            if verdict is not None:
                return verdict
        return _PERMANENT
    status = http_status(subject)
    return _status_verdict(status) if status is not None else _PERMANENT


def is_transient(exc_or_status: object, *, idempotent: bool = True) -> bool:
    """Whether another attempt may succeed (timeouts, connection errors, 408, 429, 499, 5xx but
    501/505), per :func:`classify_failure`. A breaker rejection is not retried in-call.

    Understands an HTTP status ``int``; :class:`~reliability.http.TransportError`; ``requests``,
    urllib3 and built-in network exceptions; responses (``.status`` / ``.status_code``); exceptions
    carrying ``.status`` / ``.status_code`` or a ``.response``; and, when none of those decide,
    the explicit cause (``raise ProviderError(...) from transport_error``). Other 4xx: never.

    With ``idempotent=False`` only failures where the request surely was not processed count
    (:attr:`FailureKind.NOT_PROCESSED`): a connect failure (``request_sent`` False) or a 429/503.
    """
    if isinstance(exc_or_status, CallRejected):
        return False  # never retried in-call: the breaker says when to come back
    kind = classify_failure(exc_or_status)
    return kind is FailureKind.NOT_PROCESSED or (idempotent and kind is FailureKind.OUTCOME_UNKNOWN)


# --------------------------------------------------------------------------------------------
# Retry-After
# --------------------------------------------------------------------------------------------


def parse_retry_after(value: object, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait for a Retry-After value: delta-seconds, an HTTP-date, a number, a
    ``timedelta`` or a ``datetime``. Past dates give 0; garbage gives None. ``now`` is wall time."""
    if value is None or isinstance(value, bool):
        return None
    seconds: float
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    elif isinstance(value, str | bytes):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        text = text.strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
            return parse_retry_after(parsed, now=now)
    else:
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _header(headers: object, name: str) -> object:
    if not isinstance(headers, Mapping):
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if isinstance(key, str) and key.lower() == lowered:
            return candidate
    return None


def _retry_after_from_headers(headers: object, now: Callable[[], float]) -> float | None:
    millis = parse_retry_after(_header(headers, "retry-after-ms"), now=now)
    if millis is not None:
        return millis / 1000.0
    return parse_retry_after(_header(headers, "Retry-After"), now=now)


def retry_after_cap() -> float:
    """``settings.RETRY_AFTER_CAP``: the longest any layer honours a server's Retry-After."""
    from django.conf import settings

    return float(getattr(settings, "RETRY_AFTER_CAP", DEFAULT_RETRY_AFTER_CAP))


def retry_after_seconds(
    subject: object, *, now: Callable[[], float] = time.time, cap: float | None = None
) -> float | None:
    """The Retry-After a failure or response carries, in seconds (at most ``cap``), or None.

    Looks at a ``.retry_after`` attribute, then ``.headers``, then ``.response.headers``, along
    the exception's explicit causes.
    """
    seconds = _retry_after_uncapped(subject, now)
    return seconds if seconds is None or cap is None else min(seconds, cap)


def _retry_after_uncapped(subject: object, now: Callable[[], float]) -> float | None:
    for item in cause_chain(subject):
        seconds = parse_retry_after(getattr(item, "retry_after", None), now=now)
        if seconds is None:
            seconds = _retry_after_from_headers(getattr(item, "headers", None), now)
        if seconds is None:
            response = getattr(item, "response", None)
            seconds = _retry_after_from_headers(getattr(response, "headers", None), now)
        if seconds is not None:
            return seconds
    return None


# --------------------------------------------------------------------------------------------
# Retry budget and counters
# --------------------------------------------------------------------------------------------


class RetryBudget:
    """Finagle/gRPC-style retry budget for one dependency, in-process and thread-safe.

    Over a sliding ``window`` (seconds, kept in ``slices`` buckets) retries may not exceed
    ``ratio`` x first attempts + ``min_retries_per_second`` x ``window`` (the floor lets a quiet
    service still retry). So a full outage adds at most ``ratio`` extra load instead of multiplying
    it by ``max_attempts``. Deposit with :meth:`record_attempt` (first attempts only), withdraw
    with :meth:`try_spend` (each retry).
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries_per_second: float = 1.0,
        window: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        slices: int = 10,
    ) -> None:
        if _finite_number("ratio", ratio) < 0:
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        if _finite_number("min_retries_per_second", min_retries_per_second) < 0:
            raise ValueError(f"min_retries_per_second must be >= 0, got {min_retries_per_second}")
        if _finite_number("window", window) <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
            raise ValueError(f"slices must be an int >= 1, got {slices!r}")
        self.ratio = float(ratio)
        self.min_retries_per_second = float(min_retries_per_second)
        self.window = float(window)
        self._clock = clock
        self._slices = slices
        self._slice_width = self.window / slices
        self._reserve = self.min_retries_per_second * self.window
        self._lock = threading.Lock()
        # [slice number, first attempts, retries], oldest first; only live slices are kept.
        self._buckets: deque[list[int]] = deque()
        #: Lifetime totals, for metrics.
        self.total_attempts = 0
        self.total_retries = 0
        self.total_exhausted = 0

    def _current(self) -> list[int]:
        number = math.floor(self._clock() / self._slice_width)
        # Keep the current (partial) slice plus ``slices`` full ones: at least ``window`` seconds
        # of history, so the floor never grants more than min_retries_per_second on average.
        while self._buckets and self._buckets[0][0] < number - self._slices:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] < number:
            self._buckets.append([number, 0, 0])
        return self._buckets[-1]

    def _balance(self) -> float:
        attempts = sum(bucket[1] for bucket in self._buckets)
        retries = sum(bucket[2] for bucket in self._buckets)
        return self.ratio * attempts + self._reserve - retries

    def record_attempt(self) -> None:
        """Count one first attempt (not a retry) against this dependency."""
        with self._lock:
            self._current()[1] += 1
            self.total_attempts += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and counted) when none is left."""
        with self._lock:
            bucket = self._current()
            if self._balance() >= 1.0 - _EPSILON:
                bucket[2] += 1
                self.total_retries += 1
                return True
            self.total_exhausted += 1
            return False

    @property
    def available(self) -> float:
        """Retries the budget would allow right now."""
        with self._lock:
            self._current()
            return max(0.0, self._balance())

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_retries_per_second={self.min_retries_per_second}, "
            f"window={self.window})"
        )


_registry_lock = threading.Lock()
#: Each dependency's process-wide budget, created on first use.
_budgets: dict[str, RetryBudget] = {}


def get_retry_budget(dependency: str) -> RetryBudget:
    """The process-wide budget of ``dependency`` (created with defaults on first use)."""
    with _registry_lock:
        budget = _budgets.get(dependency)
        if budget is None:
            budget = _budgets[dependency] = RetryBudget()
        return budget


# --------------------------------------------------------------------------------------------
# The handler: tenacity strategies bound to one call
# --------------------------------------------------------------------------------------------


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # looked up per call, so tests may patch time.sleep


def _describe(outcome: tenacity.Future | None) -> str:
    if outcome is None:
        return "none"
    if outcome.failed:
        return type(outcome.exception()).__name__
    status = http_status(outcome.result())
    return f"status={status}" if status is not None else type(outcome.result()).__name__


class _Call:
    """Per-call state shared by the strategies of one ``tenacity.Retrying``."""

    __slots__ = ("delays", "ends", "reason", "retry_after", "started")

    def __init__(self, delays: Iterator[float], started: float, deadline: float | None) -> None:
        self.delays = delays
        self.started = started
        self.ends = started + deadline if deadline is not None else None
        self.retry_after: float | None = None
        self.reason = ATTEMPTS_EXHAUSTED


class _Classify(tenacity.retry_base):
    """``retry``: transient failure (or retryable result) whose Retry-After is within the cap."""

    def __init__(self, handler: RetryHandler, call: _Call) -> None:
        self.handler = handler
        self.call = call

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        handler, outcome = self.handler, retry_state.outcome
        assert outcome is not None
        subject: object
        if outcome.failed:
            subject = outcome.exception()
            assert subject is not None
            retryable = handler.classifier(subject)
        else:
            subject = outcome.result()
            retryable = handler.retry_on_result is not None and handler.retry_on_result(subject)
            if not retryable:
                if retry_state.attempt_number > 1:
                    RETRY_ATTEMPTS.labels(handler.dependency, "recovered").inc()
                    handler._log(logging.INFO, "recovered", retry_state)
                return False
        if not retryable:
            handler._give_up(NOT_TRANSIENT, retry_state, level=logging.DEBUG)
            return False
        retry_after = retry_after_seconds(subject, now=handler.wall_clock)
        if retry_after is not None and retry_after > min(handler.config.retry_after_cap, retry_after_cap()):
            handler._give_up(RETRY_AFTER_TOO_LONG, retry_state, retry_after=retry_after)
            return False
        self.call.retry_after = retry_after
        return True


class _Backoff(wait_base):
    """``wait``: the next backoff delay, raised to the server's Retry-After."""

    def __init__(self, call: _Call) -> None:
        self.call = call

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = next(self.call.delays)
        if self.call.retry_after is not None:
            delay = max(delay, self.call.retry_after)
        return delay


class _GiveUp(stop_base):
    """``stop``: attempts, then deadline (the coming sleep must end before it), then budget."""

    def __init__(self, handler: RetryHandler, call: _Call) -> None:
        self.handler = handler
        self.call = call
        self.attempts = stop_after_attempt(handler.config.max_attempts)

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self.attempts(retry_state):
            self.call.reason = ATTEMPTS_EXHAUSTED
            return True
        if self.call.ends is not None and self.handler.clock() + retry_state.upcoming_sleep >= self.call.ends:
            self.call.reason = DEADLINE
            return True
        if not self.handler.budget.try_spend():
            self.call.reason = BUDGET_EXHAUSTED
            return True
        return False


class RetryHandler:
    """Runs a callable with the retries ``config`` describes, for one named dependency.

    ``budget`` defaults to the process-wide budget of ``dependency``. ``classifier`` replaces
    :func:`is_transient` for exceptions; ``retry_on_result`` makes results retryable (the last one
    is returned when retries run out); ``before_retry`` runs before each sleep with the failed
    attempt's exception or result (close a broken connection, release a response).
    """

    def __init__(
        self,
        config: RetryConfig,
        *,
        dependency: str = "default",
        budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        classifier: Callable[[BaseException], bool] | None = None,
        retry_on_result: Callable[[Any], bool] | None = None,
        before_retry: Callable[[object], None] | None = None,
    ) -> None:
        self.config = config
        self.dependency = dependency
        self.budget = budget if budget is not None else get_retry_budget(dependency)
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng if rng is not None else random.Random()
        self.classifier: Callable[[BaseException], bool] = classifier or functools.partial(
            is_transient, idempotent=config.idempotent
        )
        self.retry_on_result = retry_on_result
        self.before_retry = before_retry

    def execute(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)``, retrying per the policy; raise the original error on give-up.

        The first attempt runs directly: a call that succeeds costs no tenacity machinery (about
        25 us per call). Only after a failed first attempt does tenacity take over, with that
        outcome replayed as its attempt 1, so classification, waits, hooks and metrics are the same.
        """
        started = self.clock()
        self.budget.record_attempt()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            first: list[tuple[bool, Any]] = [(False, exc)]
        else:
            if self.retry_on_result is None or not self.retry_on_result(result):
                return result
            first = [(True, result)]

        def attempt() -> R:
            if first:
                ok, value = first.pop()
                if ok:
                    return cast(R, value)
                raise value
            return fn(*args, **kwargs)

        call = _Call(iter_backoff_delays(self.config, self.rng), started, self.config.deadline)
        retrying = tenacity.Retrying(
            sleep=self.sleep,
            stop=_GiveUp(self, call),
            wait=_Backoff(call),
            retry=_Classify(self, call),
            before=self._before_attempt,
            before_sleep=self._before_sleep,
            retry_error_callback=functools.partial(self._exhausted, call),
            name=self.dependency,
        )
        return retrying(attempt)

    # -- tenacity hooks ---------------------------------------------------------------------

    def _before_attempt(self, retry_state: tenacity.RetryCallState) -> None:
        logger.debug(
            "retry attempt dependency=%s attempt=%d",
            self.dependency,
            retry_state.attempt_number,
            extra={"dependency": self.dependency, "attempt": retry_state.attempt_number},
        )

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        RETRY_ATTEMPTS.labels(self.dependency, "retried").inc()
        RETRY_DELAY.labels(self.dependency).observe(max(0.0, float(retry_state.upcoming_sleep)))
        self._log(logging.WARNING, "retrying", retry_state, delay=retry_state.upcoming_sleep)
        if self.before_retry is not None and retry_state.outcome is not None:
            outcome = retry_state.outcome
            try:
                self.before_retry(outcome.exception() if outcome.failed else outcome.result())
            except Exception:  # a cleanup hook must not turn a retry into a different failure
                logger.exception("retry before_retry hook failed dependency=%s", self.dependency)

    def _exhausted(self, call: _Call, retry_state: tenacity.RetryCallState) -> Any:
        self._give_up(call.reason, retry_state)
        assert retry_state.outcome is not None
        return retry_state.outcome.result()  # raises the original exception, or the last result

    # -- logging ----------------------------------------------------------------------------

    def _give_up(
        self,
        reason: str,
        retry_state: tenacity.RetryCallState,
        *,
        level: int = logging.WARNING,
        **fields: Any,
    ) -> None:
        RETRY_ATTEMPTS.labels(self.dependency, reason).inc()
        self._log(level, "giving up", retry_state, reason=reason, **fields)

    def _log(self, level: int, event: str, retry_state: tenacity.RetryCallState, **fields: Any) -> None:
        """One structured line: dependency, attempt, delay, error class (+ reason, retry_after)."""
        if not logger.isEnabledFor(level):
            return
        data: dict[str, Any] = {
            "dependency": self.dependency,
            "attempt": retry_state.attempt_number,
            "delay": round(float(fields.pop("delay", 0.0)), 3),
            "error_class": _describe(retry_state.outcome),
            **fields,
        }
        text = " ".join(f"{key}={value}" for key, value in data.items())
        logger.log(level, "retry %s %s", event, text, extra=data)
