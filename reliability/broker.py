"""Publishing from a web request without ever waiting on the broker.

Celery's defaults suit workers (reconnect, retry publishes, wait seconds for a socket), but on a
request path a hung broker — one that accepts TCP connections and never answers — would hold every
request for the sum of those waits. Request-path publishes therefore use their own connection
pool whose sockets time out after ``CELERY_REQUEST_PUBLISH_TIMEOUT`` and which never reconnects
in a loop (``max_retries=0``), and they publish with ``retry=False``. The caller treats a failed
publish as "not published": the database row stays the source of truth and a sweeper re-publishes.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from celery import current_app
from celery.worker.consumer import Consumer
from django.conf import settings
from kombu import Connection
from kombu.connection import ConnectionPool

from reliability.metrics import BROKER_UP

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_key: tuple[str, float] | None = None


def request_path_transport_options() -> dict[str, Any]:
    """The broker's transport options with short socket timeouts and no connection retries."""
    timeout = settings.CELERY_REQUEST_PUBLISH_TIMEOUT
    options = dict(current_app.conf.broker_transport_options or {})
    options.update(
        {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_retries": 0,  # Connection.default_channel: fail on the first error, no reconnect loop
            "connect_retries_timeout": timeout,
        }
    )
    return options


def _request_path_pool() -> ConnectionPool:
    global _pool, _pool_key
    key = (current_app.conf.broker_url or "", settings.CELERY_REQUEST_PUBLISH_TIMEOUT)
    with _lock:
        if _pool is None or _pool_key != key:
            if _pool is not None:
                _pool.force_close_all()
            connection: Connection = current_app.connection_for_write(
                transport_options=request_path_transport_options(),
                connect_timeout=settings.CELERY_REQUEST_PUBLISH_TIMEOUT,
            )
            _pool, _pool_key = connection.Pool(limit=current_app.conf.broker_pool_limit or 10), key
        return _pool


@contextmanager
def request_path_connection() -> Iterator[Connection]:
    """A pooled broker connection with short timeouts; dropped (no I/O) when a publish on it fails."""
    connection: Connection = _request_path_pool().acquire(
        block=True, timeout=settings.CELERY_REQUEST_PUBLISH_TIMEOUT
    )
    try:
        yield connection
    except BaseException:
        connection.collect()  # close sockets without talking to the (possibly hung) broker
        raise
    finally:
        connection.release()


def request_path_publish_options(connection: Connection) -> dict[str, Any]:
    """``apply_async`` options for a request-path publish: this connection, one attempt, no retries."""
    return {"connection": connection, "retry": False}


# --- the request-path publish, handed off ---------------------------------------------------------
class _Handoff:
    """Runs request-path publishes on one daemon thread per process, in the order they came.

    A webhook's answer waits for its message to be stored, not for the task to be published: the
    row is the source of truth, and a publish that never happens (the process died first) is made
    good by the sweeper REPLY_STALE_AFTER later, exactly as a failed one is. So the commit hands the
    publish to this thread and the response leaves at once. At exit the thread is given
    ``HANDOFF_DRAIN_SECONDS`` to finish what it holds (each publish is bounded by
    CELERY_REQUEST_PUBLISH_TIMEOUT)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Callable[[], object]] = queue.Queue()

    def submit(self, fn: Callable[[], object]) -> None:
        run_in_context = contextvars.copy_context().run  # the request id goes along into the logs
        self._started().put(partial(run_in_context, fn))

    def _started(self) -> queue.Queue[Callable[[], object]]:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:  # first use in this process (or in a fork of one that used it)
                    self._queue = queue.Queue()
                    thread = threading.Thread(
                        target=self._run, args=(self._queue,), name="publish-handoff", daemon=True
                    )
                    thread.start()
                    if self._pid is None:
                        atexit.register(self.drain, HANDOFF_DRAIN_SECONDS)
                    self._pid = pid
        return self._queue

    @staticmethod
    def _run(work: queue.Queue[Callable[[], object]]) -> None:
        from django.db import close_old_connections

        while True:
            fn = work.get()
            try:
                fn()
            except Exception:
                logger.exception("a handed-off publish failed (the sweeper publishes the job)")
            finally:
                close_old_connections()  # a pooled connection goes back to the pool
                work.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait until everything handed off has run, at most ``timeout`` seconds; False if not."""
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True


#: Seconds a web process gives its hand-off thread at exit.
HANDOFF_DRAIN_SECONDS = 5.0
_handoff = _Handoff()


def hand_off(fn: Callable[[], object]) -> None:
    """Run a request-path publish after the response (CELERY_REQUEST_PUBLISH_HANDOFF), else now.

    An eager Celery (tests, ``CELERY_TASK_ALWAYS_EAGER``) runs the task inside the publish: that
    stays on the caller's thread."""
    if settings.CELERY_REQUEST_PUBLISH_HANDOFF and not current_app.conf.task_always_eager:
        _handoff.submit(fn)
    else:
        fn()


