"""Figures of a drill (per scenario and overall), written as JSON, Markdown and an SVG timeline.

Lost and duplicate replies come from the fake Green API's accepted sends against the injected
messages (``drill.traffic.tally``); the application's tables are used only for what only it knows
(stored, degraded, quarantined, dead letters, breaker transitions).
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from drill.runner import ScenarioRun
from drill.traffic import HANDOFF, Handoff, Injected, Tally, bot_while_staff


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return round(ordered[k], 3)


def reply_latency(index: int, m: Injected, tal: Tally, send_requests: list[dict[str, Any]]) -> float | None:
    """Injected -> the request the fake accepted: the last sendMessage of that text to that chat
    that reached the fake by the accepted send's timestamp (earlier ones hung or were refused)."""
    sends = tal.answered.get(index)
    if not sends:
        return None
    text, accepted_at = sends[0].get("textMessage"), float(sends[0].get("timestamp") or 0) + 1
    times = [
        r["time"]
        for r in send_requests
        if r["chatId"] == m.chat_id and r["message"] == text and m.at <= r["time"] <= accepted_at
    ]
    return round(max(times) - m.at, 3) if times else None


def _first_event(
    events: list[dict[str, Any]], breaker: str, states: tuple[str, ...], after: float
) -> float | None:
    for e in events:
        if e["breaker"] == breaker and e["to"] in states and e["at"] >= after - 0.5:
            return float(e["at"])
    return None


#: Slack after a database outage for requests in flight when the server came back.
DB_OUTAGE_SLACK = 2.0
#: How long after the server is back a request that met the outage may still open the database breaker
#: (it waited for the pool, maybe twice); generous.
DB_LATE_OPEN = 30.0


