"""``make load``: what the layer costs under load, on gunicorn (2 workers) + throwaway PostgreSQL + Redis.

Measured in one run and written to ``load-results.json`` with the ratios of issue 11's targets:
webhook latency/throughput at 1 and 8 connections against a bare Django request (``/health/live/``)
on the same server, end-to-end reply latency at a steady rate (webhook queued by the fake Green API
-> send accepted by it), the drain after an outage (replies parked while staff held Green API's
breaker open, released when it closes: sends/s against ``GREEN_API_SEND_RATE``, and each guest's
replies in the order the guest wrote), readiness-probe latency under webhook load, and resident
memory of a web worker and a Celery worker process before and after. The webhook at 1 connection
is measured twice: with the reply pipeline it starts running on the same 2 cores (``webhook_1``),
and alone with the workers paused (``webhook_1_request_path``, against a bare request measured
in the same state).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import requests

from drill.report import percentile, reply_latency
from drill.runner import BREAKER_RECOVERY, Drill, booted_stack
from drill.stack import DEMO_INSTANCE, DEMO_WEBHOOK_TOKEN, ROOT, Stack
from drill.traffic import Injected, Traffic, tally

WEBHOOK_TOKEN = DEMO_WEBHOOK_TOKEN  # the demo hotel's own token, on its own URL (the production path)
INSTANCE = 1101000001
RESULTS = ROOT / "load-results.json"
#: Replies parked during the outage of the drain measurement, from this many guests at a time.
DRAIN_REPLIES = 100
DRAIN_GUESTS = 10
#: The drain's sends/s may differ from GREEN_API_SEND_RATE by this fraction.
DRAIN_RATE_TOLERANCE = 0.10
#: Guest messages/s during the hard-outage measure (a busy evening; the breaker should open in 1 s).
OUTAGE_RATE = 10.0


def _incoming(chat: str) -> dict[str, Any]:
    return {
        "typeWebhook": "incomingMessageReceived",
        "instanceData": {"idInstance": INSTANCE, "wid": "11001234567@c.us", "typeInstance": "whatsapp"},
        "timestamp": int(time.time()),
        "idMessage": uuid.uuid4().hex[:20].upper(),
        "senderData": {"chatId": chat, "chatName": "Load", "sender": chat, "senderName": "Load"},
        "messageData": {
            "typeMessage": "textMessage",
            "textMessageData": {"textMessage": "Is there parking?"},
        },
    }


def _requests(
    url: str, connections: int, seconds: float, webhook: bool
) -> tuple[list[float], dict[int, int], float]:
    """Requests back to back on ``connections`` keep-alive connections for ``seconds``: latencies
    (ms), status counts, wall time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        i = 0
        while time.monotonic() < stop:
            i += 1
            t0 = time.perf_counter()
            if webhook:
                chat = f"7955{n:02d}{i % 500:05d}@c.us"
                resp = session.post(url, json=_incoming(chat), headers=headers, timeout=30)
            else:
                resp = session.get(url, timeout=30)
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed * 1000)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, time.monotonic() - started


def _figures(
    connections: int, latencies: list[float], statuses: dict[int, int], wall: float
) -> dict[str, Any]:
    return {
        "connections": connections,
        "requests": len(latencies),
        "per_second": round(len(latencies) / wall, 1),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "statuses": statuses,
    }


def _hammer(url: str, connections: int, seconds: float, webhook: bool) -> dict[str, Any]:
    return _figures(connections, *_requests(url, connections, seconds, webhook))


