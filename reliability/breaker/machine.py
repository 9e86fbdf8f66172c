"""Circuit breaker: configuration, failure classification and a pure state machine.

This module knows nothing about Django, Redis or HTTP. Time comes from an injected clock, so every
rule can be tested with a fake one. Shared (cluster-wide) state lives in ``stores/``, whose backends
plug into the :class:`~reliability.breaker.circuit.CircuitBreaker` facade through the small ``BreakerStore`` /
``BreakerBackend`` protocols.

States
    CLOSED        calls pass; outcomes are recorded and may trip the breaker.
    OPEN          calls are rejected with :class:`CircuitOpenError` until the open duration ends;
                  the next call then moves the breaker to HALF_OPEN.
    HALF_OPEN     at most ``half_open_max_calls`` probes run at once; ``success_threshold`` successes
                  close the breaker, any failed, slow or overdue probe (older than
                  ``half_open_max_wait``) opens it again with a longer open duration.
    FORCED_OPEN   staff override: rejects everything, optionally until a time, then HALF_OPEN.
    DISABLED      staff override: every call passes and nothing is recorded; optionally until a
                  time, then CLOSED.
    METRICS_ONLY  shadow mode: every call passes, outcomes are recorded, and where the breaker would
                  trip it emits an event (``would_trip:<rule>``) instead and starts a fresh window;
                  optionally until a time, then CLOSED.

A timed override ends on time whoever looks: the next call, ``state`` or ``snapshot()`` makes the
transition (``forced_open_expired``, ``disabled_expired``, ``metrics_only_expired``).

Trip rules (CLOSED), checked after every recorded outcome:
    * ``failure_threshold`` consecutive failures (0 disables the rule);
    * failure rate >= ``failure_rate_threshold`` % or slow-call rate >= ``slow_call_rate_threshold`` %
      over the sliding window (the last ``window_size`` calls, or the calls of the last
      ``window_size`` seconds in one-second buckets), once it holds ``minimum_requests`` calls.
    A call is slow when it takes at least ``slow_call_duration`` seconds; a slow call can be a success or a
    failure. Ignored outcomes (see :func:`classify`) touch no counter.

The open duration is ``recovery_timeout * recovery_timeout_multiplier ** (trips - 1)`` capped at
``max_recovery_timeout``, where ``trips`` counts the trips since the breaker last closed.

Every transition bumps an *epoch*; outcomes of calls admitted in an earlier epoch are dropped (the
window starts afresh on every transition). Transitions are reported to a listener as
:class:`TransitionEvent` values. No lock is ever held while a protected call runs.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, cast

from reliability.retry import http_status
from reliability.transport import CallRejected

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "OVERRIDE_STATES",
    "BreakerBackend",
    "BreakerSnapshot",
    "BreakerStateMachine",
    "BreakerStore",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "CountWindow",
    "Outcome",
    "Permit",
    "State",
    "TimeWindow",
    "TransitionEvent",
    "classify",
    "open_duration",
]

P = ParamSpec("P")
R = TypeVar("R")

Clock = Callable[[], float]
Listener = Callable[["TransitionEvent"], None]

#: Statuses that count as failures by default: 429 and every 5xx. Other 4xx are ignored.
DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset({429, *range(500, 600)})

#: Longest open duration ever used, whatever the growth settings (one day).
OPEN_DURATION_CEILING = 86_400.0

#: Queued fast successes are folded into the window under the lock once this many are waiting.
_FOLD_AT = 64

#: In HALF_OPEN with every probe slot taken, callers are told to retry after at most this long.
HALF_OPEN_RETRY_HINT = 1.0

#: Outcome codes shared with the Lua scripts of ``stores/redis``: 1 ok, 2 failure, 3 slow ok,
#: 4 slow failure. ``code % 2 == 0`` means failure, ``code >= 3`` means slow.
CODE_OK, CODE_FAILURE, CODE_SLOW_OK, CODE_SLOW_FAILURE = 1, 2, 3, 4

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
    METRICS_ONLY = "metrics_only"


#: Staff overrides; each may carry an end time.
OVERRIDE_STATES: frozenset[State] = frozenset({State.FORCED_OPEN, State.DISABLED, State.METRICS_ONLY})


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    #: Neither success nor failure (e.g. a 404): recorded nowhere, frees a probe slot.
    IGNORED = "ignored"


def outcome_code(outcome: Outcome, slow: bool) -> int:
    """The compact code of a recorded (non-ignored) outcome."""
    return (CODE_FAILURE if outcome is Outcome.FAILURE else CODE_OK) + (2 if slow else 0)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """Thresholds of one breaker. Immutable; invalid values raise ``ValueError`` on creation.

    ``failure_threshold``: consecutive failures that trip (0 disables the rule).
    ``recovery_timeout``: seconds OPEN before probing (first trip).
    ``success_threshold``: probe successes that close the breaker from HALF_OPEN.
    ``slow_call_duration``: seconds from which a call counts as slow.
    ``window_size``: calls (``window_type="count"``) or seconds (``"time"``) in the sliding window.
    ``minimum_requests``: calls the window must hold before the rate rules apply.
    ``failure_rate_threshold`` / ``slow_call_rate_threshold``: percentages (0, 100] that trip.
    ``half_open_max_calls``: probes allowed at once in HALF_OPEN (cluster-wide with a shared store).
    ``half_open_max_wait``: seconds a probe may take; an overdue probe counts as failed.
    ``recovery_timeout_multiplier`` / ``max_recovery_timeout``: open-duration growth on repeated
    trips and its cap (``None``: capped only by one day).
    ``failure_statuses``: HTTP statuses that are failures; other 4xx are ignored, the rest succeed.
    ``failure_exceptions`` / ``ignored_exceptions``: exception types forced to one verdict
    (ignored wins); any other exception is a failure unless it carries an ignored HTTP status.
    ``is_failure``: custom predicate given an exception or a status; returns an :class:`Outcome`,
    or ``None`` to fall back to the rules above.
    ``classify_results``: classify returned objects that have an int ``status_code`` or ``status``
    attribute (``requests``/``httpx`` responses, ``reliability.http.HttpResponse``) by that status.
    """

    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    success_threshold: int = 3
    slow_call_duration: float = 30.0
    window_size: int = 100
    minimum_requests: int = 10
    window_type: Literal["count", "time"] = "count"
    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    half_open_max_calls: int = 1
    half_open_max_wait: float = 60.0
    recovery_timeout_multiplier: float = 1.0
    max_recovery_timeout: float | None = None
    failure_statuses: frozenset[int] = field(default=DEFAULT_FAILURE_STATUSES)
    failure_exceptions: tuple[type[BaseException], ...] = ()
    ignored_exceptions: tuple[type[BaseException], ...] = ()
    is_failure: Callable[[BaseException | int], Outcome | None] | None = field(default=None, compare=False)
    classify_results: bool = True

    def __post_init__(self) -> None:
        errors = list(self._errors())
        if errors:
            raise ValueError("invalid CircuitBreakerConfig: " + "; ".join(errors))
        # Accept any iterable of statuses but store a frozenset (hashable, fast membership).
        object.__setattr__(self, "failure_statuses", frozenset(self.failure_statuses))

    def _errors(self) -> Iterator[str]:
        def integer(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if not _is_int(value) or value < low or (high is not None and value > high):
                bound = f">= {low}" if high is None else f"between {low} and {high}"
                problems.append(f"{name} must be an integer {bound}, got {value!r}")

        def number(name: str, low: float, *, inclusive: bool = False, high: float | None = None) -> None:
            value = getattr(self, name)
            ok = _is_number(value) and (value >= low if inclusive else value > low)
            if ok and high is not None:
                ok = value <= high
            if not ok:
                rel = ">=" if inclusive else ">"
                bound = f"{rel} {low}" + ("" if high is None else f" and <= {high}")
                problems.append(f"{name} must be a finite number {bound}, got {value!r}")

        problems: list[str] = []
        integer("failure_threshold", 0)
        number("recovery_timeout", 0.0, high=OPEN_DURATION_CEILING)
        integer("success_threshold", 1)
        number("slow_call_duration", 0.0)
        integer("minimum_requests", 1)
        number("failure_rate_threshold", 0.0, high=100.0)
        number("slow_call_rate_threshold", 0.0, high=100.0)
        integer("half_open_max_calls", 1, 1000)
        number("half_open_max_wait", 0.0, high=OPEN_DURATION_CEILING)
        number("recovery_timeout_multiplier", 1.0, inclusive=True, high=100.0)
        if self.window_type not in ("count", "time"):
            problems.append(f"window_type must be 'count' or 'time', got {self.window_type!r}")
        elif self.window_type == "count":
            integer("window_size", 1, 100_000)
        else:
            integer("window_size", 1, 3_600)
        if (
            self.window_type == "count"
            and _is_int(self.window_size)
            and _is_int(self.minimum_requests)
            and self.minimum_requests > self.window_size
        ):
            problems.append(
                f"minimum_requests ({self.minimum_requests}) must not exceed window_size "
                f"({self.window_size}) for a count window, or the rate rules could never apply"
            )
        if self.max_recovery_timeout is not None:
            number("max_recovery_timeout", 0.0, high=OPEN_DURATION_CEILING)
            if (
                _is_number(self.max_recovery_timeout)
                and _is_number(self.recovery_timeout)
                and self.max_recovery_timeout < self.recovery_timeout
            ):
                problems.append(
                    f"max_recovery_timeout ({self.max_recovery_timeout}) must be >= recovery_timeout "
                    f"({self.recovery_timeout})"
                )
        try:
            statuses = list(self.failure_statuses)
        except TypeError:
            problems.append("failure_statuses must be an iterable of HTTP status codes")
        else:
            bad = [s for s in statuses if not _is_int(s) or not 100 <= s <= 599]
            if bad:
                problems.append(f"failure_statuses must hold HTTP status codes 100-599, got {bad!r}")
        for name in ("failure_exceptions", "ignored_exceptions"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                problems.append(f"{name} must be a tuple of exception classes, got {value!r}")
        if self.is_failure is not None and not callable(self.is_failure):
            problems.append("is_failure must be callable or None")
        if not isinstance(self.classify_results, bool):
            problems.append("classify_results must be a bool")
        yield from problems

    def with_changes(self, **changes: Any) -> CircuitBreakerConfig:
        """A validated copy with some fields changed."""
        return replace(self, **changes)


def open_duration(config: CircuitBreakerConfig, trips: int) -> float:
    """Seconds the breaker stays OPEN after its ``trips``-th trip in a row (``trips >= 1``)."""
    cap = OPEN_DURATION_CEILING if config.max_recovery_timeout is None else config.max_recovery_timeout
    base = config.recovery_timeout
    if config.recovery_timeout_multiplier == 1.0 or trips <= 1:
        return min(base, cap)
    try:
        grown = base * config.recovery_timeout_multiplier ** (trips - 1)
    except OverflowError:
        return cap
    return min(grown, cap)


# --------------------------------------------------------------------------------------------------
# Failure classification
# --------------------------------------------------------------------------------------------------


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries itself (``requests``/``httpx`` style), if any: the one
    definition, ``reliability.retry.http_status``."""
    return http_status(exc, follow_causes=False)


