"""reliability/retry.py: backoff, classification, Retry-After, deadline, budget.

Nothing here really sleeps: every handler gets a fake sleeping_clock whose ``sleep`` advances it.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from hotelbot.exceptions import ProviderError
from reliability import testing
from reliability.http import DeadlineExceeded, HttpResponse, TransportError
from reliability.metrics import RETRY_ATTEMPTS
from reliability.retry import (
    ATTEMPTS_EXHAUSTED,
    BUDGET_EXHAUSTED,
    DEADLINE,
    NOT_TRANSIENT,
    RETRY_AFTER_TOO_LONG,
    RetryBudget,
    RetryConfig,
    RetryHandler,
    get_retry_budget,
    is_transient,
    parse_retry_after,
    retry_after_seconds,
)
from tests.reliability.retry_support import backoff_delays

NOW = 1_700_000_000.0  # wall clock used for HTTP-dates


class SleepingClock:
    """A monotonic clock that only moves when someone sleeps (or ``advance`` is called)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.now += float(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StatusError(Exception):
    def __init__(self, status: int, retry_after: object = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class Flaky:
    """Raises the given errors in order, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: object = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class Always:
    """Raises the same error on every call."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        raise self.error


def always(error: BaseException) -> Always:
    return Always(error)


#: retry_attempts_total before the test, by (dependency, outcome): tests assert what it added.
_outcomes_before: dict[tuple[str, str], float] = {}


def _outcome_totals() -> dict[tuple[str, str], float]:
    return {
        (sample.labels["dependency"], sample.labels["outcome"]): sample.value
        for metric in RETRY_ATTEMPTS.collect()
        for sample in metric.samples
        if sample.name == "retry_attempts_total"
    }


def outcomes(dependency: str) -> dict[str, int]:
    """What retry_attempts_total counted for ``dependency`` during this test, by outcome."""
    counted = {
        outcome: int(value - _outcomes_before.get((dep, outcome), 0.0))
        for (dep, outcome), value in _outcome_totals().items()
        if dep == dependency
    }
    return {outcome: n for outcome, n in counted.items() if n}


def gave_up(dependency: str) -> dict[str, int]:
    """The give-ups of ``dependency`` during this test, by reason."""
    return {reason: n for reason, n in outcomes(dependency).items() if reason not in ("retried", "recovered")}


@pytest.fixture(autouse=True)
def _fresh_registry():
    testing.reset_retry_budgets()
    _outcomes_before.clear()
    _outcomes_before.update(_outcome_totals())
    yield
    testing.reset_retry_budgets()


@pytest.fixture
def sleeping_clock() -> SleepingClock:
    return SleepingClock()


def roomy_budget() -> RetryBudget:
    return RetryBudget(ratio=1.0, min_retries_per_second=1000.0, window=10.0)


def handler_for(
    sleeping_clock: SleepingClock, *, budget: RetryBudget | None = None, **config: object
) -> RetryHandler:
    config.setdefault("jitter", "none")
    return RetryHandler(
        RetryConfig(**config),  # type: ignore[arg-type]
        dependency="dep",
        budget=budget or roomy_budget(),
        sleep=sleeping_clock.sleep,
        clock=sleeping_clock,
        wall_clock=lambda: NOW,
        rng=random.Random(7),
    )


# ---------------------------------------------------------------------------------------------
# RetryConfig
# ---------------------------------------------------------------------------------------------


def test_config_defaults_match_the_issue():
    config = RetryConfig()

    assert (config.max_attempts, config.base_delay, config.max_delay) == (3, 1.0, 30.0)
    assert (config.jitter, config.deadline) == ("full", None)
    assert (config.retry_after_cap, config.idempotent, config.multiplier) == (60.0, True, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an int"),
        ({"max_attempts": True}, "max_attempts must be an int"),
        ({"base_delay": -1}, "base_delay must be >= 0"),
        ({"base_delay": float("nan")}, "base_delay must be a finite number"),
        ({"base_delay": 5, "max_delay": 1}, "max_delay (1.0) must be >= base_delay (5.0)"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number"),
        ({"jitter": "random"}, "jitter must be one of"),
        ({"deadline": 0}, "deadline must be > 0"),
        ({"deadline": "soon"}, "deadline must be a finite number"),
        ({"retry_after_cap": -1}, "retry_after_cap must be >= 0"),
        ({"idempotent": "yes"}, "idempotent must be a bool"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RetryConfig(**kwargs)


def test_config_is_frozen():
    config = RetryConfig()

    with pytest.raises(AttributeError):
        config.max_attempts = 5  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Backoff sequences and jitter
# ---------------------------------------------------------------------------------------------


def test_the_backoff_is_exponential_and_capped():
    config = RetryConfig(jitter="none", base_delay=1, max_delay=20)

    assert backoff_delays(config, 7, random.Random(0)) == [1, 2, 4, 8, 16, 20, 20]


def test_exponential_honours_the_multiplier_and_base():
    config = RetryConfig(base_delay=0.5, multiplier=3, jitter="none", max_delay=100)

    assert backoff_delays(config, 5) == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_cap_holds_and_long_runs_do_not_overflow():
    config = RetryConfig(jitter="none", base_delay=2, max_delay=7)

    delays = backoff_delays(config, 3000)

    assert max(delays) <= 7
    assert delays[-1] == 7


def test_zero_base_delay_means_no_waiting():
    assert backoff_delays(RetryConfig(base_delay=0, jitter="none"), 4) == [0, 0, 0, 0]


def test_full_jitter_stays_between_zero_and_the_backoff_and_actually_varies():
    config = RetryConfig(base_delay=1, max_delay=30, jitter="full")
    raw = backoff_delays(RetryConfig(base_delay=1, max_delay=30, jitter="none"), 8)

    runs = [backoff_delays(config, 8, random.Random(seed)) for seed in range(50)]

    for run in runs:
        assert all(0 <= d <= r for d, r in zip(run, raw, strict=True))
    assert len({run[3] for run in runs}) > 40


def test_equal_jitter_keeps_at_least_half():
    config = RetryConfig(base_delay=1, max_delay=30, jitter="equal")
    raw = backoff_delays(RetryConfig(base_delay=1, max_delay=30, jitter="none"), 8)

    for seed in range(50):
        run = backoff_delays(config, 8, random.Random(seed))
        assert all(r / 2 <= d <= r for d, r in zip(run, raw, strict=True))


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 422, 451])
def test_other_4xx_are_never_transient(status):
    assert not is_transient(status)
    assert not is_transient(StatusError(status))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507, 599])
def test_408_429_and_5xx_are_transient(status):
    assert is_transient(status)
    assert is_transient(StatusError(status))


@pytest.mark.parametrize("status", [200, 201, 301, 304, 501, 505])
def test_success_redirects_and_never_fixable_5xx_are_not_transient(status):
    assert not is_transient(status)


@pytest.mark.parametrize(("status", "expected"), [(429, True), (503, True), (500, False), (502, False)])
def test_non_idempotent_calls_only_retry_statuses_refused_before_processing(status, expected):
    assert is_transient(status, idempotent=False) is expected
    assert is_transient(408, idempotent=False) is False


@pytest.mark.parametrize(
    ("error", "idempotent_ok", "post_ok"),
    [
        (TransportError("dep", "refused", request_sent=False), True, True),
        (TransportError("dep", "read timeout", request_sent=True), True, False),
        (DeadlineExceeded("dep", "deadline", request_sent=True), True, False),
        (requests.ConnectTimeout("connect timed out"), True, True),
        (requests.ReadTimeout("read timed out"), True, False),
        (
            requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))),  # type: ignore[arg-type]
            True,
            True,
        ),
        (requests.ConnectionError(ProtocolError("Connection aborted.")), True, False),
        (requests.exceptions.ChunkedEncodingError("broken"), True, False),
        (requests.exceptions.SSLError("bad certificate"), False, False),
        (requests.exceptions.InvalidURL("nope"), False, False),
        (requests.TooManyRedirects("loop"), False, False),
        (TimeoutError(), True, False),
        (ConnectionResetError(), True, False),
        (ConnectionRefusedError(), True, True),
        (ValueError("bug"), False, False),
        (KeyError("bug"), False, False),
    ],
)
def test_transport_errors_and_the_request_sent_rule(error, idempotent_ok, post_ok):
    assert is_transient(error) is idempotent_ok
    assert is_transient(error, idempotent=False) is post_ok