def _hammer_interleaved(
    bare: str, webhook: str, seconds: float, rounds: int = 10
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bare request and the webhook at 1 connection in alternating rounds (``seconds`` each in
    all): a ratio of two figures taken minutes apart on a shared 2-core machine moves with whatever
    else ran meanwhile; taken in turns, both see the same machine."""
    latencies: dict[str, list[float]] = {bare: [], webhook: []}
    statuses: dict[str, Counter[int]] = {bare: Counter(), webhook: Counter()}
    wall = dict.fromkeys((bare, webhook), 0.0)
    for _ in range(rounds):
        for url in (bare, webhook):
            round_latencies, round_statuses, round_wall = _requests(url, 1, seconds / rounds, url == webhook)
            latencies[url] += round_latencies
            statuses[url].update(round_statuses)
            wall[url] += round_wall
    bare_figures, webhook_figures = (
        _figures(1, latencies[url], dict(statuses[url]), wall[url]) for url in (bare, webhook)
    )
    return bare_figures, webhook_figures


def drain_figures(
    injected: list[Injected], send_at: dict[int, float], rate: float, cleared_at: float
) -> dict[str, Any]:
    """Figures of a drain: ``send_at`` maps an index into ``injected`` to the time its reply reached
    the provider. Sends/s over the whole drain (first to last send) against ``rate``, and the order
    per guest: each guest's replies must leave in the order the guest wrote (``injected`` order)."""
    times = sorted(send_at.values())
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    per_second = (len(times) - 1) / span if span > 0 else None
    ratio = None if per_second is None else round(per_second / rate, 3)
    by_chat: dict[str, list[float]] = {}
    for i, m in enumerate(injected):
        if i in send_at:
            by_chat.setdefault(m.chat_id, []).append(send_at[i])
    out_of_order = [chat for chat, sent in by_chat.items() if any(b < a for a, b in itertools.pairwise(sent))]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "parked": len(injected),
        "longest_gap_s": round(max(gaps), 3) if gaps else None,
        "sent": len(times),
        "send_rate_setting": rate,
        "first_send_after_clear_s": round(times[0] - cleared_at, 3) if times else None,
        "drain_s": round(span, 3),
        "sends_per_s": None if per_second is None else round(per_second, 2),
        "sends_per_s_over_send_rate": ratio,
        "within_tolerance": ratio is not None and abs(ratio - 1) <= DRAIN_RATE_TOLERANCE,
        "guests": len(by_chat),
        "guests_out_of_order": len(out_of_order),
        "in_arrival_order": not out_of_order and len(times) == len(injected),
    }


def _parked(stack: Stack) -> int:
    """Reply jobs waiting for Green API's breaker (a direct query: no manage.py per poll)."""
    with psycopg.connect(stack.env["DATABASE_URL"], connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM messaging_replyjob WHERE status = 'pending_provider_recovery'"
        ).fetchone()
    return int(row[0]) if row else 0


def measure_drain(stack: Stack, replies: int = DRAIN_REPLIES, guests: int = DRAIN_GUESTS) -> dict[str, Any]:
    """Staff force Green API's breaker open; ``replies`` guest messages arrive and their replies park
    (pending provider recovery); the breaker is closed and the parked replies drain at the send rate."""
    rate = float(stack.shell("from django.conf import settings; print(settings.GREEN_API_SEND_RATE)"))
    traffic = Traffic(stack.green_url, chats=guests, scenario="drain")
    view = Drill(stack, traffic, ci=True, embedded=False)
    view.manage("breakers", "force-open", "green_api", "--reason", "load: park replies for the drain")
    time.sleep(2)  # every process sees the override (shared breaker state, BREAKER_CONFIG_REFRESH)
    for _ in range(replies):
        traffic.inject_one()
    deadline = time.monotonic() + 120
    while (parked := _parked(stack)) < len(traffic.injected) and time.monotonic() < deadline:
        view.collect()
        time.sleep(1)
    sent_while_open = len(tally(traffic.injected, stack.fake("green", "GET", "sent")).answered)
    cleared_at = time.time()
    view.manage("breakers", "close", "green_api")
    view.settle(120, older_than=0.0)
    view.collect()
    tal = tally(traffic.injected, stack.fake("green", "GET", "sent"))
    log = list(view.send_requests.values())
    send_at = {
        i: m.at + latency
        for i, m in enumerate(traffic.injected)
        if (latency := reply_latency(i, m, tal, log)) is not None
    }
    figures = drain_figures(traffic.injected, send_at, rate, cleared_at)
    figures["parked_before_clear"] = parked
    figures["sent_while_open"] = sent_while_open
    figures["duplicates"] = len(tal.duplicates())
    return figures


