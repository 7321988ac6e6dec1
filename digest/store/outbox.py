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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from digest.domain.schedules import window_start
from digest.domain.states import DeliveryState, Lease, SubscriberStatus
from digest.models import Delivery, Subscriber, TransactionalMail, public_id
from digest.store import begin_write, bulk, chunks
from digest.store.driver_sql import DriverStatement

UnknownPolicy = Literal["resend", "hold"]


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
    ids = [d.subscriber_id for d in due_now]
    # Those planned meanwhile (another process planning the same day, each taking the write
    # lock in turn) are left out before the insert: skipped by its conflict clause, each
    # still cost nearly what an insert does, and two processes planned everything twice.
    dates = sorted({d.local_date for d in due_now})
    planned: set[tuple[int, date]] = set()
    for part in chunks(ids):
        found = session.execute(
            select(Delivery.subscriber_id, Delivery.local_date).where(
                Delivery.subscriber_id.in_(part), Delivery.local_date.in_(dates)
            )
        )
        planned.update((subscriber_id, local_date) for subscriber_id, local_date in found)
    due_now = [d for d in due_now if (d.subscriber_id, d.local_date) not in planned]
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
    connection = session.connection()
    # The rows go to the driver as they are (``bulk``), each value converted once by
    # its column's own type: SQLAlchemy's insert prepared every row's parameters in Python,
    # three quarters of planning's time (100,000 readers: 4.7 s, docs/benchmarks.md).
    # The public ids are drawn here, so the rows this call inserted are found by them.
    convert = _plan_converters(connection.dialect)
    planned_at = convert["planned_at"](now)
    days = {day: convert["local_date"](day) for day in dates}
    starts: dict[datetime, Any] = {}
    rows = []
    for d in due_now:
        since = window_start(last.get(d.subscriber_id), now, first_window)
        if since not in starts:
            starts[since] = convert["since"](since)
        rows.append(
            (
                public_id(),
                d.subscriber_id,
                days[d.local_date],
                planned_at,
                starts[since],
                DeliveryState.PLANNED.value,
                0,
                0,
            )
        )
    bulk.insert_rows(
        connection,
        Delivery.__tablename__,
        _PLAN_COLUMNS,
        (),
        rows,
        skip_conflicts=("subscriber_id", "local_date"),
    )
    inserted: list[int] = []
    for part in chunks([row[0] for row in rows]):
        inserted.extend(session.scalars(select(Delivery.id).where(Delivery.public_id.in_(part))))
    return inserted


# A planned delivery's columns, in the order of plan's rows.
_PLAN_COLUMNS = (
    "public_id",
    "subscriber_id",
    "local_date",
    "planned_at",
    "since",
    "status",
    "attempts",
    "paper_count",
)


def _plan_converters(dialect: Dialect) -> dict[str, Callable[[Any], Any]]:
    """What each converted column's type makes of a Python value on ``dialect``."""
    found: dict[str, Callable[[Any], Any]] = {}
    for name in ("local_date", "planned_at", "since"):
        convert = Delivery.__table__.c[name].type.bind_processor(dialect)
        found[name] = convert if convert is not None else _same
    return found


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Unranked:
    id: int
    subscriber_id: int
    since: datetime  # candidates are the papers first seen from here on


def claim_unranked(
    session: Session, owner: str, now: datetime, until: datetime, limit: int
) -> list[Unranked]:
    """Up to ``limit`` planned deliveries whose content is not fixed yet, leased to
    ``owner`` until ``until`` for ranking: the ranking then runs outside any transaction (on
    SQLite the write lock is not held while it computes) and ``digests.save_chosen`` keeps
    only what is still this owner's. A ranker that died leaves its lease to run out; one with
    a stable name takes its own back at once. Call after ``begin_write``."""
    free = or_(
        Delivery.lease_until.is_(None), Delivery.lease_until < now, Delivery.lease_owner == owner
    )
    query = (
        select(Delivery.id, Delivery.subscriber_id, Delivery.since)
        .where(Delivery.status == DeliveryState.PLANNED, Delivery.ranked_at.is_(None), free)
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    found = [Unranked(*row) for row in session.execute(query)]
    for part in chunks([d.id for d in found]):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(part))
            .values(lease_owner=owner, lease_until=until)
        )
    return found


@dataclass(frozen=True, slots=True)
class Stored:
    """A digest as rendering and sending need it (what a claim returns)."""

    id: int
    public_id: str
    subscriber_id: int
    local_date: date
    planned_at: datetime
    ranked: bool
    attempts: int  # so far; a claim counts the one it leases


# Stored's fields are delivery columns of the same names, but for ``ranked``.
_STORED = tuple(f.name for f in fields(Stored) if f.name != "ranked")


