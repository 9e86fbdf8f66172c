"""``degradation_check_ns``: one ``degradation.is_enabled("ai_replies")`` on the hot path (the
snapshot is fresh, as for every call but one per second per process), median of several rounds of
many calls timed with ``time.perf_counter_ns``, minus the loop's own cost. Target <= 1,000 ns.

Django is set up as the other benchmarks do (a temporary var dir, migrated); the one refresh that
reads the state row happens before timing starts.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

CALLS = 200_000
ROUNDS = 7


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # development values; DEBUG is off by default
    os.environ.setdefault("HOTELBOT_VAR_DIR", tempfile.mkdtemp(prefix="hotelbot-bench-"))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def measure() -> dict[str, float]:
    _django()
    from django.conf import settings

    from reliability import degradation

    settings.DEGRADATION_REFRESH_SECONDS = 3600.0  # the refresh is not the hot path: keep it out
    degradation.refresh_now()
    is_enabled = degradation.is_enabled

    def checked(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            is_enabled("ai_replies")
        return time.perf_counter_ns() - start

    def bare(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        return time.perf_counter_ns() - start

    checked(10_000)  # warm up
    per_call = [(checked(CALLS) - bare(CALLS)) / CALLS for _ in range(ROUNDS)]
    return {"degradation_check_ns": statistics.median(per_call)}


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key} = {value:,.1f}")
