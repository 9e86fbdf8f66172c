"""Graceful degradation: levels, rules, feature switches, manual override and dependency maintenance.

The public API (import ``reliability.degradation``). Layers: :mod:`.state` (the snapshot every
process reads), :mod:`.rules` (conditions and what the rules ask), :mod:`.services` (the
evaluator and the staff's actions: every write), :mod:`.selectors` (reads for the API and console).

**Asking** (the hot path): ``is_enabled("ai_replies")``, ``under_maintenance("green_api")``,
``snapshot().read_only``. Each answer comes from a process-local snapshot of the one
``DegradationState`` row; the snapshot is re-read (one primary-key SELECT) at most every
``DEGRADATION_REFRESH_SECONDS`` (1 s), by the first caller after the interval, so every process
agrees within that interval plus one request. Between refreshes an answer costs a clock read and a
set lookup, no I/O. If the database cannot be read the last snapshot stays in force (stale but
safe: it was the truth a moment ago) and the failure is logged once. An override's or a
maintenance's end is checked by the reader against the row's ``*_until``, so it ends on time in
every process, not only when the evaluator next runs.

**Deciding** (beat, every ``DEGRADATION_EVALUATE_INTERVAL`` s): ``degradation_evaluate()`` checks
the enabled ``DegradationRule`` rows; each whose condition holds asks for a minimum level and some
switches off. Worse goes in force at once; better only after the rules have asked for less for
``DEGRADATION_RECOVERY_SECONDS`` without a break (hysteresis: a flapping breaker holds the level, it
does not flap it). A staff override (level, switches off, reason, optional end) replaces what the
rules ask until it ends or is cleared. Every change of the level or switches in force is a
``DegradationEvent`` row, a log line, the ``system_degradation_level`` gauge and the
``degradation_events_total`` counter, and a mail to ``ADMINS`` on a move to SEVERE or worse and on
recovery below it.

**Conditions** come from the breakers (by dependency name), from named health checks and signals
that other apps register at start-up (``register_health_check``, ``register_signal``: messaging
registers ``reply_backlog`` and ``reply_p95_seconds``), and from the dead-letter table. This module
never imports messaging.

**Probes are never switched off.** A switch that stops every call to a dependency (registered with
``register_gating_switch``: ``ai_replies`` stops DeepSeek, ``outbound_sending`` Green API) also stops
the calls that would probe its breaker, so a rule on that breaker turning it off could hold for
ever: the breaker stays OPEN until a call comes. So once the breaker waits for a probe (OPEN with
its open time over, or HALF_OPEN) a rule on it keeps its level but no longer asks for that switch
off: it comes back on (after the usual hysteresis), the next calls probe the breaker, success
closes it and the level recovers; a failed probe opens it again and the switch goes off at once.
"""

from __future__ import annotations

from reliability.degradation.rules import (
    REPLY_BACKLOG,
    REPLY_P95_SECONDS,
    Ask,
    register_gating_switch,
    register_health_check,
    register_signal,
    rules_evaluate,
    unregister,
)
from reliability.degradation.selectors import (
    degradation_status,
    retry_after_seconds,
)
from reliability.degradation.services import (
    degradation_evaluate,
    degradation_override_clear,
    degradation_override_set,
    maintenance_end,
    maintenance_start,
    parse_level,
)
from reliability.degradation.state import (
    STATE_PK,
    SWITCHES,
    Level,
    Snapshot,
    is_enabled,
    prime,
    refresh_now,
    snapshot,
    under_maintenance,
)
from reliability.services import MAX_OVERRIDE_MINUTES, override_until

__all__ = [
    "MAX_OVERRIDE_MINUTES",
    "REPLY_BACKLOG",
    "REPLY_P95_SECONDS",
    "STATE_PK",
    "SWITCHES",
    "Ask",
    "Level",
    "Snapshot",
    "degradation_evaluate",
    "degradation_override_clear",
    "degradation_override_set",
    "degradation_status",
    "is_enabled",
    "maintenance_end",
    "maintenance_start",
    "override_until",
    "parse_level",
    "prime",
    "refresh_now",
    "register_gating_switch",
    "register_health_check",
    "register_signal",
    "retry_after_seconds",
    "rules_evaluate",
    "snapshot",
    "under_maintenance",
    "unregister",
]