def stored(delivery: Delivery) -> Stored:
    columns = {name: getattr(delivery, name) for name in _STORED}
    return Stored(**columns, ranked=delivery.ranked_at is not None)


def _lapsed(now: datetime) -> Any:
    return and_(Delivery.status == DeliveryState.SENDING, Delivery.lease_until < now)


_PLANNED = and_(Delivery.status == DeliveryState.PLANNED, Delivery.ranked_at.is_not(None))
# Planned with its content fixed and never tried: what a ranker has just saved.
_FRESH = and_(_PLANNED, Delivery.next_attempt_at.is_(None))


def ready_parts(now: datetime, policy: UnknownPolicy = "resend") -> list[Any]:
    """Each way a digest can be ready to send now; what "ready" means, the one definition
    that claims, ``digest status``, /metrics and progress bars all use.

    Planned with content fixed (fresh, or given back untried); deferred, or unknown under
    the resend policy, whose next attempt has come; sending with a lease that ran out (its
    sender died)."""
    parts = [
        _FRESH,
        and_(_PLANNED, Delivery.next_attempt_at.is_not(None)),  # given back untried
        and_(Delivery.status == DeliveryState.DEFERRED, Delivery.next_attempt_at <= now),
        _lapsed(now),
    ]
    if policy == "resend":
        parts.append(
            and_(Delivery.status == DeliveryState.UNKNOWN, Delivery.next_attempt_at <= now)
        )
    return parts


def ready(now: datetime, policy: UnknownPolicy = "resend") -> Any:
    return or_(*ready_parts(now, policy))


def claim(
    session: Session,
    lease: Lease,
    limit: int,
    subscriber_ids: Sequence[int] | None = None,
    *,
    policy: UnknownPolicy = "resend",
    daily_cap: int = 0,
    ids: Sequence[int] | None = None,
) -> list[Stored]:
    """Take up to ``limit`` deliveries ready to send and give them ``lease``; with ``ids``,
    only those among them that are planned and not tried yet (a worker's claim for the
    digests it has just ranked).

    Ready: see :func:`ready_parts`. Under the hold policy, a lapsed lease whose message had
    been handed over becomes unknown instead.
    Deliveries of subscribers who left meanwhile are cancelled, not sent. With a daily cap,
    claims stop when today's sends plus those in flight reach it.
    """
    begin_write(session)
    now = lease.start
    dialect = session.get_bind().dialect.name
    if daily_cap:
        if dialect == "postgresql":
            # Claims take turns while a cap is set, so two workers cannot both take the
            # last of today's allowance.
            session.execute(select(func.pg_advisory_xact_lock(CAP_LOCK_KEY)))
        limit = min(limit, max(daily_cap - used_today(session, now), 0))
        if limit == 0:
            return []
    if policy == "hold":
        hold_lapsed(session, Delivery, now)
    # One small query per way of being ready, each walking an index in id order and
    # stopping at ``limit`` (SQLite: (status, next_attempt_at) ends in the row id), then the
    # ``limit`` oldest of what they found. A single query with the OR of them all sorted
    # every ready row on each claim: 13-23 ms per claim at 10,000 planned, 10x that at
    # 100,000 (see docs/benchmarks.md).
    statements = _claim_statements(policy, limit)
    connection = session.connection()
    found: list[int] = []
    if ids is not None and subscriber_ids is None:
        found += connection.execute(statements.fresh_among, {"ids": list(ids)}).scalars()
    elif ids is not None:
        part = and_(_FRESH, Delivery.id.in_(list(ids)))
        part = and_(part, Delivery.subscriber_id.in_(list(subscriber_ids or ())))
        found += connection.execute(_ids_in_order(part, limit)).scalars()
    elif subscriber_ids is None:
        for part in statements.ready:
            found += connection.execute(part, {"now": now}).scalars()
    else:
        for part in ready_parts(now, policy):
            part = and_(part, Delivery.subscriber_id.in_(list(subscriber_ids)))
            found += connection.execute(_ids_in_order(part, limit)).scalars()
    chosen = sorted(found)[:limit]
    if not chosen:
        return []
    taken: list[Stored] = []
    gone: dict[str, list[int]] = {}
    for row in connection.execute(statements.rows, {"ids": chosen}).all():
        *values, ranked_at, subscriber_status = row
        if subscriber_status != SubscriberStatus.ACTIVE:
            gone.setdefault(subscriber_status, []).append(row[0])
            continue
        columns = dict(zip(_STORED, values, strict=True))
        columns["attempts"] += 1  # the row as ``take`` leaves it: one more attempt
        taken.append(Stored(**columns, ranked=ranked_at is not None))
    for subscriber_status, ids in gone.items():
        connection.execute(
            statements.cancel,
            {"ids": ids, "reason": f"not sent: the subscriber is {subscriber_status}"},
        )
    if taken:
        connection.execute(
            statements.take,
            {"ids": [one.id for one in taken], "owner": lease.owner, "until": lease.until},
        )
    return taken


