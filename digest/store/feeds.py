"""What a reader's private Atom feed is made of: their digests sent from a moment on, with
each one's chosen papers and the papers' cards (the archive's and the sender's own loaders)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.domain.items import PaperCard, RankedItem
from digest.domain.states import DeliveryState
from digest.models import Delivery
from digest.store import papers
from digest.store.digests import items_of
from digest.store.outbox import Stored, stored


@dataclass(frozen=True, slots=True)
class SentDigest:
    delivery: Stored
    sent_at: datetime
    items: list[tuple[RankedItem, PaperCard]]  # in the mail's order


# A month of daily digests is ~30; the cap only bounds a misconfigured or odd history.
MAX_DIGESTS = 100


def sent_since(session: Session, subscriber_id: int, since: datetime) -> list[SentDigest]:
    """The subscriber's digests accepted by the mail server from ``since`` on, newest first."""
    rows = list(
        session.scalars(
            select(Delivery)
            .where(
                Delivery.subscriber_id == subscriber_id,
                Delivery.status == DeliveryState.SENT,
                Delivery.sent_at >= since,
            )
            .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
            .limit(MAX_DIGESTS)
        )
    )
    chosen = items_of(session, [row.id for row in rows])
    cards = papers.cards_by_ids(session, {i.paper_id for items in chosen.values() for i in items})
    found = []
    for row in rows:
        assert row.sent_at is not None  # the query asks for it
        items = [(item, cards[item.paper_id]) for item in chosen[row.id] if item.paper_id in cards]
        found.append(SentDigest(stored(row), row.sent_at, items))
    return found
