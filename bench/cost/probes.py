"""What the cost bench reads from the machine: CPU of process trees (/proc), and PostgreSQL's and
Redis's own counters (pg_stat_statements, pg_stat_database, INFO commandstats)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import redis

TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _own_and_reaped_ticks(pid: int) -> int:
    """utime + stime of the process, plus cutime + cstime: the CPU of children it already reaped
    (a PostgreSQL backend that ended its session, a recycled worker) stays counted."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime (fields 14-17)


def tree_cpu_ms(*roots: int) -> float:
    """CPU (ms) the trees under ``roots`` have used so far, the reaped children included."""
    total, stack = 0, list(roots)
    while stack:
        pid = stack.pop()
        total += _own_and_reaped_ticks(pid)
        stack.extend(_children(pid))
    return total * TICK_MS


def redis_commands(client: redis.Redis) -> int:
    """Commands the Redis server has run since it started (every database, INFO excluded)."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def pg_statements_reset(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def pg_statements(admin_url: str, database: str) -> list[tuple[str, int, bool]]:
    """(normalised query, calls, top level?) of one database since the last reset; the nested ones
    are run by the server itself (the foreign-key checks of an INSERT or UPDATE)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls, toplevel FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s ORDER BY calls DESC",
            [database],
        ).fetchall()
    return [(str(q), int(c), bool(t)) for q, c, t in rows]
