"""Retry policy: which failures are worth another attempt, and how long to wait before it.

Exponential backoff with full jitter (sleep uniformly in [0, min(cap, base * 2**n)]) spreads a
crowd of edge devices that all failed at once; a server's ``Retry-After`` overrides the jitter.
Two bounds stop the loop: a number of attempts and a total time budget.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4  # attempts = retries + 1
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    total_s: float = 120.0  # no new attempt starts after this many seconds
    max_retry_after_s: float = 60.0  # a longer Retry-After is not waited for: the error is raised
    # With a verified copy already cached, a failing revalidation is retried at most this many
    # times before that copy is served: an edge device that lost its network gets its model in
    # seconds, not after the whole budget (huggingface_hub gives its revalidation one 10 s try).
    revalidate_retries: int = 1

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_base_s < 0 or self.total_s < 0 or self.revalidate_retries < 0:
            raise ValueError(f"retry policy values must be >= 0, got {self}")

    def for_revalidation(self) -> RetryPolicy:
        """This policy for a pull that can fall back to a cached copy."""
        return replace(self, retries=min(self.retries, self.revalidate_retries))


@dataclass
class RetryState:
    """Counts attempts of one logical operation; `delay_before_retry` says how long to wait, or None to stop."""

    policy: RetryPolicy
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.policy.total_s

    def delay_before_retry(self, retry_after: float | None = None) -> float | None:
        self.failures += 1
        if self.failures > self.policy.retries:
            return None
        if retry_after is not None:
            if retry_after > self.policy.max_retry_after_s:
                return None
            delay = retry_after
        else:
            cap = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2 ** (self.failures - 1))
            delay = self.rng.uniform(0.0, cap)
        if self.clock() + delay > self._deadline:
            return None
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
