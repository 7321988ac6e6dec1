"""Bounces in the database: record permanent failures and bounce reports, suppress
addresses that keep failing, tie a report to its delivery."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.config import DeliverySettings
from digest.delivery.bounces import Report
from digest.domain.states import SubscriberStatus
from digest.models import Bounce, Delivery, Subscriber

COUNTED = ("failed", "hard")  # kinds that count toward suppression


def record(
    session: Session,
    settings: DeliverySettings,
    *,
    subscriber_id: int,
    delivery_id: int | None,
    kind: str,
    status: str | None,
    diagnostic: str | None,
    now: datetime,
) -> str:
    """Record one bounce; returns duplicate, recorded, counted or suppressed.

    A delivery counts at most once, whether it failed at send time, bounced later, or both;
    the same report arriving twice is one bounce. Past ``bounce_limit`` counted bounces
    within ``bounce_window_days`` the subscriber is marked bounced and gets no more mail.
    """
    already_counted = False
    if delivery_id is not None:
        already_counted = bool(
            session.scalar(
                select(exists().where(Bounce.delivery_id == delivery_id, Bounce.kind.in_(COUNTED)))
            )
        )
    row = {
        "subscriber_id": subscriber_id,
        "delivery_id": delivery_id,
        "received_at": now,
        "kind": kind,
        "status": (status or "")[:20] or None,
        "diagnostic": (diagnostic or "")[:2000] or None,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    added = session.execute(
        insert(Bounce).values(row).on_conflict_do_nothing(index_elements=["delivery_id", "kind"])
    ).rowcount
    if not added:
        return "duplicate"
    if kind not in COUNTED or already_counted:
        return "recorded"
    window_start = now - timedelta(days=settings.bounce_window_days)
    stale = or_(Subscriber.last_bounce_at.is_(None), Subscriber.last_bounce_at < window_start)
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(
            bounce_count=case((stale, 1), else_=Subscriber.bounce_count + 1),
            last_bounce_at=now,
        )
    )
    suppressed = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status == "active",
            Subscriber.bounce_count >= settings.bounce_limit,
        )
        .values(status="bounced", updated_at=now)
    ).rowcount
    return "suppressed" if suppressed else "counted"


def reactivate(subscriber: Subscriber, now: datetime) -> bool:
    """An operator's word that a bounced address works again: active, count cleared."""
    if subscriber.status != SubscriberStatus.BOUNCED:
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.bounce_count = 0
    subscriber.updated_at = now
    return True


def match(session: Session, report: Report) -> tuple[Delivery | None, Subscriber | None]:
    if report.delivery_public_id:
        delivery = session.scalar(
            select(Delivery).where(Delivery.public_id == report.delivery_public_id)
        )
        if delivery is not None:
            return delivery, session.get(Subscriber, delivery.subscriber_id)
    if report.recipient:
        subscriber = session.scalar(
            select(Subscriber).where(Subscriber.email_key == report.recipient.strip().casefold())
        )
        return None, subscriber
    return None, None
