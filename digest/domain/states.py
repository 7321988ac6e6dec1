"""The states a subscriber and a delivery can be in: each listed once, here.

They are ``StrEnum``s, so they compare equal to the strings the database stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up, not confirmed yet
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # suppressed after repeated permanent failures


class DeliveryState(StrEnum):
    """A digest's, or a transactional mail's (which are never skipped or cancelled)::

    planned ──claim──► sending ──250──► sent
       ▲                │  │ └─4xx, timeout, lost connection──► deferred ──(time)──► claim
       └──release───────┘  ├─5xx──► failed (reason)
                           └─lost after the final dot──► unknown ─resend─► claim
                                                              └─hold─► operator
    """

    PLANNED = "planned"  # content fixed once ranked, waiting for a sender
    SENDING = "sending"  # claimed: a sender holds its lease
    SENT = "sent"
    DEFERRED = "deferred"  # a temporary failure: tried again at next_attempt_at
    FAILED = "failed"  # permanent, or given up
    UNKNOWN = "unknown"  # the connection died after the final dot
    SKIPPED = "skipped"  # nothing to send, and the reader wants no empty mail
    CANCELLED = "cancelled"  # the reader left before it went out


RETRYABLE = (DeliveryState.FAILED, DeliveryState.UNKNOWN, DeliveryState.DEFERRED)


@dataclass(frozen=True, slots=True)
class Lease:
    """What a claim gives a sender: its rows until ``until``; after that another may take
    them (the first sender is presumed dead)."""

    owner: str
    start: datetime
    length: timedelta

    @property
    def until(self) -> datetime:
        return self.start + self.length
