"""Subscribers: who they are, when they get mail, what they want; their rows and changes.

Callers hand in a session from ``Store.transaction()`` so a change commits whole or not at
all. The rules of what may change (profiles merged, addresses checked) are the app's and the
domain's; these functions store what they decided.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.domain import addresses
from digest.domain.profiles import Profile
from digest.domain.schedules import WEEKDAYS, Schedule
from digest.domain.states import SubscriberStatus
from digest.errors import ValidationError
from digest.models import (
    Bounce,
    Delivery,
    DeliveryItem,
    Feedback,
    Paper,
    SentPaper,
    Subscriber,
    TransactionalMail,
)

__all__ = ["Subscriber"]


def find(session: Session, email: str) -> Subscriber | None:
    _, key = addresses.normalise(email)
    return session.scalar(select(Subscriber).where(Subscriber.email_key == key))


def get(session: Session, email: str) -> Subscriber:
    subscriber = find(session, email)
    if subscriber is None:
        raise ValidationError(f"no subscriber with the address {email.strip()!r}")
    return subscriber


def by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


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
    address, key = addresses.normalise(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(email=address, email_key=key, created_at=now)
        session.add(subscriber)
    subscriber.profile = profile.to_json()
    set_schedule(subscriber, schedule)
    subscriber.updated_at = now
    if confirmed and subscriber.status != SubscriberStatus.ACTIVE:
        activate(subscriber, now)
    session.flush()
    return subscriber, created


# A schedule's fields are subscriber columns of the same names: a new one is declared in
# ``Schedule`` and ``models.Subscriber``, and read and written here without more.
_SCHEDULE = tuple(f.name for f in fields(Schedule))


def schedule_of(subscriber: Subscriber) -> Schedule:
    return Schedule(**{name: getattr(subscriber, name) for name in _SCHEDULE})


def set_schedule(subscriber: Subscriber, schedule: Schedule) -> None:
    for name in _SCHEDULE:
        setattr(subscriber, name, getattr(schedule, name))


def activate(subscriber: Subscriber, now: datetime) -> bool:
    """Active from now on; False when it already was."""
    if subscriber.status == SubscriberStatus.ACTIVE:
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    subscriber.paused_until = None
    subscriber.updated_at = now
    return True


def unsubscribe(subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Stop all mail; True when this changed anything (a second click is harmless)."""
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    now = now or datetime.now(UTC)
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    subscriber.updated_at = now
    return True


def profile_of(subscriber: Subscriber) -> Profile:
    return Profile.from_json(subscriber.profile)


def set_profile(subscriber: Subscriber, profile: Profile, now: datetime | None = None) -> None:
    subscriber.profile = profile.to_json()
    subscriber.updated_at = now or datetime.now(UTC)


def pause(subscriber: Subscriber, days: int | None, now: datetime) -> None:
    """No digests for ``days`` days (None: resume now)."""
    subscriber.paused_until = now + timedelta(days=days) if days else None
    subscriber.updated_at = now


def set_pending_email(subscriber: Subscriber, address: str | None, now: datetime) -> None:
    subscriber.pending_email = address
    subscriber.updated_at = now


def move_to(session: Session, subscriber: Subscriber, address: str, now: datetime) -> bool:
    """Take on the confirmed new ``address``; False when another subscription has it."""
    stored, key = addresses.normalise(address)
    other = find(session, stored)
    if other is not None and other.id != subscriber.id:
        return False
    subscriber.email = stored
    subscriber.email_key = key
    subscriber.pending_email = None
    subscriber.token_version += 1  # links sent to the old address stop working
    subscriber.updated_at = now
    session.flush()
    return True


def sign_out(session: Session, subscriber: Subscriber, now: datetime) -> None:
    """Revoke every preferences link sent so far: they carry the old token version."""
    subscriber.token_version += 1
    subscriber.updated_at = now
    session.flush()


def listing(session: Session, status: str | None = None) -> list[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.created_at, Subscriber.id)
    if status is not None:
        if status not in set(SubscriberStatus):
            choices = ", ".join(SubscriberStatus)
            raise ValidationError(f"status {status!r}: expected one of {choices}")
        query = query.where(Subscriber.status == status)
    return list(session.scalars(query))


