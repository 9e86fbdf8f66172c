"""``make bench-cost`` (``python -m bench.cost``): the cost of one guest message, hotelbot against a
naive bot (:mod:`bench.cost.naive`), in one run on one throwaway PostgreSQL (pg_stat_statements
loaded) and one throwaway Redis.

Each pipeline runs alone on the same servers and fakes, with the same gunicorn (2 workers, 4
threads) and one Celery worker (prefork, concurrency 2); hotelbot adds its beat. Per pipeline:

1. a warm-up guest (imports, first connections are not measured);
2. idle: CPU of web + worker (+ beat) over ``--idle`` seconds with no traffic, with the SQL
   statements and Redis commands the idle stack issues;
3. traffic: ``--messages`` guests at ``--rate``/s, each from its own chat, pushed by the fake Green
   API; per answered message: CPU of web + worker (+ beat), PostgreSQL's CPU (the postmaster's tree,
   ended backends included), SQL statements (pg_stat_statements), Redis commands (INFO
   commandstats), PostgreSQL sessions opened (pg_stat_database.sessions); reply latency from
   injection to the ``sendMessage`` the fake answered 200.

hotelbot runs as a deployment does (:func:`production_env`: DEBUG off) with its product defaults
except ``REPLY_BURST_QUIET_SECONDS=0``: the burst window is a wait for the guest's next line by
design (docs/handoff.md), not a cost of the pipeline, and the naive bot has none. Status webhooks
are off for both (``outgoingWebhook=no``, as ``bench.embedded_bench``): the guest message is what
is compared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from cryptography.fernet import Fernet

from bench import embedded_bench
from bench.cost import probes
from bench.cost.naive import SCHEMA
from drill.stack import (
    BIN,
    DEMO_INSTANCE,
    ROOT,
    WORKER_NICE,
    Stack,
    ThrowawayPostgres,
    ThrowawayRedis,
    base_env,
    make_stack,
    wait_http,
)

RESULTS = ROOT / "bench-cost-results.json"
#: The e2e stacks' fast upkeep intervals (drill.stack.base_env): the cost bench runs the product's.
E2E_ONLY = ("REPLY_STALE_AFTER", "REPLY_SWEEP_INTERVAL", "REPLY_DRAIN_INTERVAL", "BREAKER_CONFIG_REFRESH")
#: Issue 18 item 4's targets.
CPU_RATIO = 1.5
IDLE_MS_PER_S = 3.0
SESSIONS_PER_100 = 1.0
P50_EXTRA_MS = 10.0
P95_EXTRA_MS = 30.0
TOP_STATEMENTS = 20


def production_env() -> dict[str, str]:
    """hotelbot as a deployment runs it (``DJANGO_DEBUG`` off: no query log, production checks),
    with throwaway secrets; the naive bot runs with DEBUG off too. Plain HTTP on loopback: no SSL
    redirect (a proxy terminates TLS in a deployment)."""
    return {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "EMAIL_URL": "smtp://127.0.0.1:1",  # alerts would go nowhere; none is sent in the bench
    }


class StatsPostgres(ThrowawayPostgres):
    """The throwaway cluster with pg_stat_statements loaded (every statement, nested ones too)."""

    def __init__(self) -> None:
        super().__init__(
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
            "-c pg_stat_statements.max=10000 -c log_connections=on"
        )

    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def sessions_opened(self, database: str) -> int:
        """Sessions opened on ``database`` so far (log_connections; pg_stat_database.sessions counts
        a session only once its backend flushes its statistics, late for a pooled one)."""
        log = (self.dir / "log").read_text(errors="replace")
        return log.count(f"connection authorized: user=postgres database={database}")

    def postmaster_pid(self) -> int:
        return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def create(self, name: str) -> str:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        if name == "postgres":
            return self.admin_url()
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"


def _setup_hotelbot(stack: Stack) -> None:
    for args in (("migrate", "--noinput"), ("seed_demo",), ("setup_periodic_tasks", "--prune")):
        result = stack.manage(*args, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}")


def _start_naive(stack: Stack) -> None:
    stack.start(
        "worker",
        [
            *WORKER_NICE,
            str(BIN / "celery"),
            "-A",
            "bench.cost.naive.tasks",
            "worker",
            "--loglevel=WARNING",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
        ],
    )
    port = stack.web_url.rsplit(":", 1)[1]
    proc = stack.start(
        "web",
        [
            str(BIN / "gunicorn"),
            "bench.cost.naive.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--threads",
            "4",
        ],
    )
    wait_http(f"{stack.web_url}/health/live/", proc=proc)


@contextlib.contextmanager
def _stack(name: str, pg: StatsPostgres, redis_base: str, tmp: Path) -> Iterator[Stack]:
    root = tmp / name
    root.mkdir()
    db = pg.create(name)
    extra = {
        "DATABASE_URL": db,
        "REDIS_URL": f"{redis_base}/0",
        "CELERY_BROKER_URL": f"{redis_base}/1",
        "LOG_LEVEL": "WARNING",
        "REPLY_BURST_QUIET_SECONDS": "0",
    }
    if name == "hotelbot":
        extra.update(production_env())
    env, web_url = base_env(root)
    env.update(extra)
    for key in E2E_ONLY:
        env.pop(key, None)
    stack = make_stack(root, env, web_url)
    try:
        if name == "hotelbot":
            _setup_hotelbot(stack)
        else:
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute(SCHEMA)
            stack.env = {
                **env,
                "NAIVE_DATABASE_URL": db,
                "NAIVE_BROKER_URL": f"{redis_base}/2",
            }
        stack.start_fakes()
        requests.post(
            f"{stack.green_url}/waInstance{DEMO_INSTANCE}/setSettings/test-token",
            json={"outgoingWebhook": "no"},
            timeout=5,
        ).raise_for_status()
        if name == "hotelbot":
            stack.start_worker("worker")
            stack.start_beat()
            stack.start_web()
        else:
            naive_env = {**stack.env, "DJANGO_SETTINGS_MODULE": "bench.cost.naive.settings"}
            stack.env = naive_env
            _start_naive(stack)
        yield stack
    finally:
        stack.stop_all()


def _app_cpu(stack: Stack) -> dict[str, float]:
    """CPU (ms) so far of web, worker and beat (each a process tree), and their sum (``app``)."""
    cpu = {n: probes.tree_cpu_ms(p.pid) for n, p in stack.procs.items() if n != "fakes"}
    return {**cpu, "app": sum(cpu.values())}


def _per(before: dict[str, float], after: dict[str, float], per: float, suffix: str) -> dict[str, float]:
    return {f"{k}_cpu_{suffix}": round((after[k] - before[k]) / per, 2) for k in after if k != "app"}


_FK_CHECK = "FOR KEY SHARE OF x"
_LITERAL_LIST = re.compile(r"\(\$\d+(?:, \$\d+)+\)")


def _normalise(query: str) -> str:
    """One line; an IN list of any length is one statement ($1, $2, ... -> $n)."""
    return _LITERAL_LIST.sub("($n, ...)", " ".join(query.split()))


def measure_pipeline(
    name: str, pg: StatsPostgres, redis_url: str, tmp: Path, *, messages: int, rate: float, idle: float
) -> dict[str, Any]:
    rds = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/0")
    with _stack(name, pg, redis_url.rsplit("/", 1)[0], tmp) as stack:
        embedded_bench._warm_up(stack.green_url)
        time.sleep(5)  # the warm-up's tail (status pushes, the job's last writes) settles
        # idle
        probes.pg_statements_reset(pg.admin_url())
        cpu0, rc0, t0 = _app_cpu(stack), probes.redis_commands(rds), time.monotonic()
        pg0 = probes.tree_cpu_ms(pg.postmaster_pid())
        time.sleep(idle)
        idle_s = time.monotonic() - t0
        cpu1 = _app_cpu(stack)
        idle_cpu = (cpu1["app"] - cpu0["app"]) / idle_s
        idle_split = _per(cpu0, cpu1, idle_s, "idle_ms_per_s")
        idle_pg = (probes.tree_cpu_ms(pg.postmaster_pid()) - pg0) / idle_s
        idle_redis = (probes.redis_commands(rds) - rc0) / idle_s
        idle_statements = probes.pg_statements(pg.admin_url(), name)
        idle_sql = sum(c for _, c, _t in idle_statements) / idle_s
        # traffic
        probes.pg_statements_reset(pg.admin_url())
        sessions0 = pg.sessions_opened(name)
        cpu0, rc0, pg0 = _app_cpu(stack), probes.redis_commands(rds), probes.tree_cpu_ms(pg.postmaster_pid())
        ids: dict[str, str] = {}
        injected = embedded_bench._inject(stack.green_url, rate, messages / rate, ids)
        late = [s * 1000 for s in embedded_bench._collect(stack.green_url, injected)]
        latencies = [v for v in late if math.isfinite(v)]
        time.sleep(2)  # the last jobs' final writes
        cpu1 = _app_cpu(stack)
        cpu = cpu1["app"] - cpu0["app"]
        pg_cpu = probes.tree_cpu_ms(pg.postmaster_pid()) - pg0
        redis_cmds = probes.redis_commands(rds) - rc0
        sessions = pg.sessions_opened(name) - sessions0
        statements = probes.pg_statements(pg.admin_url(), name)
        stages = reply_stages(stack.green_url, stack.deepseek_url, injected, ids)
    answered = len(latencies) or 1
    merged: dict[str, int] = {}
    fk_checks = 0
    for query, calls, _toplevel in statements:
        key = _normalise(query)
        if _FK_CHECK in key:  # run by the server: immediate FKs nested, Django's deferred ones at COMMIT
            key, fk_checks = f"(foreign-key check) {key}", fk_checks + calls
        merged[key] = merged.get(key, 0) + calls
    top = sorted(merged.items(), key=lambda kv: -kv[1])[:TOP_STATEMENTS]
    return {
        "messages": len(injected),
        "answered": len(latencies),
        "app_cpu_ms_per_msg": round(cpu / answered, 2),
        **_per(cpu0, cpu1, answered, "ms_per_msg"),
        "pg_cpu_ms_per_msg": round(pg_cpu / answered, 2),
        "app_pg_cpu_ms_per_msg": round((cpu + pg_cpu) / answered, 2),
        "sql_per_msg": round((sum(merged.values()) - fk_checks) / answered, 2),
        "fk_checks_per_msg": round(fk_checks / answered, 2),
        "redis_cmds_per_msg": round(redis_cmds / answered, 2),
        "pg_sessions": sessions,
        "pg_sessions_per_100_msg": round(sessions * 100 / answered, 2),
        "idle_app_cpu_ms_per_s": round(idle_cpu, 2),
        **idle_split,
        "idle_pg_cpu_ms_per_s": round(idle_pg, 2),
        "idle_sql_per_s": round(idle_sql, 2),
        "idle_redis_cmds_per_s": round(idle_redis, 2),
        # an unanswered message counts as infinitely late (embedded_bench._collect)
        "reply_p50_ms": round(embedded_bench._percentile(late, 0.5), 1),
        "reply_p95_ms": round(embedded_bench._percentile(late, 0.95), 1),
        "reply_stages_ms": stages,
        "statements_per_msg": [{"sql": q[:400], "per_msg": round(c / answered, 3)} for q, c in top],
        "idle_statements_per_min": [
            {"sql": _normalise(q)[:400], "per_min": round(c * 60 / idle_s, 2)}
            for q, c, _t in idle_statements[:TOP_STATEMENTS]
        ],
    }


def verdicts(hotelbot: dict[str, Any], naive: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 18 item 4's targets: each with the value, its bound and whether it is met."""
    checks = {
        "app_pg_cpu_ratio": (
            hotelbot["app_pg_cpu_ms_per_msg"] / max(naive["app_pg_cpu_ms_per_msg"], 0.01),
            CPU_RATIO,
        ),
        "idle_app_cpu_ms_per_s": (hotelbot["idle_app_cpu_ms_per_s"], IDLE_MS_PER_S),
        "pg_sessions_per_100_msg": (hotelbot["pg_sessions_per_100_msg"], SESSIONS_PER_100),
        "reply_p50_ms": (hotelbot["reply_p50_ms"], naive["reply_p50_ms"] + P50_EXTRA_MS),
        "reply_p95_ms": (hotelbot["reply_p95_ms"], naive["reply_p95_ms"] + P95_EXTRA_MS),
    }
    return {
        k: {"value": round(v, 2), "bound": round(b, 2), "met": bool(v <= b)} for k, (v, b) in checks.items()
    }