def test_http_error_is_classified_by_its_response():
    for status, expected in ((503, True), (404, False)):
        response = requests.Response()
        response.status_code = status

        assert is_transient(requests.HTTPError(response=response)) is expected


def test_responses_and_status_code_attributes_are_understood():
    class ApiError(Exception):
        status_code = 502

    response = requests.Response()
    response.status_code = 504

    assert is_transient(HttpResponse(status=503, headers={}, body=b"", elapsed=0.1))
    assert not is_transient(HttpResponse(status=422, headers={}, body=b"", elapsed=0.1))
    assert is_transient(response)
    assert is_transient(ApiError())


def test_provider_errors_are_classified_through_their_cause():
    def wrapped(cause: BaseException) -> ProviderError:
        try:
            raise ProviderError("provider failed") from cause
        except ProviderError as e:
            return e

    not_sent = wrapped(TransportError("dep", "refused", request_sent=False))
    sent = wrapped(TransportError("dep", "reset", request_sent=True))

    assert is_transient(not_sent, idempotent=False)
    assert is_transient(sent)
    assert not is_transient(sent, idempotent=False)
    assert not is_transient(ProviderError("no cause"))


def test_an_explicit_status_wins_over_the_cause():
    error = StatusError(404)
    error.__cause__ = TransportError("dep", "x", request_sent=False)

    assert not is_transient(error)


