"""``http_overhead_ratio``: the resilient session (breaker + retry policy + metrics + structured log)
against a bare ``requests.Session``, both making successful calls to a local fake Green API.

The fake runs in its own process so its work does not share the client's GIL. Bare and resilient
calls interleave one by one, and the ratio compares the medians of per-call times, so drift and
stalls on a busy machine affect both sides alike. The session as a whole beats bare ``requests``
because it reads proxy/CA settings once instead of rescanning the environment on every call.

``http_layers_overhead_ns`` isolates breaker + retry policy: the same session (hence the same TCP
connection: two sessions differ by ~2% on loopback from their connections alone) with them switched
off on every other call. They run ~25 more Python calls per request (~3 us in a tight loop); on a
real request the measured difference is larger (~20-40 us), which is interpreter and cache effects
around the socket calls, not work the layers do.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import requests

CALLS = 4000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_fake(port: int) -> subprocess.Popen[bytes]:
    code = (
        "import time; from fakes.green_api import FakeGreenApi; "
        f"FakeGreenApi(port={port}, rate_limits=False).start(); time.sleep(3600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)))  # noqa: S603
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/__fake__/health", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("fake Green API did not start")


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # development values; DEBUG is off by default
    os.environ.setdefault("HOTELBOT_VAR_DIR", tempfile.mkdtemp(prefix="hotelbot-bench-"))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def measure() -> dict[str, Any]:
    _django()
    from reliability.http import ResilientSession
    from reliability.retry import RetryConfig

    port = _free_port()
    fake = _start_fake(port)
    url = f"http://127.0.0.1:{port}/waInstance1101000001/getStateInstance/test-token"
    try:
        bare = requests.Session()
        resilient = ResilientSession(
            "green_api",
            connect_timeout=3.0,
            read_timeout=10.0,
            retry=RetryConfig(max_attempts=3, base_delay=0.5, max_delay=4.0),
        )

        def run_bare() -> None:
            resp = bare.get(url, timeout=(3.0, 10.0))
            if resp.status_code != 200 or not resp.content:
                raise RuntimeError(f"bare call failed: {resp.status_code}")

        def run_resilient() -> None:
            resp = resilient.request("GET", url)
            if resp.status != 200 or not resp.body:
                raise RuntimeError(f"resilient call failed: {resp.status}")

        layers = (resilient._retry, True)

        def run_plain() -> None:
            # The same session (so the same TCP connection) with breaker and retry policy off:
            # two sessions differ by ~2% on loopback from their connections alone.
            resilient._retry, resilient.use_breaker = {}, False
            try:
                resp = resilient.request("GET", url)
            finally:
                resilient._retry, resilient.use_breaker = layers
            if resp.status != 200 or not resp.body:
                raise RuntimeError(f"plain call failed: {resp.status}")

        for fn in (run_bare, run_resilient, run_plain):  # warm up connections, caches, config load
            for _ in range(100):
                fn()
        # Calls interleave one by one (order alternating), each timed alone; medians of the
        # per-call times are robust to the stalls of a busy 2-core machine.
        bare_ns: list[int] = []
        resilient_ns: list[int] = []
        plain_ns: list[int] = []
        clock = time.perf_counter_ns
        for i in range(CALLS):
            trio = ((run_bare, bare_ns), (run_resilient, resilient_ns), (run_plain, plain_ns))
            for fn, sink in trio if i % 2 else trio[::-1]:
                start = clock()
                fn()
                sink.append(clock() - start)
    finally:
        fake.kill()
        fake.wait()
    return {
        "http_overhead_ratio": round(statistics.median(resilient_ns) / statistics.median(bare_ns), 4),
        "http_bare_call_ns": round(statistics.median(bare_ns)),
        "http_resilient_call_ns": round(statistics.median(resilient_ns)),
        # The reliability layers alone: the same session with and without breaker + retry policy.
        "http_layers_overhead_ns": round(statistics.median(resilient_ns) - statistics.median(plain_ns)),
    }


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key:28} {value}")