def handoff_drain(timeout: float = HANDOFF_DRAIN_SECONDS) -> bool:
    """Wait for this process's handed-off publishes (tests; exit)."""
    return _handoff.drain(timeout)


# --- broker health: is the broker reachable? (cheap, per process) ---------------------------------
class BrokerUnavailable(Exception):
    """The broker is known to be down (this process's flag or the ``redis`` breaker): not tried."""


class _Seen:
    """What this process saw of the broker last: down since when (monotonic; None: up) and why."""

    __slots__ = ("reason", "since")

    def __init__(self) -> None:
        self.since: float | None = None
        self.reason = ""


_state_lock = threading.Lock()
_seen = _Seen()


def breaker_name() -> str | None:
    """The breaker guarding broker calls: ``redis`` for a Redis broker (it guards cache, rate-limit
    and broker calls alike), none for RabbitMQ or the embedded filesystem broker."""
    url = str(current_app.conf.broker_url or "")
    return "redis" if url.startswith(("redis://", "rediss://", "redis+socket://")) else None


def is_down() -> bool:
    """This process last saw the broker fail and has not seen it answer since (no I/O)."""
    return _seen.since is not None


def down_for() -> float:
    """Seconds since this process marked the broker down (0 when up)."""
    since = _seen.since
    return 0.0 if since is None else max(0.0, time.monotonic() - since)


def mark_down(reason: str) -> bool:
    """Remember that the broker failed; True when this is news (it was up)."""
    with _state_lock:
        seen = _seen
        if seen.since is not None:
            return False
        seen.since, seen.reason = time.monotonic(), reason[:300]
    logger.warning("broker unreachable, replies are taken from the database meanwhile: %s", reason)
    BROKER_UP.set(0)
    return True


def mark_up() -> bool:
    """Remember that the broker answered; True when this is news (it was down)."""
    with _state_lock:
        seen = _seen
        if seen.since is None:
            return False
        seconds = time.monotonic() - seen.since
        seen.since, seen.reason = None, ""
    logger.info("broker reachable again after %.1fs; replies go through it again", seconds)
    BROKER_UP.set(1)
    return True


@contextmanager
def guarded() -> Iterator[None]:
    """Around one broker call (a publish): skip fast while the ``redis`` breaker is open, record the
    outcome in it, and keep this process's flag (a failure marks the broker down, a success up).

    Raises :class:`BrokerUnavailable` without any I/O while the breaker rejects calls."""
    from reliability.breaker import CircuitOpenError, registry

    name = breaker_name()
    try:
        if name is None:
            yield
        else:
            with registry.breaker(name).guard():
                yield
    except CircuitOpenError as e:
        mark_down(f"{name} breaker open")
        raise BrokerUnavailable(str(e)) from e
    except Exception as e:
        mark_down(f"{type(e).__name__}: {e}")
        raise
    mark_up()


_probe_lock = threading.Lock()
#: The probe's Redis connection, kept between probes: (pid, broker URL, timeout), connection.
_probe_held: tuple[tuple[int, str, float], Connection] | None = None


def probe(*, timeout: float | None = None) -> bool:
    """Ask the broker whether it answers (short timeouts, no retries); updates the flag and the breaker.

    The worker's fallback poller calls it every ``BROKER_PROBE_INTERVAL`` while the broker is up
    and every poll while it is down. A Redis broker is asked with one PING on a connection this
    process keeps between probes (a new TCP connection, HELLO and SELECT every few seconds in every
    pool process were most of an idle worker's broker traffic); a failed PING drops the connection
    and the next probe connects afresh. Other transports (AMQP) connect once per probe."""
    seconds = timeout if timeout is not None else settings.BROKER_PROBE_TIMEOUT
    try:
        with guarded(), _probe_lock:
            _probe_once(seconds)
    except Exception as e:  # BrokerUnavailable, kombu's OperationalError, socket errors, ...
        logger.debug("broker probe failed: %s", e)
        return False
    return True


def _probe_once(seconds: float) -> None:
    global _probe_held
    url = str(current_app.conf.broker_url or "")
    key = (os.getpid(), url, seconds)
    if _probe_held is not None and _probe_held[0] == key:
        try:
            channel: Any = _probe_held[1].default_channel  # kept only with a client that pings
            channel.client.ping()
            return
        except Exception:
            drop_probe_connection()
            raise
    drop_probe_connection()
    options = request_path_transport_options()
    options.update({"socket_timeout": seconds, "socket_connect_timeout": seconds})
    connection: Connection = current_app.connection_for_write(
        transport_options=options, connect_timeout=seconds
    )
    keep = False
    try:
        connection.ensure_connection(max_retries=0, interval_start=0, timeout=max(1, round(seconds)))
        channel = connection.default_channel  # Redis: PING; AMQP: channel open
        keep = callable(getattr(getattr(channel, "client", None), "ping", None))
    finally:
        if keep:
            _probe_held = (key, connection)
        else:
            connection.collect()