def _ids_in_order(part: Any, limit: int) -> Any:
    return (
        select(Delivery.id)
        .where(part)
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@dataclass(frozen=True, slots=True)
class _ClaimStatements:
    ready: tuple[Any, ...]  # per way of being ready: the first ``limit`` ids (bind: now)
    fresh_among: Any  # the first ``limit`` planned and not tried yet among some (ids)
    rows: Any  # the chosen rows' columns and their subscriber's status (ids)
    cancel: Any  # a subscriber who left: the delivery is cancelled (ids, reason)
    take: Any  # leased to the claimer: one more attempt (ids, owner, until)


@cache
def _claim_statements(policy: UnknownPolicy, limit: int) -> _ClaimStatements:
    """A claim's statements, built once (per policy and batch size) with the values bound at
    each claim: building them afresh cost more than running them. Columns and plain
    UPDATEs, not ORM objects and a flush of one UPDATE per row: a claim holds SQLite's one
    write lock, which every other process's outcomes wait for (docs/benchmarks.md)."""
    ids = bindparam("ids", expanding=True)
    return _ClaimStatements(
        ready=tuple(_ids_in_order(part, limit) for part in ready_parts(bindparam("now"), policy)),
        fresh_among=_ids_in_order(and_(_FRESH, Delivery.id.in_(ids)), limit),
        rows=select(*_CLAIMED_COLUMNS, Subscriber.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
        .with_for_update(of=Delivery),
        cancel=update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(
            status=DeliveryState.CANCELLED,
            lease_owner=None,
            lease_until=None,
            last_error=bindparam("reason"),
        ),
        take=update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(
            status=DeliveryState.SENDING,
            lease_owner=bindparam("owner"),
            lease_until=bindparam("until"),
            handed_over_at=None,
            attempts=Delivery.attempts + 1,
        ),
    )


# What a claim reads of a delivery: the columns of Stored's fields, then ranked_at.
_CLAIMED_COLUMNS = (*(getattr(Delivery, name) for name in _STORED), Delivery.ranked_at)


# A row of either outbox: a digest, or a transactional mail. Both carry the same lease and
# state columns, so marking works the same on either.
Leased = type[Delivery] | type[TransactionalMail]
# Which outbox a sender's message is in, by its kind (``Outgoing.kind``, a journal's record).
OUTBOXES: dict[str, Leased] = {"digest": Delivery, "mail": TransactionalMail}
# A sender's outcomes are recorded on a bare connection (digest/store/group_commit.py).
Executor = Session | Connection


def _connection(executor: Executor) -> Connection:
    return executor.connection() if isinstance(executor, Session) else executor


def hold_lapsed(session: Session, model: Leased, now: datetime) -> None:
    """The hold policy: a lapsed lease whose message had been handed over to the server
    becomes unknown (it may have been delivered), for an operator to decide."""
    session.execute(
        update(model)
        .where(
            model.status == DeliveryState.SENDING,
            model.lease_until < now,
            model.handed_over_at.is_not(None),
        )
        .values(status=DeliveryState.UNKNOWN, lease_until=None, next_attempt_at=None)
    )


def take(row: Delivery | TransactionalMail, lease: Lease) -> None:
    """Lease a claimed row to its sender: one more attempt, nothing handed over yet."""
    row.status = DeliveryState.SENDING
    row.lease_owner = lease.owner
    row.lease_until = lease.until
    row.handed_over_at = None
    row.attempts += 1


CAP_LOCK_KEY = 0x6469_6765_7374_0001  # "digest" + 1: the daily cap's claim lock


def used_today(session: Session, now: datetime) -> int:
    """Messages sent since midnight UTC plus those claimed and in flight now."""
    midnight = datetime.combine(now.date(), time.min, now.tzinfo)
    sent = session.scalar(select(func.count()).where(Delivery.sent_at >= midnight)) or 0
    flying = session.scalar(
        select(func.count()).where(
            Delivery.status == DeliveryState.SENDING, Delivery.lease_until >= now
        )
    )
    return sent + (flying or 0)


@cache
def _statements(model: Leased) -> tuple[DriverStatement, DriverStatement]:
    """The two statements a sender runs once per message, built once per table and handed
    to the driver: building a fresh statement, or SQLAlchemy's own execution of a cached
    one, costs more than the database's own work (docs/benchmarks.md)."""
    mine = and_(model.id == bindparam("delivery_id"), model.lease_owner == bindparam("owner"))
    mark_sent = (
        update(model)
        .where(mine)
        .values(
            status=DeliveryState.SENT,
            sent_at=bindparam("now"),
            smtp_reply=bindparam("reply"),
            lease_until=None,
            next_attempt_at=None,
            **({"payload": b""} if model is TransactionalMail else {}),  # its links are spent
        )
    )
    handed_over = update(model).where(mine).values(handed_over_at=bindparam("now"))
    return DriverStatement(mark_sent), DriverStatement(handed_over)


def mark_sent(
    session: Executor,
    delivery_id: int,
    owner: str,
    now: datetime,
    reply: str,
    model: Leased = Delivery,
) -> bool:
    """Record the server's acceptance; False if the lease was lost to another sender."""
    result = _statements(model)[0].execute(
        _connection(session), delivery_id=delivery_id, owner=owner, now=now, reply=reply[:1000]
    )
    return result.rowcount == 1


def mark_handed_over(
    session: Executor, delivery_id: int, owner: str, now: datetime, model: Leased = Delivery
) -> bool:
    """Note that the message's data is about to go (the hold policy's evidence)."""
    result = _statements(model)[1].execute(
        _connection(session), delivery_id=delivery_id, owner=owner, now=now
    )
    return result.rowcount == 1


def mark_failed(
    session: Executor,
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
        values.update(status=DeliveryState.FAILED, next_attempt_at=None)
    else:
        values.update(status=DeliveryState.DEFERRED, next_attempt_at=retry_at)
    result = session.execute(
        update(model).where(model.id == delivery_id, model.lease_owner == owner).values(**values)
    )
    return result.rowcount == 1


def mark_unknown(
    session: Executor,
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
            status=DeliveryState.UNKNOWN,
            last_error=reason[:2000],
            lease_until=None,
            next_attempt_at=retry_at,
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
    status = (
        case((untried, DeliveryState.PLANNED), else_=DeliveryState.DEFERRED)
        if retry_at is None
        else DeliveryState.DEFERRED
    )
    result = session.execute(
        update(model)
        .where(
            model.id.in_(list(delivery_ids)),
            model.lease_owner == owner,
            model.status == DeliveryState.SENDING,
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


def recover(session: Session, owner: str, now: datetime, policy: UnknownPolicy) -> int:
    """A restarted worker with a stable name takes back what its previous run held: those
    rows are treated as if their lease had run out, now rather than later."""
    held = and_(Delivery.status == DeliveryState.SENDING, Delivery.lease_owner == owner)
    count = 0
    if policy == "hold":
        count += session.execute(
            update(Delivery)
            .where(held, Delivery.handed_over_at.is_not(None))
            .values(status=DeliveryState.UNKNOWN, lease_until=None, next_attempt_at=None)
        ).rowcount
    count += session.execute(
        update(Delivery)
        .where(held)
        .values(status=DeliveryState.DEFERRED, lease_until=None, next_attempt_at=now)
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
                Delivery.status.in_(
                    [DeliveryState.FAILED, DeliveryState.UNKNOWN, DeliveryState.DEFERRED]
                ),
            )
        )
    if not chosen:
        return 0
    result = session.execute(
        update(Delivery)
        .where(or_(*chosen))
        .values(
            status=DeliveryState.DEFERRED, next_attempt_at=now, lease_until=None, lease_owner=None
        )
    )
    return result.rowcount


def remaining(session: Session, now: datetime, subscriber_ids: Sequence[int] | None) -> int:
    """Digests still to go among those ready at ``now``: ready, or being sent (a progress
    bar's count)."""
    query = or_(ready(now), Delivery.status == DeliveryState.SENDING)
    if subscriber_ids is not None:
        query = and_(query, Delivery.subscriber_id.in_(list(subscriber_ids)))
    return session.scalar(select(func.count()).where(query)) or 0


@dataclass(frozen=True, slots=True)
class Listed:
    public_id: str
    email: str
    local_date: date
    attempts: int
    next_attempt_at: datetime | None
    detail: str | None  # the server's reply when sent, else the last error


def listing(session: Session, status: str, limit: int) -> list[Listed]:
    """Deliveries in one state, newest first."""
    rows = session.execute(
        select(Delivery, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status == status)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return [
        Listed(
            d.public_id,
            email,
            d.local_date,
            d.attempts,
            d.next_attempt_at,
            d.smtp_reply if d.status == DeliveryState.SENT else d.last_error,
        )
        for d, email in rows
    ]


def by_public_id(session: Session, public_id: str) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.public_id == public_id))
