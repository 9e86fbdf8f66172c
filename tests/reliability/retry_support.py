"""What the retry tests share: a backoff sequence as a list."""

from __future__ import annotations

import itertools
import random

from reliability.retry import RetryConfig, iter_backoff_delays


def backoff_delays(config: RetryConfig, count: int, rng: random.Random | None = None) -> list[float]:
    """The delays before retries ``1..count``, as ``RetryHandler`` sleeps them without Retry-After."""
    return list(itertools.islice(iter_backoff_delays(config, rng), count))