@pytest.mark.parametrize("junk", [None, True, False, "503", object()])
def test_unknown_inputs_are_not_transient(junk):
    assert not is_transient(junk)


# ---------------------------------------------------------------------------------------------
# Retry-After parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 1.5 ", 1.5),
        (b"3", 3.0),
        ("-3", 0.0),
        (7, 7.0),
        (2.5, 2.5),
        (timedelta(seconds=9), 9.0),
        (format_datetime(datetime.fromtimestamp(NOW + 30, tz=UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, tz=UTC), usegmt=True), 0.0),
        (datetime.fromtimestamp(NOW + 12, tz=UTC), 12.0),
        (datetime.fromtimestamp(NOW + 12, tz=UTC).replace(tzinfo=None), 12.0),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (None, None),
        (True, None),
        ([1], None),
    ],
)
def test_parse_retry_after(value, expected):
    result = parse_retry_after(value, now=lambda: NOW)

    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_parse_retry_after_rfc_example_date():
    when = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()

    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: when - 120) == 120.0


def test_retry_after_is_found_on_attributes_headers_and_responses():
    response = requests.Response()
    response.status_code = 429
    response.headers["retry-after"] = "4"

    assert retry_after_seconds(StatusError(429, retry_after=2.0)) == 2.0
    assert retry_after_seconds(requests.HTTPError(response=response)) == 4.0
    assert retry_after_seconds(response) == 4.0
    assert retry_after_seconds(HttpResponse(503, {"RETRY-AFTER": "6"}, b"", 0.1)) == 6.0
    assert retry_after_seconds(HttpResponse(429, {"retry-after-ms": "250"}, b"", 0.1)) == 0.25
    assert retry_after_seconds(HttpResponse(503, {}, b"", 0.1)) is None
    assert retry_after_seconds(ValueError()) is None


# ---------------------------------------------------------------------------------------------
# RetryHandler
# ---------------------------------------------------------------------------------------------


