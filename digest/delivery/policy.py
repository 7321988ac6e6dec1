"""When to try again: exponential backoff with jitter, until a give-up age.

Pure functions of the settings, the attempt count and the clock, so the outbox and the
tests agree on them.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from digest.config import DeliverySettings


def retry_delay(
    settings: DeliverySettings, attempts: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2×base, 4×base …
    capped at ``retry_max_seconds``, each varied by ±``retry_jitter`` so that messages
    deferred together do not all come back at the same second."""
    delay = min(settings.retry_base_seconds * 2 ** max(attempts - 1, 0), settings.retry_max_seconds)
    jitter = settings.retry_jitter
    factor = (rng or random).uniform(1 - jitter, 1 + jitter) if jitter else 1.0
    return delay * factor


def next_attempt(
    settings: DeliverySettings,
    now: datetime,
    planned_at: datetime,
    attempts: int,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again, or None when the digest is too old to keep trying."""
    give_up_at = planned_at + timedelta(hours=settings.give_up_hours)
    if now >= give_up_at:
        return None
    return min(now + timedelta(seconds=retry_delay(settings, attempts, rng)), give_up_at)


def gave_up(settings: DeliverySettings, attempts: int, reason: str) -> str:
    """The last error of a message given up at the give-up age."""
    return f"gave up after {attempts} attempts over {settings.give_up_hours:g} hours: {reason}"[
        :2000
    ]
