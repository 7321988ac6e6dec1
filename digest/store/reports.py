"""What an operator asks each morning: did the fetch work, did the day's mail go out, is
anything stuck? Read-only queries over the database, shared by ``digest status`` and
``/metrics`` (which read the database, so they are right however many workers run).

``report(session, settings, now)`` gathers a :class:`StatusReport`; its ``problems`` list
says what needs attention, one plain sentence each, and drives ``digest status``'s exit code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.models import Delivery, FetchRun, Subscriber, TransactionalMail

SUBSCRIBER_STATES = ("pending", "active", "unsubscribed", "bounced")
DELIVERY_STATES = (
    "planned",
    "sending",
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
    "cancelled",
)

# Defaults for `digest status`: a ready digest older than this, or an enabled source with no
# successful fetch for this long, needs attention.
DEFAULT_MAX_QUEUE_AGE = timedelta(minutes=30)
DEFAULT_MAX_FETCH_AGE = timedelta(hours=24)
WINDOW = timedelta(hours=24)  # "today's" digests: those planned in the last 24 hours


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
    depth: int = 0  # waiting to go out now (planned, due retries, lapsed claims)
    oldest_since: datetime | None = None  # since when the longest-waiting one has been ready
    in_flight: int = 0  # claimed by a live sender
    held: int = 0  # unknown deliveries held for an operator (delivery.unknown_policy = "hold")

    def age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_since is None else max(now - self.oldest_since, timedelta())


@dataclass(slots=True)
class StatusReport:
    now: datetime
    sources: list[SourceStatus]
    recent: dict[str, int]  # digests planned in the last 24 hours, by state
    queue: QueueStatus
    subscribers: dict[str, int]
    bounced_recently: int  # subscribers whose last bounce is within the last 24 hours
    # Confirmations and preferences links asked for in the last 24 hours, by state.
    mails: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat(timespec="seconds") if value else None

        age = self.queue.age(self.now)
        return {
            "ok": not self.problems,
            "now": when(self.now),
            "problems": self.problems,
            "sources": [
                {
                    "source": s.source,
                    "enabled": s.enabled,
                    "last_at": when(s.last_at),
                    "last_status": s.last_status,
                    "fetched": s.fetched,
                    "new": s.new,
                    "error": s.error,
                    "last_ok_at": when(s.last_ok_at),
                }
                for s in self.sources
            ],
            "deliveries_last_24h": self.recent,
            "queue": {
                "depth": self.queue.depth,
                "oldest_ready_since": when(self.queue.oldest_since),
                "age_seconds": None if age is None else round(age.total_seconds()),
                "in_flight": self.queue.in_flight,
                "held": self.queue.held,
            },
            "subscribers": self.subscribers,
            "bounced_last_24h": self.bounced_recently,
            "transactional_mail_last_24h": self.mails,
        }


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

    Waiting: planned (ranked or not yet), deferred or unknown whose retry time has come, and
    claims whose lease ran out (their sender died). Each became ready at a known moment:
    planning, the retry time, the lease's end.
    """
    planned = Delivery.status == "planned"
    retry_due = and_(
        Delivery.status.in_(["deferred", "unknown"]),
        Delivery.next_attempt_at.is_not(None),
        Delivery.next_attempt_at <= now,
    )
    lapsed = and_(Delivery.status == "sending", Delivery.lease_until < now)
    row = session.execute(
        select(
            func.count().filter(or_(planned, retry_due, lapsed)),
            func.min(Delivery.planned_at).filter(planned),
            func.min(Delivery.next_attempt_at).filter(retry_due),
            func.min(Delivery.lease_until).filter(lapsed),
            func.count().filter(Delivery.status == "sending", Delivery.lease_until >= now),
            func.count().filter(Delivery.status == "unknown", Delivery.next_attempt_at.is_(None)),
        ).where(Delivery.status.in_(["planned", "deferred", "unknown", "sending"]))
    ).one()
    depth, *since, in_flight, held = row
    starts = [s for s in since if s is not None]
    return QueueStatus(
        depth=depth or 0,
        oldest_since=min(starts) if starts else None,
        in_flight=in_flight or 0,
        held=held or 0,
    )


def subscriber_counts(session: Session) -> dict[str, int]:
    found = dict(
        session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    )
    return {state: found.get(state, 0) for state in (*SUBSCRIBER_STATES, *sorted(found))}


def report(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    max_queue_age: timedelta = DEFAULT_MAX_QUEUE_AGE,
    max_fetch_age: timedelta = DEFAULT_MAX_FETCH_AGE,
) -> StatusReport:
    since = now - WINDOW
    counts = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.planned_at >= since)
            .group_by(Delivery.status)
        ).all()
    )
    recent = {state: counts.get(state, 0) for state in (*DELIVERY_STATES, *sorted(counts))}
    bounced_recently = (
        session.scalar(
            select(func.count()).where(
                Subscriber.status == "bounced", Subscriber.last_bounce_at >= since
            )
        )
        or 0
    )
    mails = dict(
        session.execute(
            select(TransactionalMail.status, func.count())
            .where(TransactionalMail.planned_at >= since)
            .group_by(TransactionalMail.status)
        ).all()
    )
    found = StatusReport(
        now=now,
        sources=last_fetches(session, list(settings.sources.enabled)),
        recent=recent,
        queue=queue(session, now),
        subscribers=subscriber_counts(session),
        bounced_recently=bounced_recently,
        mails=mails,
    )
    found.problems = problems(found, max_queue_age=max_queue_age, max_fetch_age=max_fetch_age)
    return found


def problems(
    found: StatusReport, *, max_queue_age: timedelta, max_fetch_age: timedelta
) -> list[str]:
    """What needs an operator, one sentence each; empty when all is well."""
    now = found.now
    said = []
    for s in found.sources:
        if not s.enabled:
            continue
        if s.last_status is None:
            said.append(f"source {s.source} has never been fetched (run `digest fetch`)")
            continue
        if s.last_status == "failed":
            said.append(f"the last fetch of {s.source} failed: {s.error or 'no reason recorded'}")
        if s.last_ok_at is None or now - s.last_ok_at > max_fetch_age:
            last = "never" if s.last_ok_at is None else f"last {ago(now - s.last_ok_at)} ago"
            said.append(f"no successful fetch of {s.source} in {ago(max_fetch_age)} ({last})")
    for state, what in (("failed", "failed"), ("unknown", "may or may not have arrived")):
        if found.recent.get(state):
            said.append(
                f"{found.recent[state]} digest(s) of the last 24 hours {what} "
                f"(`digest outbox list --status {state}`)"
            )
    if found.mails.get("failed"):
        said.append(
            f"{found.mails['failed']} confirmation or preferences-link mail(s) of the last 24 "
            "hours failed (the server refused them for good; the readers may ask again)"
        )
    if found.queue.held:
        said.append(
            f"{found.queue.held} delivery(ies) held for an operator "
            "(`digest outbox retry --status unknown`)"
        )
    age = found.queue.age(now)
    if age is not None and age > max_queue_age:
        said.append(
            f"the oldest of {found.queue.depth} ready digest(s) has waited {ago(age)} "
            f"(more than {ago(max_queue_age)}): is a worker or `digest serve` running?"
        )
    return said


def ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