def test_success_on_first_attempt_does_not_sleep(sleeping_clock):
    fn = Flaky(result=42)

    assert handler_for(sleeping_clock).execute(fn) == 42
    assert fn.calls == 1
    assert sleeping_clock.sleeps == []


def test_arguments_are_passed_through(sleeping_clock):
    def add(a: int, *, b: int) -> int:
        return a + b

    assert handler_for(sleeping_clock).execute(add, 2, b=3) == 5


def test_transient_failures_are_retried_with_the_backoff_sequence(sleeping_clock):
    fn = Flaky(StatusError(503), StatusError(502), TimeoutError(), result="done")

    result = handler_for(sleeping_clock, max_attempts=5, base_delay=1, multiplier=2).execute(fn)

    assert result == "done"
    assert fn.calls == 4
    assert sleeping_clock.sleeps == [1, 2, 4]
    assert outcomes("dep") == {"retried": 3, "recovered": 1}  # 1 call, 4 attempts (fn.calls)


def test_jittered_sleeps_use_the_injected_rng(sleeping_clock):
    handler = handler_for(sleeping_clock, max_attempts=4, jitter="full")
    expected = backoff_delays(RetryConfig(max_attempts=4, jitter="full"), 3, random.Random(7))

    with pytest.raises(TimeoutError):
        handler.execute(always(TimeoutError()))

    assert sleeping_clock.sleeps == expected


def test_exhausted_attempts_raise_the_original_exception(sleeping_clock):
    error = StatusError(503)
    fn = always(error)

    with pytest.raises(StatusError) as raised:
        handler_for(sleeping_clock, max_attempts=3).execute(fn)

    assert raised.value is error
    assert fn.calls == 3
    assert gave_up("dep") == {ATTEMPTS_EXHAUSTED: 1}


def test_max_attempts_one_means_no_retry(sleeping_clock):
    fn = always(StatusError(503))

    with pytest.raises(StatusError):
        handler_for(sleeping_clock, max_attempts=1).execute(fn)

    assert fn.calls == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_never_retried(sleeping_clock, status):
    fn = always(StatusError(status))

    with pytest.raises(StatusError):
        handler_for(sleeping_clock, max_attempts=5).execute(fn)

    assert fn.calls == 1
    assert sleeping_clock.sleeps == []
    assert gave_up("dep") == {NOT_TRANSIENT: 1}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(sleeping_clock, status):
    fn = Flaky(StatusError(status), result="ok")

    assert handler_for(sleeping_clock, max_attempts=2).execute(fn) == "ok"
    assert fn.calls == 2


def test_programming_errors_are_not_retried(sleeping_clock):
    fn = always(KeyError("missing"))

    with pytest.raises(KeyError):
        handler_for(sleeping_clock, max_attempts=5).execute(fn)

    assert fn.calls == 1


def test_deadline_stops_before_a_sleep_that_would_end_past_it(sleeping_clock):
    fn = always(TimeoutError())

    with pytest.raises(TimeoutError):
        handler_for(sleeping_clock, max_attempts=10, base_delay=1, deadline=5).execute(fn)

    # t=0 fail, sleep 1; t=1 fail, sleep 2; t=3 fail; sleeping 4 would end at 7 > 5: give up.
    assert sleeping_clock.sleeps == [1, 2]
    assert fn.calls == 3
    assert gave_up("dep") == {DEADLINE: 1}


def test_deadline_counts_time_spent_inside_attempts(sleeping_clock):
    def slow_failure() -> None:
        sleeping_clock.advance(2.0)
        raise TimeoutError

    with pytest.raises(TimeoutError):
        handler_for(sleeping_clock, max_attempts=10, base_delay=0.5, multiplier=1, deadline=6).execute(
            slow_failure
        )

    started = 100.0
    assert sleeping_clock.now - started <= 6 + 2  # the last attempt started before the deadline
    assert len(sleeping_clock.sleeps) == 2  # attempts at 0, 2.5, 5 -> the next would start at 7.5