def drop_probe_connection() -> None:
    """Forget the probe's kept connection (closed quietly; another process's is only forgotten)."""
    global _probe_held
    held, _probe_held = _probe_held, None
    if held is not None and held[0][0] == os.getpid():
        with contextlib.suppress(Exception):
            held[1].collect()


# --- the worker's consumer: a longer Redis BRPOP wait -----------------------------------------------
def worker_consume_transport_options() -> dict[str, Any]:
    """The transport options of a worker's consuming connection, over the broker's own: with a Redis
    broker, kombu's ``polling_interval`` (it sets the BRPOP timeout, 1 s by default) from
    ``WORKER_BROKER_POLLING_INTERVAL``. An idle worker's main process sent an empty BRPOP every
    second; a message still arrives the moment it is pushed (BRPOP returns at once). Only this
    connection: a synchronous consumer (a health check's pidbox ping in a web or pool process) keeps
    kombu's default, under the broker's socket timeout."""
    seconds = settings.WORKER_BROKER_POLLING_INTERVAL
    if breaker_name() != "redis" or seconds <= 0:
        return {}
    return {"polling_interval": seconds}


class WorkerConsumer(Consumer):
    """``CELERY_WORKER_CONSUMER``: Celery's consumer, its connection with
    :func:`worker_consume_transport_options`."""

    def connection_for_read(self, heartbeat: Any = None) -> Any:
        options = worker_consume_transport_options()
        connection = self.app.connection_for_read(heartbeat=heartbeat, transport_options=options)
        return self.ensure_connected(connection)


# --- kombu's Redis transport: a worker must survive a Redis kill ---------------------------------
def _torn_down(qos: Any) -> bool:
    """The QoS's channel was closed (``connection`` None) or its connection lost its client."""
    connection = getattr(qos.channel, "connection", None)
    return connection is None or getattr(connection, "client", None) is None


def install_kombu_redis_guard() -> bool:
    """Guard ``kombu.transport.redis.QoS`` against a connection already torn down.

    Two paths of kombu's Redis transport need a fresh client, whose connection parameters come from
    ``channel.connection.client``, on a channel whose connection is already gone; the
    ``AttributeError`` escapes to the worker as an "Unrecoverable error" and the worker exits (kombu
    issues #582 and #970 show the same path; seen with kombu 5.7.0):

    * ``restore_unacked``: when Redis dies under a worker, kombu closes the channel while the
      connection is being replaced, and closing restores the unacknowledged messages
      (``'NoneType' object has no attribute 'hostname'``);
    * ``ack`` / ``reject``: a task that was running when Redis died finishes after the consumer has
      reconnected; its message belongs to the closed channel (``connection`` None), and acking it
      (``acks_late``) fails the same way (``... no attribute 'client'``; the fault drill's
      ``redis_sigkill_20s`` hit it).

    Nothing can be restored or acknowledged over a connection that is gone, and nothing is lost or
    doubled by not trying: the messages stay in Redis's unacked hash (restored after the visibility
    timeout; the task then finds its reply job done and skips it) and, if Redis lost them, the reply
    job rows are re-published by the sweeper or taken by the database poll. So those cases are logged
    and skipped; every other error still raises. Idempotent; returns True when it patched.
    """
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # pragma: no cover - celery[redis] is pinned
        return False
    qos = kombu_redis.QoS
    if getattr(qos.restore_unacked, "_hotelbot_guard", False):
        return False
    original_restore, original_ack, original_reject = qos.restore_unacked, qos.ack, qos.reject

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original_restore(self, client)
        except AttributeError:
            if client is None and _torn_down(self):
                logger.warning(
                    "broker connection already closed: %d unacknowledged message(s) left to Redis's "
                    "visibility timeout and the reply sweeper (kombu restore_unacked guard)",
                    len(self._delivered),
                )
                self._delivered.clear()
                return None
            raise

    def settle_on_closed_channel(self: Any, delivery_tag: Any, action: str, original: Any, *args: Any) -> Any:
        try:
            return original(self, delivery_tag, *args)
        except AttributeError:
            if not _torn_down(self):
                raise
            logger.warning(
                "broker connection already closed: %s of a message delivered before the broker was lost "
                "skipped; it stays in Redis's unacked hash until the visibility timeout (its reply job "
                "is settled in the database) (kombu %s guard)",
                action,
                action,
            )
            self._delivered.pop(delivery_tag, None)
            return None

    def ack(self: Any, delivery_tag: Any) -> Any:
        return settle_on_closed_channel(self, delivery_tag, "ack", original_ack)

    def reject(self: Any, delivery_tag: Any, requeue: bool = False) -> Any:
        return settle_on_closed_channel(self, delivery_tag, "reject", original_reject, requeue)

    patches: list[tuple[str, Any, Any]] = [
        ("restore_unacked", restore_unacked, original_restore),
        ("ack", ack, original_ack),
        ("reject", reject, original_reject),
    ]
    for name, guarded, original in patches:
        guarded._hotelbot_guard = True
        guarded._hotelbot_original = original
        setattr(qos, name, guarded)
    return True
