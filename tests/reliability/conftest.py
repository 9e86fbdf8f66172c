"""Fixtures for the circuit-breaker suites: real Redis (shared or throwaway) and a fake clock.

Nothing here touches Django, so these suites run with or without pytest-django.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from drill.stack import ThrowawayRedis
from reliability import testing


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> Iterator[None]:
    """A clean per-process breaker registry (no breakers, default store or global listeners)."""
    testing.reset_circuit_breakers()
    yield
    testing.reset_circuit_breakers()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis; a test that needs it FAILS (never skips) when it is not reachable."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not reachable at {url} ({type(exc).__name__}: {exc}). These tests need a real "
            "Redis: start one or point REDIS_URL at it.",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A Redis key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"test:cb:{uuid.uuid4().hex[:12]}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        redis_client.delete(key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_hash(client: redis.Redis, key: str) -> dict[str, str]:
    """A Redis hash as text."""
    raw = client.hgetall(key)
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.kill()