def test_retry_after_is_honoured_as_a_lower_bound(sleeping_clock):
    fn = Flaky(StatusError(429, retry_after=7), StatusError(429, retry_after=0.1), result="ok")

    assert handler_for(sleeping_clock, max_attempts=3, base_delay=1).execute(fn) == "ok"
    assert sleeping_clock.sleeps == [7, 2]  # 7 > backoff 1; backoff 2 > 0.1


def test_retry_after_http_date_is_honoured(sleeping_clock):
    date = format_datetime(datetime.fromtimestamp(NOW + 20, tz=UTC), usegmt=True)
    response = HttpResponse(503, {"Retry-After": date}, b"", 0.1)

    class Unavailable(Exception):
        status = 503
        headers = response.headers

    fn = Flaky(Unavailable(), result="ok")

    assert handler_for(sleeping_clock, max_attempts=2).execute(fn) == "ok"
    assert sleeping_clock.sleeps == [20.0]


def test_retry_after_above_the_cap_gives_up_at_once(sleeping_clock):
    budget = roomy_budget()
    error = StatusError(503, retry_after=3600)
    fn = always(error)

    with pytest.raises(StatusError) as raised:
        handler_for(sleeping_clock, budget=budget, max_attempts=5, retry_after_cap=60).execute(fn)

    assert raised.value is error  # still carries retry_after for a task-level countdown
    assert fn.calls == 1
    assert sleeping_clock.sleeps == []
    assert budget.total_retries == 0
    assert gave_up("dep") == {RETRY_AFTER_TOO_LONG: 1}


def test_retry_after_within_cap_but_past_the_deadline_gives_up(sleeping_clock):
    fn = always(StatusError(429, retry_after=30))

    with pytest.raises(StatusError):
        handler_for(sleeping_clock, max_attempts=5, deadline=10).execute(fn)

    assert fn.calls == 1
    assert gave_up("dep") == {DEADLINE: 1}


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransportError("dep", "read timeout", request_sent=True), False),
        (TransportError("dep", "connect refused", request_sent=False), True),
        (StatusError(429), True),
        (StatusError(503), True),
        (StatusError(500), False),
        (StatusError(504), False),
    ],
)
def test_non_idempotent_calls_are_only_retried_when_surely_not_processed(sleeping_clock, error, retried):
    fn = Flaky(error, result="sent")
    handler = handler_for(sleeping_clock, max_attempts=3, idempotent=False)

    if retried:
        assert handler.execute(fn) == "sent"
        assert fn.calls == 2
    else:
        with pytest.raises(type(error)):
            handler.execute(fn)
        assert fn.calls == 1


def test_every_attempt_is_logged_with_structured_fields(sleeping_clock, caplog):
    caplog.set_level(logging.DEBUG, logger="reliability.retry")
    fn = Flaky(StatusError(503), TimeoutError(), result="ok")

    handler_for(sleeping_clock, max_attempts=3, base_delay=1).execute(fn)

    attempts = [r for r in caplog.records if r.getMessage().startswith("retry attempt")]
    retrying = [r for r in caplog.records if r.getMessage().startswith("retry retrying")]
    assert [r.attempt for r in attempts] == [1, 2, 3]
    assert [(r.dependency, r.attempt, r.delay, r.error_class) for r in retrying] == [
        ("dep", 1, 1.0, "StatusError"),
        ("dep", 2, 2.0, "TimeoutError"),
    ]
    assert all(r.levelno == logging.WARNING for r in retrying)
    assert "dependency=dep attempt=1 delay=1.0 error_class=StatusError" in retrying[0].getMessage()
    assert any(r.getMessage().startswith("retry recovered") for r in caplog.records)


