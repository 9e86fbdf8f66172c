"""/metrics: valid exposition format (promtool), multiprocess aggregation, stale-file pruning."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from reliability import observability

PROMTOOL = "/usr/bin/promtool"
#: The one lint finding we accept: the seeds' dead-letter *gauge* is named ``dlq_messages_total``
#: (promtool wants ``_total`` on counters only); the seeds' dashboards query that name.
ACCEPTED_LINT = ('dlq_messages_total non-counter metrics should not have "_total" suffix',)


def assert_promtool_clean(result: subprocess.CompletedProcess[str]) -> None:
    """promtool parsed the scrape (exit 0, or 3 = lint findings) and found nothing but the accepted."""
    assert result.returncode in (0, 3), result.stdout + result.stderr
    findings = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    unexpected = [f for f in findings if f not in ACCEPTED_LINT]
    assert unexpected == [], unexpected


@pytest.mark.django_db
def test_a_real_scrape_passes_promtool_check_metrics(client: Client):
    from reliability.breaker import CircuitBreaker
    from reliability.dead_letters import dead_letter_quarantine

    CircuitBreaker("t_promtool").call(lambda: 1)  # the seeds' series have samples
    dead_letter_quarantine(
        kind="webhook_quarantine", subject="1", raw=b"x", reason_code="not_json", reason="x"
    )
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'circuit_breaker_requests_total{breaker="t_promtool",result="success"}' in text
    assert 'dlq_messages_total{kind="webhook_quarantine",status="pending"}' in text
    assert "django_http_requests_total_by_method_total" in text
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert_promtool_clean(result)


def test_responses_carry_a_request_id(client: Client):
    generated = client.get("/health/live/")
    assert len(generated["X-Request-ID"]) == 32
    kept = client.get("/health/live/", HTTP_X_REQUEST_ID="abc-123")
    assert kept["X-Request-ID"] == "abc-123"
    unsafe = client.get("/health/live/", HTTP_X_REQUEST_ID="bad id\nforged-line")
    assert unsafe["X-Request-ID"] != "bad id\nforged-line"


def test_pruning_removes_only_files_of_processes_that_are_gone(tmp_path: Path):
    child = subprocess.Popen(["true"])
    child.wait()
    live = tmp_path / f"counter_{os.getpid()}.db"
    gone = tmp_path / f"counter_{child.pid}.db"
    gauge_gone = tmp_path / f"gauge_livemostrecent_{child.pid}.db"
    for file in (live, gone, gauge_gone):
        file.write_bytes(b"")
    assert observability.prune_dead_files(str(tmp_path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == [live.name]


@pytest.mark.django_db
def test_multiprocess_registry_aggregates_files_and_adds_dead_letters(tmp_path: Path, monkeypatch):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.values import MultiProcessValue

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # Two "processes" writing the same counter into the directory.
    for pid in (101, 102):
        value = MultiProcessValue(process_identifier=lambda pid=pid: pid)(
            "counter", "t_mp_total", "t_mp_total", (), (), "help"
        )
        value.inc(5)
    text = generate_latest(observability.scrape_registry()).decode()
    assert "t_mp_total 10.0" in text
    assert "dlq_messages_total" in text
    assert isinstance(observability.scrape_registry(include_dead_letters=False), CollectorRegistry)
