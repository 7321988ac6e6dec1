"""The numbers operators ask for, read-only: ``digest status`` and /metrics come from here
(they read the database, so they are right however many workers run)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from digest.domain.states import DeliveryState
from digest.models import Bounce, Delivery, Feedback, FetchRun, Subscriber, TransactionalMail
from digest.store import outbox
from digest.store.bounces import COUNTED as BOUNCES_COUNTED


@dataclass(slots=True)
class SourceStatus:
    source: str
    enabled: bool
    last_at: datetime | None = None  # when the last run finished (or started)
    last_status: str | None = None  # ok, not_modified, failed
    fetched: int = 0
    new: int = 0
    error: str | None = None
    last_ok_at: datetime | None = None  # the last run that was not a failure


@dataclass(slots=True)
class QueueStatus:
    depth: int = 0  # waiting to go out now (ready to send, or planned and not ranked yet)
    oldest_since: datetime | None = None  # since when the longest-waiting one has been ready
    in_flight: int = 0  # claimed by a live sender
    held: int = 0  # unknown deliveries held for an operator (delivery.unknown_policy = "hold")

    def age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_since is None else max(now - self.oldest_since, timedelta())


def last_fetches(session: Session, enabled: list[str]) -> list[SourceStatus]:
    """The last run of each source ever fetched, and of each enabled one (maybe never)."""
    latest = (
        select(FetchRun.source, func.max(FetchRun.id).label("id")).group_by(FetchRun.source)
    ).subquery()
    runs = {
        run.source: run
        for run in session.scalars(select(FetchRun).join(latest, FetchRun.id == latest.c.id))
    }
    last_ok = dict(
        session.execute(
            select(
                FetchRun.source, func.max(func.coalesce(FetchRun.finished_at, FetchRun.started_at))
            )
            .where(FetchRun.status != "failed")
            .group_by(FetchRun.source)
        ).all()
    )
    names = list(enabled) + sorted(set(runs) - set(enabled))
    found = []
    for name in names:
        status = SourceStatus(name, enabled=name in enabled, last_ok_at=last_ok.get(name))
        run = runs.get(name)
        if run is not None:
            status.last_at = run.finished_at or run.started_at
            status.last_status = run.status
            status.fetched, status.new, status.error = run.fetched, run.new, run.error
        found.append(status)
    return found


def queue(session: Session, now: datetime) -> QueueStatus:
    """How much waits to go out now, and since when the oldest of it has been waiting.

    Waiting: ready to send (``digest.store.outbox.ready_parts``, as the senders claim), or
    planned and not yet ranked (a tick ranks it first). Each became ready at a known moment:
    planning, the retry time, the lease's end.
    """
    fresh, returned, deferred, lapsed, *unknown = outbox.ready_parts(now)
    planned = or_(
        fresh,
        returned,
        and_(Delivery.status == DeliveryState.PLANNED, Delivery.ranked_at.is_(None)),
    )
    retry_due = or_(deferred, *unknown)
    row = session.execute(
        select(
            func.count().filter(or_(planned, retry_due, lapsed)),
            func.min(Delivery.planned_at).filter(planned),
            func.min(Delivery.next_attempt_at).filter(retry_due),
            func.min(Delivery.lease_until).filter(lapsed),
            func.count().filter(
                Delivery.status == DeliveryState.SENDING, Delivery.lease_until >= now
            ),
            func.count().filter(
                Delivery.status == DeliveryState.UNKNOWN, Delivery.next_attempt_at.is_(None)
            ),
        ).where(
            Delivery.status.in_(
                [
                    DeliveryState.PLANNED,
                    DeliveryState.DEFERRED,
                    DeliveryState.UNKNOWN,
                    DeliveryState.SENDING,
                ]
            )
        )
    ).one()
    depth, *since, in_flight, held = row
    starts = [s for s in since if s is not None]
    return QueueStatus(
        depth=depth or 0,
        oldest_since=min(starts) if starts else None,
        in_flight=in_flight or 0,
        held=held or 0,
    )


def delivery_counts(session: Session, since: datetime | None = None) -> dict[str, int]:
    """Digests by state (planned from ``since`` on), every state listed."""
    query = select(Delivery.status, func.count()).group_by(Delivery.status)
    if since is not None:
        query = query.where(Delivery.planned_at >= since)
    found = dict(session.execute(query).all())
    return {state: found.get(state, 0) for state in (*DeliveryState, *sorted(found))}


def mail_counts(session: Session, since: datetime) -> dict[str, int]:
    """Transactional mail asked for from ``since`` on, by state (only states that occur)."""
    return dict(
        session.execute(
            select(TransactionalMail.status, func.count())
            .where(TransactionalMail.planned_at >= since)
            .group_by(TransactionalMail.status)
        ).all()
    )


def bounced_since(session: Session, since: datetime) -> int:
    """Subscribers suppressed whose last bounce came from ``since`` on."""
    return (
        session.scalar(
            select(func.count()).where(
                Subscriber.status == "bounced", Subscriber.last_bounce_at >= since
            )
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class FetchTotal:
    source: str
    status: str
    runs: int
    fetched: int
    new: int


def fetch_totals(session: Session) -> list[FetchTotal]:
    """Fetch runs, records fetched and papers first stored, by source and outcome."""
    rows = session.execute(
        select(
            FetchRun.source,
            FetchRun.status,
            func.count(),
            func.coalesce(func.sum(FetchRun.fetched), 0),
            func.coalesce(func.sum(FetchRun.new), 0),
        ).group_by(FetchRun.source, FetchRun.status)
    )
    return [FetchTotal(s, st, int(n), int(f), int(new)) for s, st, n, f, new in rows]


def _seconds_between(session: Session, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """``end - start`` in seconds, in SQL, for SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * literal(86400.0)
    return func.extract("epoch", end - start)