def _breaker_event_after(stack: Stack, to_state: str, after: float, timeout: float) -> float | None:
    """Seconds from ``after`` (epoch) to green_api's first move to ``to_state`` since then, or None."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT extract(epoch FROM at) FROM reliability_breakerevent WHERE breaker = 'green_api' "
        "AND to_state = %s AND at >= to_timestamp(%s) ORDER BY at LIMIT 1"
    )
    while time.monotonic() < deadline:
        with psycopg.connect(stack.env["DATABASE_URL"], connect_timeout=5) as conn:
            row = conn.execute(query, (to_state, after)).fetchone()
        if row is not None:
            return round(float(row[0]) - after, 2)
        time.sleep(0.1)
    return None


def measure_breaker_under_load(stack: Stack, rate: float = OUTAGE_RATE) -> dict[str, Any]:
    """A hard Green API outage (every sendMessage 503) while guests write ``rate`` messages/s:
    seconds until the shared green_api breaker opens, and after the outage ends until it closes
    (the target: one recovery timeout plus one probe); nothing lost or sent twice meanwhile."""
    recovery = BREAKER_RECOVERY["green_api"]
    traffic = Traffic(stack.green_url, rate=rate, chats=20, scenario="outage")
    view = Drill(stack, traffic, ci=True, embedded=False)
    traffic.start()
    # Guests' replies must be flowing before the fault: after the drain the fake's ordered push
    # queue still carries its status webhooks, and the first guests wait behind them.
    flowing = time.monotonic() + 60
    while (
        time.monotonic() < flowing
        and len(tally(traffic.injected, stack.fake("green", "GET", "sent")).answered) < 10
    ):
        time.sleep(0.2)
    view.hold(2)
    fault_at = time.time()
    stack.fake(
        "green",
        "POST",
        "faults",
        json={"mode": "overloaded", "status": 503, "match": {"method_name": "sendMessage"}},
    )
    opened = _breaker_event_after(stack, "open", fault_at, timeout=30)
    failed = [
        e["time"]
        for e in stack.fake("green", "GET", "requests", params={"method_name": "sendMessage"})
        if e["time"] >= fault_at and e["status"] == 503
    ]
    view.hold(max(0.0, 8 - (time.time() - fault_at)))
    cleared_at = time.time()
    stack.fake("green", "DELETE", "faults")
    closed = _breaker_event_after(stack, "closed", cleared_at, timeout=60)
    traffic.stop()
    view.settle(180, older_than=0.0)
    tal = tally(traffic.injected, stack.fake("green", "GET", "sent"))
    return {
        "rate": rate,
        "messages": len(traffic.injected),
        "open_after_fault_s": opened,
        # The first failed send is when the system meets the outage (a send must be due).
        "open_after_first_failure_s": None
        if opened is None or not failed
        else round(fault_at + opened - min(failed), 2),
        "closed_after_recovery_s": closed,
        "recovery_timeout_s": recovery,
        "lost": len(tal.lost(traffic.injected)),
        "duplicates": len(tal.duplicates()),
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _rss(stack: Stack) -> dict[str, float]:
    return {
        "web_worker_mb": _rss_mb(stack.web_worker_pids()[0]),
        "celery_worker_mb": _rss_mb(stack.children("worker-1")[0]),
    }


@contextlib.contextmanager
def pipeline_paused(stack: Stack) -> Iterator[None]:
    """The Celery workers stopped (SIGSTOP; their tasks wait in the broker) and continued after:
    the webhook's request path measured alone, not against the reply pipeline it starts, which
    on this 2-core machine shares the CPUs (in a deployment, workers run on their own nodes)."""
    groups = [proc.pid for name, proc in stack.procs.items() if name.startswith("worker")]
    for pgid in groups:
        os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)


#: The webhook's per-instance limit during the measurement: one connection sends ~200/s, twice the
#: default limit (100/s; Green API delivers at most ~50/s per instance), and a 429 measures the
#: limiter's refusal, not the request path (which still takes the limit's leased slots).
LOAD_WEBHOOK_RATE_LIMIT = "5000/s"


def measure(seconds: float = 10.0) -> dict[str, Any]:
    os.environ.setdefault("WEBHOOK_RATE_LIMIT", LOAD_WEBHOOK_RATE_LIMIT)
    with booted_stack(embedded=False) as stack:
        webhook, live, ready = (
            f"{stack.web_url}/webhooks/green-api/{DEMO_INSTANCE}/",
            f"{stack.web_url}/health/live/",
            f"{stack.web_url}/health/ready/",
        )
        _hammer(live, 2, 2, webhook=False)  # warm up both workers
        rss_before = _rss(stack)
        out: dict[str, Any] = {"rss_before": rss_before}
        # First, on an idle stack: the fake pushes one notification at a time, so a webhook backlog
        # (the hammer below) would queue ahead of these messages and measure the fake, not us.
        print("end-to-end reply latency at 2 guest messages/s ...", flush=True)
        traffic = Traffic(stack.green_url, rate=2.0, chats=6, scenario="steady")
        drill_view = Drill(stack, traffic, ci=True, embedded=False)
        traffic.start()
        drill_view.hold(seconds * 2)
        traffic.stop()
        drill_view.settle(120, older_than=0.0)
        drill_view.collect()
        sent = stack.fake("green", "GET", "sent")
        tal = tally(traffic.injected, sent)
        requests_log = list(drill_view.send_requests.values())
        lat = [
            v * 1000
            for i, m in enumerate(traffic.injected)
            if (v := reply_latency(i, m, tal, requests_log)) is not None
        ]
        out["reply_e2e"] = {
            "messages": len(traffic.injected),
            "answered": len(tal.answered),
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
        }
        print(f"drain of {DRAIN_REPLIES} replies parked while Green API's breaker was open ...", flush=True)
        out["drain"] = measure_drain(stack)
        print(f"hard Green API outage at {OUTAGE_RATE:g} guest messages/s ...", flush=True)
        out["breaker_under_load"] = measure_breaker_under_load(stack)
        print("bare request (/health/live/) and webhook at 1 connection, in turns; then at 8 ...", flush=True)
        out["bare_1"], out["webhook_1"] = _hammer_interleaved(live, webhook, seconds)
        out["bare_8"] = _hammer(live, 8, seconds, webhook=False)
        probes: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                requests.get(ready, timeout=30)
                probes.append((time.perf_counter() - t0) * 1000)
                done.wait(0.5)

        prober = threading.Thread(target=probe)
        prober.start()
        out["webhook_8"] = _hammer(webhook, 8, seconds, webhook=True)
        done.set()
        prober.join()
        out["ready_probe_under_load"] = {
            "probes": len(probes),
            "p50_ms": percentile(probes, 50),
            "p99_ms": percentile(probes, 99),
        }
        out["rss_after"] = _rss(stack)
        print("webhook at 1 connection, request path alone (workers paused) ...", flush=True)
        with pipeline_paused(stack):
            out["bare_1_paused"], out["webhook_1_request_path"] = _hammer_interleaved(live, webhook, seconds)
    alone = out["webhook_1_request_path"]
    out["ratios"] = {
        "webhook_p50_over_bare_p50_1conn": round(out["webhook_1"]["p50_ms"] / out["bare_1"]["p50_ms"], 2),
        "webhook_p50_over_bare_p50_1conn_target": 2.0,
        "webhook_p99_ms_1conn": out["webhook_1"]["p99_ms"],
        "webhook_p99_ms_1conn_target": 25.0,
        "request_path_p50_over_bare_p50_1conn": round(alone["p50_ms"] / out["bare_1_paused"]["p50_ms"], 2),
        "request_path_p99_ms_1conn": alone["p99_ms"],
        "reply_e2e_p50_ms": out["reply_e2e"]["p50_ms"],
        "reply_e2e_p50_ms_target": 100.0,
        "drain_sends_per_s_over_send_rate": out["drain"]["sends_per_s_over_send_rate"],
        "drain_sends_per_s_over_send_rate_target": f"1 ± {DRAIN_RATE_TOLERANCE:g}",
        "breaker_open_after_fault_s": out["breaker_under_load"]["open_after_fault_s"],
        "breaker_open_after_fault_s_target": 1.0,
        "breaker_open_after_first_failure_s": out["breaker_under_load"]["open_after_first_failure_s"],
        "breaker_closed_after_recovery_s": out["breaker_under_load"]["closed_after_recovery_s"],
        "breaker_closed_after_recovery_s_target": "recovery timeout + one probe",
        "web_worker_rss_growth_mb": round(out["rss_after"]["web_worker_mb"] - rss_before["web_worker_mb"], 1),
        "celery_worker_rss_growth_mb": round(
            out["rss_after"]["celery_worker_mb"] - rss_before["celery_worker_mb"], 1
        ),
    }
    r = out["ratios"]
    out["targets_met"] = {
        "webhook_vs_bare": r["webhook_p50_over_bare_p50_1conn"] <= 2.0,
        "webhook_p99": (r["webhook_p99_ms_1conn"] or 1e9) <= 25.0,
        "request_path_vs_bare": r["request_path_p50_over_bare_p50_1conn"] <= 2.0,
        "request_path_p99": (r["request_path_p99_ms_1conn"] or 1e9) <= 25.0,
        "reply_e2e_p50": (r["reply_e2e_p50_ms"] or 1e9) <= 100.0,
        "drain_rate": out["drain"]["within_tolerance"],
        "breaker_open_within_1s": (r["breaker_open_after_fault_s"] or 1e9) <= 1.0,
        "breaker_outage_nothing_lost_or_doubled": out["breaker_under_load"]["lost"] == 0
        and out["breaker_under_load"]["duplicates"] == 0,
        "drain_in_arrival_order": out["drain"]["in_arrival_order"],
    }
    out["not_measured_yet"] = []
    return out


def main() -> int:
    try:
        results = measure()
    except KeyboardInterrupt:
        return 130
    RESULTS.write_text(json.dumps(results, indent=2))
    print(json.dumps({"ratios": results["ratios"], "targets_met": results["targets_met"]}, indent=2))
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
