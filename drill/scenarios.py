"""The drill's fault scenarios: small functions run one after another while guests keep writing.

A scenario injects its fault, keeps it for its duration (shorter in the CI drill), removes it and
returns; the runner then waits for the backlog to drain before the next one. Add a scenario by
writing a function and listing it in :data:`SCENARIOS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drill.runner import Drill

SEND = {"method_name": "sendMessage"}
CHAT = {"path_regex": "chat/completions"}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Drill], None]
    #: Breaker whose open/close delays this scenario measures (its fault is a hard outage).
    breaker: str = ""
    in_ci: bool = True
    services_only: bool = False
    tags: tuple[str, ...] = field(default=())


def baseline(d: Drill) -> None:
    d.hold(d.seconds(20, 8))


def green_outage(d: Drill) -> None:
    """Every sendMessage answers 503 for longer than all job attempts of a reply."""
    d.fault("green", {"mode": "overloaded", "status": 503, "match": SEND})
    d.hold(d.seconds(45, 25))
    d.clear_faults("green")


def green_429_storm(d: Drill) -> None:
    d.fault("green", {"mode": "rate_limit", "retry_after": 2, "probability": 0.7, "match": SEND})
    d.hold(d.seconds(20, 12))
    d.clear_faults("green")


def green_5xx_after_process(d: Drill) -> None:
    """Green API sends the message, then a gateway answers 502 or 504: the reply went out."""
    d.fault(
        "green", {"mode": "error", "status": 502, "after_process": True, "probability": 0.3, "match": SEND}
    )
    d.fault(
        "green", {"mode": "error", "status": 504, "after_process": True, "probability": 0.3, "match": SEND}
    )
    d.hold(d.seconds(20, 12))
    d.clear_faults("green")


def green_reset_after_process(d: Drill) -> None:
    d.fault("green", {"mode": "reset", "after_process": True, "probability": 0.4, "match": SEND})
    d.hold(d.seconds(20, 12))
    d.clear_faults("green")


def green_hang(d: Drill) -> None:
    """A few sends never get an answer: only the overall deadline ends them."""
    d.fault("green", {"mode": "hang", "count": 3, "match": SEND})
    d.hold(d.seconds(20, 12))
    d.clear_faults("green")


def deepseek_503_storm(d: Drill) -> None:
    """The AI is overloaded: guests get the canned FAQ answer, nobody waits for the AI."""
    d.fault("deepseek", {"mode": "overloaded", "match": CHAT})
    d.hold(d.seconds(20, 12))
    d.clear_faults("deepseek")


def poison_notifications(d: Drill) -> None:
    """Notifications the webhook must quarantine, mixed into the ordered stream."""
    for _ in range(d.seconds(6, 3)):
        d.traffic.inject_poison()
        d.hold(2)


def worker_killed(d: Drill) -> None:
    """A Celery worker (its whole prefork group) is SIGKILLed mid-task, then started again.

    The AI answers slowly meanwhile and a burst arrives, so tasks are in flight when it dies."""
    for _ in range(d.seconds(3, 1)):
        d.fault("deepseek", {"mode": "latency", "latency_ms": 1500, "match": CHAT})
        for _ in range(4):
            d.traffic.inject_one()
        d.hold(2.5)
        d.mark("SIGKILL worker-1")
        d.stack.kill("worker-1")
        d.clear_faults("deepseek")
        d.hold(3)
        d.stack.start_worker("worker-1")
        d.hold(5)


def beat_restarted(d: Drill) -> None:
    d.mark("SIGKILL beat")
    d.stack.kill("beat")
    d.hold(d.seconds(10, 5))
    d.stack.start_beat()
    d.hold(3)


def web_killed(d: Drill) -> None:
    """gunicorn (master and workers) SIGKILLed for 10 s: Green API redelivers what failed."""
    d.mark("SIGKILL gunicorn")
    d.stack.kill("web")
    d.hold(10)
    d.stack.start_web()


def staff_force_open(d: Drill) -> None:
    """Staff force Green API's breaker open for one minute; it ends by itself and replies drain."""
    d.manage("breakers", "force-open", "green_api", "--minutes", "1", "--reason", "drill: timed force-open")
    d.hold(65)


