"""Boot the real stack, run the scenarios under guest traffic, collect what happened."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from drill.scenarios import Scenario
from drill.stack import ROOT, Stack, ThrowawayPostgres, ThrowawayRedis, base_env, make_stack
from drill.staff import SimulatedStaff
from drill.traffic import Traffic

#: Timing knobs of the drill (env of every process): short retries, leases and redrive delays so a
#: scenario's backlog drains within a minute. Breaker open durations are set in the database.
DRILL_ENV = {
    "REPLY_MAX_ATTEMPTS": "3",
    "REPLY_RETRY_BASE_DELAY": "1",
    "REPLY_RETRY_MAX_DELAY": "5",
    "REPLY_JOB_LEASE": "20",
    "REPLY_STALE_AFTER": "5",
    "REPLY_SWEEP_INTERVAL": "2",
    "REPLY_DRAIN_INTERVAL": "1",
    "GREEN_API_READ_TIMEOUT": "3",
    "GREEN_API_DEADLINE": "5",
    "DEEPSEEK_READ_TIMEOUT": "3",
    "DEEPSEEK_DEADLINE": "5",
    "DLQ_REDRIVE_BASE_DELAY": "3",
    "DLQ_REDRIVE_MAX_DELAY": "10",
    "DLQ_REDRIVE_INTERVAL": "2",
    "DLQ_MAX_REDRIVES": "20",
    "RETRY_AFTER_CAP": "10",
    # The fake's outgoing journal never lags: decide an unknown send (hang, timeout) after 15 s.
    "REPLY_RECONCILE_GRACE": "15",
    "BREAKER_CONFIG_REFRESH": "1",
    "DEGRADATION_REFRESH_SECONDS": "1",
    "DEGRADATION_RECOVERY_SECONDS": "5",
    # The web's database breaker answers 503 at once for this long after a request met the outage
    # (postgres_restart holds at least this long after the restart).
    "DB_BREAKER_RECOVERY_TIMEOUT": "5",
    "DEGRADATION_EVALUATE_INTERVAL": "2",
    "LOG_LEVEL": "INFO",
}
#: Seconds each breaker stays open before probing, during the drill.
BREAKER_RECOVERY = {"green_api": 5.0, "deepseek": 5.0}


@dataclass
class ScenarioRun:
    name: str
    title: str
    started: float
    fault_ended: float = 0.0
    settled: float = 0.0
    drained: bool = False
    marks: list[tuple[float, str]] = field(default_factory=list)
    #: What the scenario observed (``Drill.note``), kept in drill-results.json and the report.
    notes: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    #: (stopped, back) of each database server outage the scenario caused: the webhook's 503s are
    #: expected then, and until the database breakers it opened close (``report.database_outages``),
    #: and counted apart from 5xx anywhere else.
    db_outages: list[tuple[float, float]] = field(default_factory=list)
    #: (time, process, exit status) of each process that exited on its own and was restarted.
    exits: list[tuple[float, str, int]] = field(default_factory=list)


#: The quick form's holds against the CI subset's (``Drill.seconds``), and its guest rate (messages/s).
QUICK_SCALE = 0.6
QUICK_RATE = 1.6


class Drill:
    """What a scenario function may use: the stack, the traffic and a few helpers."""

    def __init__(
        self, stack: Stack, traffic: Traffic, *, ci: bool, embedded: bool, quick: bool = False
    ) -> None:
        self.stack = stack
        self.traffic = traffic
        self.ci = ci or quick
        self.quick = quick
        self.embedded = embedded
        self.current: ScenarioRun | None = None
        self.deliveries: dict[tuple[Any, Any], dict[str, Any]] = {}
        self.staff: SimulatedStaff | None = None  # answers the guests who ask for a person
        self.send_requests: dict[int, dict[str, Any]] = {}

    # --- helpers for scenarios -----------------------------------------------------------------
    def seconds(self, full: float, ci: float) -> Any:
        """A scenario's hold (or count): ``full``, ``ci`` in the CI subset, and in the quick form
        ``QUICK_SCALE`` of the CI value (at a higher guest rate: about as many messages meet the fault)."""
        if self.quick:
            scaled = ci * QUICK_SCALE
            return max(1, round(scaled)) if isinstance(ci, int) else scaled
        return ci if self.ci else full

    def hold(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 2.0))
            self.collect()
            self.supervise()

    def supervise(self) -> None:
        """Start again a process that exited on its own, as deployments do (systemd Restart=always,
        Kubernetes, make run's Procfile loop), so the drill goes on; each such exit is recorded, and
        the report fails the drill for it: a worker must survive a fault, not be saved by a restart.
        Processes a scenario stopped on purpose (``Stack.kill``/``stop``) are not in ``procs``."""
        restart = {"beat": self.stack.start_beat, "web": self.stack.start_web}
        for name, proc in list(self.stack.procs.items()):
            if proc.poll() is None:
                continue
            del self.stack.procs[name]
            if self.current is not None:
                self.current.exits.append((time.time(), name, proc.returncode))
            self.mark(f"{name} exited on its own (status {proc.returncode}); started again")
            if name.startswith("worker"):
                self.stack.start_worker(name)
            elif name in restart:
                restart[name]()
            else:
                raise RuntimeError(f"{name} exited (status {proc.returncode}); the drill cannot go on")

    def mark(self, label: str) -> None:
        if self.current is not None:
            self.current.marks.append((time.time(), label))
        print(f"    {time.strftime('%H:%M:%S')} {label}", flush=True)

    def note(self, key: str, value: Any) -> None:
        """Record an observed fact of the running scenario (JSON-able), shown in the report."""
        if self.current is not None:
            self.current.notes[key] = value
        print(f"    {time.strftime('%H:%M:%S')} {key} = {value}", flush=True)

    def fault(self, which: str, rule: dict[str, Any]) -> None:
        self.stack.fake(which, "POST", "faults", json=rule)
        self.mark(f"{which} fault {rule.get('mode')} {rule.get('status', '')}".strip())

    def clear_faults(self, which: str) -> None:
        self.stack.fake(which, "DELETE", "faults")
        self.mark(f"{which} faults cleared")

    @property
    def postgres(self) -> ThrowawayPostgres:
        """The stack's own PostgreSQL server (services mode only)."""
        if self.stack.postgres is None:
            raise RuntimeError("this scenario needs the drill's own PostgreSQL (services mode)")
        return self.stack.postgres

    @property
    def redis(self) -> ThrowawayRedis:
        """The stack's own redis-server: cache, breaker store and Celery broker (services mode only)."""
        if self.stack.redis is None:
            raise RuntimeError("this scenario needs the drill's own redis-server (services mode)")
        return self.stack.redis

    def database_outage(self, stopped: float, back: float) -> None:
        if self.current is not None:
            self.current.db_outages.append((stopped, back))

    def manage(self, *args: str) -> None:
        result = self.stack.manage(*args)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}: {result.stdout}{result.stderr}")
        self.mark("manage.py " + " ".join(a for a in args if not a.startswith("drill:")))

    # --- observation ---------------------------------------------------------------------------
    def collect(self) -> None:
        """Keep the fake's bounded logs (webhook deliveries, sendMessage requests) before they roll."""
        with contextlib.suppress(Exception):
            for d in self.stack.fake("green", "GET", "notifications")["deliveries"]:
                self.deliveries[(d.get("receiptId"), d.get("attempt"))] = d
        with contextlib.suppress(Exception):
            for e in self.stack.fake("green", "GET", "requests", params={"method_name": "sendMessage"}):
                self.send_requests[e["id"]] = {
                    "time": e["time"],
                    "status": e["status"],
                    "outcome": e["outcome"],
                    "chatId": (e.get("body") or {}).get("chatId")
                    if isinstance(e.get("body"), dict)
                    else None,
                    "message": (e.get("body") or {}).get("message")
                    if isinstance(e.get("body"), dict)
                    else None,
                }

    def sent(self) -> list[dict[str, Any]]:
        """What reached the guests: the fake's accepted sends, then what staff typed on the phone."""
        return [*self.stack.fake("green", "GET", "sent"), *self.traffic.phone_sent]

    def unanswered(self, older_than: float = 2.0) -> int:
        from drill.traffic import answer_due, tally

        sent = self.sent()
        cutoff = time.time() - older_than
        every = list(self.traffic.injected)
        injected = (
            every  # the end (the traffic stopped): every message, its burst over or not
            if older_than <= 0
            else [m for m, due in zip(every, answer_due(every), strict=True) if due < cutoff]
        )
        return len(tally(injected, sent).lost(injected))

    def settle(self, timeout: float, older_than: float = 2.0) -> bool:
        """Wait until every guest message has its reply, but those whose answer is due (the end of
        their burst: ``answer_due``) less than ``older_than`` seconds ago; with 0, every message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.collect()
            self.supervise()
            # At the end, every guest who asked for a person is handed back to the bot too.
            staff_done = older_than > 0 or self.staff is None or not self.staff.pending()
            if staff_done and self.unanswered(older_than) == 0:
                return True
            time.sleep(1.0)
        return False

    def run(self, scenario: Scenario, settle_timeout: float) -> ScenarioRun:
        run = ScenarioRun(scenario.name, scenario.title, started=time.time())
        self.current = run
        self.traffic.scenario = scenario.name
        print(f"  {time.strftime('%H:%M:%S')} scenario {scenario.name}: {scenario.title}", flush=True)
        try:
            scenario.run(self)
        except Exception as e:  # a scenario that cannot run is a failed drill, reported as such
            run.error = f"{type(e).__name__}: {e}"
            print(f"    ERROR {run.error}", flush=True)
            with contextlib.suppress(Exception):
                self.stack.fake("green", "DELETE", "faults")
                self.stack.fake("deepseek", "DELETE", "faults")
        run.fault_ended = time.time()
        run.drained = self.settle(settle_timeout)
        run.settled = time.time()
        print(
            f"    drained={run.drained} in {run.settled - run.fault_ended:.1f}s, "
            f"{len(self.traffic.injected)} injected so far",
            flush=True,
        )
        return run


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def booted_stack(*, embedded: bool, keep_logs: Path | None = None) -> Iterator[Stack]:
    """The whole stack on free ports; every process and temp dir is removed on the way out."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="hotelbot-drill-"))
    pg: ThrowawayPostgres | None = None
    rds: ThrowawayRedis | None = None
    stack: Stack | None = None
    try:
        extra = dict(DRILL_ENV)
        if not embedded:
            pg = ThrowawayPostgres()
            pg.start()
            pg.create_database()
            (tmp / "redis").mkdir()
            rds = ThrowawayRedis(tmp / "redis")
            rds.start()
            base = f"redis://127.0.0.1:{rds.port}"
            extra.update({"DATABASE_URL": pg.url, "REDIS_URL": f"{base}/0", "CELERY_BROKER_URL": f"{base}/1"})
        env, web_url = base_env(tmp, embedded=embedded, **extra)
        stack = make_stack(tmp, env, web_url)
        stack.postgres, stack.redis = pg, rds
        stack.setup_database()
        stack.shell(
            "from reliability.models import BreakerConfig\n"
            f"for name, seconds in {BREAKER_RECOVERY!r}.items():\n"
            "    BreakerConfig.objects.filter(name=name).update(recovery_timeout=seconds)\n"
        )
        result = stack.manage("setup_periodic_tasks", "--prune")
        if result.returncode != 0:
            raise RuntimeError(result.stdout + result.stderr)
        stack.start_fakes(redelivery_delay=1.0)
        stack.start_worker("worker-1")
        stack.start_worker("worker-2")
        stack.start_beat()
        stack.start_web()
        yield stack
    finally:
        if stack is not None:
            stack.stop_all()
            if keep_logs is not None:
                shutil.copytree(stack.logs, keep_logs, dirs_exist_ok=True)
        if rds is not None:
            rds.kill()
        if pg is not None:
            pg.remove()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def app_view(stack: Stack) -> dict[str, Any]:
    """The application's own bookkeeping (for stored/degraded/quarantined/dead letters/breakers)."""
    code = """
import json
from messaging.models import Message, ReplyJob
from reliability.models import BreakerEvent, DeadLetter
out = {
  "inbound": list(Message.objects.filter(direction="in").values_list("provider_message_id", flat=True)),
  "jobs": [
    {"id_message": j.inbound.provider_message_id, "status": j.status, "degraded": j.degraded,
     "attempts": j.attempts}
    for j in ReplyJob.objects.select_related("inbound")
  ],
  "dead_letters": [
    {"kind": d.kind, "status": d.status, "category": d.category, "reason_code": d.reason_code,
     "dependency": d.dependency, "created": d.created_at.timestamp(), "redrives": d.redrive_count,
     "error": (d.error_message or "")[:160]}
    for d in DeadLetter.objects.all()
  ],
  "breaker_events": [
    {"breaker": e.breaker, "to": e.to_state, "at": e.at.timestamp(), "reason": e.reason[:120],
     "process": e.process}
    for e in BreakerEvent.objects.order_by("at")
  ],
}
print(json.dumps(out))
"""
    return dict(json.loads(stack.shell(code).splitlines()[-1]))


DEFAULT_OUT = ROOT
