"""The outbox: plan one delivery per subscriber and local date, claim, and mark.

Planning is safe to run twice, or in two processes at once: the unique key
(subscriber, local date) turns a second plan into a no-op. Senders claim small batches with
a lease (who holds them, until when); a lease that runs out puts the rows back in the queue.

States::

    planned ──claim──► sending ──250──► sent
       ▲                │  │ └─4xx, timeout, lost connection──► deferred ──(time)──► claim
       └──release───────┘  ├─5xx──► failed (reason)
                           └─lost after the final dot──► unknown ─resend─► claim
                                                              └─hold─► operator

Claims: PostgreSQL takes rows with ``FOR UPDATE SKIP LOCKED``, so any number of workers
share the queue without waiting on each other; SQLite takes them inside ``BEGIN IMMEDIATE``,
one writer at a time (run one sending process on SQLite).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import Delivery, Subscriber, TransactionalMail

UnknownPolicy = Literal["resend", "hold"]

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
        .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"])
        .returning(Delivery.id)
    )
    # An executemany ("insertmanyvalues": batches of rows per statement, one compiled form)
    # rather than one statement with every row in it, which is compiled afresh each time.
    return list(session.scalars(statement, rows))


def unranked(session: Session, limit: int) -> list[Any]:
    """Planned deliveries whose content is not fixed yet (a crash between plan and rank
    leaves some; the next tick ranks them): rows of (id, subscriber_id, since), locked."""
    query = (
        select(Delivery.id, Delivery.subscriber_id, Delivery.since)
        .where(Delivery.status == "planned", Delivery.ranked_at.is_(None))
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(query))


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer now. On SQLite a plain (deferred)
    transaction that reads and then writes can fail when another process wrote in between;
    ``BEGIN IMMEDIATE`` takes the write lock first (waiting up to the busy timeout)."""
    if session.get_bind().dialect.name == "sqlite" and not session.info.get("writing"):
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        session.info["writing"] = True  # once per transaction (the session ends with it)