def test_give_up_is_logged_with_its_reason(sleeping_clock, caplog):
    caplog.set_level(logging.INFO, logger="reliability.retry")

    with pytest.raises(TimeoutError):
        handler_for(sleeping_clock, max_attempts=2).execute(always(TimeoutError()))

    [give_up] = [r for r in caplog.records if r.getMessage().startswith("retry giving up")]
    assert give_up.reason == ATTEMPTS_EXHAUSTED
    assert give_up.error_class == "TimeoutError"


def test_custom_classifier_and_before_retry_hook(sleeping_clock):
    seen: list[object] = []
    fn = Flaky(ValueError("flaky parser"), result="ok")
    handler = RetryHandler(
        RetryConfig(max_attempts=2, jitter="none"),
        dependency="dep",
        budget=roomy_budget(),
        sleep=sleeping_clock.sleep,
        clock=sleeping_clock,
        classifier=lambda exc: isinstance(exc, ValueError),
        before_retry=seen.append,
    )

    assert handler.execute(fn) == "ok"
    assert [type(s) for s in seen] == [ValueError]


def test_handler_is_reusable_and_each_call_starts_a_fresh_schedule(sleeping_clock):
    handler = handler_for(sleeping_clock, max_attempts=3, base_delay=1)

    for _ in range(2):
        assert handler.execute(Flaky(TimeoutError(), TimeoutError())) == "ok"

    assert sleeping_clock.sleeps == [1, 2, 1, 2]


def test_handler_is_thread_safe(sleeping_clock):
    lock = threading.Lock()
    handler = RetryHandler(
        RetryConfig(max_attempts=3, base_delay=0, jitter="none"),
        dependency="dep",
        budget=roomy_budget(),
        sleep=lambda s: None,
    )
    results: list[object] = []

    def worker() -> None:
        for _ in range(50):
            value = handler.execute(Flaky(TimeoutError(), result="ok"))
            with lock:
                results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results == ["ok"] * 400
    assert outcomes("dep")["retried"] == 400


# ---------------------------------------------------------------------------------------------
# Retry budget
# ---------------------------------------------------------------------------------------------


def test_budget_floor_allows_retries_without_traffic(sleeping_clock):
    budget = RetryBudget(ratio=0.2, min_retries_per_second=1.0, window=10.0, clock=sleeping_clock)

    spent = sum(budget.try_spend() for _ in range(50))

    assert spent == 10
    assert budget.total_exhausted == 40


def test_budget_allows_ratio_of_first_attempts(sleeping_clock):
    budget = RetryBudget(ratio=0.1, min_retries_per_second=0.0, window=10.0, clock=sleeping_clock)
    for _ in range(100):
        budget.record_attempt()

    assert sum(budget.try_spend() for _ in range(50)) == 10
    assert budget.available == 0


def test_budget_window_slides(sleeping_clock):
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.5, window=10.0, clock=sleeping_clock)
    assert sum(budget.try_spend() for _ in range(10)) == 5

    sleeping_clock.advance(5)
    assert not budget.try_spend()  # the spent retries are still inside the window

    sleeping_clock.advance(6)
    assert sum(budget.try_spend() for _ in range(10)) == 5


def test_budget_is_thread_safe(sleeping_clock):
    budget = RetryBudget(ratio=0.0, min_retries_per_second=10.0, window=10.0, clock=sleeping_clock)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        local = [budget.try_spend() for _ in range(100)]
        with lock:
            granted.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(granted) == 100
    assert budget.total_retries == 100
    assert budget.total_exhausted == 700


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": -0.1}, "ratio must be >= 0"),
        ({"min_retries_per_second": -1}, "min_retries_per_second must be >= 0"),
        ({"window": 0}, "window must be > 0"),
        ({"slices": 0}, "slices must be an int >= 1"),
    ],
)
def test_budget_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryBudget(**kwargs)


def test_budget_registry_gives_one_budget_per_dependency():
    assert get_retry_budget("green_api") is get_retry_budget("green_api")
    assert get_retry_budget("green_api") is not get_retry_budget("deepseek")


