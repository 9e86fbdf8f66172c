"""Circuit-breaker benchmark: our breaker (in process and Redis-backed) against pybreaker and tenacity.

Run ``python -m bench.breaker_bench [--redis-url URL] [--quick]`` (``REDIS_URL`` by default). Every
figure is the median of several rounds of many iterations timed with ``time.perf_counter_ns``;
``*_ns`` overheads are the time per protected call minus the time per bare call of the same
function. ``shared_redis_cmds_per_call`` comes from ``INFO commandstats`` deltas (every command
counted, including the ones our Lua scripts run; ``INFO`` itself excluded) over the protected calls,
so other clients using the same Redis at the same time inflate it: prefer a quiet server.

The database store is measured on a scratch SQLite file (WAL, IMMEDIATE: the embedded default)
and on a scratch PostgreSQL database (``DATABASE_URL``'s server, default localhost):
``breaker_db_sqlite_ns`` / ``breaker_db_pg_ns`` are amortised per call (the batched flush every 200
calls and the 0.5 s state refresh included); ``breaker_db_ns`` is the worse of the two, and
``breaker_db_open_reject_ns`` the worse rejection cost of a forced-open breaker.

Targets: breaker_local_ns <= 0.5 x pybreaker_memory_ns; breaker_shared_ns <= 0.1 x
pybreaker_redis_ns; shared_redis_cmds_per_call <= 0.2; breaker_shared_open_reject_ns <= 5000;
breaker_db_ns <= 0.1 x pybreaker_redis_ns; breaker_db_open_reject_ns <= 5000.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pybreaker
import redis
import tenacity

from reliability.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions

Loop = Callable[[int], None]


@dataclass(frozen=True)
class Target:
    metric: str
    limit: float
    baseline: str | None = None  # when set, the limit is a factor of this metric

    def bound(self, results: dict[str, float]) -> float:
        return self.limit * results[self.baseline] if self.baseline else self.limit

    def describe(self) -> str:
        return f"<= {self.limit} x {self.baseline}" if self.baseline else f"<= {self.limit:g}"


TARGETS = (
    Target("breaker_local_ns", 0.5, "pybreaker_memory_ns"),
    Target("breaker_shared_ns", 0.1, "pybreaker_redis_ns"),
    Target("shared_redis_cmds_per_call", 0.2),
    Target("breaker_shared_open_reject_ns", 5000.0),
    Target("breaker_db_ns", 0.1, "pybreaker_redis_ns"),
    Target("breaker_db_open_reject_ns", 5000.0),
)


def work() -> int:
    """The protected function: as cheap as possible, so the wrapper's own cost shows."""
    return 1


def calls(fn: Callable[[], object]) -> Loop:
    def loop(n: int) -> None:
        for _ in range(n):
            fn()

    return loop


def rejected_calls(fn: Callable[[], object]) -> Loop:
    def loop(n: int) -> None:
        for _ in range(n):
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to every iteration
                fn()
            except (CircuitOpenError, pybreaker.CircuitBreakerError):
                pass

    return loop


def per_call_ns(loop: Loop, iterations: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean ns per iteration (after one warm-up round)."""
    loop(max(1, iterations // 10))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        loop(iterations)
        samples.append((time.perf_counter_ns() - start) / iterations)
    return statistics.median(samples)


def command_calls(client: redis.Redis) -> int:
    """Total commands the server executed so far (``INFO`` excluded)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


@contextlib.contextmanager
def cleanup(client: redis.Redis, prefix: str) -> Iterator[None]:
    try:
        yield
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)


