"""Circuit breakers: the public API.

Code asks for a breaker by dependency name and calls through it::

    from reliability.breaker import CircuitBreakerConfig, CircuitOpenError, get_circuit_breaker

    breaker = get_circuit_breaker("green_api", CircuitBreakerConfig(failure_threshold=5))
    breaker.call(fn, *args)            # or @breaker, or ``with breaker.guard() as g: ...``

``CircuitOpenError.retry_after`` says when to try again. Inside the package: ``machine`` is the
pure state machine (no Django, no I/O), ``stores/`` hold the state (in process, Redis, database),
``circuit`` is the facade and the per-process registry, and ``registry`` is the Django wiring
(store from settings, thresholds and staff overrides from admin rows, transition events to rows).
In a Django process ``get_circuit_breaker`` returns the shared breaker: ``ReliabilityConfig.ready``
registers ``registry.store`` as the default store's factory, built on first use.
"""

from reliability.breaker.circuit import (
    CircuitBreaker,
    Guard,
    add_global_listener,
    get_circuit_breaker,
    remove_global_listener,
    set_default_store,
    set_default_store_factory,
)
from reliability.breaker.machine import (
    DEFAULT_FAILURE_STATUSES,
    OVERRIDE_STATES,
    BreakerBackend,
    BreakerSnapshot,
    BreakerStateMachine,
    BreakerStore,
    CircuitBreakerConfig,
    CircuitOpenError,
    Outcome,
    Permit,
    State,
    TransitionEvent,
    classify,
    open_duration,
)
from reliability.breaker.stores.memory import InMemoryStore

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "OVERRIDE_STATES",
    "BreakerBackend",
    "BreakerSnapshot",
    "BreakerStateMachine",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "Guard",
    "InMemoryStore",
    "Outcome",
    "Permit",
    "State",
    "TransitionEvent",
    "add_global_listener",
    "classify",
    "get_circuit_breaker",
    "open_duration",
    "remove_global_listener",
    "set_default_store",
    "set_default_store_factory",
]
