"""``make bench-scale``: the staff console on a year of 1,000 hotels against one small hotel.

1. Creates a throwaway database on the PostgreSQL server of ``DATABASE_URL`` (default
   ``postgres://postgres@127.0.0.1:5432``), migrates it once and clones it (``CREATE DATABASE …
   TEMPLATE``) for the small one; fills both set-based (:mod:`bench.scale.fill`).
2. Times every staff page on each (:mod:`bench.scale.pages`, one child process per database, so
   each has its own settings and connection pool).
3. Writes ``bench-scale-results.json``: per page p50/p95 small and large, the ratio, the verdict
   against the targets (p50 ≤ 300 ms on the large database and ≤ 2x the same page on the small
   one), and the EXPLAIN (ANALYZE, BUFFERS) of the slowest query of each failing page and of the
   slowest pages.
4. Purges a copy of the large database as the daily beat task does (:mod:`bench.scale.purge`):
   rows deleted per table, wall time, every query's duration (target: none over 1 s), the rows that
   had to stay counted before and after, and a second run that must delete nothing; the copy is
   dropped, so the pair can be timed again.
5. Drops the databases (``--keep``: keeps them and prints their names; ``--reuse NAME``: times an
   existing pair again without building). ``--skip-pages`` / ``--skip-purge``: one phase only.

Exit status 1 when a page misses a target or the purge misses its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.scale.fill import Shape
from bench.scratch_db import postgres_url

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench-scale-results.json"
TARGET_P50_MS = 300.0
TARGET_RATIO = 2.0
#: Pages whose slowest query is EXPLAINed besides the failing ones.
SLOWEST_EXPLAINED = 10


def _url(name: str) -> str:
    return urlunsplit(urlsplit(postgres_url())._replace(path=f"/{name}"))


def _admin(sql: str) -> None:
    with psycopg.connect(_url("postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _child(database: str, var: str, *args: str, role: str = "") -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(
        {
            "DATABASE_URL": _url(database),
            "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
            "DJANGO_DEBUG": "1",  # the development values (dev keys); the timing child turns DEBUG off
            "HOTELBOT_VAR_DIR": var,
            "LOG_LEVEL": "ERROR",
            "BREAKER_EVENT_WRITER": "0",
            "API_THROTTLE_READ": "off",  # one client asks hundreds of times a minute
            "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/1",
        }
    )
    if role:
        env["HOTELBOT_PROCESS_ROLE"] = role  # its statement and lock timeouts
    command = [sys.executable, "-m", "bench.scale.child", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True)  # noqa: S603 - our own module


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


def _explain(database: str, sql: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a read (a write is not run again)."""
    if not sql.lstrip().upper().startswith("SELECT"):
        return "(not a SELECT: not explained)"
    with psycopg.connect(_url(database), autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()
    return "\n".join(row[0] for row in rows)


def compare(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per page (paired by name): p50/p95 on each database, the ratio and the verdict."""
    by_name = {row["name"]: row for row in small}
    pages = []
    for row in large:
        base = by_name.get(row["name"])
        p50, p95 = _percentile(row["durations_ms"], 0.5), _percentile(row["durations_ms"], 0.95)
        entry: dict[str, Any] = {
            "name": row["name"],
            "kind": row["kind"],
            "url": row["url"],
            "large": {
                "p50_ms": p50,
                "p95_ms": p95,
                "queries": row["queries"],
                "query_ms": row.get("query_ms"),
                "rows": row.get("rows"),
                "status": row["status"],
            },
            "slowest_query_ms": row["slowest_query_ms"],
        }
        if base is None:
            entry.update(small=None, ratio=None, passed=p50 <= TARGET_P50_MS)
        else:
            small_p50 = _percentile(base["durations_ms"], 0.5)
            entry["small"] = {
                "p50_ms": small_p50,
                "p95_ms": _percentile(base["durations_ms"], 0.95),
                "queries": base["queries"],
                "query_ms": base.get("query_ms"),
                "rows": base.get("rows"),
                "status": base["status"],
            }
            entry["ratio"] = round(p50 / small_p50, 2) if small_p50 else None
            entry["passed"] = p50 <= TARGET_P50_MS and p50 <= TARGET_RATIO * small_p50
            entry["fewer_rows_on_small"] = _fewer_rows(entry["small"]["rows"], entry["large"]["rows"])
        entry["_sql"] = row["slowest_query"]
        pages.append(entry)
    return pages


def _fewer_rows(small: int | None, large: int | None) -> bool:
    """The small database's page shows fewer rows than the large one's (a filter or search that
    matches a handful of its few hundred rows, the hotel list of its one hotel): its ratio then
    weighs rendering those rows, not the size of the data."""
    return small is not None and large is not None and small < large


def _merge(earlier: list[dict[str, Any]] | None, later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One round's figures added to the earlier rounds' (durations joined; the slowest query of the
    slower captured run kept)."""
    if earlier is None:
        return later
    by_name = {row["name"]: row for row in earlier}
    for row in later:
        before = by_name.get(row["name"])
        if before is None:
            continue
        row["durations_ms"] = before["durations_ms"] + row["durations_ms"]
        if (before["slowest_query_ms"] or 0) > (row["slowest_query_ms"] or 0):
            row["slowest_query_ms"], row["slowest_query"] = (
                before["slowest_query_ms"],
                before["slowest_query"],
            )
    return later


def _build(large: str, small: str, shape: Shape, var: str) -> dict[str, float]:
    took: dict[str, float] = {}
    started = time.monotonic()
    _admin(f'CREATE DATABASE "{large}"')
    print(f"migrating {large} ...", flush=True)
    _child(large, var, "setup")
    _admin(f'CREATE DATABASE "{small}" TEMPLATE "{large}"')
    took["migrate_s"] = round(time.monotonic() - started, 1)
    print(f"filling {small}: {Shape.small().as_dict()}", flush=True)
    _child(small, var, "fill", json.dumps(Shape.small().as_dict()))
    print(f"filling {large}: {shape.as_dict()}", flush=True)
    started = time.monotonic()
    _child(large, var, "fill", json.dumps(shape.as_dict()))
    took["fill_large_s"] = round(time.monotonic() - started, 1)
    return took


def _size(database: str) -> int:
    with psycopg.connect(_url(database), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _time_pages(large: str, small: str, var: str, reps: int, rounds: int) -> list[dict[str, Any]]:
    timings: dict[str, list[dict[str, Any]]] = {}
    # Rounds in ABBA order (small, large, large, small, ...): a drift of the shared
    # machine's load weighs on both databases alike.
    order = [("small", "large") if r % 2 == 0 else ("large", "small") for r in range(rounds)]
    for round_number, pair in enumerate(order, 1):
        for label in pair:
            print(f"round {round_number}: timing the pages on the {label} database ...", flush=True)
            out = Path(var) / f"{label}.json"
            _child(small if label == "small" else large, var, "time", str(reps), str(out))
            timings[label] = _merge(timings.get(label), json.loads(out.read_text()))
    pages = compare(timings["small"], timings["large"])
    explained = {p["name"] for p in pages if not p["passed"]}
    slowest = sorted(pages, key=lambda p: -p["large"]["p50_ms"])[:SLOWEST_EXPLAINED]
    explained |= {p["name"] for p in slowest}
    for page in pages:
        sql = page.pop("_sql")
        if page["name"] in explained and sql:
            page["slowest_query"] = sql
            page["plan"] = _explain(large, sql)
    return pages


def _purge(large: str, var: str) -> dict[str, Any]:
    """The beat task's purge on a copy of the large database (the pair stays as filled, to be timed
    again), in a worker's role (its statement timeout); the copy is dropped afterwards."""
    copy = f"{large}_purge"
    started = time.monotonic()
    _admin(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{copy}" TEMPLATE "{large}"')
    copied = round(time.monotonic() - started, 1)
    print(f"purging a copy of {large} ({copied} s to copy) ...", flush=True)
    try:
        out = Path(var) / "purge.json"
        _child(copy, var, "purge", str(out), role="worker")
        result: dict[str, Any] = {"database": "a copy of the large database", "copy_s": copied}
        result.update(json.loads(out.read_text()))
        return result
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


def _print_purge(purge: dict[str, Any]) -> None:
    for label in ("first", "second"):
        run = purge[label]
        print(
            f"  purge, {label} run: {run['rows']:,} rows deleted in {run['wall_s']} s,"
            f" {run['queries']:,} queries, slowest {run['slowest_query_ms']} ms"
        )
    lost = purge["must_stay"]["lost"]
    print(f"  rows that had to stay: {'all stayed' if not lost else f'LOST {lost}'}")
    print(f"  left past retention: {purge['left_past_retention']}")
    print(
        f"  purge: {'PASS' if purge['passed'] else 'FAIL'} (no query over {purge['target_query_ms']:.0f} ms,"
        " nothing needed deleted, nothing left, a second run deletes nothing)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="size of the large database (1.0: a year of 1,000 hotels)"
    )
    parser.add_argument("--reps", type=int, default=5, help="timed runs per page and round (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per database, in ABBA order")
    parser.add_argument("--keep", action="store_true", help="keep the databases (their names are printed)")
    parser.add_argument("--reuse", metavar="NAME", help="time the kept pair NAME and NAME_small again")
    parser.add_argument("--skip-pages", action="store_true", help="no page timing (the purge phase only)")
    parser.add_argument("--skip-purge", action="store_true", help="no purge phase (the pages only)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default %(default)s)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.reps < 1 or args.rounds < 1:
        parser.error("--scale must be > 0, --reps and --rounds >= 1")
    shape = Shape.large(args.scale)
    large = args.reuse or f"hotelbot_scale_{uuid.uuid4().hex[:8]}"
    small = f"{large}_small"
    keep = args.keep or bool(args.reuse)
    results: dict[str, Any] = {"shape": shape.as_dict(), "small_shape": Shape.small().as_dict()}
    pages: list[dict[str, Any]] = []
    purge: dict[str, Any] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="hotelbot-bench-scale-") as var:
            if args.reuse:
                for database in (small, large):
                    print(f"migrating {database} ...", flush=True)
                    _child(database, var, "migrate")
            else:
                results["build"] = _build(large, small, shape, var)
            results["database_bytes"] = {"large": _size(large), "small": _size(small)}
            if not args.skip_pages:
                pages = _time_pages(large, small, var, args.reps, args.rounds)
            if not args.skip_purge:
                purge = _purge(large, var)
    finally:
        if keep:
            print(f"kept databases {large} and {small}", flush=True)
        else:
            for database in (small, large):
                _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    failed = [p for p in pages if not p["passed"]]
    results["targets"] = {"p50_ms": TARGET_P50_MS, "ratio": TARGET_RATIO}
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]  # the machine was shared?
    if pages:
        results["summary"] = {
            "pages": len(pages),
            "failed": len(failed),
            "large_p50_median_ms": round(statistics.median(p["large"]["p50_ms"] for p in pages), 2),
            "large_p50_max_ms": max(p["large"]["p50_ms"] for p in pages),
            "over_p50_target": sum(p["large"]["p50_ms"] > TARGET_P50_MS for p in pages),
            "ratio_misses_with_fewer_rows_on_small": sum(bool(p.get("fewer_rows_on_small")) for p in failed),
        }
    results["pages"] = pages
    if purge is not None:
        results["purge"] = purge
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print()
    width = max((len(p["name"]) for p in pages), default=0)
    for page in pages:
        small_p50 = page["small"]["p50_ms"] if page["small"] else float("nan")
        verdict = "PASS" if page["passed"] else "FAIL"
        print(
            f"  {verdict}  {page['name']:<{width}}  small {small_p50:8.1f}"
            f"  large {page['large']['p50_ms']:8.1f} ms"
            f"  x{page['ratio'] if page['ratio'] is not None else '-'}"
            + (
                f"  (rows {page['small']['rows']} / {page['large']['rows']})"
                if page.get("fewer_rows_on_small")
                else ""
            )
        )
    if pages:
        summary = results["summary"]
        print(f"\n{len(pages) - len(failed)} of {len(pages)} pages within the targets")
        print(
            f"  p50 on the large database: max {summary['large_p50_max_ms']} ms,"
            f" {summary['over_p50_target']} over {TARGET_P50_MS:.0f} ms; of the ratio misses,"
            f" {summary['ratio_misses_with_fewer_rows_on_small']} show fewer rows on the small database"
        )
    if purge is not None:
        _print_purge(purge)
    print(f"wrote {args.out.name}")
    return 1 if failed or (purge is not None and not purge["passed"]) else 0