def degrade_override(d: Drill) -> None:
    """Staff set a degradation level with AI replies off for one minute; it expires by itself."""
    d.manage(
        "degrade",
        "set",
        "MODERATE",
        "--reason",
        "drill: override with expiry",
        "--minutes",
        "1",
        "--off",
        "ai_replies",
    )
    d.hold(65)


def _answered_between(d: Drill, start: float, end: float) -> tuple[int, int]:
    """(guest messages injected from ``start`` to ``end``, how many of them have an accepted reply)."""
    from drill.traffic import tally

    injected = [m for m in d.traffic.injected if start <= m.at < end]
    sent = d.stack.fake("green", "GET", "sent")
    return len(injected), len(injected) - len(tally(injected, sent).lost(injected))


#: While Redis is down, a guest message written this long before the check must have its reply (the
#: e2e Redis outage test's bound is 25 s; normally it takes a few seconds: the broker probe notices
#: the outage, the database poll takes the job, the AI answers).
OUTAGE_REPLY_BOUND = 15.0


def redis_down(full: float, ci: float) -> Callable[[Drill], None]:
    """The drill's redis-server (cache, breaker store and Celery broker at once) is SIGKILLed while
    replies are in flight, stays down, and starts again empty on the same port (no persistence).
    Meanwhile the workers take due replies from the database and the breakers keep their state
    there; guests must keep getting answers during the outage, not only after it."""

    def scenario(d: Drill) -> None:
        seconds = d.seconds(full, ci)
        server = d.redis
        d.hold(3)
        # Tasks in flight at the kill (they finish, and are acked, on a channel that is gone): the
        # AI answers slowly for a moment and a burst arrives. Not marked as "fault" (the breaker
        # figures measure from the kill).
        d.stack.fake(
            "deepseek", "POST", "faults", json={"mode": "latency", "latency_ms": 1500, "match": CHAT}
        )
        for _ in range(4):
            d.traffic.inject_one()
        d.mark("DeepSeek answers in 1.5 s and 4 guests write at once: replies in flight at the kill")
        d.hold(1.5)
        d.mark("fault: SIGKILL redis-server")
        killed = time.time()
        server.kill()
        try:
            d.stack.fake("deepseek", "DELETE", "faults")
            d.hold(seconds)
            now = time.time()
            written, answered = _answered_between(d, killed, now)
            old, old_answered = _answered_between(d, killed, now - OUTAGE_REPLY_BOUND)
        finally:
            server.start()
        d.mark(f"fault cleared: redis-server started again, empty, on port {server.port}")
        d.mark(f"while Redis was down: {answered} of {written} guest messages answered")
        # Replies keep flowing during the outage, not only after it: every message older than the
        # bound is answered, and at least half of all (the last ones are still on their way).
        if old_answered < old or (written >= 3 and answered < written // 2):
            raise RuntimeError(
                f"replies stalled while Redis was down: {answered} of {written} answered, "
                f"{old_answered} of the {old} written more than {OUTAGE_REPLY_BOUND:.0f} s before"
            )
        _wait_breaker_closed(d, "redis", timeout=90)

    return scenario


def _wait_breaker_closed(d: Drill, name: str, timeout: float) -> None:
    """Hold until the breaker's shared state (``/health/circuit-breakers/``) is closed again, so the
    report measures its close delay; an error if it stays open (the outage is over)."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d.hold(2)
        try:
            resp = requests.get(f"{d.stack.web_url}/health/circuit-breakers/", timeout=5)
            states = {b["name"]: b["state"] for b in resp.json()["breakers"]}
        except (requests.RequestException, ValueError, KeyError):
            continue
        if states.get(name) == "closed":
            d.mark(f"{name} breaker closed again")
            return
    raise RuntimeError(f"the {name} breaker was still not closed {timeout:.0f} s after the outage ended")


def postgres_restart(d: Drill) -> None:
    """The drill's PostgreSQL is stopped (fast shutdown: sessions cut) and started again a few seconds
    later. The webhook answers 503 meanwhile (Green API redelivers), workers' tasks fail and are
    retried or swept; afterwards everything is answered once."""
    server = d.postgres
    d.hold(3)
    d.mark("fault: PostgreSQL stopped (pg_ctl stop -m fast)")
    stopped = time.time()
    try:
        server.stop()
        # Longer than the web's pool timeout (DB_POOL_TIMEOUT, 5 s): requests meet the outage and the
        # database breaker opens, rather than a waiting request simply getting its connection late.
        d.hold(d.seconds(10, 8))
    finally:
        server.start()
    d.database_outage(stopped, time.time())
    d.mark("fault cleared: PostgreSQL started again")
    # The web's database breakers keep answering 503 until their open time is over and a probe succeeds.
    d.hold(float(d.stack.env.get("DB_BREAKER_RECOVERY_TIMEOUT", "5")) + 5)


SCENARIOS: list[Scenario] = [
    Scenario("baseline", "steady traffic, no fault", baseline),
    Scenario(
        "green_api_outage_503",
        "Green API 503 longer than all job attempts",
        green_outage,
        breaker="green_api",
    ),
    Scenario("green_api_429_storm", "Green API 429 storm with Retry-After", green_429_storm),
    Scenario(
        "green_api_5xx_after_send", "Green API 502/504 after the send was processed", green_5xx_after_process
    ),
    Scenario(
        "green_api_reset_after_send",
        "connection reset after the send was processed",
        green_reset_after_process,
    ),
    Scenario("green_api_hang", "Green API never answers a few sends", green_hang),
    Scenario("deepseek_503_storm", "DeepSeek answers 503 to everything", deepseek_503_storm),
    Scenario("poison_notifications", "quarantined notifications mixed into the stream", poison_notifications),
    Scenario("worker_sigkill", "a Celery worker SIGKILLed mid-task", worker_killed),
    Scenario("beat_restart", "beat SIGKILLed and restarted", beat_restarted),
    Scenario("gunicorn_down_10s", "gunicorn SIGKILLed for 10 s", web_killed),
    Scenario(
        "redis_sigkill_20s",
        "redis-server (cache, breakers, broker) SIGKILLed for 20 s (CI: 10 s)",
        redis_down(20, 10),
        breaker="redis",
        services_only=True,
    ),
    Scenario(
        "redis_sigkill_5min",
        "redis-server (cache, breakers, broker) SIGKILLed for 5 minutes",
        redis_down(300, 300),
        breaker="redis",
        in_ci=False,
        services_only=True,
    ),
    Scenario(
        "postgres_restart",
        "PostgreSQL stopped for 10 s (CI: 8 s) and started again",
        postgres_restart,
        breaker="database",
        services_only=True,
    ),
    Scenario(
        "staff_force_open_1min",
        "timed staff force-open of green_api (ends by itself)",
        staff_force_open,
        in_ci=False,
    ),
    Scenario(
        "degrade_override_1min",
        "degradation override with expiry, AI replies off",
        degrade_override,
        in_ci=False,
    ),
]


def selected(*, ci: bool, embedded: bool, names: list[str] | None = None) -> list[Scenario]:
    out = []
    for s in SCENARIOS:
        if names and s.name not in names:
            continue
        if ci and not s.in_ci and not names:
            continue
        if embedded and s.services_only:
            continue
        out.append(s)
    return out


def describe() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "title": s.title, "ci": s.in_ci, "services_only": s.services_only} for s in SCENARIOS
    ]