_UNKNOWN = "?"
#: Per result type: the attribute holding its HTTP status (``status_code`` for requests/httpx,
#: ``status`` for our ``HttpResponse``) or ``None``; learnt from the first result of each type.
_STATUS_ATTR: dict[type, str | None] = {}


def _status_attribute(result: object) -> str | None:
    for attr in ("status_code", "status"):
        if _is_int(getattr(result, attr, None)):
            return attr
    return None


def classify(config: CircuitBreakerConfig, subject: BaseException | int) -> Outcome:
    """Classify an exception or an HTTP status code.

    Order: the custom ``is_failure`` predicate (unless it returns ``None``); for exceptions,
    ``ignored_exceptions``, ``failure_exceptions``, non-``Exception`` signals (cancellation,
    interpreter exit: ignored), a rejection by another breaker (ignored), then the HTTP status the
    exception carries (a 4xx other than those in ``failure_statuses`` is ignored); every other
    exception - timeouts, connection errors, 5xx, anything unexpected - is a failure. For statuses:
    ``failure_statuses`` (default 429 and 5xx) fail, other 4xx are ignored, the rest succeed.
    """
    if config.is_failure is not None:
        verdict = config.is_failure(subject)
        if verdict is not None:
            return verdict
    if isinstance(subject, BaseException):
        if config.ignored_exceptions and isinstance(subject, config.ignored_exceptions):
            return Outcome.IGNORED
        if config.failure_exceptions and isinstance(subject, config.failure_exceptions):
            return Outcome.FAILURE
        if not isinstance(subject, Exception) or isinstance(subject, CircuitOpenError):
            return Outcome.IGNORED
        status = _status_of(subject)
        if status is not None and 400 <= status < 500 and status not in config.failure_statuses:
            return Outcome.IGNORED
        return Outcome.FAILURE
    if subject in config.failure_statuses:
        return Outcome.FAILURE
    if 400 <= subject < 500:
        return Outcome.IGNORED
    return Outcome.SUCCESS


