"""What the rules ask: the conditions (breakers, registered health checks and signals, dead letters)
and the level and switches each enabled ``DegradationRule`` asks for now."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reliability.degradation.state import _KNOWN_SWITCHES
from reliability.models import (
    DeadLetter,
    DegradationLevel,
    DegradationRule,
)

logger = logging.getLogger(__name__)

#: Signals messaging registers (reliability never imports messaging).
REPLY_BACKLOG = "reply_backlog"
REPLY_P95_SECONDS = "reply_p95_seconds"

# --- condition providers (registered by other apps at start-up) ---------------------------------
_health_checks: dict[str, Callable[[], bool]] = {}
_signals: dict[str, Callable[[], float | None]] = {}


def register_health_check(name: str, provider: Callable[[], bool]) -> None:
    """``provider()`` answers True while check ``name`` passes (``health_failing`` rules ask it)."""
    _health_checks[name] = provider


def register_signal(name: str, provider: Callable[[], float | None]) -> None:
    """``provider()`` returns the current value of signal ``name`` (None: unknown)."""
    _signals[name] = provider


#: dependency -> switches that, off, stop every call to it (and so the probes of its breaker)
_gating_switches: dict[str, frozenset[str]] = {}


def register_gating_switch(switch: str, dependency: str) -> None:
    """Switch ``switch`` off means no call reaches ``dependency``: rules on its breaker leave it on
    while the breaker waits for a probe (see the module docstring)."""
    if switch not in _KNOWN_SWITCHES:
        raise ValueError(f"unknown degradation switch {switch!r}")
    _gating_switches[dependency] = _gating_switches.get(dependency, frozenset()) | {switch}


def unregister(name: str) -> None:
    _health_checks.pop(name, None)
    _signals.pop(name, None)


def _signal(name: str) -> float | None:
    provider = _signals.get(name)
    if provider is None:
        logger.warning("degradation: no provider registered for signal %s", name)
        return None
    return provider()


def _rule_asks(rule: DegradationRule) -> tuple[bool, frozenset[str]]:
    """Does the rule's condition hold, and which switches does it ask off now."""
    from reliability.breaker import State, registry

    switches = frozenset(s for s in rule.switches_off or [] if s in _KNOWN_SWITCHES)
    C = DegradationRule.Condition
    if rule.condition not in (C.BREAKER_OPEN, C.BREAKER_HALF_OPEN):
        return _condition_holds(rule), switches
    snap = registry.breaker(rule.target).snapshot()
    wanted = {State.OPEN, State.FORCED_OPEN} if rule.condition == C.BREAKER_OPEN else {State.HALF_OPEN}
    awaits_probe = snap.state is State.HALF_OPEN or (snap.state is State.OPEN and snap.retry_after <= 0)
    if awaits_probe:  # the switches that stop every call to the dependency would stop its probe too
        switches -= _gating_switches.get(rule.target, frozenset())
    return snap.state in wanted, switches


def _condition_holds(rule: DegradationRule) -> bool:
    """The conditions other than a breaker's."""
    C = DegradationRule.Condition
    if rule.condition == C.HEALTH_FAILING:
        check = _health_checks.get(rule.target)
        if check is None:
            logger.warning("degradation rule %s: no health check named %s", rule.name, rule.target)
            return False
        return not check()
    if rule.condition == C.DEAD_LETTER_BACKLOG_ABOVE:
        return DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES).count() > rule.threshold
    name = REPLY_BACKLOG if rule.condition == C.REPLY_BACKLOG_ABOVE else REPLY_P95_SECONDS
    value = _signal(name)
    return value is not None and value > rule.threshold


@dataclass(frozen=True, slots=True)
class Ask:
    """What the rules ask for right now."""

    level: int
    switches_off: frozenset[str]
    causes: tuple[str, ...]

    @property
    def cause(self) -> str:
        return ", ".join(self.causes)[:300]


def rules_evaluate(*, rules: Iterable[DegradationRule] | None = None) -> Ask:
    """The worst level and every switch the enabled rules whose condition holds ask for."""
    level, switches, causes = int(DegradationLevel.NORMAL), set[str](), []
    for rule in DegradationRule.objects.filter(enabled=True) if rules is None else rules:
        try:
            holds, off = _rule_asks(rule)
        except Exception:  # one broken condition must not stop the others (nor the evaluator)
            logger.exception("degradation rule %s could not be evaluated", rule.name)
            continue
        if holds:
            level = max(level, int(rule.level))
            switches.update(off)
            causes.append(rule.name)
    return Ask(level=level, switches_off=frozenset(switches), causes=tuple(causes))
