"""One failure classification, one Retry-After parser (capped by RETRY_AFTER_CAP), one backoff."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from email.utils import formatdate
from pathlib import Path

import pytest

from reliability.breaker import CircuitOpenError
from reliability.retry import (
    FailureKind,
    RetryBudget,
    RetryConfig,
    RetryHandler,
    backoff_delay,
    backoff_delays,
    classify_failure,
    is_transient,
    retry_delay,
)
from reliability.transport import DeadlineExceeded, TransportError

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


class StatusError(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.retry_after = retry_after


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        (429, FailureKind.NOT_PROCESSED),
        (503, FailureKind.NOT_PROCESSED),
        (500, FailureKind.OUTCOME_UNKNOWN),
        (502, FailureKind.OUTCOME_UNKNOWN),
        (504, FailureKind.OUTCOME_UNKNOWN),
        (408, FailureKind.OUTCOME_UNKNOWN),
        (499, FailureKind.OUTCOME_UNKNOWN),
        (501, FailureKind.PERMANENT),
        (505, FailureKind.PERMANENT),
        (400, FailureKind.PERMANENT),
        (TransportError("x", "refused", request_sent=False), FailureKind.NOT_PROCESSED),
        (TransportError("x", "reset", request_sent=True), FailureKind.OUTCOME_UNKNOWN),
        (DeadlineExceeded("x", "deadline", request_sent=True), FailureKind.OUTCOME_UNKNOWN),
        (CircuitOpenError("x", 3.0), FailureKind.NOT_PROCESSED),
        (ValueError("not a network error"), FailureKind.PERMANENT),
    ],
)
def test_one_classification_of_failures(subject, kind):
    assert classify_failure(subject) is kind
    if not isinstance(subject, CircuitOpenError):
        assert is_transient(subject) is kind.transient
        assert is_transient(subject, idempotent=False) is (kind is FailureKind.NOT_PROCESSED)


def test_a_breaker_rejection_is_not_retried_in_call():
    assert not is_transient(CircuitOpenError("x", 0.5))


def test_retry_after_cap_setting_caps_in_call_retries(settings):
    settings.RETRY_AFTER_CAP = 5.0
    sleeps: list[float] = []
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        raise StatusError(503, retry_after=10)

    handler = RetryHandler(
        RetryConfig(max_attempts=3, retry_after_cap=60.0, jitter="none"),
        dependency="cap-test",
        budget=RetryBudget(ratio=10, min_retries_per_second=10),
        sleep=sleeps.append,
        wall_clock=lambda: NOW,
    )
    with pytest.raises(StatusError):
        handler.execute(fn)
    assert (len(calls), sleeps) == (1, [])  # 10 s > the 5 s cap: give up at once


def test_job_level_retry_delay_caps_retry_after_and_parses_http_dates(settings):
    settings.RETRY_AFTER_CAP = 900.0
    config = RetryConfig(max_attempts=6, base_delay=2.0, max_delay=300.0, jitter="none")
    assert retry_delay(config, 1, retry_after=99_999_999) == 900.0
    assert retry_delay(config, 3, retry_after=None) == 8.0
    assert retry_delay(config, 3, retry_after=1.0) == 8.0  # a lower bound, not a replacement
    assert retry_delay(config, 3, retry_after=float("inf")) == 8.0
    from reliability.retry import retry_after_seconds

    class Response:
        headers = {"Retry-After": formatdate(NOW + 600, usegmt=True)}

    assert retry_after_seconds(Response(), now=lambda: NOW) == 600.0
    assert retry_after_seconds(Response(), now=lambda: NOW, cap=60.0) == 60.0


def test_backoff_delay_is_the_nth_value_of_the_backoff_sequence():
    config = RetryConfig(max_attempts=6, base_delay=2.0, max_delay=300.0, jitter="equal")
    sequence = backoff_delays(config, 5, random.Random(3))
    assert backoff_delay(config, 5, random.Random(3)) == sequence[-1]
    with pytest.raises(ValueError, match="retry_number"):
        backoff_delay(config, 0)


def test_green_api_deadline_must_be_shorter_than_the_lease(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update({"GREEN_API_DEADLINE": "120", "REPLY_JOB_LEASE": "120", "HOTELBOT_VAR_DIR": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "GREEN_API_DEADLINE (120.0s) must be > 0 and shorter than REPLY_JOB_LEASE" in result.stderr