# --------------------------------------------------------------------------------------------------
# Errors, events, snapshots, permits
# --------------------------------------------------------------------------------------------------


class CircuitOpenError(CallRejected):
    """A call was rejected because the breaker is not admitting calls.

    ``CircuitOpenError(name, retry_after, state=State.OPEN)``: ``retry_after`` is the number of
    seconds after which a call may be admitted again. The fields live in ``args`` (no Python
    ``__init__``: rejecting is the hot path of an open breaker, and this keeps it cheap and
    picklable).
    """

    if TYPE_CHECKING:

        def __init__(self, name: str, retry_after: float, state: State = State.OPEN) -> None: ...

    @property
    def name(self) -> str:
        return cast(str, self.args[0])

    @property
    def retry_after(self) -> float:
        value = cast(float, self.args[1])
        return value if value > 0.0 else 0.0

    @property
    def state(self) -> State:
        return cast(State, self.args[2]) if len(self.args) > 2 else State.OPEN

    def __str__(self) -> str:
        return f"circuit {self.name!r} is {self.state.value}; retry after {self.retry_after:.3f}s"


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """One state change (or admin action, or would-be trip in METRICS_ONLY) of one breaker.

    ``failure_rate`` / ``slow_call_rate`` are percentages over the window just before the change;
    ``at`` and ``open_until`` are UNIX timestamps (seconds); ``source`` is ``"local"`` (in-process
    store), ``"redis"`` (decided atomically in Redis: reported once cluster-wide, by the process that
    caused it) or ``"fallback"`` (a per-process breaker standing in while Redis was unreachable).
    """

    name: str
    from_state: State
    to_state: State
    reason: str
    failure_rate: float
    slow_call_rate: float
    at: float
    open_until: float | None = None
    source: str = "local"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A read-only view of a breaker for metrics, admin and health pages."""

    name: str
    state: State
    failure_rate: float
    slow_call_rate: float
    calls: int
    failures: int
    slow_calls: int
    consecutive_failures: int
    trips: int
    retry_after: float
    probes_in_flight: int
    source: str


class Permit:
    """Admission ticket returned by ``acquire`` and handed back with the call's outcome."""

    __slots__ = ("epoch", "owner", "token")

    def __init__(self, owner: object, epoch: int, token: str | None = None) -> None:
        self.owner = owner
        self.epoch = epoch
        #: Set for half-open probes only (the lease to release).
        self.token = token

    def __repr__(self) -> str:
        return f"Permit(epoch={self.epoch}, token={self.token!r})"


