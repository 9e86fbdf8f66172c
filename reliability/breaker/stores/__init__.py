"""Where breaker state lives: one contract (``BreakerStore``), several homes.

``memory`` keeps it in the process, ``redis`` shares it through atomic Lua scripts. The Django
wiring (``reliability.breaker.registry``) picks the store from settings.
"""
