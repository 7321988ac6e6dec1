"""The outbox: plan one delivery per subscriber and local date, claim, and mark.

Planning is safe to run twice, or in two processes at once: the unique key
(subscriber, local date) turns a second plan into a no-op. Senders claim deliveries with a
lease; a lease that runs out puts the delivery back in the queue.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import Delivery, Subscriber

# A returning subscriber's window never reaches back further than this.
MAX_WINDOW = timedelta(days=8)


@dataclass(frozen=True, slots=True)
class Due:
    subscriber_id: int
    local_date: date


def due(
    session: Session,
    now: datetime,
    subscriber_ids: Sequence[int] | None = None,
    *,
    for_date: date | None = None,
) -> list[Due]:
    """Active subscribers whose local send hour has come on their local date, with no
    delivery for that date yet. Grouped by time zone, so the work is per zone, not per
    subscriber; daylight-saving changes neither skip nor repeat a date (the date is the
    key, and "the hour has come" is a comparison, not an equality).

    ``for_date`` asks for that local date whatever the hour (an operator's catch-up).
    """
    active = and_(
        Subscriber.status == "active",
        or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
    )
    if subscriber_ids is not None:
        active = and_(active, Subscriber.id.in_(list(subscriber_ids)))
    zones = session.scalars(select(Subscriber.timezone).where(active).distinct())
    found: list[Due] = []
    for zone in sorted(zones):
        local = now.astimezone(ZoneInfo(zone))
        today = for_date or local.date()
        weekday = today.weekday()
        hour = 23 if for_date else local.hour
        already = exists().where(
            Delivery.subscriber_id == Subscriber.id, Delivery.local_date == today
        )
        query = select(Subscriber.id).where(
            active,
            Subscriber.timezone == zone,
            Subscriber.send_hour <= hour,
            or_(
                Subscriber.frequency == "daily",
                and_(Subscriber.frequency == "weekly", Subscriber.weekday == weekday),
            ),
            ~already,
        )
        found.extend(Due(sid, today) for sid in session.scalars(query.order_by(Subscriber.id)))
    return found


def plan(
    session: Session, due_now: Sequence[Due], now: datetime, first_window: timedelta
) -> list[int]:
    """Insert a planned delivery for each; returns the ids of those this call inserted
    (a delivery another process planned first is skipped, not duplicated)."""
    if not due_now:
        return []
    ids = [d.subscriber_id for d in due_now]
    last = dict(
        session.execute(
            select(Delivery.subscriber_id, func.max(Delivery.planned_at))
            .where(Delivery.subscriber_id.in_(ids))
            .group_by(Delivery.subscriber_id)
        ).all()
    )
    rows = []
    for d in due_now:
        previous = last.get(d.subscriber_id)
        since = max(previous, now - MAX_WINDOW) if previous else now - first_window
        rows.append(
            {
                "public_id": secrets.token_hex(16),
                "subscriber_id": d.subscriber_id,
                "local_date": d.local_date,
                "status": "planned",
                "planned_at": now,
                "since": since,
                "paper_count": 0,
                "attempts": 0,
            }
        )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Delivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"])
        .returning(Delivery.id)
    )
    return list(session.scalars(statement))


def unranked(session: Session, limit: int) -> list[Delivery]:
    """Planned deliveries whose content is not fixed yet (a crash between plan and rank
    leaves some; the next tick ranks them)."""
    query = (
        select(Delivery)
        .where(Delivery.status == "planned", Delivery.ranked_at.is_(None))
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def claim(
    session: Session,
    now: datetime,
    owner: str,
    limit: int,
    lease: timedelta,
    subscriber_ids: Sequence[int] | None = None,
) -> list[Delivery]:
    """Take up to ``limit`` deliveries ready to send and lease them to ``owner``.

    Ready: planned with content fixed, deferred whose next attempt has come, or sending
    with a lease that ran out (its sender died).
    """
    ready = or_(
        and_(Delivery.status == "planned", Delivery.ranked_at.is_not(None)),
        and_(Delivery.status == "deferred", Delivery.next_attempt_at <= now),
        and_(Delivery.status == "sending", Delivery.lease_until < now),
    )
    if subscriber_ids is not None:
        ready = and_(ready, Delivery.subscriber_id.in_(list(subscriber_ids)))
    query = (
        select(Delivery)
        .where(ready)
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    taken = list(session.scalars(query))
    for delivery in taken:
        delivery.status = "sending"
        delivery.lease_owner = owner
        delivery.lease_until = now + lease
        delivery.attempts += 1
    session.flush()
    return taken


def mark_sent(session: Session, delivery_id: int, owner: str, now: datetime, reply: str) -> bool:
    """Record the server's acceptance; False if the lease was lost to another sender."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_owner == owner)
        .values(status="sent", sent_at=now, smtp_reply=reply[:1000], lease_until=None)
    )
    return result.rowcount == 1


def mark_failed(
    session: Session,
    delivery_id: int,
    owner: str,
    reason: str,
    *,
    retry_at: datetime | None = None,
) -> None:
    """A permanent failure (``retry_at`` None) or a deferral until ``retry_at``."""
    values: dict[str, object] = {"last_error": reason[:2000], "lease_until": None}
    if retry_at is None:
        values["status"] = "failed"
    else:
        values.update(status="deferred", next_attempt_at=retry_at)
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_owner == owner)
        .values(**values)
    )
