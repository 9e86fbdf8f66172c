"""The drill's fault scenarios: small functions run one after another while guests keep writing.

A scenario injects its fault, keeps it for its duration (shorter in the CI drill), removes it and
returns; the runner then waits for the backlog to drain before the next one. Add a scenario by
writing a function and listing it in :data:`SCENARIOS`.

Three forms: the full drill (``make drill``), the CI subset with shortened holds (``--ci``, ``make
drill-ci``) and the quick form the test suite runs (``--quick``: shorter holds at a higher guest rate,
and only the scenarios marked ``quick=True`` below: the faults that the suite's other tests do not
already put on a whole stack or pin one by one; docs/drills.md says where those are).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from drill.stack import health_headers

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
    #: In the quick form (the suite's drill, ``--quick``): its fault has no end-to-end test of its own.
    quick: bool = False
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


# --- what a scenario observed (recorded with d.note) -----------------------------------------------
def _fake_hits(d: Drill, which: str, since: float, params: dict[str, str]) -> list[dict[str, Any]]:
    """The fake's journal entries since ``since`` that a fault rule decided, once the fake has seen
    every cut connection go (it notices at its next write, up to a few seconds later)."""
    for _ in range(10):
        entries = d.stack.fake(which, "GET", "requests", params=params)
        hits = [e for e in entries if e["time"] >= since and e.get("rule")]
        if all(e["outcome"] != "pending" for e in hits):
            break
        time.sleep(1)
    return hits


def _hit_figures(hits: list[dict[str, Any]]) -> dict[str, Any]:
    durations = [e["duration_ms"] for e in hits if e.get("duration_ms") is not None]
    return {
        "requests": len(hits),
        "outcomes": dict(Counter(str(e["outcome"]) for e in hits)),
        "max_connection_s": round(max(durations) / 1000, 1) if durations else None,
    }


def _attempts(d: Drill, since: float) -> dict[str, Any]:
    """The application's delivery attempts since ``since``: counts by step:outcome, and the
    distinct errors of those that did not succeed."""
    out = d.stack.shell(
        "import json, re\n"
        "from datetime import UTC, datetime\n"
        "from collections import Counter\n"
        "from messaging.models import DeliveryAttempt\n"
        f"rows = DeliveryAttempt.objects.filter(started_at__gte=datetime.fromtimestamp({since}, UTC))\n"
        "rows = list(rows.values_list('step', 'outcome', 'error'))\n"
        "counts = Counter(f'{step}:{outcome}' for step, outcome, _ in rows)\n"
        "def short(e):\n"
        "    e = re.sub('[0-9A-Fa-f]{12,}', '<id>', e)\n"
        "    return re.sub(r'retry in [0-9.]+s', 'retry in Ns', e)[:70]\n"
        "errors = Counter(f'{s}:{o}: ' + short(e) for s, o, e in rows if e)\n"
        "print(json.dumps({'counts': dict(sorted(counts.items())), 'errors': dict(errors)}))\n"
    )
    return dict(json.loads(out.splitlines()[-1]))


def _green_setting(d: Drill, name: str, value: str) -> None:
    """Change a setting of the fake Green API instance through its real setSettings method."""
    instance = d.stack.env.get("GREEN_API_ID_INSTANCE", "1101000001")
    token = d.stack.env.get("GREEN_API_TOKEN", "test-token")
    url = f"{d.stack.green_url}/waInstance{instance}/setSettings/{token}"
    requests.post(url, json={name: value}, timeout=10).raise_for_status()
    d.mark(f"Green API setting {name}={value}")


def green_trickle_past_lease(d: Drill) -> None:
    """Some sends are processed, then their answer trickles in one byte a second (~36 s, past the
    20 s job lease): only GREEN_API_DEADLINE ends the call, the outcome is unknown, and the next
    attempt learns the message went out instead of resending it: in the first half from the
    outgoingAPIMessageReceived webhook, in the second (that webhook off) from Green API's journal
    (lastOutgoingMessages). The fake's ``trickle`` always processes the send first; the
    unprocessed unknown case is green_api_hang's."""
    started = time.time()
    # {"idMessage": "<20 hex>"} is 37 bytes: about 36 s at one byte a second.
    d.fault("green", {"mode": "trickle", "chunk_delay_ms": 1000, "probability": 0.5, "match": SEND})
    d.hold(d.seconds(10, 6))
    _green_setting(d, "outgoingAPIMessageWebhook", "no")
    try:
        d.hold(d.seconds(10, 6))
        d.clear_faults("green")
        d.settle(60)  # the unknown sends are reconciled before the webhook comes back
    finally:
        _green_setting(d, "outgoingAPIMessageWebhook", "yes")
    d.note("trickled_sends", _hit_figures(_fake_hits(d, "green", started, SEND)))
    d.note("attempts", _attempts(d, started))


