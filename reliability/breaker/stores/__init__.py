"""Where breaker state lives: one contract (``BreakerStore``), several homes.

``memory`` keeps it in the process; ``redis`` shares it through atomic Lua scripts; ``database``
shares it through one locked transaction per decision (``rules`` is the Lua scripts' port it runs).
The Django wiring (``reliability.breaker.registry``) picks them in the order Redis -> database ->
process.
"""
