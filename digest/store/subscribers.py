"""Subscribers: who they are, when they get mail, and what they want.

Business rules and the queries behind them; callers hand in a session from
``Store.transaction()`` so a change commits whole or not at all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.config import SubscriberSettings, check_timezone
from digest.domain import addresses
from digest.domain.profiles import Profile
from digest.errors import ValidationError
from digest.models import Subscriber

STATUSES = ("pending", "active", "unsubscribed", "bounced")
FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_PAPERS = 50


normalise_email = addresses.normalise  # (address as stored, key); says what is wrong


def parse_weekday(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
    else:
        key = value.strip().lower()[:3]
        if key in WEEKDAYS:
            return WEEKDAYS.index(key)
        if key.isdigit() and 0 <= int(key) <= 6:
            return int(key)
    raise ValidationError(f"weekday {value!r}: expected mon, tue, wed, thu, fri, sat or sun")


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscriber's mail goes out, checked."""

    timezone: str
    send_hour: int
    frequency: str = "daily"
    weekday: int | None = None
    max_papers: int = 10
    send_when_empty: bool = False

    @classmethod
    def checked(
        cls,
        timezone: str,
        send_hour: int,
        frequency: str = "daily",
        weekday: str | int | None = None,
        max_papers: int = 10,
        send_when_empty: bool = False,
    ) -> Schedule:
        try:
            check_timezone(timezone)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if not 0 <= send_hour <= 23:
            raise ValidationError(f"send hour {send_hour}: expected 0–23 (local time)")
        if frequency not in FREQUENCIES:
            raise ValidationError(f"frequency {frequency!r}: expected daily or weekly")
        day = parse_weekday(weekday)
        if frequency == "weekly" and day is None:
            raise ValidationError("a weekly digest needs a weekday (mon … sun)")
        if not 1 <= max_papers <= MAX_PAPERS:
            raise ValidationError(f"papers per mail {max_papers}: expected 1–{MAX_PAPERS}")
        return cls(
            timezone,
            send_hour,
            frequency,
            day if frequency == "weekly" else None,
            max_papers,
            send_when_empty,
        )

    @classmethod
    def default(cls, settings: SubscriberSettings) -> Schedule:
        return cls(
            settings.default_timezone, settings.default_hour, max_papers=settings.default_max_papers
        )


def find(session: Session, email: str) -> Subscriber | None:
    _, key = normalise_email(email)
    return session.scalar(select(Subscriber).where(Subscriber.email_key == key))


def get(session: Session, email: str) -> Subscriber:
    subscriber = find(session, email)
    if subscriber is None:
        raise ValidationError(f"no subscriber with the address {email.strip()!r}")
    return subscriber


def by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def upsert(
    session: Session,
    email: str,
    profile: Profile,
    schedule: Schedule,
    *,
    confirmed: bool,
    now: datetime | None = None,
) -> tuple[Subscriber, bool]:
    """Create or update the subscription for ``email``; returns (subscriber, created).

    ``confirmed`` makes it active at once (the operator's CLI path); otherwise a new or
    returning subscriber is pending until they confirm by email.
    """
    now = now or datetime.now(UTC)
    address, key = normalise_email(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(
            public_id=secrets.token_hex(16),
            email=address,
            email_key=key,
            status="pending",
            created_at=now,
            token_version=1,
        )
        session.add(subscriber)
    if not created and "learned" not in profile.extra:
        # What feedback taught stays with the reader when they sign up again or edit their
        # topics: it follows their stored choices, which stay too.
        kept = profile_of(subscriber).extra.get("learned")
        if kept:
            profile = profile.with_extra(learned=kept)
    subscriber.profile = profile.to_json()
    subscriber.timezone = schedule.timezone
    subscriber.send_hour = schedule.send_hour
    subscriber.frequency = schedule.frequency
    subscriber.weekday = schedule.weekday
    subscriber.max_papers = schedule.max_papers
    subscriber.send_when_empty = schedule.send_when_empty
    subscriber.updated_at = now
    if confirmed and subscriber.status != "active":
        activate(subscriber, now)
    session.flush()
    return subscriber, created


def activate(subscriber: Subscriber, now: datetime) -> None:
    subscriber.status = "active"
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    subscriber.paused_until = None
    subscriber.updated_at = now


def unsubscribe(subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Stop all mail; True when this changed anything (a second click is harmless)."""
    if subscriber.status == "unsubscribed":
        return False
    now = now or datetime.now(UTC)
    subscriber.status = "unsubscribed"
    subscriber.unsubscribed_at = now
    subscriber.updated_at = now
    return True


def profile_of(subscriber: Subscriber) -> Profile:
    return Profile.from_json(subscriber.profile)


def set_profile(subscriber: Subscriber, profile: Profile, now: datetime | None = None) -> None:
    subscriber.profile = profile.to_json()
    subscriber.updated_at = now or datetime.now(UTC)


def listing(session: Session, status: str | None = None) -> list[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.created_at, Subscriber.id)
    if status is not None:
        if status not in STATUSES:
            raise ValidationError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        query = query.where(Subscriber.status == status)
    return list(session.scalars(query))


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    return {status: count for status, count in rows}
