"""Rate limits kept in the database as ``RateEvent`` rows, so they hold across processes.

A row says "one event in this bucket for this key at this time". The key is an HMAC of the
client address or email address under the site's secret: the table never holds a clear
address, and a leaked table cannot be reversed by hashing a list of known addresses. Old rows
are pruned as the app runs.

Buckets:
- ``client``: form posts that may send mail, per client address (``subscribe_per_client_per_hour``)
- ``address-mail``: mails the web app sent to one address (``confirm_mails_per_address_per_day``)
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.models import RateEvent

CLIENT = "client"
ADDRESS_MAIL = "address-mail"
KEEP = timedelta(days=2)  # longer than the longest window
PRUNE_EVERY = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Limit:
    bucket: str
    most: int
    window: timedelta


class RateLimiter:
    def __init__(self, secret: str) -> None:
        self._secret = hashlib.sha256(f"digest.ratelimit:{secret}".encode()).digest()
        self._pruned_at: datetime | None = None
        self._lock = threading.Lock()

    def key(self, bucket: str, value: str) -> str:
        """64 hex characters; the same value gives the same key only under this secret."""
        return hmac.new(self._secret, f"{bucket}\0{value}".encode(), hashlib.sha256).hexdigest()

    def count(self, session: Session, limit: Limit, value: str, now: datetime) -> int:
        return (
            session.scalar(
                select(func.count(RateEvent.id)).where(
                    RateEvent.bucket == limit.bucket,
                    RateEvent.key == self.key(limit.bucket, value),
                    RateEvent.at > now - limit.window,
                )
            )
            or 0
        )

    def allows(self, session: Session, limit: Limit, value: str, now: datetime) -> bool:
        return self.count(session, limit, value, now) < limit.most

    def record(self, session: Session, bucket: str, value: str, now: datetime) -> None:
        session.add(RateEvent(bucket=bucket, key=self.key(bucket, value), at=now))
        self._prune(session, now)

    def take(self, session: Session, limit: Limit, value: str, now: datetime) -> bool:
        """Record one event when under the limit; False (and nothing recorded) when over."""
        if not self.allows(session, limit, value, now):
            return False
        self.record(session, limit.bucket, value, now)
        return True

    def _prune(self, session: Session, now: datetime) -> None:
        with self._lock:
            if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = now
        session.execute(delete(RateEvent).where(RateEvent.at < now - KEEP))
