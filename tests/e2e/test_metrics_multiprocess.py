"""Issue 10: one scrape of gunicorn's /metrics shows every process (2 web workers + Celery worker).

Web and worker share PROMETHEUS_MULTIPROC_DIR (tests/e2e/conftest.py); each process writes its own
files there. The proof that the scrape aggregates across pids: each gunicorn worker's own files
(read alone) hold some of the requests, and the scraped total equals the number of requests made.
Provider calls happen only in the Celery worker, so their series in the web's scrape come from it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

HTTP_GETS = "django_http_requests_total_by_method_total"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in found.items() if n == name and want <= lab)


def scrape(stack) -> str:
    resp = requests.get(f"{stack.web_url}/metrics", timeout=10)
    assert resp.status_code == 200
    return resp.text


def gets_written_by(folder: Path, pid: int) -> float:
    """The GET count in one process's own files (copied alone into a scratch directory)."""
    with tempfile.TemporaryDirectory() as scratch:
        for file in folder.glob(f"*_{pid}.db"):
            shutil.copy(file, scratch)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=scratch)
        return sum(
            s.value
            for family in registry.collect()
            for s in family.samples
            if s.name == HTTP_GETS and s.labels.get("method") == "GET"
        )


def test_one_scrape_shows_both_web_workers_and_the_celery_worker(stack):
    before = samples(scrape(stack))
    workers = stack.web_worker_pids()
    assert len(workers) == 2
    own_before = {pid: gets_written_by(stack.metrics_dir, pid) for pid in workers}

    # Concurrent fresh connections, in batches until both workers have served some.
    made = 0
    url = f"{stack.web_url}/health/live/"
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(20):
            codes = list(pool.map(lambda _: requests.get(url, timeout=10).status_code, range(40)))
            assert codes == [200] * 40
            made += 40
            own = {pid: gets_written_by(stack.metrics_dir, pid) - own_before[pid] for pid in workers}
            if all(v > 0 for v in own.values()):
                break
    assert all(v > 0 for v in own.values()), f"one worker served everything: {own}"

    # A guest message: the provider calls are made by the Celery worker.
    chat = "79005550077@c.us"
    stack.fake(
        "green", "POST", "inbound", json={"chatId": chat, "text": "Breakfast time?", "senderName": "Mo"}
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after_text = scrape(stack)
        made += 1
        after = samples(after_text)
        sent = total(after, "hotelbot_replies_total") - total(before, "hotelbot_replies_total")
        if sent >= 1:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no reply within 60 s\n{stack.log_tail()}")

    # Every GET made (the first scrape and all but the last are counted by the last one) is in it.
    gets = total(after, HTTP_GETS, method="GET") - total(before, HTTP_GETS, method="GET")
    assert gets == made
    assert sum(gets_written_by(stack.metrics_dir, pid) - own_before[pid] for pid in workers) == made

    green = "hotelbot_dependency_requests_total"
    assert total(after, green, dependency="green_api", outcome="2xx") > total(
        before, green, dependency="green_api", outcome="2xx"
    )
    calls = "circuit_breaker_requests_total"
    assert total(after, calls, breaker="green_api", result="success") > total(
        before, calls, breaker="green_api", result="success"
    )
    assert total(after, "hotelbot_reply_latency_seconds_count") >= 1

    # The webhook request's id travelled into the reply task (worker log lines carry it).
    worker_log = (stack.logs / "worker.log").read_text(errors="replace")
    traced = r"\[[0-9a-f]{32}\] Task messaging\.tasks\.process_reply_job\[[^\]]+\] succeeded"
    assert re.search(traced, worker_log)

    # The aggregated scrape is valid exposition format.
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=after_text, capture_output=True, text=True, timeout=60
    )
    from tests.reliability.test_observability import assert_promtool_clean

    assert_promtool_clean(check)
