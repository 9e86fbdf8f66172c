"""Every breaker knob, declared once.

A knob is a field of :class:`~reliability.breaker.machine.CircuitBreakerConfig`. From that one
declaration:

* staff tune it (:data:`TUNABLE`): a column of ``reliability.models.BreakerConfig`` with the same
  name, turned into the runtime config by ``BreakerConfig.to_config`` (derived from this list),
  shown by the console's admin and API - unless it is code-only (:data:`CODE_ONLY`, with why);
* the shared stores receive it (:data:`STORE_ARGS`): its position in the Redis scripts' ``ARGV``
  and the name under which ``lua/prelude.lua`` and its Python port (``stores/rules.py``) read it
  are derived from its place in that tuple (:func:`store_args`, :func:`lua_header`,
  :func:`decode_store_args`) - unless the process applies it before the store sees an outcome
  (:data:`IN_PROCESS`, with why).

``tests/reliability/breaker/test_knobs.py`` fails when a field is in none of these places, so a
knob cannot be added half-way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reliability.breaker.machine import OPEN_DURATION_CEILING, CircuitBreakerConfig

#: Fields set in code only, never by staff (not in the model, the admin or the API), and why.
CODE_ONLY: dict[str, str] = {
    "failure_exceptions": "exception types: only code can name them",
    "ignored_exceptions": "exception types: only code can name them",
    "is_failure": "a Python predicate",
    "classify_results": "how the calling code's results look (responses or not)",
}

#: Fields staff tune: a ``BreakerConfig`` column each, in the admin and the API (both take the
#: list from here).
TUNABLE: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(CircuitBreakerConfig) if f.name not in CODE_ONLY
)
#: The tunable knobs that decide how an open breaker recovers (how long it stays open, its
#: half-open probes); every other tunable knob decides when it opens. The admin groups them so.
RECOVERY: frozenset[str] = frozenset(
    {
        "recovery_timeout",
        "recovery_timeout_multiplier",
        "max_recovery_timeout",
        "half_open_max_calls",
        "half_open_max_wait",
        "success_threshold",
    }
)


@dataclass(frozen=True, slots=True)
class StoreArg:
    """One argument every store script receives: ``name`` is the Lua local of ``lua/prelude.lua``
    and the attribute of its Python port; ``field`` the config field it carries (None: the store's
    own key TTL); ``kind`` how it travels (floats as ``repr``, so Lua sees the same doubles)."""

    name: str
    field: str | None
    kind: type[int] | type[float] | type[str]
    #: The value sent when the field is None (``max_recovery_timeout``: capped by one day).
    when_none: float | None = None


#: The config as every store script receives it: ARGV[1..len] in this order.
STORE_ARGS: tuple[StoreArg, ...] = (
    StoreArg("FT", "failure_threshold", int),
    StoreArg("REC", "recovery_timeout", float),
    StoreArg("ST", "success_threshold", int),
    StoreArg("W", "window_size", int),
    StoreArg("MINR", "minimum_requests", int),
    StoreArg("WTYPE", "window_type", str),
    StoreArg("FRT", "failure_rate_threshold", float),
    StoreArg("SRT", "slow_call_rate_threshold", float),
    StoreArg("HOM", "half_open_max_calls", int),
    StoreArg("HOW", "half_open_max_wait", float),
    StoreArg("MULT", "recovery_timeout_multiplier", float),
    StoreArg("CAP", "max_recovery_timeout", float, when_none=OPEN_DURATION_CEILING),
    StoreArg("TTL", None, int),
)
#: How many config arguments there are: a script's own arguments are ``ARGV[NARGS + 1]``, ...
NARGS = len(STORE_ARGS)

#: Config fields the shared stores never see, and why: the process applies them to an outcome
#: before recording it.
IN_PROCESS: dict[str, str] = {
    "slow_call_duration": "the process that timed the call records it as slow or not",
    "failure_statuses": "the process classifies an outcome before recording it",
    **CODE_ONLY,
}


def _encode(arg: StoreArg, value: Any) -> str:
    if value is None:
        value = arg.when_none
    if arg.kind is float:
        return repr(float(value))
    return str(value)


def store_args(config: CircuitBreakerConfig, *, key_ttl: float) -> tuple[str, ...]:
    """ARGV[1..NARGS] of every store script, for ``config`` and a key TTL of ``key_ttl`` seconds."""
    return tuple(
        str(max(1, round(key_ttl * 1000))) if arg.field is None else _encode(arg, getattr(config, arg.field))
        for arg in STORE_ARGS
    )


def decode_store_args(args: Sequence[str]) -> dict[str, Any]:
    """The Python port's view of ARGV[1..NARGS]: each argument's name -> its value."""
    return {arg.name: arg.kind(args[i]) for i, arg in enumerate(STORE_ARGS)}


def lua_header() -> str:
    """The Lua that reads the config arguments into the prelude's locals (and ``NARGS``)."""
    lines = [
        f"local {arg.name} = ARGV[{i}]" if arg.kind is str else f"local {arg.name} = tonumber(ARGV[{i}])"
        for i, arg in enumerate(STORE_ARGS, start=1)
    ]
    return "\n".join([*lines, f"local NARGS = {NARGS}", ""])
