"""Cluster-wide circuit-breaker state in Redis, with a fallback store (database) or per process.

One Redis hash per breaker holds the whole shared state; every decision (record a batch of
outcomes, admit a half-open probe, finish a probe, a staff command) is ONE atomic Lua script run
with EVALSHA, and the scripts take the time from Redis ``TIME``, so processes never compare clocks.

Hot path (per process, per breaker)
    * Admission in CLOSED / METRICS_ONLY / DISABLED and rejection in OPEN / FORCED_OPEN use the
      cached shared state: no Redis round trip. The cache is refreshed at most every
      ``sync_interval`` (0.5 s), piggybacked on flushes, so a trip decided anywhere reaches every
      calling process within ~0.5 s.
    * Outcomes are buffered (fast successes in a lock-free queue, the rest as run-length codes) and
      sent in one EVALSHA every ``flush_every`` (200) calls or when the oldest buffered outcome is
      ``flush_interval`` (0.5 s, the ``sync_interval``: successes ride the cache refresh a busy
      process makes anyway, so a process sends at most one ``record`` per breaker and interval
      while calls succeed; checked on the next call; ``flush()`` and interpreter exit push the
      rest): about 5 Redis commands per 200 calls, counting the ones the script runs. A failure or
      slow call is sent at once, with the successes buffered before it (in order), so a trip never
      waits for a batch and a success never arrives after a later failure. The script applies
      outcomes in order and checks every trip rule after each one, exactly as the in-process state
      machine does (a time window files a whole batch under the second it arrives in).
    * Half-open probes are leases (token -> deadline) inside the hash: the ``acquire`` script grants
      at most ``half_open_max_calls`` cluster-wide; a lease not released within
      ``half_open_max_wait`` counts as a failed probe and reopens the breaker. Callers refused a
      probe slot are answered locally for ``probe_poll_interval``.
    * No lock is held while the protected call runs.
    * ``update_config`` takes effect with the next script (thresholds travel with every call, so
      processes may disagree for one refresh interval); a new window shape empties the window.

Redis unreachable
    The first failure logs one warning; every breaker of the process then runs on a stand-in,
    seeded with the last shared view and the unsent outcomes, so it still opens on failures: the
    ``fallback`` store's backend when one is given (the database store in a Django process: still
    shared by every process; the first process to fall back seeds the row with its Redis view, a
    later one only with a newer view), else its own :class:`~reliability.breaker.BreakerStateMachine`
    (the last resort; the database store itself falls back to it). Redis is retried every 1-2 s
    (``reconnect_interval`` with jitter), not per call.
    When it answers again each breaker reconciles: a staff command given meanwhile is replayed, the
    stand-in's window is pushed into the shared window (which may trip it; from the database, only
    by the first process to reconcile, so N processes do not push it N times; a staff override
    found there is replayed by that process too) and, if the stand-in is OPEN, the shared breaker
    opens for at least the remaining time. If Redis lost the state (restart without persistence:
    the hash's incarnation id changed), a process that saw the breaker OPEN pushes that too.

The client side below (:class:`SharedStore`, :class:`RedisBackend`) serves every shared store:
``stores/database.py`` reuses it and only replaces ``run`` (the same operations, decided in a locked
database transaction by ``stores/rules.py``, a port of the Lua scripts).

Key layout (``{prefix}`` defaults to ``hotelbot:cb``; the braces make a Redis Cluster hash tag)::

    {prefix}:{<name>}   hash, expires ``key_ttl`` after the last write
        st  state (closed|open|half_open|forced_open|disabled|metrics_only)
        ep  epoch, +1 on every transition/command; batches of an older epoch are dropped
        inc incarnation id (Redis TIME when the hash was created)
        ou  open-until, Redis ms, of OPEN / FORCED_OPEN, or the end of a timed DISABLED /
            METRICS_ONLY (-1: none / override without end); a staff override's key never expires
        tr  trips since the breaker last closed (open-duration growth)
        cf  consecutive failures          hs  half-open successes
        wt/wf/ws  window calls / failures / slow calls
        wk  window shape ("count:100" / "time:60"); a change empties the window
        wi/wr  count window: next ring index / ring of outcome digits ("0" empty, "1".."4")
        wb  time window: JSON [[second, calls, failures, slow], ...]
        pl  half-open leases: JSON {token: deadline_ms}

Script contract: KEYS[1] is the hash; ARGV[1..NARGS] is the config (``knobs.STORE_ARGS``: their
order and Lua names are declared there once, NARGS = 13 today); the script-specific arguments follow,
numbered below from NARGS (``[+1]`` is ``ARGV[NARGS + 1]``). Every script returns
``[kind, state, epoch, inc, open_remaining_ms (-1 none, -2 indefinite; for a timed DISABLED /
METRICS_ONLY: time left), now_ms, consecutive,
calls, failures, slow, trips, leases, extra, n_events, *events]`` with 7 fields per event
``(from, to, reason, failure_rate, slow_rate, at_ms, open_until_ms)``. Each transition is reported
once cluster-wide, to the process whose script made it.

    record   [+1] incarnation seen, [+2] epoch seen (-1: apply anyway), [+3] outcomes
             ("c:n" runs of code c, or "a:calls:failures:slow" aggregates), [+4] open hint ms
             (-1: none; applied only when reconciling or when Redis lost the state), [+5] optional
             force-open hint ms (-1 none, -2 no end; re-asserted only when Redis lost the state).
             kind "sync";
             extra 1 when this call found the hash gone although the caller knew one (it recreates
             the hash, so exactly one caller reports the inferred transition).
    acquire  [+1] lease token. kind "pass" (breaker admits everyone), "probe" (lease
             granted) or "reject" (extra = retry after, ms).
    release  [+1] lease token, [+2] outcome code (0 ignored). kind "released" or "stale".
    command  [+1] reset|force_close|force_open|disable|metrics_only, [+2] reason,
             [+3] duration ms of force_open / disable / metrics_only (-1: none). kind "done".

Every script first ends a timed override whose time is up (``forced_open_expired`` -> HALF_OPEN,
``disabled_expired`` / ``metrics_only_expired`` -> CLOSED), so it ends on time cluster-wide.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import random
import re
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reliability.breaker import knobs
from reliability.breaker.machine import (
    CODE_OK,
    BreakerSnapshot,
    BreakerStateMachine,
    CircuitBreakerConfig,
    CircuitOpenError,
    Clock,
    Listener,
    Outcome,
    Permit,
    State,
    TransitionEvent,
    outcome_code,
)
from reliability.metrics import FALLBACK_USAGE

logger = logging.getLogger(__name__)

__all__ = ["RedisBackend", "RedisBreakerStore", "RedisStoreOptions", "SharedStore", "StoreUnavailable"]

_OVERRIDES = (State.FORCED_OPEN, State.DISABLED, State.METRICS_ONLY)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


@dataclass(frozen=True)
class RedisStoreOptions:
    """Tuning of the shared store (the breaker thresholds live in ``CircuitBreakerConfig``)."""

    prefix: str = "hotelbot:cb"
    flush_every: int = 200
    #: Oldest buffered success before it is sent: the refresh interval (a shorter one sent a
    #: ``record`` per call at 5 calls/s and process, 5 Redis commands each, for a view that other
    #: processes may read up to ``sync_interval`` late anyway).
    flush_interval: float = 0.5
    sync_interval: float = 0.5
    probe_poll_interval: float = 0.1
    reconnect_interval: float = 1.0
    key_ttl: float = 7 * 86_400.0
    socket_timeout: float = 0.25

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.prefix, str) or not _PREFIX_RE.match(self.prefix):
            problems.append(f"prefix must match {_PREFIX_RE.pattern}, got {self.prefix!r}")
        if not isinstance(self.flush_every, int) or not 1 <= self.flush_every <= 10_000:
            problems.append(f"flush_every must be an integer between 1 and 10000, got {self.flush_every!r}")
        for name in (
            "flush_interval",
            "sync_interval",
            "probe_poll_interval",
            "reconnect_interval",
            "key_ttl",
            "socket_timeout",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        if problems:
            raise ValueError("invalid RedisStoreOptions: " + "; ".join(problems))


#: Reason of the transition a process infers when Redis lost a breaker's hash.
INFERRED_LOST = "inferred: shared state lost (Redis restart, flush or key expiry)"


class StoreUnavailable(Exception):
    """Redis could not be reached (or answered with an error); the caller falls back."""


# --------------------------------------------------------------------------------------------------
# Lua
# --------------------------------------------------------------------------------------------------

_LUA_DIR = Path(__file__).with_name("lua")


def _lua(name: str) -> str:
    """A script's source: the config arguments read into locals (``knobs.lua_header``), the shared
    prelude (window and transition helpers) and its body (its own arguments: ``ARGV[NARGS + i]``)."""
    return (
        knobs.lua_header() + (_LUA_DIR / "prelude.lua").read_text() + (_LUA_DIR / f"{name}.lua").read_text()
    )


SCRIPTS: dict[str, str] = {
    "record": _lua("record"),
    "acquire": _lua("acquire"),
    "release": _lua("release"),
    "command": _lua("command"),
}


def _config_args(config: CircuitBreakerConfig, options: RedisStoreOptions) -> tuple[str, ...]:
    """ARGV[1..NARGS] of every script, as ``knobs.STORE_ARGS`` declares them."""
    return knobs.store_args(config, key_ttl=options.key_ttl)


def encode_runs(runs: Sequence[Sequence[int]]) -> str:
    """``[[code, count], ...]`` -> ``"c:n,c:n"`` (the ``record`` script's outcome format)."""
    return ",".join(f"{code}:{count}" for code, count in runs)


def runs_of(codes: Sequence[int]) -> list[list[int]]:
    """Run-length encode outcome codes."""
    runs: list[list[int]] = []
    for code in codes:
        if runs and runs[-1][0] == code:
            runs[-1][1] += 1
        else:
            runs.append([code, 1])
    return runs


def _machine_handover(local: BreakerStateMachine, config: CircuitBreakerConfig) -> tuple[str, str]:
    """A per-process stand-in's window (as a ``record`` payload) and open hint (ms, "-1": none)."""
    payload, hint = "", "-1"
    if config.window_type == "count":
        payload = encode_runs(runs_of(local.window_codes()))
    else:
        snap = local.snapshot()
        payload = f"a:{snap.calls}:{snap.failures}:{snap.slow_calls}" if snap.calls else ""
    remaining = local.open_remaining()
    if local.state is State.OPEN and remaining is not None:
        hint = str(round(remaining * 1000))
    return payload, hint


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class _Reply:
    kind: str
    state: State
    epoch: int
    inc: str
    open_remaining_ms: int
    now_ms: int
    consecutive: int
    calls: int
    failures: int
    slow: int
    trips: int
    leases: int
    extra: int
    events: tuple[tuple[str, str, str, float, float, int, int], ...]
    payload: str = ""  # ``handover`` (database store only): the claimed window as a record payload

    @classmethod
    def parse(cls, raw: Sequence[Any]) -> _Reply:
        n_events = int(raw[13])
        events = []
        for i in range(n_events):
            e = raw[14 + 7 * i : 21 + 7 * i]
            events.append(
                (
                    _text(e[0]),
                    _text(e[1]),
                    _text(e[2]),
                    float(_text(e[3])),
                    float(_text(e[4])),
                    int(e[5]),
                    int(e[6]),
                )
            )
        return cls(
            kind=_text(raw[0]),
            state=State(_text(raw[1])),
            epoch=int(raw[2]),
            inc=_text(raw[3]),
            open_remaining_ms=int(raw[4]),
            now_ms=int(raw[5]),
            consecutive=int(raw[6]),
            calls=int(raw[7]),
            failures=int(raw[8]),
            slow=int(raw[9]),
            trips=int(raw[10]),
            leases=int(raw[11]),
            extra=int(raw[12]),
            events=tuple(events),
        )


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------

_stores: weakref.WeakSet[SharedStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_stores):
        store._after_fork()


def _flush_all_at_exit() -> None:
    for store in list(_stores):
        try:
            store.flush_all()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            logger.debug("flush at exit failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_all_at_exit)


class SharedStore:
    """What every shared store has in common: its backends, availability and reconnect schedule.

    A subclass provides ``run(script, key, args) -> _Reply``, which decides one operation
    atomically (a Lua script in Redis, a locked transaction in the database) and raises
    :class:`StoreUnavailable` after calling ``_went_down``. ``fallback``, when set, is the store
    whose backends stand in while this one is unreachable; without one, a per-process
    :class:`BreakerStateMachine` does.
    """

    #: ``TransitionEvent.source`` / ``BreakerSnapshot.source`` of breakers on this store.
    source = "shared"
    #: What the store runs on, for log lines.
    label = "store"

    def __init__(
        self,
        options: RedisStoreOptions | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        fallback: SharedStore | None = None,
    ) -> None:
        self.options = options if options is not None else RedisStoreOptions()
        self.clock = clock
        self.wall_clock = wall_clock
        self.fallback = fallback
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._backends: dict[str, RedisBackend] = {}
        _stores.add(self)

    def key(self, name: str) -> str:
        return f"{self.options.prefix}:{{{name}}}"

    def backend(self, name: str, config: CircuitBreakerConfig, listener: Listener) -> RedisBackend:
        backend = RedisBackend(self, name, config, listener)
        with self._lock:
            self._backends[name] = backend
        return backend

    def flush_all(self) -> None:
        """Push every breaker's buffered outcomes now."""
        for backend in list(self._backends.values()):
            backend.flush()

    def run(self, script: str, key: str, args: Sequence[str]) -> _Reply:
        raise NotImplementedError

    # -- availability --------------------------------------------------------------------------

    @property
    def is_down(self) -> bool:
        return self._down

    def should_try(self) -> bool:
        """True when the store may be used now: it is up, or a reconnect attempt is due (claimed here)."""
        if not self._down:
            return True
        with self._lock:
            now = self.clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self._backoff()
            return True

    def _backoff(self) -> float:
        return self.options.reconnect_interval * (1.0 + random.random())

    def _is_outage(self, exc: Exception) -> bool:
        """True for an unreachable server (logged as a warning), False for an error it answered."""
        return True

    def _drop_connections(self) -> None:
        """Close connections a restarted server has closed on its side."""

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self._retry_at = self.clock() + self._backoff()
            first = not self._down
            self._down = True
        if first and not self._is_outage(exc):
            logger.error("circuit breaker store: %s answered with an error", self.label, exc_info=exc)
        if first:
            logger.warning(
                "circuit breaker store: %s unreachable (%s: %s); breakers run %s until it "
                "answers again (retrying every %.1f-%.1f s)",
                self.label,
                type(exc).__name__,
                exc,
                "per process" if self.fallback is None else f"on the {self.fallback.label} store",
                self.options.reconnect_interval,
                2 * self.options.reconnect_interval,
            )
        try:
            self._drop_connections()
        except Exception:  # pragma: no cover - best effort
            logger.debug("disconnect failed", exc_info=True)

    def _came_back(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.info("circuit breaker store: %s reachable again; reconciling breaker state", self.label)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for backend in self._backends.values():
            backend._after_fork()


class RedisBreakerStore(SharedStore):
    """Shared breaker state in one Redis; one instance per process (and per Redis) is enough.

    Pass a client with short socket timeouts and no automatic retries (``from_url`` builds one);
    the store retries on its own schedule. ``fallback`` (the database store, in a Django process)
    stands in while Redis is unreachable.
    """

    source = "redis"
    label = "Redis"

    def __init__(
        self,
        client: redis.Redis,
        options: RedisStoreOptions | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        fallback: SharedStore | None = None,
    ) -> None:
        super().__init__(options, clock=clock, wall_clock=wall_clock, fallback=fallback)
        self.client = client
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}

    @classmethod
    def from_url(
        cls, url: str, options: RedisStoreOptions | None = None, *, fallback: SharedStore | None = None
    ) -> RedisBreakerStore:
        """A store with its own client: short timeouts, no retries, no health-check pings."""
        opts = options if options is not None else RedisStoreOptions()
        client = redis.Redis.from_url(
            url,
            socket_timeout=opts.socket_timeout,
            socket_connect_timeout=opts.socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(client, opts, fallback=fallback)

    def run(self, script: str, key: str, args: Sequence[str]) -> _Reply:
        """Run one script atomically; raise :class:`StoreUnavailable` (and go down) on any Redis error."""
        try:
            raw = self._scripts[script](keys=[key], args=list(args))
        except redis.RedisError as exc:
            self._went_down(exc)
            raise StoreUnavailable(str(exc)) from exc
        if self._down:
            self._came_back()
        return _Reply.parse(raw)

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, redis.ConnectionError | redis.TimeoutError)

    def _drop_connections(self) -> None:
        self.client.connection_pool.disconnect()


class RedisBackend:
    """One breaker's view of a shared store's state (created by :meth:`SharedStore.backend`).

    Despite its name this is the client side of *every* shared store: cached state, batched
    outcomes, probe leases, the stand-in while the store is down and the reconcile after. Only
    ``store.run`` differs (Lua in Redis, a locked transaction in the database).
    """

    def __init__(
        self, store: SharedStore, name: str, config: CircuitBreakerConfig, listener: Listener
    ) -> None:
        self.name = name
        self._store = store
        self._clock = store.clock
        self._listener = listener
        self._key = store.key(name)
        self._options = store.options
        self._lock = threading.Lock()  # cache and buffer; never held during I/O
        self._io_lock = threading.Lock()  # one record script at a time, so batches stay ordered
        self.config = config
        self._args = _config_args(config, store.options)
        self._slow_after = config.slow_call_duration
        # cached shared view
        self._state = State.CLOSED
        self._epoch = -1  # unknown until the first sync
        self._inc = ""
        self._server_ms = 0
        self._open_deadline = 0.0
        self._consecutive = 0
        self._calls = self._failures = self._slow = 0
        self._trips = 0
        self._leases = 0
        self._fresh_until = 0.0
        self._reject_until = 0.0  # min(open deadline, fresh_until) while the cache says OPEN
        self._probe_block_until = 0.0
        self._fast_permit: Permit | None = None
        # Outcomes not yet sent: ``_runs`` ([[code, count], ...], under ``_lock``), then the fast
        # successes queued lock-free in ``_ok`` (their permit's epoch). ``_oldest``: when the oldest
        # unsent outcome was recorded (inf: none).
        self._runs: list[list[int]] = []
        self._pending = 0
        self._ok: deque[int] = deque()
        self._oldest = math.inf
        self._recording = False
        self._flush_every = store.options.flush_every
        self._flush_interval = store.options.flush_interval
        # stand-in while the store is unreachable: the fallback store's backend, else per process
        self._local: RedisBackend | BreakerStateMachine | None = None
        self._standin: RedisBackend | None = None  # the fallback store's backend, kept across outages
        self._pending_command: tuple[str, str, float | None] | None = None

    # -- admission -----------------------------------------------------------------------------

    def acquire(self) -> Permit:
        now = self._clock()
        permit = self._fast_permit
        if permit is not None:
            if now < self._fresh_until:
                return permit
        elif now < self._reject_until:  # OPEN per a fresh cache: no round trip
            remaining = self._open_deadline - now
            if remaining == math.inf:
                remaining = self.config.recovery_timeout
            raise CircuitOpenError(self.name, remaining, self._state)
        return self._acquire_slow()

    def _acquire_slow(self) -> Permit:
        if self._local is not None or self._store.is_down:
            local = self._fallback()
            if local is not None:
                return local.acquire()
        now = self._clock()
        if now >= self._fresh_until:
            self._sync(blocking=False)
            local = self._local
            if local is not None:
                return local.acquire()
            now = self._clock()
        permit = self._fast_permit
        if permit is not None:
            return permit
        state = self._state
        if state is State.OPEN or state is State.FORCED_OPEN:
            if now < self._open_deadline:
                raise CircuitOpenError(self.name, self._retry_after(now), state)
        elif state is State.HALF_OPEN and now < self._probe_block_until:
            raise CircuitOpenError(self.name, self._probe_block_until - now, state)
        return self._acquire_probe()

    def _retry_after(self, now: float) -> float:
        remaining = self._open_deadline - now
        return self.config.recovery_timeout if math.isinf(remaining) else remaining

    def _acquire_probe(self) -> Permit:
        token = uuid.uuid4().hex
        try:
            reply = self._store.run("acquire", self._key, (*self._args, token))
        except StoreUnavailable:
            return self._enter_fallback(()).acquire()
        self._apply(reply)
        if reply.kind == "probe":
            return Permit(self, reply.epoch, token)
        if reply.kind == "pass":
            return self._fast_permit or Permit(self, reply.epoch)
        retry_after = reply.extra / 1000.0
        if reply.state is State.FORCED_OPEN and reply.open_remaining_ms == -2:
            retry_after = self.config.recovery_timeout
        if reply.state is State.HALF_OPEN:
            self._probe_block_until = self._clock() + min(retry_after, self._options.probe_poll_interval)
        raise CircuitOpenError(self.name, retry_after, reply.state)

    # -- recording -----------------------------------------------------------------------------

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        if permit.owner is not self:
            local = self._local
            if local is not None and (permit.owner is local or isinstance(local, RedisBackend)):
                local.record(permit, outcome, duration)  # a shared stand-in checks ownership itself
            return
        if permit.token is not None:
            self._release_probe(permit.token, outcome, duration)
            return
        if outcome is Outcome.IGNORED:
            return
        code = outcome_code(outcome, duration >= self._slow_after)
        local = self._local
        if local is not None:  # admitted before Redis went away: the stand-in gets the outcome
            local.replay((code,))
            return
        now = self._clock()
        with self._lock:
            if permit.epoch != self._epoch or not self._recording:
                return
            self._drain_ok_locked()
            runs = self._runs
            if runs and runs[-1][0] == code:
                runs[-1][1] += 1
            else:
                runs.append([code, 1])
            self._pending += 1
            if self._oldest == math.inf:
                self._oldest = now
            due = self._pending >= self._flush_every or now - self._oldest >= self._flush_interval
        if code != CODE_OK:
            self._sync(blocking=True)  # a failure or slow call may trip: send it now
        elif due:
            self._sync(blocking=False)

    def on_success(self, permit: Permit, duration: float) -> None:
        """The hot path: queue the success lock-free; flush every N calls or flush_interval."""
        if (
            permit.owner is not self
            or permit.token is not None
            or duration >= self._slow_after
            or self._local is not None
        ):
            self.record(permit, Outcome.SUCCESS, duration)
            return
        if not self._recording:
            return
        queue = self._ok
        queue.append(permit.epoch)
        now = self._clock()
        oldest = self._oldest
        if oldest == math.inf:
            self._oldest = now
        elif len(queue) + self._pending >= self._flush_every or now - oldest >= self._flush_interval:
            self._sync(blocking=False)

    def _drain_ok_locked(self) -> None:
        """Move queued fast successes of the current epoch into ``_runs`` (caller holds ``_lock``)."""
        queue = self._ok
        if not queue:
            return
        epochs = [queue.popleft() for _ in range(len(queue))]
        count = epochs.count(self._epoch)
        if count:
            runs = self._runs
            if runs and runs[-1][0] == CODE_OK:
                runs[-1][1] += count
            else:
                runs.append([CODE_OK, count])
            self._pending += count

    def _take_pending(self) -> list[list[int]]:
        """Empty the buffer (caller holds ``_lock``) and return its runs."""
        self._drain_ok_locked()
        runs = self._runs
        self._runs = []
        self._pending = 0
        self._oldest = math.inf
        return runs

    def _release_probe(self, token: str, outcome: Outcome, duration: float) -> None:
        code = 0 if outcome is Outcome.IGNORED else outcome_code(outcome, duration >= self._slow_after)
        try:
            reply = self._store.run("release", self._key, (*self._args, token, str(code)))
        except StoreUnavailable:
            self._enter_fallback(())  # the lease expires in Redis; this process goes on locally
            return
        self._apply(reply)

    def flush(self) -> None:
        """Send buffered outcomes (and refresh the cached state) now."""
        if self._local is not None or self._store.is_down:
            self._fallback()
            return
        self._sync(blocking=True)

    def _sync(self, *, blocking: bool) -> bool:
        """Send the buffer and refresh the cache in one ``record`` script. False if not done."""
        if self._store.is_down:
            self._fallback()
            return False
        if not self._io_lock.acquire(blocking=blocking):
            return False
        try:
            with self._lock:
                runs = self._take_pending()
                epoch, inc = self._epoch, self._inc
                now = self._clock()
                hint, forced = self._open_hint_ms(now), self._forced_hint_ms(now)
            try:
                reply = self._store.run(
                    "record",
                    self._key,
                    (*self._args, inc, str(epoch if epoch >= 0 else -2), encode_runs(runs), hint, forced),
                )
            except StoreUnavailable:
                self._enter_fallback(runs)
                return False
            self._apply(reply)
            return True
        finally:
            self._io_lock.release()

    def _open_hint_ms(self, now: float) -> str:
        """Remaining OPEN time as this process sees it, for a Redis that lost the state."""
        if self._state is State.OPEN and self._open_deadline > now:
            return str(round((self._open_deadline - now) * 1000))
        return "-1"

    def _forced_hint_ms(self, now: float) -> str:
        """Remaining staff force-open as this process sees it (-2: no end), for a Redis that lost it."""
        if self._state is not State.FORCED_OPEN:
            return "-1"
        if math.isinf(self._open_deadline):
            return "-2"
        return str(round((self._open_deadline - now) * 1000)) if self._open_deadline > now else "-1"

    def _apply(self, reply: _Reply, *, force: bool = False) -> None:
        """Adopt a script's view of the shared state (unless a newer one was already adopted)."""
        now = self._clock()
        inferred: TransitionEvent | None = None
        with self._lock:
            if reply.kind == "sync" and reply.extra == 1:
                # Redis lost the hash and this process noticed first: the state it saw ended
                # without any script reporting it. Say so, once cluster-wide.
                after = State(reply.events[0][0]) if reply.events else reply.state
                if self._state is not after:
                    inferred = TransitionEvent(
                        name=self.name,
                        from_state=self._state,
                        to_state=after,
                        reason=INFERRED_LOST,
                        failure_rate=0.0,
                        slow_call_rate=0.0,
                        at=reply.now_ms / 1000.0,
                        source="redis",
                    )
            newer = (
                force
                or reply.inc != self._inc
                or reply.epoch > self._epoch
                or (reply.epoch == self._epoch and reply.now_ms >= self._server_ms)
            )
            if newer:
                if reply.epoch != self._epoch or reply.inc != self._inc:
                    self._take_pending()  # outcomes of an older epoch are void
                    self._probe_block_until = 0.0
                self._state = reply.state
                self._epoch = reply.epoch
                self._inc = reply.inc
                self._server_ms = reply.now_ms
                remaining = reply.open_remaining_ms
                self._open_deadline = math.inf if remaining == -2 else now + max(remaining, 0) / 1000.0
                self._consecutive = reply.consecutive
                self._calls, self._failures, self._slow = reply.calls, reply.failures, reply.slow
                self._trips = reply.trips
                self._leases = reply.leases
                self._fresh_until = now + self._options.sync_interval
                if remaining >= 0 and reply.state in (State.DISABLED, State.METRICS_ONLY):
                    self._fresh_until = min(self._fresh_until, self._open_deadline)  # timed override
                self._reject_until = (
                    min(self._open_deadline, self._fresh_until)
                    if reply.state in (State.OPEN, State.FORCED_OPEN)
                    else 0.0
                )
                self._recording = reply.state in (State.CLOSED, State.METRICS_ONLY)
                passes = self._recording or reply.state is State.DISABLED
                permit = self._fast_permit
                if not passes:
                    self._fast_permit = None
                elif permit is None or permit.epoch != reply.epoch:
                    self._fast_permit = Permit(self, reply.epoch)
        if inferred is not None:
            self._listener(inferred)
        for from_state, to_state, reason, failure_rate, slow_rate, at_ms, open_until_ms in reply.events:
            self._listener(
                TransitionEvent(
                    name=self.name,
                    from_state=State(from_state),
                    to_state=State(to_state),
                    reason=reason,
                    failure_rate=failure_rate,
                    slow_call_rate=slow_rate,
                    at=at_ms / 1000.0,
                    open_until=open_until_ms / 1000.0 if open_until_ms >= 0 else None,
                    source=self._store.source,
                )
            )

    # -- fallback ------------------------------------------------------------------------------

    def _fallback(self) -> RedisBackend | BreakerStateMachine | None:
        """The stand-in while the store is down; ``None`` once reconciled (back to shared)."""
        if self._store.should_try() and self._reconcile():
            return None
        local = self._local
        return local if local is not None else self._enter_fallback(())

    def _enter_fallback(self, unsent: Sequence[Sequence[int]]) -> RedisBackend | BreakerStateMachine:
        """Switch to (or feed) the stand-in, handing it the outcomes the store never got.

        The stand-in is the fallback store's backend when there is one (the database behind Redis:
        still shared by every process), seeded with this process's last view of the shared state;
        else a per-process state machine.
        """
        adopt: RedisBackend | None = None
        with self._lock:
            local = self._local
            remaining = self._open_deadline - self._clock()
            open_for = math.inf if math.isinf(remaining) else max(0.0, remaining)
            open_for_or_none = open_for if self._state in (State.OPEN, State.FORCED_OPEN) else None
            if local is None:
                fallback = self._store.fallback
                FALLBACK_USAGE.labels(
                    self.name, "process_store" if fallback is None else "database_store"
                ).inc()
                if fallback is not None:
                    if self._standin is None:
                        self._standin = fallback.backend(self.name, self.config, self._listener)
                    local = adopt = self._standin
                else:
                    machine = BreakerStateMachine(
                        self.name,
                        self.config,
                        clock=self._clock,
                        wall_clock=self._store.wall_clock,
                        listener=self._listener,
                        source="fallback",
                    )
                    machine.seed(
                        self._state,
                        open_for=open_for_or_none,
                        consecutive=self._consecutive,
                        trips=self._trips,
                    )
                    local = machine
                self._local = local
            view = (
                f"{self._inc}:{self._epoch}",
                self._state,
                open_for_or_none,
                self._consecutive,
                self._trips,
            )
            codes = [code for code, count in (*unsent, *self._take_pending()) for _ in range(count)]
            self._fresh_until = 0.0  # force callers off the fast path, onto the stand-in
            self._reject_until = 0.0
            self._fast_permit = None
        if adopt is not None and self._epoch >= 0:
            adopt.adopt(*view)
        if codes:
            local.replay(codes)
        return local

    # -- when this backend is the stand-in of another store's backend ----------------------------

    def adopt(self, view: str, state: State, open_for: float | None, consecutive: int, trips: int) -> None:
        """Take over the primary store's last known state (``view``: its "incarnation:epoch")."""
        if open_for is None:
            millis = -1
        elif math.isinf(open_for):
            millis = -2
        else:
            millis = round(open_for * 1000)
        args = (*self._args, view, state.value, str(millis), str(trips), str(consecutive))
        if self._local is None and not self._store.is_down:
            try:
                self._apply(self._store.run("seed", self._key, args))
                return
            except StoreUnavailable:
                pass
        local = self._local if self._local is not None else self._enter_fallback(())
        if isinstance(local, BreakerStateMachine):
            local.seed(state, open_for=open_for, consecutive=consecutive, trips=trips)

    def replay(self, codes: Sequence[int]) -> None:
        """Record outcomes of calls admitted through the primary store (sent at once)."""
        local = self._local
        if local is not None or self._store.is_down:
            (local if local is not None else self._enter_fallback(())).replay(codes)
            return
        with self._lock:
            for code, count in runs_of(codes):
                self._runs.append([code, count])
                self._pending += count
            if self._oldest == math.inf:
                self._oldest = self._clock()
        self._sync(blocking=True)

    def handover(self) -> tuple[str, str, tuple[str, str, float | None] | None]:
        """What the primary store needs when it takes over again: (record payload, open hint ms,
        staff override to replay). The window goes to the first process asking since the seed."""
        local = self._local
        if local is None and not self._store.is_down:
            self._sync(blocking=True)  # buffered outcomes first
            try:
                reply = self._store.run("handover", self._key, self._args)
            except StoreUnavailable:
                local = self._enter_fallback(())
            else:
                self._apply(reply)
                hint = "-1"
                if reply.state is State.OPEN and reply.open_remaining_ms >= 0:
                    hint = str(reply.open_remaining_ms)
                override = None
                if reply.extra == 1 and reply.state in _OVERRIDES:
                    duration = None
                    if reply.open_remaining_ms >= 0:  # a timed override: the time left
                        duration = reply.open_remaining_ms / 1000.0
                    op = "force_open" if reply.state is State.FORCED_OPEN else reply.state.value
                    override = (op, f"carried over from the {self._store.label} store", duration)
                return reply.payload, hint, override
        if isinstance(local, RedisBackend):
            return local.handover()
        assert local is not None
        return (*_machine_handover(local, self.config), None)

    def _reconcile(self) -> bool:
        """Hand the stand-in's knowledge back to the store; True when the shared state is in use again."""
        with self._io_lock:
            local = self._local
            try:
                if self._pending_command is not None:
                    op, reason, deadline = self._pending_command
                    duration = -1 if deadline is None else max(0, round((deadline - self._clock()) * 1000))
                    self._apply(
                        self._store.run("command", self._key, (*self._args, op, reason, str(duration)))
                    )
                    self._pending_command = None
                payload, hint = "", "-1"
                if isinstance(local, RedisBackend):
                    # Make sure this store answers before the stand-in hands its window over (once).
                    self._store.run("record", self._key, (*self._args, self._inc, "-2", "", "-1"))
                    payload, hint, override = local.handover()
                    if override is not None:
                        op, reason, seconds = override
                        millis = -1 if seconds is None else round(seconds * 1000)
                        self._apply(
                            self._store.run("command", self._key, (*self._args, op, reason, str(millis)))
                        )
                elif local is not None:
                    payload, hint = _machine_handover(local, self.config)
                reply = self._store.run("record", self._key, (*self._args, self._inc, "-1", payload, hint))
            except StoreUnavailable:
                return False
            with self._lock:
                self._local = None
            self._apply(reply, force=True)
            return True

    # -- staff commands ------------------------------------------------------------------------

    def _command(self, op: str, reason: str, duration: float | None = None) -> None:
        if self._local is None and not self._store.is_down:
            millis = -1 if duration is None else round(duration * 1000)
            try:
                self._apply(self._store.run("command", self._key, (*self._args, op, reason, str(millis))))
                return
            except StoreUnavailable:
                pass
        local = self._local if self._local is not None else self._enter_fallback(())
        if isinstance(local, RedisBackend):
            logger.warning(
                "circuit breaker %r: %s applied on the %s store until %s is back",
                self.name,
                op,
                local._store.label,
                self._store.label,
            )
        else:
            logger.warning(
                "circuit breaker %r: %s applied in this process only until %s is back",
                self.name,
                op,
                self._store.label,
            )
        deadline = None if duration is None else self._clock() + duration
        self._pending_command = (op, reason, deadline)
        if op in ("force_open", "disable", "metrics_only"):
            getattr(local, op)(reason, duration)
        else:
            getattr(local, op)(reason)

    def reset(self, reason: str = "reset") -> None:
        self._command("reset", reason)

    def force_open(self, reason: str = "forced_open", duration: float | None = None) -> None:
        self._command("force_open", reason, duration)

    def force_close(self, reason: str = "forced_close") -> None:
        self._command("force_close", reason)

    def disable(self, reason: str = "disabled", duration: float | None = None) -> None:
        self._command("disable", reason, duration)

    def metrics_only(self, reason: str = "metrics_only", duration: float | None = None) -> None:
        self._command("metrics_only", reason, duration)

    def update_config(self, config: CircuitBreakerConfig) -> None:
        with self._lock:
            self.config = config
            self._args = _config_args(config, self._options)
            self._slow_after = config.slow_call_duration
            local = self._local
            standin = self._standin
        if local is not None:
            local.update_config(config)
        if standin is not None and standin is not local:
            standin.update_config(config)

    # -- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._local is not None or self._store.is_down:
            local = self._fallback()
            if local is not None:
                return local.state
        if self._clock() >= self._fresh_until:
            self._sync(blocking=False)
            local = self._local
            if local is not None:
                return local.state
        return self._state

    @property
    def using_fallback(self) -> bool:
        return self._local is not None

    def snapshot(self) -> BreakerSnapshot:
        self.flush()
        local = self._local
        if local is not None:
            return local.snapshot()
        now = self._clock()
        with self._lock:
            calls = self._calls
            retry_after = 0.0
            if self._state in (State.OPEN, State.FORCED_OPEN):
                retry_after = max(0.0, self._retry_after(now))
            return BreakerSnapshot(
                name=self.name,
                state=self._state,
                failure_rate=100.0 * self._failures / calls if calls else 0.0,
                slow_call_rate=100.0 * self._slow / calls if calls else 0.0,
                calls=calls,
                failures=self._failures,
                slow_calls=self._slow,
                consecutive_failures=self._consecutive,
                trips=self._trips,
                retry_after=retry_after,
                probes_in_flight=self._leases,
                source=self._store.source,
            )

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, and the parent's unsent outcomes are the parent's to send."""
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._ok = deque()
        self._runs = []
        self._pending = 0
        self._oldest = math.inf
        self._fresh_until = 0.0
        self._reject_until = 0.0
