"""The per-process store: every breaker is a plain :class:`BreakerStateMachine` (no sharing)."""

from __future__ import annotations

import time

from reliability.breaker.machine import BreakerStateMachine, CircuitBreakerConfig, Clock, Listener


class InMemoryStore:
    """The per-process store: each breaker is a :class:`BreakerStateMachine`."""

    def __init__(self, *, clock: Clock = time.monotonic, wall_clock: Clock = time.time) -> None:
        self.clock = clock
        self.wall_clock = wall_clock

    def backend(self, name: str, config: CircuitBreakerConfig, listener: Listener) -> BreakerStateMachine:
        return BreakerStateMachine(
            name, config, clock=self.clock, wall_clock=self.wall_clock, listener=listener
        )
