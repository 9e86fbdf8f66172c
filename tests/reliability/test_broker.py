"""Broker health (flag, breaker, probe), the workers' beat fallback, and the kombu guard that keeps
a worker alive when Redis dies under it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import redis as kombu_redis

from reliability import broker, broker_fallback, testing


@pytest.fixture(autouse=True)
def _fresh_broker_health():
    testing.reset_broker_health()
    yield
    testing.reset_broker_health()


def test_kombu_guard_is_installed_by_the_app():
    for name in ("restore_unacked", "ack", "reject"):
        assert getattr(getattr(kombu_redis.QoS, name), "_hotelbot_guard", False) is True, name
    assert broker.install_kombu_redis_guard() is False  # idempotent


@contextlib.contextmanager
def _unacked_message(server: Any, queue_name: str) -> Iterator[tuple[Any, Any]]:
    """(channel, message): one message delivered and not acknowledged, on a queue of ``server``."""
    with Connection(server.url.replace("/0", "/3")) as conn:
        queue = conn.SimpleQueue(queue_name)
        queue.put({"queue": queue_name})
        channel: Any = queue.channel
        message = channel.basic_get(queue_name, no_ack=False)
        assert message is not None
        yield channel, message


def test_restoring_unacked_messages_over_a_torn_down_connection_no_longer_kills_the_worker(
    throwaway_redis, caplog
):
    # Given a consumer holding one unacknowledged message (acks_late, prefetch 1)
    with _unacked_message(throwaway_redis, "hotelbot-guard-test") as (channel, message):
        qos = channel.qos
        # When Redis dies, kombu tears the connection down before the channel is closed: the pool is
        # dropped and the transport no longer knows its connection (what the worker hit in the drill).
        throwaway_redis.kill()
        channel._pool = None
        channel.connection.client = None
        original = getattr(kombu_redis.QoS.restore_unacked, "_hotelbot_original")  # noqa: B009
        with pytest.raises(AttributeError, match="hostname"):
            original(qos)  # unguarded kombu: the "Unrecoverable error" that stopped the worker
        # Then the guarded restore logs and returns instead of raising
        qos._delivered[message.delivery_tag] = message
        with caplog.at_level(logging.WARNING, logger="reliability.broker"):
            assert qos.restore_unacked() is None
        assert "kombu restore_unacked guard" in caplog.text
        assert not qos._delivered


@pytest.mark.parametrize("settle", ["ack", "reject"])
def test_settling_a_message_of_a_channel_closed_by_a_redis_kill_no_longer_kills_the_worker(
    throwaway_redis, caplog, settle
):
    # Given a task's message delivered before Redis died (acks_late: acked when the task ends)
    with _unacked_message(throwaway_redis, "hotelbot-guard-ack-test") as (channel, message):
        qos = channel.qos
        # When Redis dies the consumer closes that channel (connection None) and reconnects on a new
        # one; the task finishes afterwards and its message is settled on the closed channel (what
        # stopped a worker in the fault drill's redis_sigkill_20s).
        throwaway_redis.kill()
        channel._pool = None
        channel.closed, channel.connection = True, None  # what Channel.close leaves behind
        original = getattr(kombu_redis.QoS, settle)._hotelbot_original
        with pytest.raises(AttributeError, match="client"):
            original(qos, message.delivery_tag)  # unguarded kombu: "Unrecoverable error"
        # Then the guarded ack / reject logs and returns instead of raising
        with caplog.at_level(logging.WARNING, logger="reliability.broker"):
            if settle == "ack":
                message.ack()
            else:
                message.reject()
        assert f"kombu {settle} guard" in caplog.text
        assert message.delivery_tag not in qos._delivered


def test_the_settle_guard_lets_other_errors_through(throwaway_redis):
    with Connection(throwaway_redis.url.replace("/0", "/3")) as conn:
        queue = conn.SimpleQueue("hotelbot-guard-ack-test-2")
        queue.put({"job": 3})
        channel: Any = queue.channel
        message = channel.basic_get("hotelbot-guard-ack-test-2", no_ack=False)
        assert message is not None
        throwaway_redis.kill()  # the channel is still open: the error is a real one
        with pytest.raises(Exception, match="onnect"):
            channel.qos.ack(message.delivery_tag)


@pytest.fixture
def broker_url(monkeypatch):
    """Point the Celery app at another broker (CELERY_BROKER_URL in the environment wins in Celery)."""
    from celery import current_app

    previous = current_app.conf.broker_url

    def use(url: str) -> None:
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        current_app.conf.broker_url = url  # type: ignore[misc]

    yield use
    current_app.conf.broker_url = previous  # type: ignore[misc]


@pytest.mark.django_db
def test_probe_marks_the_broker_down_then_up(broker_url, throwaway_redis):
    broker_url(throwaway_redis.url.replace("/0", "/4"))
    assert broker.probe(timeout=0.5) is True
    assert not broker.is_down()
    throwaway_redis.kill()
    assert broker.probe(timeout=0.5) is False
    assert broker.is_down()
    assert broker.down_for() >= 0
    throwaway_redis.start()
    assert broker.probe(timeout=0.5) is True
    assert not broker.is_down()


@pytest.mark.django_db
def test_probes_while_the_broker_is_up_reuse_one_connection(broker_url, throwaway_redis):
    # Given a Redis broker this process has probed once
    import redis as redis_py

    broker_url(throwaway_redis.url.replace("/0", "/4"))
    assert broker.probe(timeout=0.5) is True
    server = redis_py.Redis.from_url(throwaway_redis.url)
    connections = server.info("stats")["total_connections_received"]
    # When the poller probes it again and again (every BROKER_PROBE_INTERVAL while it is up)
    for _ in range(5):
        assert broker.probe(timeout=0.5) is True
    # Then each probe is one PING on the kept connection: no new connection (idle cost, docs/cost.md)
    assert server.info("stats")["total_connections_received"] == connections
    # And a failed PING drops it, so the probe after a restart connects afresh
    throwaway_redis.kill()
    assert broker.probe(timeout=0.5) is False
    assert broker._probe_held is None
    throwaway_redis.start()
    assert broker.probe(timeout=0.5) is True
    assert broker.probe(timeout=0.5) is True


def test_a_workers_consuming_connection_waits_longer_on_each_redis_brpop(broker_url, settings):
    # Given a Redis broker and WORKER_BROKER_POLLING_INTERVAL
    from celery import current_app

    broker_url("redis://127.0.0.1:6379/9")
    settings.WORKER_BROKER_POLLING_INTERVAL = 2.5
    consumer = broker.WorkerConsumer.__new__(broker.WorkerConsumer)  # no worker around it
    consumer.app = current_app
    consumer.ensure_connected = lambda conn: conn  # type: ignore[method-assign]  # no connect: read the options
    # When the worker's consumer opens its connection
    connection = consumer.connection_for_read()
    try:
        # Then its BRPOP waits that long (kombu's polling_interval), and nothing else changed
        assert connection.transport.brpop_timeout == 2.5
        assert connection.transport_options == {
            **current_app.conf.broker_transport_options,
            "polling_interval": 2.5,
        }
        # While every other connection of the process (publishes, a health check's ping) keeps the
        # broker's own options (kombu's 1 s in a deployment)
        other: Any = current_app.connection_for_read()
        own = current_app.conf.broker_transport_options.get("polling_interval", 1)
        assert other.transport.brpop_timeout == own
        other.release()
    finally:
        connection.release()
    # And the option is Redis's only (AMQP has no BRPOP), and 0 turns it off
    broker_url("amqp://guest:guest@127.0.0.1:5672//")
    assert broker.worker_consume_transport_options() == {}
    broker_url("redis://127.0.0.1:6379/9")
    settings.WORKER_BROKER_POLLING_INTERVAL = 0
    assert broker.worker_consume_transport_options() == {}


def test_the_worker_runs_the_consumer_with_the_longer_wait():
    from celery import current_app

    assert current_app.conf.worker_consumer == "reliability.broker:WorkerConsumer"


def test_redis_brokers_are_guarded_by_the_redis_breaker(broker_url):
    broker_url("redis://127.0.0.1:6379/9")
    assert broker.breaker_name() == "redis"
    broker_url("amqp://guest:guest@127.0.0.1:5672//")
    assert broker.breaker_name() is None


@pytest.mark.django_db
def test_beat_interval_entries_run_once_per_interval_across_pollers(settings, monkeypatch):
    from celery import current_app

    import messaging.tasks  # noqa: F401  (registers the tasks, as a worker's start does)

    ran: list[str] = []
    task = current_app.tasks["messaging.tasks.sweep_reply_jobs"]
    monkeypatch.setattr(task, "run", lambda: ran.append("sweep"))
    settings.CELERY_BEAT_SCHEDULE = {
        "test.sweep": {"task": "messaging.tasks.sweep_reply_jobs", "schedule": 3600.0},
        "test.nightly": {"task": "messaging.tasks.sweep_reply_jobs", "schedule": object()},  # crontab-like
    }
    settings.RATE_LIMIT_REDIS_URL = ""

    testing.reset_rate_limits()
    try:
        assert broker_fallback.run_due_periodic() == ["test.sweep"]
        assert broker_fallback.run_due_periodic() == []  # another poller, same interval: not again
        assert ran == ["sweep"]
    finally:
        testing.reset_rate_limits()


def test_every_poller_turn_touches_the_worker_heartbeat(settings, tmp_path, monkeypatch):
    # The k8s worker liveness probe reads this file's age instead of `celery inspect ping`, which
    # needs the broker and would restart workers that keep answering from the database.
    import os
    import time

    from reliability import broker_fallback

    beat = tmp_path / "worker-heartbeat"
    settings.WORKER_HEARTBEAT_FILE = str(beat)
    broker_fallback.touch_heartbeat()
    first = beat.stat().st_mtime
    os.utime(beat, (first - 600, first - 600))  # pretend it went stale
    monkeypatch.setattr(broker_fallback, "step", lambda: 0.0)
    monkeypatch.setattr(broker_fallback, "close_old_connections", lambda: None)
    monkeypatch.setattr(broker_fallback._stop, "wait", lambda pause: broker_fallback._stop.set())
    broker_fallback._stop.clear()
    broker_fallback._loop()  # one turn, broker up or down alike
    assert time.time() - beat.stat().st_mtime < 60
    settings.WORKER_HEARTBEAT_FILE = ""
    broker_fallback.touch_heartbeat()  # off: nothing happens, nothing raised
    broker_fallback._stop.clear()


def test_every_poller_turn_writes_its_probes_breaker_metrics(monkeypatch):
    # The probe's `redis` breaker call is written by the turn itself (as Celery does after a task),
    # so the process's metrics flusher finds nothing and sleeps (docs/cost.md, idle CPU).
    from reliability.breaker import CircuitBreaker, CircuitBreakerConfig
    from reliability.breaker.circuit import flush_call_metrics

    breaker = CircuitBreaker("t_poller_turn_metrics", CircuitBreakerConfig())
    flush_call_metrics()

    def step() -> float:
        breaker.call(lambda: None)  # stands for the probe's guarded PING
        return 0.0

    monkeypatch.setattr(broker_fallback, "step", step)
    monkeypatch.setattr(broker_fallback, "close_old_connections", lambda: None)
    monkeypatch.setattr(broker_fallback._stop, "wait", lambda pause: broker_fallback._stop.set())
    broker_fallback._stop.clear()
    broker_fallback._loop()  # one turn
    broker_fallback._stop.clear()
    assert flush_call_metrics() == 0  # already written by the turn