# --------------------------------------------------------------------------------------------------
# Sliding windows
# --------------------------------------------------------------------------------------------------


class CountWindow:
    """The outcomes of the last ``size`` recorded calls (a ring of outcome codes)."""

    __slots__ = ("_idx", "_ring", "failures", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = [0] * size
        self._idx = 0
        self.total = self.failures = self.slow = 0

    def add(self, code: int, now: float = 0.0) -> None:
        idx = self._idx
        ring = self._ring
        old = ring[idx]
        if old:
            self.total -= 1
            if not old & 1:
                self.failures -= 1
            if old >= 3:
                self.slow -= 1
        ring[idx] = code
        self.total += 1
        if not code & 1:
            self.failures += 1
        if code >= 3:
            self.slow += 1
        idx += 1
        self._idx = 0 if idx == self.size else idx

    def add_ok_many(self, n: int) -> None:
        """``add(CODE_OK)`` ``n`` times, in bulk."""
        size, ring = self.size, self._ring
        start = self._idx
        self._idx = (start + n) % size
        if n >= size:
            ring[:] = [CODE_OK] * size
            self.total, self.failures, self.slow = size, 0, 0
            return
        end = start + n
        for a, b in ((start, end),) if end <= size else ((start, size), (0, end - size)):
            old = ring[a:b]
            slow_failures = old.count(CODE_SLOW_FAILURE)
            self.total += old.count(0)
            self.failures -= old.count(CODE_FAILURE) + slow_failures
            self.slow -= old.count(CODE_SLOW_OK) + slow_failures
            ring[a:b] = [CODE_OK] * (b - a)

    def expire(self, now: float) -> None:
        """Count windows do not age."""

    def codes(self) -> list[int]:
        """Recorded codes, oldest first."""
        ring = self._ring
        return [c for c in ring[self._idx :] + ring[: self._idx] if c]


class TimeWindow:
    """The outcomes of the last ``size`` seconds, in one-second buckets ``[second, total, fail, slow]``."""

    __slots__ = ("_buckets", "failures", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self._buckets: deque[list[int]] = deque()
        self.total = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        horizon = math.floor(now) - self.size
        buckets = self._buckets
        while buckets and buckets[0][0] <= horizon:
            _, total, failures, slow = buckets.popleft()
            self.total -= total
            self.failures -= failures
            self.slow -= slow

    def add(self, code: int, now: float = 0.0) -> None:
        self.expire(now)
        second = math.floor(now)
        buckets = self._buckets
        if not buckets or buckets[-1][0] < second:
            buckets.append([second, 0, 0, 0])
        bucket = buckets[-1]  # a clock that steps back lands in the newest bucket
        failure = 0 if code & 1 else 1
        slow = 1 if code >= 3 else 0
        bucket[1] += 1
        bucket[2] += failure
        bucket[3] += slow
        self.total += 1
        self.failures += failure
        self.slow += slow

    def codes(self) -> list[int]:
        """Recorded codes, failures last within each bucket (the order inside a second is not kept)."""
        out: list[int] = []
        for _, total, failures, slow in self._buckets:
            # Split the bucket into ok / slow ok / slow failure / failure runs with the same totals.
            slow_failures = min(slow, failures)
            slow_ok = slow - slow_failures
            out += [CODE_OK] * (total - failures - slow_ok)
            out += [CODE_SLOW_OK] * slow_ok
            out += [CODE_SLOW_FAILURE] * slow_failures
            out += [CODE_FAILURE] * (failures - slow_failures)
        return out


Window = CountWindow | TimeWindow


def make_window(config: CircuitBreakerConfig) -> Window:
    return (
        CountWindow(config.window_size) if config.window_type == "count" else TimeWindow(config.window_size)
    )


def rates(window: Window) -> tuple[float, float]:
    """(failure rate %, slow-call rate %) of a window; zeros when it is empty."""
    if not window.total:
        return 0.0, 0.0
    return 100.0 * window.failures / window.total, 100.0 * window.slow / window.total


def trip_reason(config: CircuitBreakerConfig, consecutive: int, window: Window) -> str | None:
    """The rule a CLOSED breaker trips on given its counters, or ``None``."""
    if config.failure_threshold and consecutive >= config.failure_threshold:
        return "consecutive_failures"
    total = window.total
    if total >= config.minimum_requests:
        if window.failures * 100.0 >= config.failure_rate_threshold * total:
            return "failure_rate"
        if window.slow * 100.0 >= config.slow_call_rate_threshold * total:
            return "slow_call_rate"
    return None


# --------------------------------------------------------------------------------------------------
# Backend protocols
# --------------------------------------------------------------------------------------------------


class BreakerBackend(Protocol):
    """Where one breaker's state lives: in-process (:class:`BreakerStateMachine`) or shared."""

    def acquire(self) -> Permit: ...

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None: ...

    def on_success(self, permit: Permit, duration: float) -> None:
        """Same as ``record(permit, Outcome.SUCCESS, duration)``; the hot path."""
        ...

    @property
    def state(self) -> State: ...

    def snapshot(self) -> BreakerSnapshot: ...

    def reset(self, reason: str = "reset") -> None: ...

    def force_open(self, reason: str = "forced_open", duration: float | None = None) -> None: ...

    def force_close(self, reason: str = "forced_close") -> None: ...

    def disable(self, reason: str = "disabled", duration: float | None = None) -> None:
        """DISABLED for ``duration`` seconds (then CLOSED), or until another command."""
        ...

    def metrics_only(self, reason: str = "metrics_only", duration: float | None = None) -> None:
        """METRICS_ONLY for ``duration`` seconds (then CLOSED), or until another command."""
        ...

    def update_config(self, config: CircuitBreakerConfig) -> None: ...

    def flush(self) -> None: ...


class BreakerStore(Protocol):
    """Creates the backend of each named breaker. ``clock`` times calls (monotonic seconds)."""

    clock: Clock

    def backend(self, name: str, config: CircuitBreakerConfig, listener: Listener) -> BreakerBackend: ...


# --------------------------------------------------------------------------------------------------
# The pure state machine
# --------------------------------------------------------------------------------------------------


class BreakerStateMachine:
    """The in-process breaker: every rule of the module docstring, thread-safe, clock injected.

    ``clock`` measures durations (monotonic seconds); ``wall_clock`` only stamps events.
    Listener callbacks run after the internal lock is released.
    """

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        listener: Listener | None = None,
        source: str = "local",
    ) -> None:
        self.name = name
        self.config = config
        self.source = source
        self._clock = clock
        self._wall_clock = wall_clock
        self._listener = listener
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._epoch = 0
        self._window: Window = make_window(config)
        self._time_window = config.window_type == "time"
        self._slow_after = config.slow_call_duration
        self._consecutive = 0
        self._trips = 0
        self._open_until: float | None = None
        self._override_until: float | None = None  # end of a timed DISABLED / METRICS_ONLY
        self._half_open_successes = 0
        self._probes: dict[str, float] = {}  # token -> deadline
        self._next_token = 0
        self._events: list[TransitionEvent] = []
        self._recording = True  # CLOSED or METRICS_ONLY: outcomes feed the window
        # Fast path: once a count window holds minimum_requests calls, a fast success cannot trip
        # anything, so successes are queued lock-free (their epoch) and folded in bulk under the
        # lock before anything reads or changes the window.
        self._armed = False
        self._ok_queue: deque[int] = deque()
        self._fast_permit: Permit | None = Permit(self, 0)
        # OPEN (or forced open with an end): calls before this instant are rejected lock-free.
        self._reject_until = 0.0

    # -- admission ---------------------------------------------------------------------------------

    def acquire(self) -> Permit:
        """Admit a call or raise :class:`CircuitOpenError`."""
        permit = self._fast_permit
        if permit is not None:
            return permit
        now = self._clock()
        reject_until = self._reject_until
        if now < reject_until:
            raise CircuitOpenError(self.name, reject_until - now, self._state)
        with self._lock:
            result = self._acquire_locked(now)
            events = self._take_events()
        if events:
            self._emit(events)
        if isinstance(result, Permit):
            return result
        raise CircuitOpenError(self.name, result, self._state)

    def _acquire_locked(self, now: float) -> Permit | float:
        self._end_overrides(now)
        state = self._state
        if state is State.OPEN:
            assert self._open_until is not None
            if now < self._open_until:
                return self._open_until - now
            self._transition(State.HALF_OPEN, "recovery_timeout_elapsed", now)
        elif state is State.FORCED_OPEN:
            if self._open_until is None:
                return self.config.recovery_timeout
            return self._open_until - now  # not yet over (_end_overrides ended it otherwise)
        elif state is not State.HALF_OPEN:
            return Permit(self, self._epoch)
        # HALF_OPEN
        if self._expire_probes(now):
            assert self._open_until is not None
            return self._open_until - now
        if len(self._probes) < self.config.half_open_max_calls:
            self._next_token += 1
            token = str(self._next_token)
            self._probes[token] = now + self.config.half_open_max_wait
            return Permit(self, self._epoch, token)
        return min(min(self._probes.values()) - now, HALF_OPEN_RETRY_HINT)

    def _end_overrides(self, now: float) -> None:
        """End a timed override whose time is up (caller holds the lock)."""
        state = self._state
        if state is State.FORCED_OPEN:
            if self._open_until is not None and now >= self._open_until:
                self._transition(State.HALF_OPEN, "forced_open_expired", now)
        elif (
            state in (State.DISABLED, State.METRICS_ONLY)
            and self._override_until is not None
            and now >= self._override_until
        ):
            self._transition(State.CLOSED, f"{state.value}_expired", now)

    def _expire_probes(self, now: float) -> bool:
        """Reopen if a probe overran ``half_open_max_wait``; True when it did."""
        if self._state is State.HALF_OPEN and any(deadline <= now for deadline in self._probes.values()):
            self._trip("probe_timeout", now)
            return True
        return False

    # -- recording ---------------------------------------------------------------------------------

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        """Record the outcome of an admitted call (``duration`` in seconds)."""
        if permit.token is None and outcome is Outcome.IGNORED:
            return
        with self._lock:
            if self._ok_queue:
                self._fold_locked()
            if permit.epoch == self._epoch:
                if permit.token is None:
                    self._record_locked(outcome_code(outcome, duration >= self._slow_after))
                else:
                    self._finish_probe(permit.token, outcome, duration >= self._slow_after)
            events = self._take_events() if self._events else None
        if events:
            self._emit(events)

    def on_success(self, permit: Permit, duration: float) -> None:
        """``record(permit, SUCCESS, duration)`` with a lock-free fast path for the common case.

        A fast success lowers both rates and resets the consecutive count, so in a count window
        that already holds ``minimum_requests`` calls it cannot trip anything (a config change
        re-checks the thresholds at once); it is queued and folded in later, in order.
        """
        if self._armed and permit.token is None and duration < self._slow_after:
            queue = self._ok_queue
            queue.append(permit.epoch)
            if len(queue) >= _FOLD_AT:
                with self._lock:
                    self._fold_locked()
            return
        self.record(permit, Outcome.SUCCESS, duration)

    def _fold_locked(self) -> None:
        """Apply the queued fast successes (caller holds the lock)."""
        queue = self._ok_queue
        epochs = [queue.popleft() for _ in range(len(queue))]
        count = epochs.count(self._epoch)
        if count and self._recording and isinstance(self._window, CountWindow):
            self._window.add_ok_many(count)
            self._consecutive = 0

    def _on_trip_rule(self, reason: str) -> None:
        if self._state is State.CLOSED:
            self._trip(reason, self._clock())
        else:  # METRICS_ONLY: report and start a fresh window
            self._transition(State.METRICS_ONLY, "would_trip:" + reason, self._clock())

    def _record_locked(self, code: int) -> None:
        if not self._recording:
            return
        window = self._window
        if self._time_window:
            window.add(code, self._clock())
        else:
            window.add(code)
        if code & 1:
            self._consecutive = 0
            if window.total < self.config.minimum_requests:
                return  # nothing can trip: consecutive count is 0, rates not yet applicable
        else:
            self._consecutive += 1
        reason = trip_reason(self.config, self._consecutive, window)
        if reason is not None:
            # The transition (OPEN, or METRICS_ONLY's would-trip) disarmed the fast path and started
            # a fresh window; ``window`` is the old one and must not re-arm it (METRICS_ONLY keeps
            # recording, and queued successes would then skip the trip checks of the new window).
            self._on_trip_rule(reason)
            return
        self._armed = not self._time_window and window.total >= self.config.minimum_requests

    def _finish_probe(self, token: str, outcome: Outcome, slow: bool) -> None:
        now = self._clock()
        if self._state is not State.HALF_OPEN or token not in self._probes or self._expire_probes(now):
            return
        del self._probes[token]
        if outcome is Outcome.IGNORED:
            return
        if outcome is Outcome.FAILURE or slow:
            self._trip("probe_failed" if outcome is Outcome.FAILURE else "probe_slow", now)
            return
        self._half_open_successes += 1
        if self._half_open_successes >= self.config.success_threshold:
            self._trips = 0
            self._transition(State.CLOSED, "probes_succeeded", now)

    # -- transitions -------------------------------------------------------------------------------

    def _trip(self, reason: str, now: float) -> None:
        self._trips += 1
        self._open_until = now + open_duration(self.config, self._trips)
        self._transition(State.OPEN, reason, now)

    def _transition(self, to: State, reason: str, now: float) -> None:
        window = self._window
        if self._time_window:
            window.expire(now)
        failure_rate, slow_rate = rates(window)
        at = self._wall_clock()
        if to is not State.DISABLED and to is not State.METRICS_ONLY:
            self._override_until = None
        open_until = None
        if to in (State.OPEN, State.FORCED_OPEN) and self._open_until is not None:
            open_until = at + (self._open_until - now)
        elif self._override_until is not None:  # a timed DISABLED / METRICS_ONLY: when it ends
            open_until = at + (self._override_until - now)
        self._events.append(
            TransitionEvent(
                name=self.name,
                from_state=self._state,
                to_state=to,
                reason=reason,
                failure_rate=failure_rate,
                slow_call_rate=slow_rate,
                at=at,
                open_until=open_until,
                source=self.source,
            )
        )
        self._state = to
        self._epoch += 1
        self._armed = False
        self._ok_queue.clear()
        self._window = make_window(self.config)
        self._consecutive = 0
        self._half_open_successes = 0
        self._probes.clear()
        if to not in (State.OPEN, State.FORCED_OPEN):
            self._open_until = None
        self._recording = to in (State.CLOSED, State.METRICS_ONLY)
        passes = self._recording or to is State.DISABLED
        # A timed override keeps callers on the locked path, which ends it on time.
        timed = self._override_until is not None
        self._fast_permit = Permit(self, self._epoch) if passes and not timed else None
        self._reject_until = 0.0 if self._open_until is None else self._open_until

    def _take_events(self) -> list[TransitionEvent]:
        events = self._events
        self._events = []
        return events

    def _emit(self, events: list[TransitionEvent]) -> None:
        if self._listener is None:
            return
        for event in events:
            self._listener(event)

    def _command(
        self, to: State, reason: str, *, duration: float | None = None, trips: int | None = None
    ) -> None:
        if duration is not None and (not _is_number(duration) or duration < 0):
            raise ValueError(f"duration must be a finite number >= 0 or None, got {duration!r}")
        with self._lock:
            now = self._clock()
            if trips is not None:
                self._trips = trips
            until = None if duration is None else now + duration
            self._open_until = until if to is State.FORCED_OPEN else None
            self._override_until = until if to in (State.DISABLED, State.METRICS_ONLY) else None
            self._transition(to, reason, now)
            events = self._take_events()
        self._emit(events)

    # -- staff commands ----------------------------------------------------------------------------

    def reset(self, reason: str = "reset") -> None:
        """CLOSED with every counter (and open-duration growth) cleared."""
        self._command(State.CLOSED, reason, trips=0)

    def force_close(self, reason: str = "forced_close") -> None:
        """CLOSED now, whatever the state (counters and growth cleared, like ``reset``)."""
        self._command(State.CLOSED, reason, trips=0)

    def force_open(self, reason: str = "forced_open", duration: float | None = None) -> None:
        """FORCED_OPEN for ``duration`` seconds (then HALF_OPEN), or until another command."""
        self._command(State.FORCED_OPEN, reason, duration=duration)

    def disable(self, reason: str = "disabled", duration: float | None = None) -> None:
        """DISABLED for ``duration`` seconds (then CLOSED), or until another command."""
        self._command(State.DISABLED, reason, duration=duration)

    def metrics_only(self, reason: str = "metrics_only", duration: float | None = None) -> None:
        """METRICS_ONLY for ``duration`` seconds (then CLOSED), or until another command."""
        self._command(State.METRICS_ONLY, reason, duration=duration)

    def _end_due_overrides(self) -> None:
        """End a timed override that is over, outside the lock's callers (``state``, ``snapshot``)."""
        if self._state not in OVERRIDE_STATES:
            return
        with self._lock:
            self._end_overrides(self._clock())
            events = self._take_events()
        if events:
            self._emit(events)

    def update_config(self, config: CircuitBreakerConfig) -> None:
        """Apply new thresholds now (tripping at once if the window already exceeds them);
        a different window shape starts an empty window."""
        with self._lock:
            self._fold_locked()
            old = self.config
            self.config = config
            self._slow_after = config.slow_call_duration
            self._armed = False  # re-armed by the next recorded outcome
            if (old.window_type, old.window_size) != (config.window_type, config.window_size):
                self._window = make_window(config)
                self._time_window = config.window_type == "time"
            elif self._recording:
                if self._time_window:
                    self._window.expire(self._clock())
                reason = trip_reason(config, self._consecutive, self._window)
                if reason is not None:
                    self._on_trip_rule(reason)
            events = self._take_events()
        self._emit(events)

    def flush(self) -> None:
        """Nothing is buffered in process."""

    # -- reading -----------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        self._end_due_overrides()
        return self._state

    @property
    def epoch(self) -> int:
        return self._epoch

    def open_remaining(self) -> float | None:
        """Seconds left OPEN/FORCED_OPEN (``inf`` for an indefinite force), ``None`` otherwise."""
        with self._lock:
            if self._state is State.FORCED_OPEN and self._open_until is None:
                return math.inf
            if self._state not in (State.OPEN, State.FORCED_OPEN) or self._open_until is None:
                return None
            return max(0.0, self._open_until - self._clock())

    def replay(self, codes: Iterable[int]) -> None:
        """Record outcome codes of calls admitted elsewhere (hand-over from a shared store)."""
        with self._lock:
            self._fold_locked()
            for code in codes:
                if not self._recording:
                    break
                self._record_locked(code)
            events = self._take_events()
        self._emit(events)

    def window_codes(self) -> list[int]:
        """The window's outcome codes, oldest first (used to hand counts over to a shared store)."""
        with self._lock:
            self._fold_locked()
            if self._time_window:
                self._window.expire(self._clock())
            return self._window.codes()

    def seed(self, state: State, *, open_for: float | None, consecutive: int, trips: int) -> None:
        """Start from another breaker's view (used when a shared store falls back to this one)."""
        with self._lock:
            now = self._clock()
            self._state = state
            self._epoch += 1
            self._armed = False
            self._ok_queue.clear()
            self._consecutive = consecutive if state in (State.CLOSED, State.METRICS_ONLY) else 0
            self._trips = trips
            self._override_until = None
            self._open_until = None if open_for is None or math.isinf(open_for) else now + open_for
            if state is State.OPEN and self._open_until is None:
                self._open_until = now
            self._recording = state in (State.CLOSED, State.METRICS_ONLY)
            passes = self._recording or state is State.DISABLED
            self._fast_permit = Permit(self, self._epoch) if passes else None
            self._reject_until = 0.0 if self._open_until is None else self._open_until

    def snapshot(self) -> BreakerSnapshot:
        self._end_due_overrides()
        with self._lock:
            self._fold_locked()
            now = self._clock()
            window = self._window
            if self._time_window:
                window.expire(now)
            failure_rate, slow_rate = rates(window)
            retry_after = 0.0
            if self._state in (State.OPEN, State.FORCED_OPEN):
                retry_after = (
                    self.config.recovery_timeout
                    if self._open_until is None
                    else max(0.0, self._open_until - now)
                )
            return BreakerSnapshot(
                name=self.name,
                state=self._state,
                failure_rate=failure_rate,
                slow_call_rate=slow_rate,
                calls=window.total,
                failures=window.failures,
                slow_calls=window.slow,
                consecutive_failures=self._consecutive,
                trips=self._trips,
                retry_after=retry_after,
                probes_in_flight=len(self._probes),
                source=self.source,
            )