def run(redis_url: str | None = None, *, scale: float = 1.0, rounds: int = 7) -> dict[str, float]:
    """Measure everything in one run and return the figures (ns, or commands per call)."""
    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    n = lambda base: max(10, int(base * scale))  # noqa: E731 - tiny local helper
    client = redis.Redis.from_url(url, socket_timeout=5)
    client.ping()
    prefix = f"bench:cb:{uuid.uuid4().hex[:12]}"
    out: dict[str, float] = {}
    with cleanup(client, prefix):
        bare = per_call_ns(calls(work), n(300_000), rounds)
        out["bare_call_ns"] = bare

        # in process
        local = CircuitBreaker("bench_local", CircuitBreakerConfig())
        out["breaker_local_ns"] = (
            per_call_ns(calls(functools.partial(local.call, work)), n(200_000), rounds) - bare
        )
        memory = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        out["pybreaker_memory_ns"] = (
            per_call_ns(calls(functools.partial(memory.call, work)), n(100_000), rounds) - bare
        )
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(3), reraise=True)
        out["tenacity_ns"] = per_call_ns(calls(functools.partial(retrying, work)), n(30_000), rounds) - bare

        # Redis
        out["redis_ping_rtt_ns"] = per_call_ns(calls(client.ping), n(3_000), rounds)
        store = RedisBreakerStore.from_url(url, RedisStoreOptions(prefix=prefix))
        shared = CircuitBreaker("bench_shared", CircuitBreakerConfig(), store)
        shared.call(work)
        shared_call = functools.partial(shared.call, work)
        out["breaker_shared_ns"] = per_call_ns(calls(shared_call), n(100_000), rounds) - bare

        protected = n(50_000)
        shared.flush()
        before = command_calls(client)
        calls(shared_call)(protected)
        shared.flush()
        out["shared_redis_cmds_per_call"] = (command_calls(client) - before) / protected

        shared.force_open("benchmark")
        out["breaker_shared_open_reject_ns"] = per_call_ns(rejected_calls(shared_call), n(100_000), rounds)

        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=f"{prefix}:pybreaker"
        )
        remote = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, state_storage=storage)
        out["pybreaker_redis_ns"] = (
            per_call_ns(calls(functools.partial(remote.call, work)), n(1_000), max(3, rounds // 2)) - bare
        )
    client.close()
    out.update(database_figures(bare, n, rounds))
    return out


def database_figures(bare: float, n: Callable[[int], int], rounds: int) -> dict[str, float]:
    """The database store on a scratch SQLite file and a scratch PostgreSQL database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # development values; DEBUG is off by default
    import django

    django.setup()
    from bench.scratch_db import scratch_alias
    from reliability.breaker.stores.database import DatabaseBreakerStore

    out: dict[str, float] = {}
    rejects = []
    for kind, label in (("sqlite", "sqlite"), ("postgresql", "pg")):
        with scratch_alias(kind) as alias:  # type: ignore[arg-type]
            breaker = CircuitBreaker("bench_db", CircuitBreakerConfig(), DatabaseBreakerStore(alias))
            breaker.call(work)
            call = functools.partial(breaker.call, work)
            out[f"breaker_db_{label}_ns"] = per_call_ns(calls(call), n(100_000), rounds) - bare
            breaker.force_open("benchmark")
            reject = per_call_ns(rejected_calls(call), n(100_000), rounds)
            out[f"breaker_db_{label}_open_reject_ns"] = reject
            rejects.append(reject)
    out["breaker_db_ns"] = max(out["breaker_db_sqlite_ns"], out["breaker_db_pg_ns"])
    out["breaker_db_open_reject_ns"] = max(rejects)
    return out


def check(results: dict[str, float]) -> list[tuple[Target, float, float, bool]]:
    """(target, value, bound, passed) for every target."""
    rows = []
    for target in TARGETS:
        value, bound = results[target.metric], target.bound(results)
        rows.append((target, value, bound, value <= bound))
    return rows


def report(results: dict[str, float]) -> str:
    lines = [f"{'metric':32} {'value':>14}", "-" * 47]
    for key, value in results.items():
        shown = f"{value:.4f}" if key.endswith("per_call") else f"{value:,.0f} ns"
        lines.append(f"{key:32} {shown:>14}")
    lines += ["", f"{'target':32} {'value':>12} {'bound':>12} {'ratio':>8}  rule", "-" * 90]
    for target, value, bound, passed in check(results):
        ratio = (
            f"{value / results[target.baseline]:.3f}" if target.baseline else f"{value / target.limit:.3f}"
        )
        lines.append(
            f"{target.metric:32} {value:12,.3f} {bound:12,.3f} {ratio:>8}  {target.describe():38} "
            f"{'PASS' if passed else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None, help="Redis to use (default: $REDIS_URL or localhost)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations (smoke run)")
    args = parser.parse_args(argv)
    results = run(args.redis_url, scale=0.1 if args.quick else 1.0, rounds=3 if args.quick else 7)
    print(report(results))
    return 0 if all(passed for *_, passed in check(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
