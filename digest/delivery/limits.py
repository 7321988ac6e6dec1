"""Sending rate: a token bucket shared by one worker process's connections.

The clock and the sleep are injected, so tests run the limiter without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most ``per_second`` messages per second on average, in bursts of at most
    ``burst``; ``per_second`` 0 means no limit."""

    def __init__(
        self,
        per_second: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = per_second
        self.burst = burst if burst is not None else max(1.0, per_second)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until one message may go; returns the seconds waited."""
        if not self.per_second:
            return 0.0
        with self._lock:
            # Take the token now (the balance may go negative) and sleep off the debt
            # outside the lock, so waiting senders queue up in order.
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
