"""The database store's Python rules decide exactly like the Redis store's Lua scripts.

Each operation runs first as the Lua script in a real Redis, then as ``rules.execute`` at the same
instant (the Lua reply's server time), on the state the previous Python operations left: the
replies (state, epoch, counters, leases, transitions with their times) must be equal at every step.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.breaker import CircuitBreakerConfig
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions, _config_args, _Reply
from reliability.breaker.stores.rules import execute

pytestmark = pytest.mark.redis


@st.composite
def configs(draw: st.DrawFn) -> CircuitBreakerConfig:
    window_type: Literal["count", "time"] = draw(st.sampled_from(["count", "time"]))
    window_size = draw(st.integers(1, 8))
    return CircuitBreakerConfig(
        failure_threshold=draw(st.integers(0, 4)),
        recovery_timeout=draw(st.sampled_from([0.001, 60.0])),
        success_threshold=draw(st.integers(1, 3)),
        window_type=window_type,
        window_size=window_size,
        minimum_requests=draw(st.integers(1, window_size)),
        failure_rate_threshold=draw(st.sampled_from([20.0, 50.0, 100.0])),
        slow_call_rate_threshold=draw(st.sampled_from([50.0, 100.0])),
        half_open_max_calls=draw(st.integers(1, 3)),
        half_open_max_wait=60.0,
        recovery_timeout_multiplier=draw(st.sampled_from([1.0, 2.0])),
    )


codes = st.integers(1, 4)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("record"),
            st.lists(st.tuples(codes, st.integers(1, 12)), max_size=4),
            st.sampled_from(["current", "-1"]),
            st.sampled_from([-1, 5_000]),
        ),
        st.tuples(st.just("acquire")),
        st.tuples(st.just("release"), st.integers(0, 4)),
        st.tuples(
            st.just("command"),
            st.sampled_from(["reset", "force_close", "force_open", "disable", "metrics_only"]),
            st.sampled_from([-1, 0, 60_000]),
        ),
    ),
    min_size=1,
    max_size=25,
)


def comparable(reply: _Reply) -> tuple[Any, ...]:
    """Everything but the incarnation id (each store makes its own)."""
    return (
        reply.kind,
        reply.state,
        reply.epoch,
        reply.open_remaining_ms,
        reply.now_ms,
        reply.consecutive,
        reply.calls,
        reply.failures,
        reply.slow,
        reply.trips,
        reply.leases,
        reply.extra,
        reply.events,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs(), ops=operations)
def test_python_rules_and_lua_scripts_agree_step_by_step(
    redis_url: str, key_prefix: str, config: CircuitBreakerConfig, ops: list[tuple[Any, ...]]
) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    store = RedisBreakerStore(client, RedisStoreOptions(prefix=key_prefix))
    key = store.key(f"rules-{id(ops)}")
    client.delete(key)
    args = _config_args(config, store.options)
    state: dict[str, Any] = {}
    epoch, tokens, serial = 0, [], 0
    try:
        for op in ops:
            if op[0] == "record":
                _, runs, seen, hint = op
                payload = ",".join(f"{code}:{n}" for code, n in runs)
                extra: tuple[str, ...] = ("", str(epoch) if seen == "current" else "-1", payload, str(hint))
            elif op[0] == "acquire":
                serial += 1
                tokens.append(f"t{serial}")
                extra = (tokens[-1],)
            elif op[0] == "release":
                extra = (tokens[-1] if tokens else "none", str(op[1]))
            else:
                extra = (op[1], "why", str(op[2]))
            lua = store.run(op[0], key, (*args, *extra))
            result, new = execute(op[0], state, (*args, *extra), lua.now_ms)
            python = _Reply(*result)
            assert comparable(python) == comparable(lua), (op, state)
            if new is not None:
                state = new
            epoch = lua.epoch
    finally:
        client.delete(key)
        client.close()