#: Where a reply's latency goes, in order (docs/cost.md, "Where the reply latency goes").
STAGES = ("queued_at_fake", "webhook", "to_deepseek", "deepseek_to_send")


def reply_stages(
    green_url: str, deepseek_url: str, injected: dict[str, float], ids: dict[str, str]
) -> dict[str, dict[str, float]]:
    """p50 and p95 (ms) of each stage of a reply (:func:`stages_from_logs`), read from the fakes'
    own logs: the same for both pipelines, nothing added to them."""
    deliveries = requests.get(f"{green_url}/__fake__/notifications", timeout=30).json()["deliveries"]
    sends = requests.get(
        f"{green_url}/__fake__/requests", params={"method_name": "sendMessage"}, timeout=30
    ).json()
    asked = requests.get(f"{deepseek_url}/__fake__/requests", timeout=30).json()
    return stages_from_logs(deliveries, sends, asked, injected, ids)


def stages_from_logs(
    deliveries: list[dict[str, Any]],
    sends: list[dict[str, Any]],
    asked: list[dict[str, Any]],
    injected: dict[str, float],
    ids: dict[str, str],
) -> dict[str, dict[str, float]]:
    """Each guest message's reply in stages (:data:`STAGES`): injection -> the fake's webhook push
    starts (its serial queue) -> the webhook answered -> the DeepSeek request arrives (publish,
    broker, worker, claim, reads, prompt) -> the ``sendMessage`` arrives (the answer read, the
    reply stored, fence, pacing, send); p50 and p95 of each, ms. ``deliveries``: the fake Green
    API's webhook pushes; ``sends``, ``asked``: the fakes' request journals; ``ids``: idMessage ->
    chat. A message's DeepSeek request is the last one to arrive between its push and its send
    (one guest message per 0.1 s and ~10 ms stages: a mismatch is rare and moves little)."""
    pushes: dict[str, tuple[float, float]] = {}
    for d in deliveries:
        if d["status"] == 200 and d["idMessage"] in ids and d["idMessage"] not in pushes:
            pushes[d["idMessage"]] = (d["time"] - d["duration_ms"] / 1000, d["time"])
    sent_at: dict[str, float] = {}
    for e in sends:
        body = e.get("body")
        if isinstance(body, dict) and e.get("status") == 200:
            sent_at.setdefault(str(body.get("chatId")), float(e["time"]))
    ai_at = sorted(float(e["time"]) for e in asked if "chat/completions" in str(e.get("path")))
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for id_message, chat in ids.items():
        if id_message not in pushes or chat not in sent_at:
            continue
        (start, end), sent = pushes[id_message], sent_at[chat]
        ai = [t for t in ai_at if start <= t <= sent]
        if not ai:
            continue
        for name, seconds in zip(
            STAGES, (start - injected[chat], end - start, ai[-1] - end, sent - ai[-1]), strict=True
        ):
            stages[name].append(seconds * 1000)
    return {
        f"p{q:g}": {k: round(embedded_bench._percentile(v, q / 100), 1) for k, v in stages.items() if v}
        for q in (50, 95)
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def measure(*, messages: int = 600, rate: float = 10.0, idle: float = 30.0) -> dict[str, Any]:
    """Both pipelines in one run; returns {"hotelbot": ..., "naive": ..., "ratios": ..., "targets": ...}."""
    # SIGTERM (a timeout, a CI cancel) unwinds like ^C, so the servers and processes are removed.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="hotelbot-cost-"))
    pg = StatsPostgres()
    (tmp / "redis").mkdir()
    rds = ThrowawayRedis(tmp / "redis")
    try:
        pg.start()
        with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rds.start()
        out: dict[str, Any] = {"settings": {"messages": messages, "rate": rate, "idle_s": idle}}
        for name in ("naive", "hotelbot"):
            print(f"  {name}: {messages} guest messages at {rate:g}/s, {idle:g} s idle ...", flush=True)
            out[name] = measure_pipeline(name, pg, rds.url, tmp, messages=messages, rate=rate, idle=idle)
    finally:
        rds.kill()
        pg.remove()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    hb, nv = out["hotelbot"], out["naive"]
    out["ratios"] = {
        k: round(hb[k] / nv[k], 2) if nv[k] else None
        for k in (
            "app_cpu_ms_per_msg",
            "pg_cpu_ms_per_msg",
            "app_pg_cpu_ms_per_msg",
            "sql_per_msg",
            "redis_cmds_per_msg",
            "idle_app_cpu_ms_per_s",
        )
    }
    out["targets"] = verdicts(hb, nv)
    return out


def flat(result: dict[str, Any]) -> dict[str, float]:
    """The figures ``make bench`` prints and writes beside the others (``cost_*``)."""
    figures: dict[str, float] = {}
    for side in ("hotelbot", "naive"):
        for key, value in result[side].items():
            if isinstance(value, int | float):
                figures[f"cost_{side}_{key}"] = float(value)
    figures["cost_app_pg_cpu_ratio"] = result["targets"]["app_pg_cpu_ratio"]["value"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of no traffic measured")
    parser.add_argument("--quick", action="store_true", help="150 messages, 10 s idle")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.idle = 150, 10.0
    result = measure(messages=args.messages, rate=args.rate, idle=args.idle)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"wrote {RESULTS.name}")
    return 0 if all(t["met"] for t in result["targets"].values()) else 1


def report(result: dict[str, Any]) -> str:
    hb, nv = result["hotelbot"], result["naive"]
    lines = [f"  {'per answered message':<28} {'hotelbot':>10} {'naive':>10}"]
    for key, value in hb.items():
        if isinstance(value, int | float):
            other = nv.get(key)
            lines.append(f"  {key:<28} {value:>10,.4g} {'-' if other is None else format(other, ',.4g'):>10}")
    lines.append("")
    for key, t in result["targets"].items():
        lines.append(
            f"  {'PASS' if t['met'] else 'FAIL'}  {key} = {t['value']:,.4g} (target <= {t['bound']:,.4g})"
        )
    lines.append(f"\n  {'reply stage, ms (p50 / p95)':<28} {'hotelbot':>15} {'naive':>15}")
    for stage in STAGES:
        pair = [
            " / ".join(f"{r['reply_stages_ms'][q].get(stage, math.nan):g}" for q in ("p50", "p95"))
            for r in (hb, nv)
        ]
        lines.append(f"  {stage:<28} {pair[0]:>15} {pair[1]:>15}")
    lines.append("\n  hotelbot's statements per message:")
    lines += [f"  {s['per_msg']:>7.3f}  {s['sql'][:150]}" for s in hb["statements_per_msg"]]
    return "\n".join(lines)
