"""``make drill`` / ``make drill-ci``: the fault drill on the real stack.

    python -m drill [--ci | --quick] [--embedded] [--only NAME ...] [--out DIR] [--rate N] [--keep-logs DIR]

Boots gunicorn (2 workers), 2 Celery workers, beat, both fakes, and (unless --embedded) its own
PostgreSQL and Redis on free ports; sends guest messages while the scenarios run; writes
drill-results.json, drill-report.md and drill-timeline.svg. Exit status 1 on any lost or
duplicate reply, a guest left unanswered, or a scenario that could not run; 2 if the stack
could not boot.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drill import report
from drill.runner import QUICK_RATE, Drill, app_view, booted_stack
from drill.scenarios import selected
from drill.staff import SimulatedStaff, StaffApi, create_staff
from drill.traffic import Traffic, tally


def run(
    *,
    ci: bool,
    embedded: bool,
    out: Path,
    quick: bool = False,
    only: list[str] | None = None,
    rate: float | None = None,
    keep_logs: Path | None = None,
) -> dict[str, Any]:
    scenarios = selected(ci=ci or quick, embedded=embedded, names=only, quick=quick)
    rate = rate or (QUICK_RATE if quick else 1.0 if ci else 1.5)
    form = "quick form" if quick else "CI subset" if ci else "full"
    started = time.time()
    print(
        f"drill ({'embedded' if embedded else 'PostgreSQL + Redis'}, {form}): "
        f"{', '.join(s.name for s in scenarios)}",
        flush=True,
    )
    with booted_stack(embedded=embedded, keep_logs=keep_logs) as stack:
        print(f"  stack up in {time.time() - started:.0f}s at {stack.web_url}", flush=True)
        traffic = Traffic(stack.green_url, rate=rate, chats=6)
        drill = Drill(stack, traffic, ci=ci, embedded=embedded, quick=quick)
        drill.staff = SimulatedStaff(stack, traffic, StaffApi(stack.web_url, create_staff(stack)))
        traffic_started = time.time()
        traffic.start()
        drill.staff.start()
        runs = []
        try:
            for scenario in scenarios:
                runs.append(drill.run(scenario, settle_timeout=90 if drill.ci else 150))
        finally:
            traffic.stop()
            try:
                final_ok = drill.settle(180, older_than=0.0)
            finally:
                drill.staff.stop()
        drill.collect()
        sent = drill.sent()
        app = app_view(stack)
        tal = tally(traffic.injected, sent)
        ended = time.time()
        meta = {
            "mode": "embedded (SQLite, filesystem broker)" if embedded else "PostgreSQL + Redis",
            "ci": drill.ci,
            "form": form,
            "started": traffic_started,
            "started_iso": datetime.fromtimestamp(traffic_started, UTC).isoformat(timespec="seconds"),
            "duration_s": round(ended - traffic_started, 1),
            "boot_s": round(traffic_started - started, 1),
            "rate": rate,
            "chats": traffic.chats,
            "processes": "gunicorn 2 workers, 2 Celery worker processes (concurrency 2), beat, fakes"
            + ("" if embedded else ", throwaway PostgreSQL and redis-server"),
            "final_drain_ok": final_ok,
            "inject_errors": traffic.errors,
            "burst_messages": traffic.bursts,
        }
        handoffs = report.handoff_figures(traffic.handoffs, sent, tal, drill.staff)
        results = report.compute(
            runs=runs,
            injected=traffic.injected,
            poison=traffic.poison,
            tal=tal,
            app=app,
            deliveries=list(drill.deliveries.values()),
            send_requests=list(drill.send_requests.values()),
            breakers={s.name: s.breaker for s in scenarios if s.breaker},
            meta=meta,
            handoffs=handoffs,
        )
    report.write(results, out)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill", description=__doc__.split("\n\n")[0])
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--ci", action="store_true", help="The short subset with shortened timing.")
    form.add_argument(
        "--quick",
        action="store_true",
        help="The suite's form: CI holds x0.6 at 1.6 guests/s, without faults other e2e tests cover.",
    )
    parser.add_argument("--embedded", action="store_true", help="SQLite and the filesystem broker.")
    parser.add_argument("--only", nargs="*", help="Run only these scenarios (names from drill-report.md).")
    parser.add_argument("--rate", type=float, help="Guest messages per second (default 1.5; CI 1.0).")
    parser.add_argument("--out", type=Path, default=Path("."), help="Where the report files go.")
    parser.add_argument("--keep-logs", type=Path, help="Copy the processes' logs here.")
    args = parser.parse_args(argv)
    try:
        results = run(
            ci=args.ci,
            quick=args.quick,
            embedded=args.embedded,
            out=args.out,
            only=args.only,
            rate=args.rate,
            keep_logs=args.keep_logs,
        )
    except KeyboardInterrupt:
        print("drill interrupted; every process and temp dir was removed", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"drill could not run: {e}", file=sys.stderr)
        return 2
    o = results["overall"]
    print(
        f"{'PASS' if results['ok'] else 'FAIL'}: injected {o['injected']}, delivered {o['delivered']}, "
        f"lost {o['lost']}, duplicates {o['duplicates']}, degraded {o['degraded']}, dead letters "
        f"{o['dead_letters']}, quarantined {o['quarantined']}, webhook 5xx {o['webhook_5xx']} "
        f"({o['webhook_5xx_outside_db_outage']} outside a database outage), "
        f"latency p50/p95/p99 {o['latency_s']['p50']}/{o['latency_s']['p95']}/{o['latency_s']['p99']} s; "
        f"handoffs {results['handoffs']['asked']} (handed back {results['handoffs']['handed_back']}), "
        f"staff messages {results['handoffs']['staff_messages']}; "
        f"report in {args.out / 'drill-report.md'}"
    )
    for failure in results["failures"]:
        print(f"  - {failure}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
