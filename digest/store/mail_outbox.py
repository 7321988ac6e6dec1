"""Transactional mail's outbox: confirmations and preferences links, stored with the action
that asked for them and sent ahead of digests, with the same states and leases.

Marking (sent, failed, released) is shared with the digests: see
:mod:`digest.store.outbox`, whose functions take the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session

from digest.domain.states import DeliveryState, Lease
from digest.models import TransactionalMail
from digest.store import begin_write
from digest.store.outbox import UnknownPolicy, hold_lapsed, take


def enqueue(
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
        subscriber_id=subscriber_id,
        kind=kind,
        recipient=recipient,
        payload=payload,
        planned_at=now,
    )
    session.add(mail)
    session.flush()
    return mail.id


def _mail_ready(now: datetime, policy: UnknownPolicy) -> Any:
    parts = [
        and_(
            TransactionalMail.status == DeliveryState.PLANNED,
            or_(
                TransactionalMail.next_attempt_at.is_(None),
                TransactionalMail.next_attempt_at <= now,
            ),
        ),
        and_(
            TransactionalMail.status == DeliveryState.DEFERRED,
            TransactionalMail.next_attempt_at <= now,
        ),
        and_(
            TransactionalMail.status == DeliveryState.SENDING, TransactionalMail.lease_until < now
        ),
    ]
    if policy == "resend":
        parts.append(
            and_(
                TransactionalMail.status == DeliveryState.UNKNOWN,
                TransactionalMail.next_attempt_at <= now,
            )
        )
    return or_(*parts)


def claim(
    session: Session,
    lease: Lease,
    limit: int,
    *,
    ids: Sequence[int] | None = None,
    subscriber_ids: Sequence[int] | None = None,
    policy: UnknownPolicy = "resend",
) -> list[ClaimedMail]:
    """Take up to ``limit`` transactional mails that are ready, as :func:`claim` takes
    digests (a lapsed lease, a deferral whose time has come, an unknown one to resend)."""
    begin_write(session)
    if policy == "hold":
        hold_lapsed(session, TransactionalMail, lease.start)
    if ids is None and subscriber_ids is None:
        # Nearly always none: a look with a statement built once, before the full claim.
        look = _any_ready(policy)
        if session.connection().execute(look, {"now": lease.start}).first() is None:
            return []
    query = select(TransactionalMail).where(_mail_ready(lease.start, policy))
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
        take(mail, lease)
    session.flush()
    return [
        ClaimedMail(
            m.id,
            m.public_id,
            m.subscriber_id,
            m.kind,
            m.recipient,
            m.payload,
            m.planned_at,
            m.attempts,
        )
        for m in taken
    ]


@cache
def _any_ready(policy: UnknownPolicy) -> Any:
    """Whether a transactional mail is ready (bind: now). Every claim of a digest sender
    asks first, and building the claim's query cost as much as claiming 20 digests."""
    return select(TransactionalMail.id).where(_mail_ready(bindparam("now"), policy)).limit(1)


@dataclass(frozen=True, slots=True)
class ClaimedMail:
    """A transactional mail leased to a sender, with its bytes."""

    id: int
    public_id: str
    subscriber_id: int | None
    kind: str
    recipient: str
    payload: bytes
    planned_at: datetime
    attempts: int  # including this one


def due(session: Session, now: datetime, policy: UnknownPolicy = "resend") -> datetime | None:
    """When the next transactional mail is ready: ``now`` if one is, else the earliest retry
    or lease end (None: nothing is waiting). A read, so an idle poller takes no write lock."""
    if session.scalar(select(exists().where(_mail_ready(now, policy)))):
        return now
    waiting = [DeliveryState.PLANNED, DeliveryState.DEFERRED, DeliveryState.SENDING] + (
        [DeliveryState.UNKNOWN] if policy == "resend" else []
    )
    mail = TransactionalMail
    return session.scalar(
        select(func.min(func.coalesce(mail.next_attempt_at, mail.lease_until))).where(
            mail.status.in_(waiting)
        )
    )