def database_outages(runs: list[ScenarioRun], events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The windows in which the webhook's 503 is the contract: from the server's stop until it is back
    and every ``database`` breaker that the outage opened (one per web process) has closed again;
    until then an open breaker answers 503 at once without asking the database."""
    windows = []
    for r in runs:
        for start, up in r.db_outages:
            end = up + DB_OUTAGE_SLACK
            for e in events:
                if e["breaker"] == "database" and e["to"] == "open" and start <= e["at"] <= up + DB_LATE_OPEN:
                    # Each web process has its own database breaker: its own close ends its 503s.
                    same = [x for x in events if x.get("process") == e.get("process")]
                    closed = _first_event(same, "database", ("closed",), e["at"])
                    end = max(end, (closed if closed is not None else up + DB_LATE_OPEN) + DB_OUTAGE_SLACK)
            windows.append((start, end))
    return windows


def handoff_figures(
    handoffs: list[Handoff], sent: list[dict[str, Any]], tal: Tally, staff: Any
) -> dict[str, Any]:
    """The guests who asked for a person and what the simulated staff did (drill/staff.py)."""
    late = bot_while_staff(handoffs, sent)
    return {
        "asked": len(handoffs),
        "via_api": sum(1 for h in handoffs if h.via == "api"),
        "via_phone": sum(1 for h in handoffs if h.via == "phone"),
        "handed_back": sum(1 for h in handoffs if h.state == "handed_back"),
        "unfinished": [
            {"chat": h.chat_id[-9:], "state": h.state, "via": h.via, "error": h.error}
            for h in handoffs
            if h.state != "handed_back"
        ],
        "staff_messages": len(tal.staff),
        "staff_messages_via_phone": sum(1 for s in sent if s.get("phone")),
        "staff_duplicates": sum(tal.staff_duplicates().values()),
        "api_retries_same_job": getattr(staff, "retries_same_job", 0),
        "staff_api_errors_retried": getattr(staff, "errors", 0),
        "bot_while_staff": len(late),
        "hand_back_s": _handoff_durations(handoffs),
    }


def _handoff_durations(handoffs: list[Handoff]) -> dict[str, float | None]:
    """From asking for a person to being handed back to the bot (staff's whole exchange)."""
    spans = [h.handed_back_at - h.asked_at for h in handoffs if h.handed_back_at]
    return {"p50": percentile(spans, 50), "max": round(max(spans), 2) if spans else None}


def compute(
    *,
    runs: list[ScenarioRun],
    injected: list[Injected],
    poison: list[dict[str, Any]],
    tal: Tally,
    app: dict[str, Any],
    deliveries: list[dict[str, Any]],
    send_requests: list[dict[str, Any]],
    breakers: dict[str, str],
    meta: dict[str, Any],
    handoffs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    jobs = {j["id_message"]: j for j in app["jobs"]}
    stored_ids = set(app["inbound"])
    lost = set(tal.lost(injected))
    dups = tal.duplicates()
    latencies = {i: reply_latency(i, m, tal, send_requests) for i, m in enumerate(injected)}
    db_outages = database_outages(runs, app["breaker_events"])

    def in_db_outage(t: float) -> bool:
        return any(start <= t <= end for start, end in db_outages)

    def figures(indexes: list[int], start: float, end: float, name: str | None) -> dict[str, Any]:
        lat = [v for i in indexes if (v := latencies[i]) is not None]
        letters = [d for d in app["dead_letters"] if start <= d["created"] < end]
        reply_letters = [d for d in letters if d["kind"] != "webhook_quarantine"]
        webhook_5xx = [
            d
            for d in deliveries
            if start <= d["time"] < end and d.get("status") is not None and d["status"] >= 500
        ]
        return {
            "injected": len(indexes),
            "stored": sum(1 for i in indexes if injected[i].id_message in stored_ids),
            "delivered": sum(1 for i in indexes if i not in lost),
            "degraded": sum(1 for i in indexes if jobs.get(injected[i].id_message, {}).get("degraded")),
            "quarantined": sum(1 for p in poison if name is None or p["scenario"] == name),
            "poison_injected": sum(1 for p in poison if name is None or p["scenario"] == name),
            "dead_letters": len(reply_letters),
            "dead_letters_by_reason": dict(Counter(f"{d['kind']}:{d['reason_code']}" for d in reply_letters)),
            "dead_letters_open_at_end": sum(
                1 for d in reply_letters if d["status"] not in ("resolved", "discarded")
            ),
            "lost": sum(1 for i in indexes if i in lost),
            "duplicates": sum(dups.get(i, 0) for i in indexes),
            "webhook_5xx": len(webhook_5xx),
            # 503s while the database is down are the contract (Green API redelivers); any other 5xx
            # is a fault of ours.
            "webhook_5xx_db_outage": sum(1 for d in webhook_5xx if in_db_outage(d["time"])),
            "webhook_5xx_outside_db_outage": sum(1 for d in webhook_5xx if not in_db_outage(d["time"])),
            "webhook_refused": sum(
                1 for d in deliveries if start <= d["time"] < end and d.get("status") is None
            ),
            "latency_s": {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99)},
        }

    quarantined_total = sum(1 for d in app["dead_letters"] if d["kind"] == "webhook_quarantine")
    scenarios = []
    for r in runs:
        idx = [i for i, m in enumerate(injected) if m.scenario == r.name]
        f = figures(idx, r.started, r.settled, r.name)
        f["quarantined"] = sum(
            1
            for d in app["dead_letters"]
            if d["kind"] == "webhook_quarantine" and r.started <= d["created"] < r.settled
        )
        breaker = breakers.get(r.name)
        if breaker:
            opened = _first_event(app["breaker_events"], breaker, ("open",), r.started)
            fault_start = next(
                (t for t, label in r.marks if "fault" in label and "cleared" not in label), r.started
            )
            fault_end = next((t for t, label in r.marks if "cleared" in label), r.fault_ended)
            closed = _first_event(app["breaker_events"], breaker, ("closed",), fault_end)
            f["breaker"] = {
                "name": breaker,
                "open_after_fault_s": round(opened - fault_start, 2) if opened else None,
                "closed_after_recovery_s": round(closed - fault_end, 2) if closed else None,
            }
        f.update(
            {
                "name": r.name,
                "title": r.title,
                "t0": round(r.started - meta["started"], 1),
                "t1": round(r.settled - meta["started"], 1),
                "seconds": round(r.settled - r.started, 1),
                "fault_seconds": round(r.fault_ended - r.started, 1),
                "backlog_drain_s": round(r.settled - r.fault_ended, 1),
                "drained": r.drained,
                "error": r.error,
                "process_exits": [[round(t - meta["started"], 1), name, rc] for t, name, rc in r.exits],
                "db_outages": [
                    [round(a - meta["started"], 1), round(b - meta["started"], 1)]
                    for a, b in database_outages([r], app["breaker_events"])
                ],
                "marks": [[round(t - meta["started"], 1), label] for t, label in r.marks],
                "notes": r.notes,
            }
        )
        scenarios.append(f)
    overall = figures(list(range(len(injected))), 0, float("inf"), None)
    overall["quarantined"] = quarantined_total
    overall["unmatched_sends"] = len(tal.unmatched)
    overall["unanswered_at_end"] = overall["lost"]
    overall["process_exits"] = sum(len(s["process_exits"]) for s in scenarios)
    failures = []
    if overall["lost"]:
        failures.append(f"{overall['lost']} guest message(s) lost (no accepted reply)")
    if overall["duplicates"]:
        failures.append(f"{overall['duplicates']} duplicate reply(ies)")
    if tal.unmatched:
        failures.append(f"{len(tal.unmatched)} accepted send(s) answering no injected message")
    if overall["webhook_5xx_outside_db_outage"]:
        failures.append(
            f"{overall['webhook_5xx_outside_db_outage']} webhook 5xx answer(s) outside a database outage"
        )
    for s in scenarios:
        for t, name, rc in s["process_exits"]:
            failures.append(f"{name} exited on its own (status {rc}) at {t:.0f}s during {s['name']}")
    if quarantined_total != len(poison):
        failures.append(f"{len(poison)} poison notification(s) injected, {quarantined_total} quarantined")
    failures += [f"scenario {s['name']} failed to run: {s['error']}" for s in scenarios if s["error"]]
    handoffs = handoffs or {"asked": 0, "handed_back": 0, "staff_messages": 0}
    if handoffs.get("unfinished"):
        failures.append(f"{len(handoffs['unfinished'])} guest(s) who asked for a person not handed back")
    if handoffs.get("staff_duplicates"):
        failures.append(f"{handoffs['staff_duplicates']} staff message(s) delivered twice")
    if handoffs.get("bot_while_staff"):
        failures.append(f"{handoffs['bot_while_staff']} bot message(s) sent while staff held the guest")
    overall["handoff_asks"] = sum(1 for m in injected if m.topic == HANDOFF)
    return {
        "meta": meta,
        "handoffs": handoffs,
        "ok": not failures,
        "failures": failures,
        "overall": overall,
        "scenarios": scenarios,
        "timeline": [
            [round(m.at - meta["started"], 2), latencies[i], m.scenario, i in lost]
            for i, m in enumerate(injected)
        ],
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    meta, o = results["meta"], results["overall"]
    lines = [
        f"# Drill report — {meta['mode']} ({meta.get('form') or ('CI subset' if meta['ci'] else 'full')})",
        "",
        f"Started {meta['started_iso']}, {meta['duration_s']:.0f} s, {meta['rate']} guest messages/s "
        f"from {meta['chats']} concurrent chats"
        + (f" ({meta['burst_messages']} more sent in bursts)" if meta.get("burst_messages") else "")
        + f"; {meta['processes']}.",
        "",
        f"**Result: {'PASS' if results['ok'] else 'FAIL'}**"
        + ("" if results["ok"] else " — " + "; ".join(results["failures"])),
        "",
        "Lost and duplicates are counted from the fake Green API's accepted sends against the injected "
        "messages (each message asks one topic; its reply must carry that topic's fact), "
        "not from our tables.",
        "",
        "| scenario | s | injected | stored | delivered | degraded | quarantined | dead letters | lost | dup "
        "| webhook 5xx (DB down / other) | drain s | p50 s | p95 s | p99 s | breaker open / close s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in [
        *results["scenarios"],
        {**o, "name": "**overall**", "seconds": meta["duration_s"], "backlog_drain_s": None},
    ]:
        b = s.get("breaker")
        breaker = f"{_fmt(b['open_after_fault_s'])} / {_fmt(b['closed_after_recovery_s'])}" if b else ""
        lat = s["latency_s"]
        lines.append(
            f"| {s['name']} | {_fmt(s['seconds'])} | {s['injected']} | {s['stored']} | {s['delivered']} | "
            f"{s['degraded']} | {s['quarantined']} | {s['dead_letters']} | {s['lost']} | {s['duplicates']} | "
            f"{s['webhook_5xx_db_outage']} / {s['webhook_5xx_outside_db_outage']} | "
            f"{_fmt(s.get('backlog_drain_s'))} | {_fmt(lat['p50'])} | {_fmt(lat['p95'])} | "
            f"{_fmt(lat['p99'])} | {breaker} |"
        )
    h = results.get("handoffs") or {}
    if h.get("asked"):
        lines += [
            "",
            "## Handoffs and the simulated staff",
            "",
            f"{h['asked']} guest(s) asked for a person ({h['via_api']} answered through the inbox's API, "
            f"{h['via_phone']} typed on the hotel's phone); {h['handed_back']} handed back to the bot, "
            f"{len(h['unfinished'])} not. Each got the handoff notice (or, when staff answered first, "
            "their message), then asked one question while staff held the conversation, answered by "
            f"staff. Staff messages: {h['staff_messages']} ({h['staff_messages_via_phone']} on the phone), "
            f"delivered twice: {h['staff_duplicates']} (must be 0); API replies retried with their request "
            f"key and queued once: {h['api_retries_same_job']}; bot messages while staff held a guest: "
            f"{h['bot_while_staff']} (must be 0); asked to handed back p50 / max "
            f"{_fmt(h['hand_back_s']['p50'])} / {_fmt(h['hand_back_s']['max'])} s; staff API calls "
            f"retried after an error: {h['staff_api_errors_retried']}.",
        ]
        lines += [f"- not handed back: {json.dumps(u)}" for u in h["unfinished"]]
    reasons = Counter[str]()
    for s in results["scenarios"]:
        reasons.update(s["dead_letters_by_reason"])
    lines += ["", "## Dead letters (reply kinds) by reason", ""]
    lines += [f"- `{k}`: {v}" for k, v in reasons.most_common()] or ["- none"]
    lines += [
        "",
        f"Dead letters still open at the end: {o['dead_letters_open_at_end']}. "
        f"Webhook 5xx outside a database outage: {o['webhook_5xx_outside_db_outage']} (must be 0; "
        "503 while the database is down is the contract: Green API redelivers). "
        "Processes that exited on their own (started again by the drill, as a deployment's supervisor "
        f"would; must be 0): {o['process_exits']}. "
        f"Webhook pushes refused (connection refused / reset, web down): {o['webhook_refused']}.",
        "",
        "## Timeline",
        "",
        "![timeline](drill-timeline.svg)",
        "",
        "Each dot is a guest message at the time it was injected, at the height of its reply latency "
        "(webhook queued by the fake → send accepted by the fake); a red cross on top is a message without "
        "a reply. Grey bands are scenarios.",
        "",
        "## Scenario events",
        "",
    ]
    for s in results["scenarios"]:
        events = ", ".join(f"{t:.0f}s {label}" for t, label in s["marks"]) or "-"
        lines.append(
            f"- **{s['name']}** ({s['title']}): {events}" + (f" — ERROR {s['error']}" if s["error"] else "")
        )
        notes = s.get("notes") or {}
        lines += [f"  - {key}: {json.dumps(value)}" for key, value in notes.items()]
    return "\n".join(lines) + "\n"


def svg(results: dict[str, Any]) -> str:
    width, height, left, top, bottom = 1100, 360, 60, 40, 60
    plot_w, plot_h = width - left - 20, height - top - bottom
    duration = max(1.0, results["meta"]["duration_s"])
    points = results["timeline"]
    lat_values = [p[1] for p in points if p[1] is not None]
    y_max = max(5.0, math.ceil(max(lat_values, default=1.0)))

    def x(t: float) -> float:
        return left + plot_w * min(max(t, 0.0), duration) / duration

    def y(v: float) -> float:
        return top + plot_h - plot_h * min(v, y_max) / y_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">Reply latency of each guest message over the drill '
        f"({html.escape(results['meta']['mode'])})</text>",
    ]
    for n, s in enumerate(results["scenarios"]):
        x0, x1 = x(s["t0"]), x(s["t1"])
        fill = "#eeeeee" if n % 2 == 0 else "#f8f8f8"
        out.append(
            f'<rect x="{x0:.1f}" y="{top}" width="{max(1.0, x1 - x0):.1f}" height="{plot_h}" fill="{fill}"/>'
        )
        out.append(
            f'<text x="{x0 + 3:.1f}" y="{top + plot_h + 14}" font-size="9" '
            f'transform="rotate(20 {x0 + 3:.1f} {top + plot_h + 14})">{html.escape(s["name"])}</text>'
        )
    for tick in range(0, int(y_max) + 1, max(1, int(y_max) // 5)):
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}s</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#333"/>')
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>'
    )
    for t, latency, _, lost in points:
        if lost or latency is None:
            out.append(f'<text x="{x(t):.1f}" y="{top + 10}" fill="#d00" text-anchor="middle">&#215;</text>')
        else:
            out.append(
                f'<circle cx="{x(t):.1f}" cy="{y(latency):.1f}" r="2" fill="#1f77b4" fill-opacity="0.7"/>'
            )
    out.append(
        f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">'
        f"seconds since start (0-{duration:.0f})</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drill-results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "drill-report.md").write_text(markdown(results))
    (out_dir / "drill-timeline.svg").write_text(svg(results))