def send_latency(
    session: Session, since: datetime, bounds: tuple[float, ...]
) -> tuple[int, float, list[int]]:
    """Planned → accepted over the digests sent from ``since`` on: how many, the sum of
    seconds, and how many took at most each bound (bucketed in SQL)."""
    seconds = _seconds_between(session, Delivery.planned_at, Delivery.sent_at)
    columns = [func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0) for bound in bounds]
    count, total, *cumulative = session.execute(
        select(func.count(), func.coalesce(func.sum(seconds), 0.0), *columns).where(
            Delivery.status == DeliveryState.SENT, Delivery.sent_at >= since
        )
    ).one()
    return int(count), max(float(total), 0.0), [int(c) for c in cumulative]


# -- how digests are received (`digest quality`) ----------------------------------------


@dataclass(slots=True)
class QualityDay:
    """One UTC day's figures, or a window's sums (see docs/operations.md)."""

    day: date | None  # None: the whole window
    sent: int = 0  # digests the mail server accepted that day
    picks: int = 0  # papers in them
    empty_sent: int = 0  # of those, digests with no paper (the reader asked for empty mails)
    skipped: int = 0  # digests not sent for having nothing (planned that day)
    liked: int = 0  # "more like this" standing on papers of that day's digests
    disliked: int = 0  # "fewer like this" standing on them
    unsubscribes: int = 0  # readers unsubscribed that day (still unsubscribed now)
    bounces: int = 0  # permanent failures and hard bounces recorded that day

    def add(self, other: QualityDay) -> None:
        for name in ("sent", "picks", "empty_sent", "skipped", "liked", "disliked"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unsubscribes += other.unsubscribes
        self.bounces += other.bounces


def _utc_day(session: Session, column: ColumnElement) -> ColumnElement:
    """The UTC calendar day of a timestamp column, in SQL (SQLite keeps UTC without a zone;
    PostgreSQL's date() would use the session's zone)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return func.date(func.timezone("UTC", column))


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def quality_days(session: Session, since: datetime) -> dict[date, QualityDay]:
    """Per UTC day from ``since`` on, the days with anything to count: a few grouped
    queries over indexed columns, whatever the number of readers."""
    found: dict[date, QualityDay] = {}

    def day(value: object) -> QualityDay:
        key = _as_date(value)
        return found.setdefault(key, QualityDay(key))

    sent_day = _utc_day(session, Delivery.sent_at)
    sent_in_window = and_(Delivery.status == DeliveryState.SENT, Delivery.sent_at >= since)
    rows = session.execute(
        select(
            sent_day,
            func.count(),
            func.coalesce(func.sum(Delivery.paper_count), 0),
            func.coalesce(func.sum(case((Delivery.paper_count == 0, 1), else_=0)), 0),
        )
        .where(sent_in_window)
        .group_by(sent_day)
    )
    for when, count, picks, empty in rows:
        one = day(when)
        one.sent, one.picks, one.empty_sent = int(count), int(picks), int(empty)
    planned_day = _utc_day(session, Delivery.planned_at)
    rows = session.execute(
        select(planned_day, func.count())
        .where(Delivery.status == DeliveryState.SKIPPED, Delivery.planned_at >= since)
        .group_by(planned_day)
    )
    for when, count in rows:
        day(when).skipped = int(count)
    rows = session.execute(
        select(
            sent_day,
            func.coalesce(func.sum(case((Feedback.value > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Feedback.value < 0, 1), else_=0)), 0),
        )
        .join(Delivery, Feedback.delivery_id == Delivery.id)
        .where(sent_in_window)
        .group_by(sent_day)
    )
    for when, liked, disliked in rows:
        one = day(when)
        one.liked, one.disliked = int(liked), int(disliked)
    left_day = _utc_day(session, Subscriber.unsubscribed_at)
    rows = session.execute(
        select(left_day, func.count())
        .where(Subscriber.status == "unsubscribed", Subscriber.unsubscribed_at >= since)
        .group_by(left_day)
    )
    for when, count in rows:
        day(when).unsubscribes = int(count)
    bounce_day = _utc_day(session, Bounce.received_at)
    rows = session.execute(
        select(bounce_day, func.count())
        .where(Bounce.kind.in_(BOUNCES_COUNTED), Bounce.received_at >= since)
        .group_by(bounce_day)
    )
    for when, count in rows:
        day(when).bounces = int(count)
    return found


def _unpraised(since: datetime) -> list[ColumnElement[bool]]:
    """Active readers sent a digest from ``since`` on who gave no "more like this" since."""
    praised = select(Feedback.subscriber_id).where(Feedback.value > 0, Feedback.created_at >= since)
    received = select(Delivery.subscriber_id).where(
        Delivery.status == DeliveryState.SENT, Delivery.sent_at >= since
    )
    return [
        Subscriber.status == "active",
        Subscriber.id.in_(received),
        Subscriber.id.not_in(praised),
    ]


def unpraised_count(session: Session, since: datetime) -> int:
    return session.scalar(select(func.count(Subscriber.id)).where(*_unpraised(since))) or 0


def unpraised_addresses(session: Session, since: datetime) -> list[str]:
    query = select(Subscriber.email).where(*_unpraised(since)).order_by(Subscriber.email)
    return list(session.scalars(query))