def claim(
    session: Session,
    now: datetime,
    owner: str,
    limit: int,
    lease: timedelta,
    subscriber_ids: Sequence[int] | None = None,
    *,
    policy: UnknownPolicy = "resend",
    daily_cap: int = 0,
) -> list[Delivery]:
    """Take up to ``limit`` deliveries ready to send and lease them to ``owner``.

    Ready: planned with content fixed; deferred, or unknown under the resend policy, whose
    next attempt has come; sending with a lease that ran out (its sender died). Under the
    hold policy, a lapsed lease whose message had been handed over becomes unknown instead.
    Deliveries of subscribers who left meanwhile are cancelled, not sent. With a daily cap,
    claims stop when today's sends plus those in flight reach it.
    """
    begin_write(session)
    dialect = session.get_bind().dialect.name
    if daily_cap:
        if dialect == "postgresql":
            # Claims take turns while a cap is set, so two workers cannot both take the
            # last of today's allowance.
            session.execute(select(func.pg_advisory_xact_lock(CAP_LOCK_KEY)))
        limit = min(limit, max(daily_cap - used_today(session, now), 0))
        if limit == 0:
            return []
    lapsed = and_(Delivery.status == "sending", Delivery.lease_until < now)
    if policy == "hold":
        session.execute(
            update(Delivery)
            .where(lapsed, Delivery.handed_over_at.is_not(None))
            .values(status="unknown", lease_until=None, next_attempt_at=None)
        )
    # One small query per way of being ready, each walking an index in id order and
    # stopping at ``limit`` (SQLite: (status, next_attempt_at) ends in the row id), then the
    # ``limit`` oldest of what they found. A single query with the OR of them all sorted
    # every ready row on each claim: 13-23 ms per claim at 10,000 planned, 10x that at
    # 100,000 (see docs/benchmarks.md).
    parts = [
        and_(
            Delivery.status == "planned",
            Delivery.next_attempt_at.is_(None),
            Delivery.ranked_at.is_not(None),
        ),
        and_(  # given back untried (a stop, a short lease)
            Delivery.status == "planned",
            Delivery.next_attempt_at.is_not(None),
            Delivery.ranked_at.is_not(None),
        ),
        and_(Delivery.status == "deferred", Delivery.next_attempt_at <= now),
        lapsed,
    ]
    if policy == "resend":
        parts.append(and_(Delivery.status == "unknown", Delivery.next_attempt_at <= now))
    found: list[int] = []
    for part in parts:
        if subscriber_ids is not None:
            part = and_(part, Delivery.subscriber_id.in_(list(subscriber_ids)))
        found += session.scalars(
            select(Delivery.id)
            .where(part)
            .order_by(Delivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    chosen = sorted(found)[:limit]
    if not chosen:
        return []
    query = (
        select(Delivery, Subscriber.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(chosen))
        .order_by(Delivery.id)
        .with_for_update(of=Delivery)
    )
    taken: list[Delivery] = []
    for delivery, subscriber_status in session.execute(query).all():
        if subscriber_status != "active":
            delivery.status = "cancelled"
            delivery.lease_owner = delivery.lease_until = None
            delivery.last_error = f"not sent: the subscriber is {subscriber_status}"
            continue
        delivery.status = "sending"
        delivery.lease_owner = owner
        delivery.lease_until = now + lease
        delivery.handed_over_at = None
        delivery.attempts += 1
        taken.append(delivery)
    session.flush()
    return taken


CAP_LOCK_KEY = 0x6469_6765_7374_0001  # "digest" + 1: the daily cap's claim lock


def used_today(session: Session, now: datetime) -> int:
    """Messages sent since midnight UTC plus those claimed and in flight now."""
    midnight = datetime.combine(now.date(), time.min, now.tzinfo)
    sent = session.scalar(select(func.count()).where(Delivery.sent_at >= midnight)) or 0
    flying = session.scalar(
        select(func.count()).where(Delivery.status == "sending", Delivery.lease_until >= now)
    )
    return sent + (flying or 0)


# A row of either outbox: a digest, or a transactional mail. Both carry the same lease and
# state columns, so marking works the same on either.
Leased = type[Delivery] | type[TransactionalMail]


@cache
def _statements(model: Leased) -> tuple[Any, Any]:
    """The two statements a sender runs once per message, built once per table: building and
    caching a fresh statement costs more than the database's own work (docs/benchmarks.md)."""
    mine = and_(model.id == bindparam("delivery_id"), model.lease_owner == bindparam("owner"))
    mark_sent = (
        update(model)
        .where(mine)
        .values(
            status="sent",
            sent_at=bindparam("now"),
            smtp_reply=bindparam("reply"),
            lease_until=None,
            next_attempt_at=None,
            **({"payload": b""} if model is TransactionalMail else {}),  # its links are spent
        )
    )
    handed_over = update(model).where(mine).values(handed_over_at=bindparam("now"))
    return mark_sent, handed_over


def mark_sent(
    session: Session,
    delivery_id: int,
    owner: str,
    now: datetime,
    reply: str,
    model: Leased = Delivery,
) -> bool:
    """Record the server's acceptance; False if the lease was lost to another sender."""
    result = session.connection().execute(
        _statements(model)[0],
        {"delivery_id": delivery_id, "owner": owner, "now": now, "reply": reply[:1000]},
    )
    return result.rowcount == 1


def mark_handed_over(
    session: Session, delivery_id: int, owner: str, now: datetime, model: Leased = Delivery
) -> bool:
    """Note that the message's data is about to go (the hold policy's evidence)."""
    result = session.connection().execute(
        _statements(model)[1], {"delivery_id": delivery_id, "owner": owner, "now": now}
    )
    return result.rowcount == 1


def mark_failed(
    session: Session,
    delivery_id: int,
    owner: str,
    reason: str,
    *,
    retry_at: datetime | None = None,
    model: Leased = Delivery,
) -> bool:
    """A permanent failure (``retry_at`` None) or a deferral until ``retry_at``."""
    values: dict[str, object] = {"last_error": reason[:2000], "lease_until": None}
    if retry_at is None:
        values.update(status="failed", next_attempt_at=None)
    else:
        values.update(status="deferred", next_attempt_at=retry_at)
    result = session.execute(
        update(model).where(model.id == delivery_id, model.lease_owner == owner).values(**values)
    )
    return result.rowcount == 1


def mark_unknown(
    session: Session,
    delivery_id: int,
    owner: str,
    reason: str,
    *,
    retry_at: datetime | None,
    model: Leased = Delivery,
) -> bool:
    """The connection died after the final dot: resend at ``retry_at``, or hold (None)."""
    result = session.execute(
        update(model)
        .where(model.id == delivery_id, model.lease_owner == owner)
        .values(
            status="unknown", last_error=reason[:2000], lease_until=None, next_attempt_at=retry_at
        )
    )
    return result.rowcount == 1


def release(
    session: Session,
    delivery_ids: Sequence[int],
    owner: str,
    retry_at: datetime | None = None,
    reason: str | None = None,
    model: Leased = Delivery,
) -> int:
    """Give back claimed rows that were never tried (a stop, a lease running short, a server
    that refuses us): their attempt is not counted; with ``retry_at`` they wait."""
    if not delivery_ids:
        return 0
    untried = model.attempts <= 1
    status = case((untried, "planned"), else_="deferred") if retry_at is None else "deferred"
    result = session.execute(
        update(model)
        .where(
            model.id.in_(list(delivery_ids)),
            model.lease_owner == owner,
            model.status == "sending",
        )
        .values(
            status=status,
            attempts=model.attempts - 1,
            lease_until=None,
            lease_owner=None,
            last_error=reason[:2000] if reason else model.last_error,
            next_attempt_at=retry_at
            if retry_at is not None
            else func.coalesce(model.next_attempt_at, model.planned_at),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


# -- transactional mail -----------------------------------------------------------------


def enqueue_mail(
    session: Session,
    *,
    kind: str,
    recipient: str,
    payload: bytes,
    subscriber_id: int | None,
    now: datetime,
) -> int:
    """Put a transactional mail in its outbox, in the caller's transaction (so the action that
    asked for it and the mail are stored together or not at all); returns its id."""
    mail = TransactionalMail(
        public_id=secrets.token_hex(16),
        subscriber_id=subscriber_id,
        kind=kind,
        recipient=recipient,
        payload=payload,
        status="planned",
        planned_at=now,
        attempts=0,
    )
    session.add(mail)
    session.flush()
    return mail.id


def _mail_ready(now: datetime, policy: UnknownPolicy) -> Any:
    parts = [
        and_(
            TransactionalMail.status == "planned",
            or_(
                TransactionalMail.next_attempt_at.is_(None),
                TransactionalMail.next_attempt_at <= now,
            ),
        ),
        and_(TransactionalMail.status == "deferred", TransactionalMail.next_attempt_at <= now),
        and_(TransactionalMail.status == "sending", TransactionalMail.lease_until < now),
    ]
    if policy == "resend":
        parts.append(
            and_(TransactionalMail.status == "unknown", TransactionalMail.next_attempt_at <= now)
        )
    return or_(*parts)


def claim_mail(
    session: Session,
    now: datetime,
    owner: str,
    limit: int,
    lease: timedelta,
    *,
    ids: Sequence[int] | None = None,
    subscriber_ids: Sequence[int] | None = None,
    policy: UnknownPolicy = "resend",
) -> list[TransactionalMail]:
    """Take up to ``limit`` transactional mails that are ready, as :func:`claim` takes
    digests (a lapsed lease, a deferral whose time has come, an unknown one to resend)."""
    begin_write(session)
    if policy == "hold":
        session.execute(
            update(TransactionalMail)
            .where(
                TransactionalMail.status == "sending",
                TransactionalMail.lease_until < now,
                TransactionalMail.handed_over_at.is_not(None),
            )
            .values(status="unknown", lease_until=None, next_attempt_at=None)
        )
    query = select(TransactionalMail).where(_mail_ready(now, policy))
    if ids is not None:
        query = query.where(TransactionalMail.id.in_(list(ids)))
    if subscriber_ids is not None:
        query = query.where(TransactionalMail.subscriber_id.in_(list(subscriber_ids)))
    taken = list(
        session.scalars(
            query.order_by(TransactionalMail.id).limit(limit).with_for_update(skip_locked=True)
        )
    )
    for mail in taken:
        mail.status = "sending"
        mail.lease_owner = owner
        mail.lease_until = now + lease
        mail.handed_over_at = None
        mail.attempts += 1
    session.flush()
    return taken


def mail_due(session: Session, now: datetime, policy: UnknownPolicy = "resend") -> datetime | None:
    """When the next transactional mail is ready: ``now`` if one is, else the earliest retry
    or lease end (None: nothing is waiting). A read, so an idle poller takes no write lock."""
    if session.scalar(select(exists().where(_mail_ready(now, policy)))):
        return now
    waiting = ["planned", "deferred", "sending"] + (["unknown"] if policy == "resend" else [])
    mail = TransactionalMail
    return session.scalar(
        select(func.min(func.coalesce(mail.next_attempt_at, mail.lease_until))).where(
            mail.status.in_(waiting)
        )
    )


def recover(session: Session, owner: str, now: datetime, policy: UnknownPolicy) -> int:
    """A restarted worker with a stable name takes back what its previous run held: those
    rows are treated as if their lease had run out, now rather than later."""
    held = and_(Delivery.status == "sending", Delivery.lease_owner == owner)
    count = 0
    if policy == "hold":
        count += session.execute(
            update(Delivery)
            .where(held, Delivery.handed_over_at.is_not(None))
            .values(status="unknown", lease_until=None, next_attempt_at=None)
        ).rowcount
    count += session.execute(
        update(Delivery)
        .where(held)
        .values(status="deferred", lease_until=None, next_attempt_at=now)
    ).rowcount
    return count


def counts(session: Session) -> dict[str, int]:
    """Deliveries per state."""
    rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
    return {status: n for status, n in rows}


def requeue(
    session: Session,
    now: datetime,
    *,
    statuses: Sequence[str] = (),
    public_ids: Sequence[str] = (),
) -> int:
    """An operator's retry: the chosen failed, unknown or deferred deliveries go out at the
    next claim (a failed one gets one more attempt whatever its age)."""
    chosen = []
    if statuses:
        chosen.append(Delivery.status.in_(list(statuses)))
    if public_ids:
        chosen.append(
            and_(
                Delivery.public_id.in_(list(public_ids)),
                Delivery.status.in_(["failed", "unknown", "deferred"]),
            )
        )
    if not chosen:
        return 0
    result = session.execute(
        update(Delivery)
        .where(or_(*chosen))
        .values(status="deferred", next_attempt_at=now, lease_until=None, lease_owner=None)
    )
    return result.rowcount