def counts(session: Session) -> dict[str, int]:
    """Subscribers by status, every status listed."""
    rows = dict(
        session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    )
    return {state: rows.get(state, 0) for state in (*SubscriberStatus, *sorted(rows))}


# -- everything about one subscriber ----------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def export(session: Session, person: Subscriber, now: datetime) -> dict[str, Any]:
    """Everything stored about one subscriber, as plain JSON."""
    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == person.id).order_by(Delivery.local_date)
    ).all()
    items: dict[int, list[dict[str, Any]]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = session.execute(
            select(DeliveryItem, Paper)
            .join(Paper, Paper.id == DeliveryItem.paper_id)
            .where(DeliveryItem.delivery_id.in_([d.id for d in deliveries]))
            .order_by(DeliveryItem.delivery_id, DeliveryItem.position)
        )
        for item, paper in rows:
            items[item.delivery_id].append(
                {
                    "position": item.position,
                    "section": item.section,
                    "arxiv_id": paper.arxiv_id,
                    "title": paper.title,
                    "score": round(item.score, 4),
                    "reasons": item.reasons,
                }
            )
    bounces = session.scalars(
        select(Bounce).where(Bounce.subscriber_id == person.id).order_by(Bounce.received_at)
    ).all()
    choices = session.execute(
        select(Feedback, Paper)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(Feedback.subscriber_id == person.id)
        .order_by(Feedback.created_at, Feedback.id)
    ).all()
    return {
        "about": "Everything this digest service stores about you. Rate-limit records hold "
        "only keyed hashes and cannot be tied back to you.",
        "exported_at": now.isoformat(),
        "subscriber": {
            "email": person.email,
            "pending_email": person.pending_email,
            "status": person.status,
            "timezone": person.timezone,
            "send_hour": person.send_hour,
            "frequency": person.frequency,
            "weekday": WEEKDAYS[person.weekday] if person.weekday is not None else None,
            "max_papers": person.max_papers,
            "send_when_empty": person.send_when_empty,
            "paused_until": _iso(person.paused_until),
            "created_at": _iso(person.created_at),
            "confirmed_at": _iso(person.confirmed_at),
            "unsubscribed_at": _iso(person.unsubscribed_at),
            "updated_at": _iso(person.updated_at),
            "bounce_count": person.bounce_count,
            "last_bounce_at": _iso(person.last_bounce_at),
        },
        "profile": person.profile,
        "digests": [
            {
                "date": d.local_date.isoformat(),
                "status": d.status,
                "sent_at": _iso(d.sent_at),
                "papers": items[d.id],
            }
            for d in deliveries
        ],
        "feedback": [
            {
                "at": _iso(choice.created_at),
                "choice": "more like this" if choice.value > 0 else "fewer like this",
                "arxiv_id": paper.arxiv_id,
                "title": paper.title,
            }
            for choice, paper in choices
        ],
        "bounces": [
            {
                "received_at": _iso(b.received_at),
                "kind": b.kind,
                "status": b.status,
                "diagnostic": b.diagnostic,
            }
            for b in bounces
        ],
    }


def erase(session: Session, person: Subscriber) -> None:
    """Remove the subscriber and everything tied to them (not relying on ON DELETE)."""
    mine = select(Delivery.id).where(Delivery.subscriber_id == person.id)
    session.execute(delete(DeliveryItem).where(DeliveryItem.delivery_id.in_(mine)))
    session.execute(delete(SentPaper).where(SentPaper.subscriber_id == person.id))
    session.execute(delete(Feedback).where(Feedback.subscriber_id == person.id))
    session.execute(delete(Bounce).where(Bounce.subscriber_id == person.id))
    session.execute(delete(Delivery).where(Delivery.subscriber_id == person.id))
    session.execute(delete(TransactionalMail).where(TransactionalMail.subscriber_id == person.id))
    session.execute(delete(Subscriber).where(Subscriber.id == person.id))
