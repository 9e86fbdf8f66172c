"""Property-based tests (hypothesis) for backoff bounds, the deadline and the retry budget."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability import testing
from reliability.retry import (
    RetryBudget,
    RetryConfig,
    RetryHandler,
)
from tests.reliability.retry_support import backoff_delays

COUNT = 40


@pytest.fixture(autouse=True)
def _quiet_and_fresh(caplog):
    caplog.set_level(logging.ERROR, logger="reliability.retry")
    testing.reset_retry_budgets()
    yield
    testing.reset_retry_budgets()


@st.composite
def configs(draw: st.DrawFn, jitter: str | None = None) -> RetryConfig:
    base = draw(st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False))
    extra = draw(st.floats(min_value=0, max_value=120, allow_nan=False, allow_infinity=False))
    return RetryConfig(
        base_delay=base,
        max_delay=base + extra,
        jitter=jitter or draw(st.sampled_from(["full", "equal", "none"])),  # type: ignore[arg-type]
        multiplier=draw(st.floats(min_value=1, max_value=10, allow_nan=False, allow_infinity=False)),
    )


seeds = st.integers(min_value=0, max_value=2**32 - 1)


def unjittered(config: RetryConfig) -> list[float]:
    return backoff_delays(dataclasses.replace(config, jitter="none"), COUNT)


@given(config=configs(), seed=seeds)
def test_every_delay_is_within_zero_and_max_delay(config, seed):
    delays = backoff_delays(config, COUNT, random.Random(seed))

    assert len(delays) == COUNT
    assert all(0 <= d <= config.max_delay for d in delays)


@given(config=configs(jitter="none"))
def test_unjittered_sequences_never_decrease(config):
    delays = backoff_delays(config, COUNT)

    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[0] == min(config.base_delay, config.max_delay)


@given(config=configs(jitter="full"), seed=seeds)
def test_full_jitter_never_exceeds_the_unjittered_delay(config, seed):
    jittered = backoff_delays(config, COUNT, random.Random(seed))

    assert all(0 <= j <= r for j, r in zip(jittered, unjittered(config), strict=True))


@given(config=configs(jitter="equal"), seed=seeds)
def test_equal_jitter_keeps_at_least_half_of_the_unjittered_delay(config, seed):
    jittered = backoff_delays(config, COUNT, random.Random(seed))

    assert all(r / 2 <= j <= r for j, r in zip(jittered, unjittered(config), strict=True))


@given(config=configs(), seed=seeds)
def test_same_seed_same_delays(config, seed):
    assert backoff_delays(config, COUNT, random.Random(seed)) == backoff_delays(
        config, COUNT, random.Random(seed)
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 50.0
        self.attempt_starts: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=configs(),
    max_attempts=st.integers(min_value=1, max_value=12),
    deadline=st.floats(min_value=0.01, max_value=200, allow_nan=False),
    attempt_cost=st.floats(min_value=0, max_value=5, allow_nan=False),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=90, allow_nan=False)),
    seed=seeds,
)
def test_no_attempt_starts_at_or_after_the_deadline(
    config, max_attempts, deadline, attempt_cost, retry_after, seed
):
    config = dataclasses.replace(config, max_attempts=max_attempts, deadline=deadline)
    clock = _Clock()
    started = clock.now

    class Unavailable(Exception):
        status = 503

    def failing() -> None:
        clock.attempt_starts.append(clock.now)
        clock.now += attempt_cost
        error = Unavailable()
        error.retry_after = retry_after  # type: ignore[attr-defined]
        raise error

    handler = RetryHandler(
        config,
        dependency="prop",
        budget=RetryBudget(ratio=1.0, min_retries_per_second=1e6),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(seed),
    )

    with pytest.raises(Unavailable):
        handler.execute(failing)

    assert 1 <= len(clock.attempt_starts) <= max_attempts
    assert all(t < started + deadline for t in clock.attempt_starts)
    if retry_after is not None and retry_after > config.retry_after_cap:
        assert len(clock.attempt_starts) == 1


@given(
    ratio=st.floats(min_value=0, max_value=2, allow_nan=False),
    floor=st.floats(min_value=0, max_value=5, allow_nan=False),
    window=st.floats(min_value=0.5, max_value=60, allow_nan=False),
    attempts=st.integers(min_value=0, max_value=500),
    demand=st.integers(min_value=0, max_value=1500),
)
def test_budget_within_one_window_grants_exactly_ratio_times_attempts_plus_floor(
    ratio, floor, window, attempts, demand
):
    budget = RetryBudget(ratio=ratio, min_retries_per_second=floor, window=window, clock=lambda: 1000.0)
    for _ in range(attempts):
        budget.record_attempt()

    granted = sum(budget.try_spend() for _ in range(demand))

    allowance = ratio * attempts + floor * window
    assert granted <= allowance + 1e-6
    assert granted == min(demand, int(allowance + 1e-9))
    assert budget.total_exhausted == demand - granted


@settings(max_examples=60)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["attempt", "retry"]), st.floats(min_value=0, max_value=3)),
        max_size=400,
    ),
)
def test_budget_never_grants_more_than_the_sliding_window_allows(events):
    """For every granted retry at time t: retries granted in (t - window, t] never exceed
    ratio x first attempts in (t - window - slice, t] + floor x window."""
    ratio, floor, window, slices = 0.25, 0.5, 10.0, 10
    now = [0.0]
    budget = RetryBudget(ratio=ratio, min_retries_per_second=floor, window=window, clock=lambda: now[0])
    attempts_at: list[float] = []
    grants_at: list[float] = []

    for kind, gap in events:
        now[0] += gap
        if kind == "attempt":
            budget.record_attempt()
            attempts_at.append(now[0])
        elif budget.try_spend():
            grants_at.append(now[0])
            t = now[0]
            recent_grants = sum(1 for g in grants_at if g > t - window)
            recent_attempts = sum(1 for a in attempts_at if a > t - window - window / slices)
            assert recent_grants <= ratio * recent_attempts + floor * window + 1e-6
