"""``make bench``: every reliability benchmark in one run; prints a table, writes bench-results.json.

Needs the Redis of ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); everything else is local
(the embedded-default run starts its own processes in a temporary directory).
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bench import breaker_bench, degradation_bench, embedded_bench, http_bench, webhook_bench
from bench.cost import run as cost_bench

TARGETS = (
    *breaker_bench.TARGETS,
    breaker_bench.Target("http_overhead_ratio", 1.03),
    breaker_bench.Target("webhook_hung_broker_p99_ms", 100.0),
    breaker_bench.Target("embedded_reply_p95_ms", 1000.0),
    breaker_bench.Target("degradation_check_ns", 1000.0),
)
RESULTS = Path(__file__).resolve().parent.parent / "bench-results.json"


def main() -> int:
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    print(f"breaker benchmarks against {redis_url} ...", flush=True)
    results: dict[str, float] = dict(breaker_bench.run(redis_url))
    print("http overhead against a local fake Green API ...", flush=True)
    results.update(http_bench.measure())
    print("webhook latency with a hung broker ...", flush=True)
    results.update(webhook_bench.measure())
    print(
        f"reply latency on the embedded default at {embedded_bench.RATE:g} guest messages/s ...", flush=True
    )
    results.update(embedded_bench.measure())
    print("degradation switch lookup on the hot path ...", flush=True)
    results.update(degradation_bench.measure())
    print("one guest message's cost against a naive bot (make bench-cost alone) ...", flush=True)
    cost = cost_bench.measure()
    cost_bench.RESULTS.write_text(json.dumps(cost, indent=2) + "\n")
    results.update(cost_bench.flat(cost))
    width = max(len(k) for k in results)
    print()
    for key, value in results.items():
        print(
            f"  {key:<{width}}  {value:>14,.4g}"
            if isinstance(value, float)
            else f"  {key:<{width}}  {value:>14,}"
        )
    print()
    failed = 0
    for target in TARGETS:
        value, bound = results[target.metric], target.bound(results)
        ok = value <= bound
        failed += not ok
        verdict = "PASS" if ok else "FAIL"
        print(f"  {verdict}  {target.metric} = {value:,.4g}  (target {target.describe()} = {bound:,.4g})")
    for key, target in cost["targets"].items():
        failed += not target["met"]
        verdict = "PASS" if target["met"] else "FAIL"
        print(f"  {verdict}  cost {key} = {target['value']:,.4g}  (target <= {target['bound']:,.4g})")
    print(f"  (hotelbot's statements per message: {cost_bench.RESULTS.name})")
    RESULTS.write_text(json.dumps({"results": results, "failed_targets": failed}, indent=2) + "\n")
    print(f"\nwrote {RESULTS.name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
