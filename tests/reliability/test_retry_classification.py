"""One failure classification, one Retry-After parser (capped by RETRY_AFTER_CAP), one backoff."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from email.utils import formatdate
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import NewConnectionError

from hotelbot.exceptions import ProviderError
from reliability.breaker import CircuitOpenError
from reliability.retry import (
    FailureKind,
    RetryBudget,
    RetryConfig,
    RetryHandler,
    backoff_delay,
    cause_chain,
    classify_failure,
    http_status,
    is_transient,
    request_sent,
    retry_delay,
)
from reliability.transport import DeadlineExceeded, TransportError
from tests.reliability.retry_support import backoff_delays

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


# --- the one failure vocabulary: status, cause chain, sent-or-not; what is derived from it ------------
class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def test_the_status_of_a_failure_is_its_own_then_its_responses_then_its_causes():
    http_error = requests.HTTPError("boom", response=_Response(502))  # type: ignore[arg-type]
    outer = ProviderError("provider failed")
    outer.__cause__ = http_error

    assert http_status(StatusError(429)) == 429
    assert http_status(http_error) == 502
    assert http_status(outer) == 502  # through the explicit cause
    assert http_status(outer, follow_causes=False) is None  # ProviderError.http_status is *our* answer
    assert http_status(404) == 404
    assert [http_status(x) for x in (0, 700, True, "503", None, object())] == [None] * 6


def test_the_cause_chain_is_outermost_first_bounded_and_cycle_safe():
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a  # a cycle

    assert list(cause_chain(a)) == [a, b]
    assert list(cause_chain("not an exception")) == ["not an exception"]
    deep = ValueError("0")
    for n in range(1, 20):
        outer = ValueError(str(n))
        outer.__cause__, deep = deep, outer
    assert len(list(cause_chain(deep))) == 8


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        (TransportError("x", "refused", request_sent=False), False),
        (TransportError("x", "reset", request_sent=True), True),
        (requests.ConnectTimeout("connect timed out"), False),
        (requests.ConnectionError(NewConnectionError(None, "refused")), False),  # type: ignore[arg-type]
        (requests.ConnectionError("connection reset by peer"), True),
        (requests.ReadTimeout("read timed out"), True),
        (ConnectionRefusedError(), False),
    ],
)
def test_whether_the_request_was_sent(error, sent):
    assert request_sent(error) is sent
    assert (classify_failure(error) is FailureKind.NOT_PROCESSED) is (not sent)


def test_breaker_and_dead_letters_read_the_status_from_the_same_function():
    from reliability.breaker import CircuitBreakerConfig, Outcome
    from reliability.breaker.machine import classify
    from reliability.dead_letters import classify_category

    config = CircuitBreakerConfig()
    for status in (400, 404, 429, 500, 503):
        error = StatusError(status)
        assert (classify(config, error) is Outcome.IGNORED) is (classify(config, status) is Outcome.IGNORED)
    # A provider error raised from a timeout has no server status: a timeout, not a "provider 5xx"
    # (its class's http_status, 502, is what we would answer, not what the provider said).
    wrapped = ProviderError("Green API unreachable")
    wrapped.__cause__ = TransportError("green_api", "read timed out", request_sent=True)
    assert classify_category(wrapped) == "timeout"
    assert classify_category(StatusError(503)) == "provider_5xx"
    assert classify_category(StatusError(466)) == "quota"