def test_handler_uses_the_dependency_budget_by_default(sleeping_clock):
    handler = RetryHandler(
        RetryConfig(), dependency="green_api", sleep=sleeping_clock.sleep, clock=sleeping_clock
    )

    assert handler.budget is get_retry_budget("green_api")


def test_budget_limits_retries_during_an_outage(sleeping_clock, caplog):
    """1000 first attempts, all failing, 3 attempts each: without a budget 2000 retries; with one
    at most ratio x 1000 + floor x window."""
    caplog.set_level(logging.ERROR, logger="reliability.retry")
    budget = RetryBudget(ratio=0.2, min_retries_per_second=1.0, window=10.0, clock=sleeping_clock)
    handler = RetryHandler(
        RetryConfig(max_attempts=3, base_delay=0.001, jitter="none"),
        dependency="dep",
        budget=budget,
        sleep=lambda s: None,  # the outage happens within one window
        clock=sleeping_clock,
    )
    fn = always(StatusError(503))

    for _ in range(1000):
        with pytest.raises(StatusError):
            handler.execute(fn)

    retries = fn.calls - 1000
    assert retries <= 0.2 * 1000 + 1.0 * 10
    assert retries >= 0.2 * 1000  # the budget is not stingier than promised
    assert gave_up("dep")[BUDGET_EXHAUSTED] > 0
    assert budget.total_exhausted == gave_up("dep")[BUDGET_EXHAUSTED]


def test_budget_bounds_a_long_outage_window_by_window(sleeping_clock, caplog):
    """30 calls/s for 60 s, all failing: retries stay near ratio x calls + floor x time."""
    caplog.set_level(logging.ERROR, logger="reliability.retry")
    budget = RetryBudget(ratio=0.2, min_retries_per_second=1.0, window=10.0, clock=sleeping_clock)
    handler = RetryHandler(
        RetryConfig(max_attempts=3, base_delay=0, jitter="none"),
        dependency="dep",
        budget=budget,
        sleep=lambda s: None,
        clock=sleeping_clock,
    )
    fn = always(StatusError(503))

    calls, seconds = 1800, 60.0
    for _ in range(calls):
        with pytest.raises(StatusError):
            handler.execute(fn)
        sleeping_clock.advance(seconds / calls)

    retries = fn.calls - calls
    assert retries <= 0.2 * calls + 1.0 * (seconds + 10)  # 2 x 1800 = 3600 without a budget
    assert retries >= 0.2 * calls + 1.0 * seconds * 0.9


def test_exhausted_budget_raises_the_original_error_at_once_and_is_logged(sleeping_clock, caplog):
    caplog.set_level(logging.WARNING, logger="reliability.retry")
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.0, window=10.0, clock=sleeping_clock)
    error = StatusError(503, retry_after=1)
    fn = always(error)

    with pytest.raises(StatusError) as raised:
        handler_for(sleeping_clock, budget=budget, max_attempts=5).execute(fn)

    assert raised.value is error
    assert fn.calls == 1
    assert sleeping_clock.sleeps == []
    assert budget.total_exhausted == 1
    assert gave_up("dep") == {BUDGET_EXHAUSTED: 1}
    assert any(getattr(r, "reason", None) == BUDGET_EXHAUSTED for r in caplog.records)


def test_budget_is_not_spent_when_no_retry_would_happen(sleeping_clock):
    budget = RetryBudget(ratio=0.0, min_retries_per_second=1.0, window=10.0, clock=sleeping_clock)

    for error, config in (
        (StatusError(404), {"max_attempts": 3}),  # not transient
        (StatusError(503), {"max_attempts": 1}),  # no attempts left
        (StatusError(503), {"max_attempts": 3, "deadline": 0.5}),  # sleep would pass the deadline
        (StatusError(429, retry_after=999), {"max_attempts": 3}),  # Retry-After above the cap
    ):
        with pytest.raises(StatusError):
            handler_for(sleeping_clock, budget=budget, **config).execute(always(error))

    assert budget.total_retries == 0
    assert budget.total_attempts == 4