def _calm(d: Drill, breaker: str, timeout: float) -> None:
    """Wait until ``breaker`` is closed and the level NORMAL again (an earlier scenario's outage may
    still be probing), so the scenario's fault meets a calm stack; note how long that took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _breaker_state(d, breaker) == "closed" and _degradation(d)["level"] == "NORMAL":
            break
        time.sleep(0.5)
        d.collect()
    d.note("calm_wait_s", round(time.monotonic() - t0, 1))


def deepseek_keepalive_trickle(d: Drill) -> None:
    """DeepSeek holds some calls open with keep-alive newlines for 30 s (longer than
    DEEPSEEK_DEADLINE): the deadline cuts them and the guest gets the canned answer, once."""
    _calm(d, "deepseek", 45)
    started = time.time()
    d.fault("deepseek", {"mode": "keepalive", "keepalive_s": 30, "probability": 0.5, "match": CHAT})
    d.hold(d.seconds(20, 10))
    d.clear_faults("deepseek")
    d.settle(60)
    d.note("keepalive_calls", _hit_figures(_fake_hits(d, "deepseek", started, CHAT)))
    d.note("attempts", _attempts(d, started))


RULE_NAME = "drill: deepseek breaker open"


def _degradation(d: Drill) -> dict[str, Any]:
    resp = requests.get(f"{d.stack.web_url}/health/degradation/", headers=health_headers(), timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def _breaker_state(d: Drill, name: str) -> str:
    resp = requests.get(f"{d.stack.web_url}/health/circuit-breakers/", headers=health_headers(), timeout=5)
    resp.raise_for_status()
    return next((str(b["state"]) for b in resp.json()["breakers"] if b["name"] == name), "?")


def _wait_for(d: Drill, what: Callable[[dict[str, Any]], bool], timeout: float) -> float | None:
    """Seconds until the degradation state satisfies ``what`` (None: not within ``timeout``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if what(_degradation(d)):
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
        d.collect()
    return None


def degradation_rule_on_breaker(d: Drill) -> None:
    """A staff rule: while DeepSeek's breaker is open, at least MODERATE with ai_replies off.
    DeepSeek answers 503 until the breaker opens and a little longer: the level rises within a few
    seconds; the fault ends, the breaker's probes close it, and the level comes back to NORMAL by
    itself (after DEGRADATION_RECOVERY_SECONDS). The rule is deleted at the end."""
    _calm(d, "deepseek", 45)
    d.stack.shell(
        "from reliability.models import DegradationRule\n"
        "DegradationRule.objects.update_or_create(\n"
        f"    name={RULE_NAME!r},\n"
        "    defaults={'condition': 'breaker_open', 'target': 'deepseek', 'level': 2,\n"
        "              'switches_off': ['ai_replies'], 'enabled': True,\n"
        "              'description': 'fault drill: removed at the end of the scenario'},\n"
        ")\n"
    )
    d.mark("degradation rule: deepseek breaker open -> MODERATE, ai_replies off")
    try:
        before = _degradation(d)
        d.note("level_before", before["level"])
        d.fault("deepseek", {"mode": "overloaded", "status": 503, "match": CHAT})
        rose = _wait_for(
            d, lambda s: s["level"] == "MODERATE" and not s["switches"]["ai_replies"], d.seconds(30, 25)
        )
        d.note("level_rose_after_s", rose)
        d.mark(f"level MODERATE, ai_replies off after {rose}s" if rose is not None else "level did not rise")
        d.hold(d.seconds(15, 4))  # the full drill keeps it past a failed probe (ai_replies off again)
        d.clear_faults("deepseek")
        back = _wait_for(d, lambda s: s["level"] == "NORMAL" and s["switches"]["ai_replies"], 90)
        d.note("level_normal_after_fault_cleared_s", back)
        d.note("breaker_state_at_end", _breaker_state(d, "deepseek"))
        d.mark(f"level NORMAL after {back}s" if back is not None else "level did not recover")
        if rose is None:
            raise RuntimeError("the degradation level did not rise while the deepseek breaker was open")
        if back is None:
            raise RuntimeError(f"the degradation level did not recover: {_degradation(d)}")
    finally:
        d.stack.shell(
            "from reliability.models import DegradationRule\n"
            f"DegradationRule.objects.filter(name={RULE_NAME!r}).delete()\n"
        )
        d.mark("degradation rule deleted")


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
            resp = requests.get(
                f"{d.stack.web_url}/health/circuit-breakers/", headers=health_headers(), timeout=5
            )
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
        "green_api_5xx_after_send",
        "Green API 502/504 after the send was processed",
        green_5xx_after_process,
        quick=True,
    ),
    Scenario(
        "green_api_reset_after_send",
        "connection reset after the send was processed",
        green_reset_after_process,
        quick=True,
    ),
    Scenario("green_api_hang", "Green API never answers a few sends", green_hang, quick=True),
    Scenario(
        "green_api_trickle_past_lease",
        "Green API trickles the answer of processed sends past the job lease",
        green_trickle_past_lease,
        quick=True,
    ),
    Scenario(
        "deepseek_keepalive_trickle",
        "DeepSeek keep-alive newlines longer than its deadline",
        deepseek_keepalive_trickle,
        quick=True,
    ),
    Scenario("deepseek_503_storm", "DeepSeek answers 503 to everything", deepseek_503_storm, quick=True),
    Scenario(
        "poison_notifications",
        "quarantined notifications mixed into the stream",
        poison_notifications,
        quick=True,
    ),
    Scenario(
        "degradation_rule_on_breaker",
        "a rule on the deepseek breaker raises the level and it recovers by itself",
        degradation_rule_on_breaker,
        breaker="deepseek",
    ),
    Scenario("worker_sigkill", "a Celery worker SIGKILLed mid-task", worker_killed, quick=True),
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
        quick=True,
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


def selected(
    *, ci: bool, embedded: bool, names: list[str] | None = None, quick: bool = False
) -> list[Scenario]:
    out = []
    for s in SCENARIOS:
        if names and s.name not in names:
            continue
        if ci and not s.in_ci and not names:
            continue
        if quick and not s.quick and not names:
            continue
        if embedded and s.services_only:
            continue
        out.append(s)
    return out


def describe() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "title": s.title, "ci": s.in_ci, "quick": s.quick, "services_only": s.services_only}
        for s in SCENARIOS
    ]
